"""The end of a run: ``metrics.json`` (atomic) and a readable summary table."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from imgsearch.utils.atomic import atomic_write_json

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
