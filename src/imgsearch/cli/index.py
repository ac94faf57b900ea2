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
from typing import Any

import hydra
from omegaconf import DictConfig

from imgsearch.cli.inputs import (
    InputError,
    default_runs_root,
    embed_kwargs,
    output_dir,
    resolve_checkpoint,
    resolve_inputs,
    run_dir_of,
)
from imgsearch.cli.task import run_task
from imgsearch.utils.config import config_dir
from imgsearch.utils.validate import EMBED_RULES, validate_config

log = logging.getLogger(__name__)


def _inputs(cfg: DictConfig) -> tuple[Path | None, Path | None, Path | None]:
    """``(checkpoint, catalogue table or None for a data= source, run directory or None)``."""
    if cfg.get("data") is not None:
        if cfg.get("catalogue"):
            raise InputError("give data=<source> (read by its reader) or catalogue=<table>, not both")
        ckpt = resolve_checkpoint(cfg.get("checkpoint"), cfg.get("run"), runs_root=default_runs_root(cfg))
        return ckpt, None, run_dir_of(ckpt) if ckpt is not None else None
    return resolve_inputs(cfg)


def _model(cfg: DictConfig, ckpt: Path | None, kind: str) -> Any:
    """The trained classifier of ``checkpoint=``, or the pretrained backbone of ``model=`` (no training)."""
    from imgsearch.retrieval.embed import PIXELS

    model_cfg = cfg.get("model")
    if ckpt is not None and model_cfg is not None:
        raise InputError(
            "give checkpoint=<trained model> or model=<backbone> (pretrained features), not both"
        )
    if ckpt is not None:
        from imgsearch.models.checkpoint import load_classifier

        return load_classifier(ckpt, map_location="cpu")
    if model_cfg is None:
        if kind == PIXELS:
            return None
        raise InputError(
            f"embedding={kind} needs a model: checkpoint=<trained run or .ckpt>, or model=<backbone> "
            "(e.g. model=efficientnet_lite0) to index with its pretrained features and no training"
        )
    if kind != "features":
        raise InputError(
            f"model={model_cfg.backbone} (pretrained only) has no classifier: use embedding=features"
        )
    if not model_cfg.get("pretrained") and not model_cfg.get("pretrained_path"):
        raise InputError(
            f"model={model_cfg.backbone} has no pretrained weights here (pretrained=false, no "
            "pretrained_path), so its features would be random: set model.pretrained_path=<state dict> or "
            "model.pretrained=true"
        )
    from imgsearch.models.pretrained import PretrainedEmbedder

    return PretrainedEmbedder(
        str(model_cfg.backbone),
        pretrained=bool(model_cfg.get("pretrained")),
        pretrained_path=model_cfg.get("pretrained_path"),
        input_size=model_cfg.get("input_size"),
        backbone_kwargs=model_cfg.get("backbone_kwargs"),
    )


def _attributes_to_predict(cfg: DictConfig, module: Any, kind: str) -> dict[str, list[str]]:
    """The attribute heads whose predictions fill the catalogue's empty cells (``predict_attributes``)."""
    if not cfg.get("predict_attributes", True) or module is None or kind == "pixels":
        return {}
    return dict(getattr(module, "attribute_classes", {}) or {})


def _colour_attribute(cfg: DictConfig, module: Any, kind: str) -> str | None:
    """The attribute head whose probabilities become the index's colour part (``colour_attribute``)."""
    from imgsearch.retrieval.colour import colour_head

    classes = dict(getattr(module, "attribute_classes", {}) or {}) if module is not None else {}
    if kind == "pixels" or not classes or cfg.get("colour_attribute") is False:
        return None
    return colour_head(classes, cfg.get("colour_attribute") or None)


def _colour_probe(cfg: DictConfig, module: Any, kind: str) -> tuple[Any, Path | None]:
    """``(probe, its file)`` of ``colour_probe=<file>`` (models/colour_probe.py), checked on the model."""
    if not cfg.get("colour_probe"):
        return None, None
    from hydra.utils import to_absolute_path

    from imgsearch.models.colour_probe import load_colour_probe

    if module is None or kind == "pixels" or not getattr(module, "attribute_classes", None):
        raise InputError("colour_probe= reads a trained model's colour head: give checkpoint=<a model "
                         "trained with model.attributes=[baseColour,...]>")  # fmt: skip
    path = Path(to_absolute_path(str(cfg.colour_probe)))
    probe = load_colour_probe(path)
    probe.check_model(module.attribute_classes)
    return probe, path


def _colour_part_source(cfg: DictConfig, colour_attr: str | None, probe: Any) -> str:
    """``head`` or ``probe``: what reads the index's colour part (``colour_part``; ``auto`` = the probe when
    one is given for the colour head, as chosen on the Myntra val split)."""
    choice = str(cfg.get("colour_part") or "auto")
    if choice not in ("auto", "head", "probe", "lab"):
        raise InputError(f"colour_part must be auto, head, probe or lab, got {choice!r}")
    if choice == "lab":
        return "lab"
    fits = probe is not None and colour_attr is not None and probe.attribute == colour_attr
    if choice == "probe" and not fits:
        raise InputError(
            "colour_part=probe needs colour_probe=<a probe of the colour head"
            + (f" {colour_attr!r}" if colour_attr else "")
            + ">"
            + ("" if probe is None else f"; this probe reads {probe.attribute!r}")
        )
    return "probe" if fits and choice != "head" else "head"


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
        advice = recommend_index(
            n, int(spec["dim"]), float(cfg.get("memory_gb") or 4), ondisk=bool(cfg.get("ondisk"))
        )
        print(f"index advice for {n} x {spec['dim']} in {cfg.get('memory_gb') or 4} GiB: {advice}")
        extra["recommendation"] = advice
    ondisk = bool(cfg.get("ondisk"))
    if factory == "auto":
        factory = advice["factory"]
        ondisk = bool(advice.get("ondisk"))  # ondisk=true allows the lists on disk; the advice says if needed
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
        ondisk=ondisk,
    )
    print(f"index written to {out} (from the shards of {shard_dir}{', lists on disk' if ondisk else ''})")
    return out


def build(cfg: DictConfig) -> Path | None:
    """Embed, build and save; returns the index directory (``None`` on non-zero DDP ranks)."""
    validate_config(cfg, EMBED_RULES)  # bad values fail in one line, before anything is loaded
    if cfg.get("shards"):
        if cfg.get("colour_probe"):  # shards hold search vectors only: no head to read, no photos
            raise InputError(
                "colour_probe= needs the photos and the model: build with checkpoint=, not shards="
            )
        return build_from_shards(cfg)
    ckpt, catalogue_path, run_dir = _inputs(cfg)  # bad paths fail before the heavy imports
    from lightning.pytorch.utilities import rank_zero_only

    from imgsearch.data.schema import catalogue_hash, read_catalogue
    from imgsearch.models.checkpoint import checkpoint_sha256
    from imgsearch.retrieval.colour import (
        COLOUR_FILE,
        check_lab_share,
        colour_manifest,
        fused_colour_part,
        lab_colour_manifest,
    )
    from imgsearch.retrieval.embed import ATTRIBUTE_KIND_PREFIX, PIXELS, embed_catalogue
    from imgsearch.retrieval.index import build_index, make_manifest, save_index_dir, set_search_params
    from imgsearch.retrieval.lab_colour import lab_descriptors

    kind = str(cfg.embedding)
    module = _model(cfg, ckpt, kind)
    probe, probe_path = _colour_probe(cfg, module, kind)  # a bad probe fails before the catalogue is embedded
    if catalogue_path is None:
        from imgsearch.data.sources import build_catalogue

        # the shop's whole catalogue as its reader reads it: no class filter, no dedup, no split
        table = build_catalogue(cfg.data.source, None, None)
        source = str(cfg.data.source.get("_target_"))
    else:
        table = read_catalogue(catalogue_path)
        source = str(catalogue_path)
    if cfg.get("splits"):
        splits = list(cfg.splits)
        table = table[table["split"].isin(splits)].reset_index(drop=True)
    if table.empty:
        raise ValueError(
            f"nothing to index: {source} has no rows" + (f" in splits {splits}" if cfg.get("splits") else "")
        )
    options = embed_kwargs(cfg)
    attr_classes = _attributes_to_predict(cfg, module, kind)
    part_source = _colour_part_source(cfg, _colour_attribute(cfg, module, kind), probe)
    # a part from the pixels alone needs no head (and reads none)
    colour_attr = None if part_source == "lab" else _colour_attribute(cfg, module, kind)
    lab_share = check_lab_share(cfg.get("colour_lab_share")) if colour_attr else 0.0
    heads = {**attr_classes, **({colour_attr: module.attribute_classes[colour_attr]} if colour_attr else {})}
    if probe is not None:
        heads.setdefault(probe.attribute, module.attribute_classes[probe.attribute])
    emb = embed_catalogue(
        None if kind == PIXELS else module,
        table,
        kind=[kind, *(ATTRIBUTE_KIND_PREFIX + a for a in heads)] if heads else kind,
        checkpoint=str(ckpt) if ckpt is not None else None,
        **options,
    )
    if rank_zero_only.rank != 0:
        return None
    if len(emb) == 0:
        raise ValueError(f"no image of {source} could be read; nothing to index")
    items = table.iloc[emb.rows].reset_index(drop=True)
    # the indexed photos' Lab histograms, in the index's order (retrieval/lab_colour), computed once for
    # the colour part and the probe
    wants_hists = (colour_attr and lab_share) or probe is not None or part_source == "lab"
    hists = lab_descriptors(items["image_path"]) if wants_hists else None
    probs = {a: emb[ATTRIBUTE_KIND_PREFIX + a] for a in heads}
    if probe is not None:  # the probe's colour stands in for the head's in the predicted column
        probs[probe.attribute] = probe.predict(probs[probe.attribute], hists)
    predicted = None
    if attr_classes:
        from imgsearch.retrieval.predicted import fill_predicted_attributes

        threshold = cfg.get("attribute_min_confidence")
        items, predicted = fill_predicted_attributes(
            items,
            {a: probs[a] for a in attr_classes},
            attr_classes,
            float(module.min_confidence if threshold is None else threshold),
        )
    index = build_index(
        emb[kind],
        factory=str(cfg.factory),
        metric=str(cfg.metric),
        normalize=bool(cfg.normalize),
        train_sample=int(cfg.train_sample),
        seed=int(cfg.seed),
    )
    set_search_params(index, cfg.get("search_params"))  # a bad string fails before anything is written
    manifest = make_manifest(
        search_params=cfg.get("search_params"),
        index=index,
        items=items,
        embedding=kind,
        metric=str(cfg.metric),
        normalize=bool(cfg.normalize),
        factory=str(cfg.factory),
        checkpoint=ckpt,
        checkpoint_sha256=checkpoint_sha256(ckpt) if ckpt is not None else None,
        backbone=module.hparams.get("backbone") if module is not None else None,
        pretrained=module.describe() if hasattr(module, "describe") else None,
        data_config=module.data_config if module is not None else None,
        class_names=(module.class_names or None) if module is not None else None,
        catalogue_path=catalogue_path,
        catalogue_sha256=catalogue_hash(table),
        catalogue_rows=len(table),
        skipped=emb.skipped,
        pixel_size=int(options["pixel_size"]) if kind == PIXELS else None,
        extra={
            # queries must be embedded the same way (Searcher.embed reads it)
            **({"flip_average": True} if options.get("flip_average") and kind == "features" else {}),
            **({"predicted_attributes": predicted} if predicted else {}),
            **(
                {"colour": colour_manifest(colour_attr, heads[colour_attr], lab_share, part_source)}
                if colour_attr
                else {"colour": lab_colour_manifest()}
                if part_source == "lab"
                else {}
            ),
            **({"colour_probe": probe.describe()} if probe is not None else {}),
        },
    )
    arrays = None
    if part_source == "lab":
        from imgsearch.retrieval.lab_colour import lab_part

        arrays = {COLOUR_FILE: lab_part(hists)}
    elif colour_attr:  # the head's probabilities, or the probe's reading of them and the pixels
        part = probs[colour_attr] if part_source == "probe" else emb[ATTRIBUTE_KIND_PREFIX + colour_attr]
        arrays = {COLOUR_FILE: fused_colour_part(part, hists if lab_share else None, lab_share)}
    files = None
    if probe is not None:  # the index carries its probe: tag, serve and live adds read it from there
        from imgsearch.models.colour_probe import PROBE_FILE

        files = {PROBE_FILE: probe_path.read_bytes()}
    out = output_dir(cfg, (run_dir or Path(str(cfg.paths.output_dir))) / "index")
    save_index_dir(out, index, items, manifest, arrays, files)
    log.info(
        "index %s: %d items, %s %d-d, %s/%s%s, %d images skipped",
        out, index.ntotal, kind, index.d, cfg.factory, cfg.metric, " normalised" if cfg.normalize else "",
        len(emb.skipped),
    )  # fmt: skip
    print(f"index written to {out} ({index.ntotal} items, {len(emb.skipped)} unreadable images skipped)")
    return out


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="index")
def main(cfg: DictConfig) -> None:
    run_task(build, cfg)


if __name__ == "__main__":
    main()
