"""``imgsearch-eval``: retrieval report of a checkpoint on a catalogue (``conf/eval.yaml``).

    imgsearch-eval checkpoint=outputs/demo/runs/<run>/checkpoints/best.ckpt
    imgsearch-eval checkpoint=... relevance=[product] compare.embedding=[features,pixels] logger=wandb

Writes ``retrieval.json``, ``retrieval.md`` and ``retrieval_grid_<relevance>.png`` (into the checkpoint's
run directory unless ``output_dir`` says otherwise) and prints the main table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from imgsearch.cli.index import resolve_inputs
from imgsearch.utils.config import config_dir

log = logging.getLogger(__name__)


def _list(value: Any) -> list[Any] | None:
    return None if value is None else list(value)


def print_summary(summary: dict[str, Any]) -> None:
    """The main figures and compared options as a rich table on the console."""
    import sys

    from rich.console import Console
    from rich.table import Table

    ks = summary["main"]["ks"]
    cols = [*(f"mAP@{k}" for k in ks), f"mAP@{max(ks)}_norm", "MAP@R", *(f"recall@{k}" for k in ks)]
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


def run(cfg: DictConfig) -> dict[str, Any] | None:
    """Evaluate, write the report, log it; returns the summary (``None`` on non-zero DDP ranks)."""
    ckpt, catalogue_path, run_dir = resolve_inputs(cfg)  # bad paths fail before the heavy imports
    from lightning.pytorch.utilities import rank_zero_only

    from imgsearch.cli.train import instantiate_loggers
    from imgsearch.data.schema import read_catalogue
    from imgsearch.models.checkpoint import checkpoint_sha256, load_classifier
    from imgsearch.retrieval.evaluate import Setting, evaluate_retrieval, log_report, write_report
    from imgsearch.utils.logging import finish_wandb

    catalogue = read_catalogue(catalogue_path)
    module = load_classifier(ckpt, map_location="cpu") if ckpt is not None else None
    main = Setting(
        embedding=str(cfg.embedding),
        metric=str(cfg.metric),
        normalize=bool(cfg.normalize),
        classify_first=bool(cfg.classify_first),
        factory=str(cfg.factory),
    )
    compare = {
        k: _list(v) for k, v in (OmegaConf.to_container(cfg.get("compare") or {}, resolve=True)).items()
    }
    report = evaluate_retrieval(
        catalogue,
        module,
        relevance=list(cfg.relevance),
        ks=[int(k) for k in cfg.ks],
        main=main,
        compare=compare,
        query_splits=list(cfg.query_splits),
        gallery_splits=list(cfg.gallery_splits),
        query_views=list(cfg.query_views),
        product_gallery_splits=_list(cfg.get("product_gallery_splits")),
        map_r_cap=int(cfg.map_r_cap),
        pixel_size=int(cfg.pixel_size),
        batch_size=int(cfg.batch_size),
        num_workers=cfg.get("num_workers"),
        trainer_kwargs=OmegaConf.to_container(cfg.get("trainer") or {}, resolve=True),
        search_batch_size=int(cfg.search_batch_size),
        runtime=_runtime(module, ckpt, cfg),
    )
    if rank_zero_only.rank != 0:
        return None
    report.summary["checkpoint"] = {
        "path": str(ckpt) if ckpt else None,
        "sha256": checkpoint_sha256(ckpt) if ckpt else None,
        "backbone": module.hparams.get("backbone") if module is not None else None,
    }
    report.summary["catalogue"] = str(catalogue_path)
    out = Path(to_absolute_path(str(cfg.output_dir))) if cfg.get("output_dir") else run_dir
    files = write_report(report, out, samples=int(cfg.samples))
    loggers = instantiate_loggers(cfg)
    try:
        log_report(report, loggers)
    finally:
        finish_wandb(loggers)
    print_summary(report.summary)
    print("report: " + ", ".join(str(p) for p in files.values()))
    return report.summary


def _runtime(module: Any, ckpt: Path | None, cfg: DictConfig) -> Any:
    """Choose (and export, check) the runtime once, for every embedding run of the report."""
    from imgsearch.models.export import select_runtime, wants_gpu

    trainer_kwargs = OmegaConf.to_container(cfg.get("trainer") or {}, resolve=True)
    runtime = str(cfg.get("runtime", "auto"))
    return select_runtime(module, ckpt, runtime, gpu=wants_gpu(trainer_kwargs=trainer_kwargs)) or "torch"


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    summary = run(cfg)
    # the value a sweeper would maximise: mAP at the largest k of the main setting
    return None if summary is None else float(summary[f"mAP@{max(summary['main']['ks'])}"])


if __name__ == "__main__":
    main()
