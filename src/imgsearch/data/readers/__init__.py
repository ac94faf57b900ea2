"""Readers: one per source format, each returning the catalogue table (:mod:`imgsearch.data.schema`)."""
