"""``imgsearch-index``: embed a catalogue with a trained checkpoint and write a FAISS index directory.

    imgsearch-index checkpoint=best                         # best checkpoint of the newest training run
    imgsearch-index checkpoint=outputs/demo/train           # a run directory: its best checkpoint
    imgsearch-index checkpoint=... factory=HNSW32 metric=l2 output_dir=/data/shop/index
    imgsearch-index shards=/data/shop/shards factory='IVF4096,SQ8'   # from imgsearch-embed's shards, streamed
    imgsearch-index shards=/data/shop/shards factory=auto memory_gb=8  # factory chosen for N, d and memory

Configured by ``conf/index.yaml``; the work is done by :mod:`imgsearch.retrieval`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from imgsearch.cli.inputs import embed_kwargs, output_dir, resolve_inputs
from imgsearch.utils.config import config_dir

log = logging.getLogger(__name__)


def build_from_shards(cfg: DictConfig) -> Path:
    """``shards=<dir>``: index the vectors of ``imgsearch-embed`` shard by shard (bounded memory)."""
    from hydra.utils import to_absolute_path

    from imgsearch.retrieval.build import build_index_from_shards, recommend_index
    from imgsearch.retrieval.shards import complete_shards, read_shard, read_spec

    shard_dir = Path(to_absolute_path(str(cfg.shards)))
    spec = read_spec(shard_dir)
    factory, extra = str(cfg.factory), {}
    if factory == "auto" or cfg.get("memory_gb"):
        n = sum(len(read_shard(shard_dir, i, mmap=True).vectors) for i in complete_shards(shard_dir))
        advice = recommend_index(n, int(spec["dim"]), float(cfg.get("memory_gb") or 4))
        print(f"index advice for {n} x {spec['dim']} in {cfg.get('memory_gb') or 4} GiB: {advice}")
        extra["recommendation"] = advice
        if factory == "auto":
            factory = advice["factory"]
    out = output_dir(cfg, shard_dir.parent / "index")
    build_index_from_shards(
        shard_dir,
        out,
        factory=factory,
        metric=str(cfg.metric),
        normalize=bool(cfg.normalize),
        train_sample=int(cfg.train_sample),
        seed=int(cfg.seed),
        manifest_extra=extra,
    )
    print(f"index written to {out} (from the shards of {shard_dir})")
    return out


def build(cfg: DictConfig) -> Path | None:
    """Embed, build and save; returns the index directory (``None`` on non-zero DDP ranks)."""
    if cfg.get("shards"):
        return build_from_shards(cfg)
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
    options = embed_kwargs(cfg)
    emb = embed_catalogue(None if kind == PIXELS else module, table, kind=kind, **options)
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
        pixel_size=int(options["pixel_size"]) if kind == PIXELS else None,
    )
    out = output_dir(cfg, run_dir / "index")
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
