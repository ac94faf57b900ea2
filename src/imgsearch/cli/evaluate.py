"""``imgsearch-eval``: retrieval report of a checkpoint on a catalogue (``conf/eval.yaml``).

    imgsearch-eval checkpoint=best                     # best checkpoint of the newest training run
    imgsearch-eval checkpoint=... relevance=[product] compare.embedding=[features,pixels] logger=wandb

Writes ``retrieval.json``, ``retrieval.md`` and ``retrieval_grid_<relevance>.png`` (into the checkpoint's
run directory unless ``output_dir`` says otherwise) and prints the main table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from imgsearch.cli.inputs import embed_kwargs, output_dir, resolve_inputs
from imgsearch.cli.task import run_task
from imgsearch.utils.config import config_dir
from imgsearch.utils.validate import EMBED_RULES, validate_config

log = logging.getLogger(__name__)


def _list(value: Any) -> list[Any] | None:
    return None if value is None else list(value)


def run(cfg: DictConfig) -> dict[str, Any] | None:
    """Evaluate, write the report, log it; returns the summary (``None`` on non-zero DDP ranks)."""
    validate_config(cfg, EMBED_RULES)  # bad values fail in one line, before anything is loaded
    ckpt, catalogue_path, run_dir = resolve_inputs(cfg)  # bad paths fail before the heavy imports
    from lightning.pytorch.utilities import rank_zero_only

    from imgsearch.data.schema import read_catalogue
    from imgsearch.models.checkpoint import checkpoint_sha256, load_classifier
    from imgsearch.retrieval.evaluate import Setting, evaluate_retrieval
    from imgsearch.retrieval.report import log_report, print_summary, write_report
    from imgsearch.utils.instantiators import instantiate_loggers
    from imgsearch.utils.tracking import tracking

    catalogue = read_catalogue(catalogue_path)
    module = load_classifier(ckpt, map_location="cpu") if ckpt is not None else None
    main = Setting(
        embedding=str(cfg.embedding),
        metric=str(cfg.metric),
        normalize=bool(cfg.normalize),
        classify_first=bool(cfg.classify_first),
        factory=str(cfg.factory),
        search_params=cfg.get("search_params"),
        qe=cfg.get("qe", 0),
        dba=cfg.get("dba", 0),
        qe_alpha=cfg.get("qe_alpha", 3.0),
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
        search_batch_size=int(cfg.search_batch_size),
        **{**embed_kwargs(cfg), "runtime": _runtime(module, ckpt, cfg)},
    )
    if rank_zero_only.rank != 0:
        return None
    report.summary["checkpoint"] = {
        "path": str(ckpt) if ckpt else None,
        "sha256": checkpoint_sha256(ckpt) if ckpt else None,
        "backbone": module.hparams.get("backbone") if module is not None else None,
    }
    report.summary["catalogue"] = str(catalogue_path)
    files = write_report(report, output_dir(cfg, run_dir), samples=int(cfg.samples))
    with tracking(instantiate_loggers(cfg)) as loggers:
        log_report(report, loggers)
    print_summary(report.summary)
    print("report: " + ", ".join(str(p) for p in files.values()))
    return report.summary


def _runtime(module: Any, ckpt: Path | None, cfg: DictConfig) -> Any:
    """Choose (and export, check) the runtime once, for every embedding run of the report."""
    from imgsearch.models.export import select_runtime, wants_gpu

    trainer_kwargs = OmegaConf.to_container(cfg.embed.get("trainer") or {}, resolve=True)
    runtime = str(cfg.embed.get("runtime", "auto"))
    return select_runtime(module, ckpt, runtime, gpu=wants_gpu(trainer_kwargs=trainer_kwargs)) or "torch"


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    summary = run_task(run, cfg)
    # the value a sweeper would maximise: mAP at the largest k of the main setting
    return None if summary is None else float(summary[f"mAP@{max(summary['main']['ks'])}"])


if __name__ == "__main__":
    main()
