"""The retrieval report: ``retrieval.json``, ``retrieval.md``, result grids, the console table, and the
figures sent to experiment loggers. Scoring is :mod:`imgsearch.retrieval.scoring`'s job, the comparison of
settings :mod:`imgsearch.retrieval.evaluate`'s."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgsearch.retrieval.evaluate import OPTIONS, EvalReport, Setting
from imgsearch.retrieval.scoring import RunResult, metric_columns
from imgsearch.retrieval.visualize import GridHit, GridRow, save_result_grid
from imgsearch.utils.atomic import atomic_write_json, atomic_write_text
from imgsearch.utils.tracking import is_wandb

REPORT_JSON = "retrieval.json"
REPORT_MD = "retrieval.md"


def grid_rows(
    catalogue: pd.DataFrame, result: RunResult, relevance: str, n: int, seed: int = 0
) -> list[GridRow]:
    """Up to ``n`` sample queries, one per category first, drawn with ``seed``."""
    if len(result.query_rows) == 0:
        return []
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(result.query_rows))
    labels = catalogue["label"].to_numpy()[result.query_rows[order]]
    _, first = np.unique(labels, return_index=True)
    picks = list(order[np.sort(first)])[:n]
    picks += [i for i in order if i not in set(picks)][: n - len(picks)]
    rows = []
    for i in picks:
        q = catalogue.iloc[result.query_rows[i]]
        hits = []
        for rank, g in enumerate(result.top_rows[i]):
            if g < 0:
                continue
            item = catalogue.iloc[g]
            caption = item["label"] if relevance == "label" else str(item["product_id"])
            hits.append(GridHit(str(item["image_path"]), str(caption)[:18], bool(result.relevant[i, rank])))
        caption = q["label"] if relevance == "label" else f"{q['product_id']} ({q['label']})"
        rows.append(GridRow(str(q["image_path"]), str(caption)[:24], hits))
    return rows


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _metric_columns(ks: Sequence[int]) -> list[str]:
    k_max = max(ks)
    return [*(f"mAP@{k}" for k in ks), f"mAP@{k_max}_norm", "MAP@R", *(f"recall@{k}" for k in ks)]


def markdown_report(summary: Mapping[str, Any]) -> str:
    """The report as Markdown tables: main setting per relevance, each compared option, per class."""
    ks = summary["main"]["ks"]
    cols = metric_columns(ks)
    main = Setting(
        **{k: summary["main"][k] for k in OPTIONS if k in summary["main"]}
    )  # older reports lack newer options
    lines = ["# Retrieval evaluation", "", f"Main setting: **{main.describe()}**.", ""]

    def table(header: str, rows: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
        lines.extend([f"| {header} | relevance | {' | '.join(cols)} | queries | gallery |",
                      "| --- | --- |" + " ---: |" * (len(cols) + 2)])  # fmt: skip
        for name, rel, m in rows:
            values = " | ".join(_fmt(m.get(c, "")) for c in cols)
            lines.append(f"| {name} | {rel} | {values} | {m['queries']} | {m['gallery']} |")
        lines.append("")

    table("setting", ((main.describe(), rel, m) for rel, m in summary["relevance"].items()))
    for opt, values in summary.get("compare", {}).items():
        lines.extend([f"## {opt}", ""])
        table(opt, ((val, rel, m) for val, by_rel in values.items() for rel, m in by_rel.items()))
    for rel, res in summary["relevance"].items():
        lines.extend([f"## Per class ({rel} relevance, main setting)", ""])
        per_cols = [f"mAP@{ks[0]}", f"mAP@{max(ks)}", "MAP@R", f"recall@{max(ks)}"]
        lines.append(f"| class | queries | {' | '.join(per_cols)} |")
        lines.append("| --- |" + " ---: |" * (len(per_cols) + 1))
        for cls, m in res["per_class"].items():
            lines.append(f"| {cls} | {m['queries']} | {' | '.join(_fmt(m[c]) for c in per_cols)} |")
        lines.append("")
        if res["queries_without_relevant"]:
            lines.append(f"{res['queries_without_relevant']} {rel} queries had no relevant gallery item "
                         "and are not counted.\n")  # fmt: skip
    for rel, why in summary.get("skipped_relevance", {}).items():
        lines.append(f"{rel} relevance was not measured: {why}.\n")
    lines.extend(["## Definitions", ""])
    lines.extend(f"- **{name}**: {text}" for name, text in summary["definitions"].items())
    lines.extend(["", "## Protocol", ""])
    lines.extend(f"- {name}: {text}" for name, text in summary["protocol"].items())
    skipped = summary.get("skipped_images", {}).get("count", 0)
    if skipped:
        lines.append(f"- {skipped} images could not be read and were left out")
    return "\n".join(lines) + "\n"


def write_report(report: EvalReport, out_dir: str | os.PathLike[str], *, samples: int = 6) -> dict[str, Path]:
    """Write ``retrieval.json``, ``retrieval.md`` and one ``retrieval_grid_<relevance>.png`` per relevance."""
    out = Path(out_dir)
    files = {
        "json": atomic_write_json(out / REPORT_JSON, report.summary),
        "markdown": atomic_write_text(out / REPORT_MD, markdown_report(report.summary)),
    }
    if samples > 0 and report.catalogue is not None:
        main = Setting(**{k: report.summary["main"][k] for k in OPTIONS if k in report.summary["main"]})
        for rel, result in report.main_results.items():
            grid = grid_rows(report.catalogue, result, rel, samples)
            if grid:
                title = f"{rel} relevance, {main.describe()} (green = relevant)"
                files[f"grid_{rel}"] = save_result_grid(out / f"retrieval_grid_{rel}.png", grid, title=title)
    report.files = files
    return files


def flat_metrics(summary: Mapping[str, Any], prefix: str = "retrieval") -> dict[str, float]:
    """Scalar figures for experiment loggers: ``retrieval/<relevance>/<metric>`` and compared options."""
    out: dict[str, float] = {}
    for rel, res in summary["relevance"].items():
        out.update({f"{prefix}/{rel}/{k}": float(v) for k, v in res.items() if isinstance(v, float)})
    for opt, values in summary.get("compare", {}).items():
        for val, by_rel in values.items():
            for rel, m in by_rel.items():
                out.update(
                    {
                        f"{prefix}/{opt}={val}/{rel}/{k}": float(v)
                        for k, v in m.items()
                        if isinstance(v, float)
                    }
                )
    return out


def log_report(report: EvalReport, loggers: Sequence[Any] = ()) -> None:
    """Send the figures (and the grids, where the logger takes images) to Lightning loggers, and to the
    active W&B run if there is one and no W&B logger was given."""
    metrics = flat_metrics(report.summary)
    grids = {k: v for k, v in report.files.items() if k.startswith("grid_")}
    wandb_done = False
    for lg in loggers:
        lg.log_metrics(metrics)
        if hasattr(lg, "log_image") and grids:
            for key, path in grids.items():
                lg.log_image(key=f"retrieval/{key}", images=[str(path)])
        wandb_done |= is_wandb(lg)
        if hasattr(lg, "save"):
            lg.save()
    if not wandb_done and "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.log({**metrics, **{f"retrieval/{k}": wandb.Image(str(p)) for k, p in grids.items()}})


def print_summary(summary: Mapping[str, Any]) -> None:
    """The main figures and compared options as a rich table on the console."""
    from rich.console import Console
    from rich.table import Table

    cols = metric_columns(summary["main"]["ks"])
    table = Table(title="retrieval")
    for name in ["setting", "relevance", *cols]:
        table.add_column(name, justify="left" if name in ("setting", "relevance") else "right")
    for rel, m in summary["relevance"].items():
        table.add_row("main", rel, *(f"{m[c]:.4f}" for c in cols))
    for opt, values in summary.get("compare", {}).items():
        for value, by_rel in values.items():
            for rel, m in by_rel.items():
                table.add_row(f"{opt}={value}", rel, *(f"{m[c]:.4f}" for c in cols))
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # a log file gets every column
