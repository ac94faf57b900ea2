"""``imgsearch-embed``: embed a catalogue into shards (``embeddings/*.npy`` + ``metadata/*.parquet``).

    imgsearch-embed checkpoint=best output_dir=/data/shop/shards
    imgsearch-embed checkpoint=... embed.trainer.strategy=ddp embed.trainer.devices=4      # 4 GPUs
    torchrun --nnodes=2 --nproc-per-node=4 -m imgsearch.cli.embed checkpoint=... \
        embed.trainer.strategy=ddp embed.trainer.devices=4 embed.trainer.num_nodes=2 output_dir=<shared dir>
    imgsearch-index shards=/data/shop/shards factory='IVF4096,SQ8'                       # then the index

Every rank writes its own shards; a rerun of the same command finishes a killed job (complete shards are
skipped). Configured by ``conf/embed_shards.yaml``; the work is done by :mod:`imgsearch.retrieval.shards`.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig

from imgsearch.cli.inputs import embed_kwargs, output_dir, resolve_inputs
from imgsearch.utils.config import config_dir

log = logging.getLogger(__name__)


def embed(cfg: DictConfig) -> dict[str, Any] | None:
    """Write the shards; returns the summed report on rank 0 (``None`` on the other ranks)."""
    ckpt, catalogue_path, run_dir = resolve_inputs(cfg)
    from imgsearch.data.schema import catalogue_hash, read_catalogue
    from imgsearch.models.checkpoint import checkpoint_sha256, load_classifier
    from imgsearch.retrieval.embed import PIXELS
    from imgsearch.retrieval.shards import REPORT_FILE, embed_to_shards

    kind = str(cfg.embedding)
    if ckpt is None and kind != PIXELS:
        raise ValueError(f"embedding={kind} needs a checkpoint")
    table = read_catalogue(catalogue_path)
    if cfg.get("splits"):
        table = table[table["split"].isin(list(cfg.splits))].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"nothing to embed: {catalogue_path} has no rows (splits {cfg.get('splits')})")
    module = load_classifier(ckpt, map_location="cpu") if ckpt is not None else None
    options = embed_kwargs(cfg)
    out = output_dir(cfg, run_dir / "shards")
    extra = {
        "catalogue": str(catalogue_path),
        "catalogue_sha256": catalogue_hash(table),
        "checkpoint": None if ckpt is None else str(ckpt),
        "checkpoint_sha256": checkpoint_sha256(ckpt) if ckpt is not None else None,
        "backbone": module.hparams.get("backbone") if module is not None else None,
        "data_config": dict(module.data_config) if module is not None else None,
        "class_names": list(module.class_names) if module is not None else None,
        "pixel_size": int(options["pixel_size"]) if kind == PIXELS else None,
    }
    report = embed_to_shards(
        None if kind == PIXELS else module,
        table,
        out,
        kind=kind,
        shard_rows=int(cfg.shard_rows),
        dtype=str(cfg.dtype),
        batch_size=int(options["batch_size"]),
        num_workers=options.get("num_workers"),
        trainer_kwargs=options["trainer_kwargs"],
        pixel_size=options.get("pixel_size"),
        normalize=bool(cfg.normalize),
        spec_extra=extra,
    )
    if report is not None:
        print(
            f"shards written to {out} ({report['shards']} shards, {report['kept']} vectors, "
            f"{report['skipped']} unreadable images skipped; counts summed over ranks in {out / REPORT_FILE})"
        )
    return report


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="embed_shards")
def main(cfg: DictConfig) -> None:
    embed(cfg)


if __name__ == "__main__":
    main()
