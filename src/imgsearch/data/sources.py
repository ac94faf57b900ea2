"""``build_catalogue``: what the Hydra entry points call to get the table a run uses.

``source`` is a config node with a ``_target_``, e.g.::

    source:
      _target_: imgsearch.data.read_farfetch
      csv_path: ${paths.data_dir}/farfetch/current_farfetch_listings.csv
      image_dir: ${paths.data_dir}/farfetch
    prepare: {top_k_classes: 20, max_per_class: 500, split: [0.7, 0.2, 0.1], seed: 42}

Any reader works as target (``read_farfetch``, ``read_amazon``, ``read_csv_catalogue``,
``imgsearch.data.demo.demo_catalogue``), and ``imgsearch.data.read_catalogue`` re-uses an
already prepared table (then use ``prepare: null`` or ``keep_existing_split: true``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from imgsearch.data.prepare import prepare_catalogue
from imgsearch.data.schema import SPLITS, validate_catalogue, write_catalogue
from imgsearch.utils.config import to_plain_container
from imgsearch.utils.summary import log_summary

log = logging.getLogger(__name__)


def build_catalogue(
    source: Mapping[str, Any],
    prepare: Mapping[str, Any] | None,
    out_dir: str | os.PathLike[str] | None,
) -> pd.DataFrame:
    """Read a source, prepare it and write ``<out_dir>/catalogue.csv`` (+ ``skipped.json``).

    Args:
        source: config node with ``_target_`` (a reader) and its arguments.
        prepare: keyword arguments of :func:`imgsearch.data.prepare.prepare_catalogue`;
            ``None`` uses the table as it comes (e.g. a prepared ``catalogue.csv``).
        out_dir: the run's output directory (``None``: nothing written).

    Returns:
        The prepared table, the one the run uses.
    """
    from hydra.utils import instantiate

    src = dict(to_plain_container(source) or {})
    if "_target_" not in src:
        raise ValueError(
            f"catalogue source config needs a _target_ (a reader function); got keys {sorted(src)}"
        )
    df = instantiate(src, _convert_="all")
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{src['_target_']} returned {type(df).__name__}, expected a catalogue DataFrame")
    out = Path(out_dir) if out_dir is not None else None
    if prepare is None:
        table = validate_catalogue(df)
        if not (table["split"].isin(SPLITS)).all():
            log.warning("catalogue from %s is used unprepared and has rows without a split", src["_target_"])
    else:
        table = prepare_catalogue(df, **to_plain_container(prepare), report_dir=out)
    if out is not None:
        write_catalogue(table, out / "catalogue.csv")
        log.info("catalogue written to %s", out / "catalogue.csv")
    log_summary(table, title=str(src["_target_"]).rsplit(".", 1)[-1])
    return table
