"""``imgsearch-train``: train one classifier on one catalogue, composed by Hydra from ``conf/train.yaml``.

    imgsearch-train                                    # EfficientNet-Lite0 on the built-in demo catalogue
    imgsearch-train data=farfetch experiment=farfetch_resnet50 trainer=gpu logger=wandb
    imgsearch-train -m model=svm,efficientnet_lite0    # a sweep: one output directory per job
    imgsearch-train hparams_search=optuna              # Optuna search maximising ${optimized_metric}
    imgsearch-train checkpoint=last run=outputs/train/runs/<run>   # resume that run (ckpt_path= is an alias)

A run's directory holds the resolved config (``.hydra/``), ``catalogue.csv`` + ``skipped.json``,
logs, ``checkpoints/`` (best by ``val/acc`` and ``last.ckpt``) and ``metrics.json``.

Distributed: ``trainer=ddp`` in a plain run (Lightning re-runs this command once per extra
device, in the same run directory), or under torchrun / SLURM. Only rank 0 writes the run's files.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from imgsearch.cli.inputs import CATALOGUE_FILE, resume_checkpoint
from imgsearch.cli.task import run_task
from imgsearch.data.attributes import attribute_classes_of
from imgsearch.data.datamodule import CatalogueDataModule, class_names_of
from imgsearch.data.metric_labels import metric_label_names
from imgsearch.data.schema import catalogue_hash, read_catalogue
from imgsearch.models.checkpoint import read_resume_checkpoint
from imgsearch.utils.config import config_dir
from imgsearch.utils.instantiators import instantiate_callbacks, instantiate_loggers
from imgsearch.utils.summary import render_summary, scalar_metrics, write_metrics
from imgsearch.utils.tracking import log_hyperparameters, tracking
from imgsearch.utils.validate import TRAIN_RULES, validate_config

log = logging.getLogger(__name__)


def _launched_externally() -> bool:
    """torchrun / SLURM / a Lightning child: the process already has its rank from outside."""
    return any(k in os.environ for k in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"))


def _check_multirun_ddp(cfg: DictConfig) -> None:
    """Refuse Hydra multirun + Lightning-spawned DDP, which re-runs the whole sweep in every child."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    strategy = str(cfg.trainer.get("strategy", "auto") or "auto")
    devices = cfg.trainer.get("devices", 1)
    multi_device = devices not in (1, "1", [0]) or int(cfg.trainer.get("num_nodes", 1) or 1) > 1
    if strategy.startswith("ddp") and multi_device and not _launched_externally():
        raise RuntimeError(
            "trainer=ddp inside a Hydra multirun (-m) is not supported with Lightning's own process "
            "spawning: every spawned rank would re-run the whole sweep. Launch each job with torchrun "
            "or SLURM (srun), which start the ranks themselves, or run the DDP jobs one at a time."
        )


def build_run_catalogue(cfg: DictConfig, run_dir: Path) -> pd.DataFrame:
    """Read and prepare the catalogue; rank 0 writes ``catalogue.csv`` and ``skipped.json`` into the run.

    Other ranks reuse rank 0's table when it is already there (Lightning starts them after rank 0
    built it) and otherwise build the same seeded table without writing into the run directory.
    """
    from imgsearch.data.sources import build_catalogue

    prepare = cfg.data.get("prepare")
    if rank_zero_only.rank == 0:
        return build_catalogue(cfg.data.source, prepare, run_dir)
    existing = run_dir / CATALOGUE_FILE
    if existing.is_file():
        return read_catalogue(existing)
    with tempfile.TemporaryDirectory(prefix="imgsearch-rank-") as tmp:
        return build_catalogue(cfg.data.source, prepare, tmp)


def metric_learning_setup(cfg: DictConfig, catalogue: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model kwargs, datamodule kwargs)`` wiring a metric loss (``loss=...``) to its ``labels=``.

    The loss needs the number of distinct training labels (one centre/proxy each) before the model exists;
    the datamodule needs to know which column to hand the loss. Without a metric loss both are empty.
    """
    if not cfg.model.get("metric_loss"):
        return {}, {}
    labels = str(cfg.get("labels") or "category")
    names = metric_label_names(catalogue, labels)
    log.info("metric loss %s on %d %s labels", cfg.model.metric_loss, len(names), labels)
    return {"metric_num_classes": len(names)}, {"metric_labels": labels}


def attribute_setup(cfg: DictConfig, catalogue: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model kwargs, datamodule kwargs)`` for ``model.attributes=[...]``: each attribute's classes, taken
    from the catalogue before the model exists (its heads' sizes), and handed to both."""
    attributes = cfg.model.get("attributes")
    if not attributes:
        return {}, {}
    classes = attribute_classes_of(catalogue, list(attributes))
    log.info("attribute heads: %s", {k: len(v) for k, v in classes.items()})
    return {"attribute_classes": classes}, {"attributes": list(classes), "attribute_classes": classes}


def _best_checkpoint(trainer: L.Trainer) -> tuple[str | None, float | None, str | None]:
    """``(best path, best score, monitor)`` of the run's ModelCheckpoint (None when there is none)."""
    ckpt = trainer.checkpoint_callback
    if not isinstance(ckpt, ModelCheckpoint) or not ckpt.best_model_path:
        return None, None, None
    score = ckpt.best_model_score
    return ckpt.best_model_path, (float(score) if score is not None else None), ckpt.monitor


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job described by ``cfg`` (the composed ``train.yaml``).

    Returns the record also written to ``metrics.json``: the final metrics under their logged
    names (``train/…``, ``val/…``, ``test/…``), ``val/acc_best`` (the best checkpoint's score),
    ``best_checkpoint``, ``last_checkpoint``, ``global_step``, ``epoch``, ``run_dir`` and
    ``optimized_metric`` (name and value, the value a sweeper maximises).
    """
    _check_multirun_ddp(cfg)
    validate_config(cfg, TRAIN_RULES)
    resume = resume_checkpoint(cfg)  # a wrong path or run fails before any data is read
    if resume is not None:
        read_resume_checkpoint(resume)  # a bad checkpoint fails now, in one line, not after set-up
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    catalogue = build_run_catalogue(cfg, run_dir)
    class_names = class_names_of(catalogue)
    log.info(
        "catalogue: %d images, %d classes, splits %s",
        len(catalogue),
        len(class_names),
        catalogue["split"].value_counts().to_dict(),
    )

    log.info("instantiating model <%s>", cfg.model._target_)
    model_extra, loader_extra = metric_learning_setup(cfg, catalogue)
    attr_model, attr_loader = attribute_setup(cfg, catalogue)
    model_extra, loader_extra = {**model_extra, **attr_model}, {**loader_extra, **attr_loader}
    if cfg.model.get("val_retrieval"):  # val photos carry their ${labels} for val/map_at_r
        loader_extra["eval_metric_labels"] = str(cfg.get("labels") or "category")
    model = hydra.utils.instantiate(
        cfg.model, num_classes=len(class_names), class_names=class_names, **model_extra
    )
    loader_cfg = OmegaConf.to_container(cfg.data.get("loader") or {}, resolve=True)
    datamodule = CatalogueDataModule(catalogue, model.data_config, **loader_cfg, **loader_extra)
    log.info("preprocessing from the model: %s", datamodule.data_config)

    callbacks = instantiate_callbacks(cfg)
    loggers = instantiate_loggers(cfg)
    if not loggers:
        # LearningRateMonitor refuses to run without a logger; nothing to monitor into anyway
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    with tracking(loggers):
        log.info("instantiating trainer <%s>", cfg.trainer._target_)
        trainer: L.Trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False
        )
        log_hyperparameters(
            trainer.loggers,
            cfg,
            {
                "catalogue_rows": len(catalogue),
                "catalogue_hash": catalogue_hash(catalogue),
                "num_classes": len(class_names),
                "splits": catalogue["split"].value_counts().to_dict(),
                "run_dir": str(run_dir),
            },
        )
        return _fit_and_test(cfg, trainer, model, datamodule, run_dir, resume)


def load_averaged_weights(model: L.LightningModule, ckpt_path: str | Path | None) -> str | Path | None:
    """Put a weight-averaged (EMA) checkpoint's average into ``model`` and return ``None``; any other
    checkpoint path is returned as it is, for ``trainer.test(ckpt_path=...)`` to load.

    Lightning's ``WeightAveraging.on_load_checkpoint`` restores the *raw* weights (kept for resuming) when
    a trainer loads such a checkpoint, so ``trainer.test(ckpt_path=best)`` would test weights that no saved
    state_dict holds, while index, eval and serve read the average: the test figures must describe the
    weights that ship.
    """
    if ckpt_path is None:
        return None
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if "current_model_state" not in checkpoint:
        return ckpt_path
    model.load_state_dict(checkpoint["state_dict"])
    log.info("testing the averaged weights of %s (its state_dict)", ckpt_path)
    return None


def _fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: CatalogueDataModule,
    run_dir: Path,
    resume: Path | None,
) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        log.info("fitting%s", f" (resuming from {resume})" if resume else "")
        # weights_only passed explicitly: the environment (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) cannot undo it
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    best_path, best_score, monitor = _best_checkpoint(trainer)
    if monitor and best_score is not None:
        metrics[f"{monitor}_best"] = best_score

    if cfg.get("test", True):
        if cfg.get("train", True):
            test_ckpt = best_path
            if test_ckpt is None:
                log.warning("no best checkpoint was saved (no ModelCheckpoint?); testing the final weights")
        else:
            test_ckpt = resume
        test_ckpt = load_averaged_weights(model, test_ckpt)
        log.info("testing %s", test_ckpt or "the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=True)
        metrics.update(
            {k: v for k, v in scalar_metrics(trainer.callback_metrics).items() if k.startswith("test/")}
        )

    name = cfg.get("optimized_metric")
    if name and monitor == name and best_score is not None:
        value = best_score  # a sweep compares runs by their best epoch, not their last
    else:
        value = metrics.get(name) if name else None
    skipped = {k: v for k, v in datamodule.skipped.items() if v}
    last = run_dir / "checkpoints" / "last.ckpt"
    record: dict[str, Any] = {
        **metrics,
        "best_checkpoint": best_path,
        "last_checkpoint": str(last) if last.is_file() else None,
        "global_step": int(trainer.global_step),
        "epoch": int(trainer.current_epoch),
        "num_classes": len(datamodule.class_names),
        "skipped_images_at_load": skipped,
        "optimized_metric": {"name": name, "value": value},
        "run_dir": str(run_dir),
    }
    if trainer.is_global_zero:
        path = write_metrics(run_dir, record)
        log.info("wrote %s", path)
        render_summary(metrics, run_dir=run_dir, best_checkpoint=best_path, optimized=(name, value))
    return record


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the optimized metric for sweepers (Optuna maximises it)."""
    record = run_task(train, cfg)
    value = record["optimized_metric"]["value"]
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
