"""The tiny retrieval catalogues and trained runs of tests/retrieval_fixtures.py, for this folder."""

from retrieval_fixtures import catalogue, index_dir, pixel_model, trained_run

__all__ = ["catalogue", "index_dir", "pixel_model", "trained_run"]
