"""Console summaries: the catalogue table of a run (class x split), and the end of a run (``metrics.json``,
written atomically, and a readable table)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from imgsearch.data.schema import SPLITS
from imgsearch.utils.atomic import atomic_write_json

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Lightning's ``callback_metrics`` (tensors) as plain floats, sorted by name."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return dict(sorted(out.items()))


def write_metrics(run_dir: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Write ``record`` to ``<run_dir>/metrics.json`` atomically; NaN/inf become ``null``."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {k: clean(x) for k, x in v.items()}
        return v

    return atomic_write_json(Path(run_dir) / METRICS_FILE, clean(dict(record)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def render_summary(
    metrics: Mapping[str, float],
    *,
    run_dir: str | os.PathLike[str],
    best_checkpoint: str | None,
    optimized: tuple[str, float | None] | None = None,
    console: Console | None = None,
) -> None:
    """Print the final metrics grouped by stage, then where the checkpoint and the run are."""
    console = console or Console()
    table = Table(title="imgsearch-train: final metrics", show_lines=False)
    table.add_column("metric", style="cyan", no_wrap=True)
    table.add_column("value", justify="right")
    for stage in ("train", "val", "test"):
        for key, value in metrics.items():
            if key.startswith(f"{stage}/"):
                table.add_row(key, _fmt(value))
    for key, value in metrics.items():
        if not key.startswith(("train/", "val/", "test/")):
            table.add_row(key, _fmt(value))
    console.print(table)
    if optimized is not None:
        console.print(f"[bold]optimized metric[/bold] {optimized[0]} = {_fmt(optimized[1])}")
    console.print(f"[bold]best checkpoint[/bold] {best_checkpoint or '(none saved)'}")
    console.print(f"[bold]run directory[/bold]   {run_dir}")


def summary_table(df: pd.DataFrame, title: str = "catalogue") -> Any:
    """A rich table: images per class and split, with totals."""
    table = Table(title=f"{title}: {len(df)} images, {df['product_id'].nunique()} products")
    table.add_column("label")
    splits = [s for s in SPLITS if (df["split"] == s).any()] or ["(unsplit)"]
    for s in splits:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    key = df["split"].where(df["split"] != "", "(unsplit)")
    counts = pd.crosstab(df["label"], key)
    for label, row in counts.iterrows():
        table.add_row(str(label), *(str(int(row.get(s, 0))) for s in splits), str(int(row.sum())))
    table.add_row("[b]total[/b]", *(str(int((key == s).sum())) for s in splits), str(len(df)))
    return table


def log_summary(df: pd.DataFrame, title: str = "catalogue") -> None:
    """Print the class x split table to the terminal (rich) and one line to the log."""
    Console(stderr=True).print(summary_table(df, title))
    per_split = ", ".join(f"{s} {int((df['split'] == s).sum())}" for s in SPLITS)
    log.info("%s: %d images, %d classes (%s)", title, len(df), df["label"].nunique(), per_split)
