"""``imgsearch-index``: embed a catalogue with a trained checkpoint and write a FAISS index directory.

    imgsearch-index checkpoint=outputs/demo/runs/<run>/checkpoints/best.ckpt
    imgsearch-index checkpoint=... factory=HNSW32 metric=l2 output_dir=/data/shop/index

Configured by ``conf/index.yaml``; the work is done by :mod:`imgsearch.retrieval`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from imgsearch.utils.config import config_dir

log = logging.getLogger(__name__)


def run_dir_of(checkpoint: str | Path) -> Path:
    """The training run directory of a checkpoint (``<run>/checkpoints/best.ckpt`` -> ``<run>``)."""
    path = Path(checkpoint).resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def resolve_inputs(cfg: DictConfig) -> tuple[Path | None, Path, Path]:
    """``(checkpoint, catalogue, run_dir)`` from the config, relative paths taken from the caller's cwd."""
    checkpoint = cfg.get("checkpoint")
    ckpt = Path(to_absolute_path(str(checkpoint))) if checkpoint else None
    if ckpt is not None and not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    if cfg.get("catalogue"):
        catalogue = Path(to_absolute_path(str(cfg.catalogue)))
    elif ckpt is not None:
        catalogue = run_dir_of(ckpt) / "catalogue.csv"
    else:
        raise ValueError("without a checkpoint, say which catalogue to use: catalogue=path/to/catalogue.csv")
    run_dir = run_dir_of(ckpt) if ckpt is not None else catalogue.parent
    return ckpt, catalogue, run_dir


def build(cfg: DictConfig) -> Path | None:
    """Embed, build and save; returns the index directory (``None`` on non-zero DDP ranks)."""
    ckpt, catalogue_path, run_dir = resolve_inputs(cfg)  # bad paths fail before the heavy imports
    from lightning.pytorch.utilities import rank_zero_only

    from imgsearch.data.schema import catalogue_hash, read_catalogue
    from imgsearch.models.checkpoint import checkpoint_sha256, load_classifier
    from imgsearch.retrieval.embed import PIXELS, embed_catalogue
    from imgsearch.retrieval.index import build_index, make_manifest, save_index_dir

    kind = str(cfg.embedding)
    if ckpt is None and kind != PIXELS:
        raise ValueError(f"embedding={kind} needs a checkpoint")
    table = read_catalogue(catalogue_path)
    if cfg.get("splits"):
        splits = list(cfg.splits)
        table = table[table["split"].isin(splits)].reset_index(drop=True)
    if table.empty:
        raise ValueError(
            f"nothing to index: {catalogue_path} has no rows"
            + (f" in splits {splits}" if cfg.get("splits") else "")
        )
    module = load_classifier(ckpt, map_location="cpu") if ckpt is not None else None
    trainer_kwargs: dict[str, Any] = OmegaConf.to_container(cfg.get("trainer") or {}, resolve=True)  # type: ignore[assignment]
    emb = embed_catalogue(
        None if kind == PIXELS else module,
        table,
        kind=kind,
        batch_size=int(cfg.batch_size),
        num_workers=cfg.get("num_workers"),
        trainer_kwargs=trainer_kwargs,
        pixel_size=int(cfg.get("pixel_size", 32)),
        runtime=str(cfg.get("runtime", "auto")),
        checkpoint=str(ckpt) if ckpt is not None else None,
    )
    if rank_zero_only.rank != 0:
        return None
    if len(emb) == 0:
        raise ValueError(f"no image of {catalogue_path} could be read; nothing to index")
    items = table.iloc[emb.rows].reset_index(drop=True)
    index = build_index(
        emb[kind],
        factory=str(cfg.factory),
        metric=str(cfg.metric),
        normalize=bool(cfg.normalize),
        train_sample=int(cfg.train_sample),
        seed=int(cfg.seed),
    )
    manifest = make_manifest(
        index=index,
        items=items,
        embedding=kind,
        metric=str(cfg.metric),
        normalize=bool(cfg.normalize),
        factory=str(cfg.factory),
        checkpoint=ckpt,
        checkpoint_sha256=checkpoint_sha256(ckpt) if ckpt is not None else None,
        backbone=module.hparams.get("backbone") if module is not None else None,
        data_config=module.data_config if module is not None else None,
        class_names=module.class_names if module is not None else None,
        catalogue_path=catalogue_path,
        catalogue_sha256=catalogue_hash(table),
        catalogue_rows=len(table),
        skipped=emb.skipped,
        pixel_size=int(cfg.get("pixel_size", 32)) if kind == PIXELS else None,
    )
    out = Path(to_absolute_path(str(cfg.output_dir))) if cfg.get("output_dir") else run_dir / "index"
    save_index_dir(out, index, items, manifest)
    log.info(
        "index %s: %d items, %s %d-d, %s/%s%s, %d images skipped",
        out, index.ntotal, kind, index.d, cfg.factory, cfg.metric, " normalised" if cfg.normalize else "",
        len(emb.skipped),
    )  # fmt: skip
    print(f"index written to {out} ({index.ntotal} items, {len(emb.skipped)} unreadable images skipped)")
    return out


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="index")
def main(cfg: DictConfig) -> None:
    build(cfg)


if __name__ == "__main__":
    main()
