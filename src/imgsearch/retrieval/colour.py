"""The colour part of an index: what ``Searcher.search(..., colour_weight=w)`` re-weights.

The search vector is trained to ignore everything but the kind of product, so colour needs its own signal. A
model trained with a colour attribute head (``model.attributes=[baseColour,...]``) gives it: an item's colour
part is the square root of that head's probabilities, so the inner product of two parts is the
Bhattacharyya coefficient of the two colour distributions (1 = the same colour belief, 0 = disjoint), and a
row's part has unit length. "In colour c" is the one-hot distribution of ``c``: its similarity to an item is
``sqrt(p_item(c))``.

At search time the photo ranking's candidates (``candidates`` of them, with the same filters) are re-scored
``score + w * colour_similarity`` (``score - w * ...`` for L2 distances, where lower is closer) and re-sorted;
``w = 0`` skips all of this, so the ranking is exactly the colour-blind one.

The index directory holds the parts in ``colour.npy`` (row ``i`` = index position ``i``); the manifest's
``colour`` records the attribute, the classes and the size (``dim``). An index without it refuses a weight.
A live catalogue's items added after the build get their parts from the same head
(:mod:`imgsearch.retrieval.live_attributes`), so a weight keeps working through adds, removes and compaction.

With ``colour_lab_share = s > 0`` (``imgsearch-index colour_lab_share=s``) the part also holds the photo's
foreground Lab histogram (:mod:`imgsearch.retrieval.lab_colour`): ``[sqrt(1 - s) * head part, sqrt(s) * Lab
part]``, still a unit row, whose inner product is ``(1 - s) * BC(heads) + s * BC(Lab histograms)``. The
manifest's ``colour.lab`` records ``s``; a query photo's part is built the same way from its pixels. The
detached colour head sees only the category-trained features; the pixels keep the colour (docs/results.md).

With a colour probe (:mod:`imgsearch.models.colour_probe`; ``imgsearch-index colour_probe=<file>``, and
``colour_part=auto|probe``) the probabilities in the part are the probe's reading of the head and the pixels
instead of the head's (manifest ``colour.source: probe``); a query photo and a live add are read by the same
probe, which the index directory holds. On the Myntra val split this lifts type + colour MAP@R from 0.286
(head + Lab at its best share) to 0.375 with the gallery read out of fold (docs/results.md).

With ``colour_part=lab`` the part is the Lab histogram alone (manifest ``colour.source: lab``, no attribute):
a model without a colour head, or no trained model at all, gets a colour weight. Where the product is a style
in one colour (the Luma photos) this is what finds a photo's other views: docs/results.md, "Luma: the
foreground Lab colour at search time".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

COLOUR_FILE = "colour.npy"
#: candidates re-scored per query: at least this many, or ``CANDIDATE_FACTOR x k``
MIN_CANDIDATES = 200
CANDIDATE_FACTOR = 10


class NoColourPartError(ValueError):
    """A colour weight asked of an index built without a colour part."""


def colour_head(attribute_classes: dict[str, list[str]], name: str | None = None) -> str | None:
    """The attribute head that gives the colour part: ``name``, else the first whose name says colour."""
    if name:
        if name not in attribute_classes:
            raise ValueError(
                f"colour_attribute {name!r} is not an attribute head of the model: {list(attribute_classes)}"
            )
        return name
    return next((a for a in attribute_classes if "colour" in a.lower() or "color" in a.lower()), None)


def colour_part(probs: np.ndarray) -> np.ndarray:
    """``sqrt`` of a colour head's probabilities ``[N, C]``: unit rows whose inner product is the
    Bhattacharyya coefficient."""
    return np.sqrt(np.clip(np.asarray(probs, dtype=np.float32), 0.0, None))


def named_colour_part(colour: str, classes: Sequence[str]) -> np.ndarray:
    """The part of "in colour ``colour``" (one-hot). Raises ``ValueError`` for a colour not in ``classes``."""
    if colour not in classes:
        raise ValueError(f"colour {colour!r} is not one the colour head knows: {', '.join(classes)}")
    out = np.zeros((1, len(classes)), np.float32)
    out[0, list(classes).index(colour)] = 1.0
    return out


#: where a colour part comes from: a head's or a probe's probabilities, or the pixels alone (``lab``)
SOURCES = ("head", "probe", "lab")


def colour_manifest(
    attribute: str, classes: Sequence[str], lab_share: float = 0.0, source: str = "head"
) -> dict[str, Any]:
    if source not in SOURCES:
        raise ValueError(f"colour part source must be one of {SOURCES}, got {source!r}")
    reader = "the colour head's" if source == "head" else "the colour probe's (models/colour_probe.py)"
    info: dict[str, Any] = {
        "attribute": attribute,
        "classes": list(classes),
        "dim": len(classes),
        "file": COLOUR_FILE,
        "vector": f"sqrt of {reader} probabilities (inner product = Bhattacharyya coefficient)",
        **({"source": source} if source != "head" else {}),  # older indexes have no source: the head
    }
    share = check_lab_share(lab_share)
    if share:
        from imgsearch.retrieval import lab_colour

        info["dim"] = len(classes) + lab_colour.DIM
        info["lab"] = {
            "share": share,
            "dim": lab_colour.DIM,
            "bins": [lab_colour.L_BINS, lab_colour.AB_BINS, lab_colour.AB_BINS],
            "vector": "[sqrt(1 - share) * head part, sqrt(share) * sqrt(foreground Lab histogram)]",
        }
    return info


def lab_colour_manifest() -> dict[str, Any]:
    """The manifest of a colour part from the pixels alone (``imgsearch-index colour_part=lab``): no head
    needed, so any model, trained or ImageNet-only, gets a colour weight."""
    from imgsearch.retrieval import lab_colour

    return {
        "attribute": None,
        "classes": [],
        "dim": lab_colour.DIM,
        "file": COLOUR_FILE,
        "source": "lab",
        "vector": "sqrt of the foreground Lab histogram (inner product = Bhattacharyya coefficient)",
        "lab": {"share": 1.0, "dim": lab_colour.DIM,
                "bins": [lab_colour.L_BINS, lab_colour.AB_BINS, lab_colour.AB_BINS]},
    }  # fmt: skip


def check_lab_share(share: float | None) -> float:
    share = float(share or 0.0)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"colour_lab_share must be within [0, 1], got {share}")
    return share


def lab_share_of(manifest: dict[str, Any]) -> float:
    """The Lab descriptor's share of an index's colour part (0 without one, or for an older index)."""
    return float(((manifest.get("colour") or {}).get("lab") or {}).get("share", 0.0))


def colour_source(manifest: dict[str, Any]) -> str:
    """``head`` or ``probe``: what reads the probabilities of an index's colour part."""
    return str((manifest.get("colour") or {}).get("source", "head"))


def fused_colour_part(probs: np.ndarray, lab_histograms: np.ndarray | None, lab_share: float) -> np.ndarray:
    """The colour part of ``probs`` (the head's) and, at ``lab_share > 0``, the photos' Lab histograms."""
    head = colour_part(probs)
    if not lab_share:
        return head
    if lab_histograms is None or len(lab_histograms) != len(head):
        raise ValueError("a colour part with a Lab share needs one Lab histogram per photo")
    from imgsearch.retrieval.lab_colour import lab_part

    return np.hstack([np.sqrt(1.0 - lab_share) * head, np.sqrt(lab_share) * lab_part(lab_histograms)])


def photos_colour_part(
    manifest: dict[str, Any],
    probs: np.ndarray | None,
    images: Sequence[Any],
    probe: Any = None,
    lab_histograms: np.ndarray | None = None,
) -> np.ndarray:
    """The colour part of photos (PIL images or RGB arrays) as ``manifest``'s index holds its items':
    ``probs`` are the colour head's; ``probe`` is the index's colour probe, needed when it reads the part;
    ``lab_histograms``: the photos' Lab histograms when the caller already has them (else made here).
    ``probs`` is not read when the part is the pixels' alone (``source: lab``).

    Raises:
        ValueError: the index's part is the probe's and no probe is given.
    """
    if colour_source(manifest) == "lab":
        from imgsearch.retrieval.lab_colour import lab_descriptors, lab_part

        return lab_part(lab_descriptors(images) if lab_histograms is None else lab_histograms)
    share, from_probe = lab_share_of(manifest), colour_source(manifest) == "probe"
    if not share and not from_probe:
        return colour_part(probs)
    from imgsearch.retrieval.lab_colour import lab_descriptors

    hists = lab_descriptors(images) if lab_histograms is None else lab_histograms
    if from_probe:
        if probe is None:
            raise ValueError("the index's colour part is read by its colour probe, and none is loaded")
        probs = probe.predict(probs, hists)
    return fused_colour_part(probs, hists if share else None, share)


def save_colour_part(directory: str | Path, parts: np.ndarray) -> Path:
    path = Path(directory) / COLOUR_FILE
    np.save(path, np.ascontiguousarray(parts, dtype=np.float32))
    return path


def load_colour_part(directory: str | Path, manifest: dict[str, Any]) -> np.ndarray | None:
    """The index's colour parts, or ``None`` when its manifest records none."""
    info = manifest.get("colour")
    if not info:
        return None
    path = Path(directory) / str(info.get("file", COLOUR_FILE))
    parts = np.load(path, allow_pickle=False)  # never pickles: untrusted files stay data
    if parts.ndim != 2 or parts.shape[1] != int(info["dim"]):
        raise ValueError(f"{path}: colour part of shape {parts.shape}, the manifest says dim {info['dim']}")
    return parts


def rerank_by_colour(
    scores: np.ndarray,
    ids: np.ndarray,
    parts: np.ndarray,
    query_parts: np.ndarray,
    weight: float,
    k: int,
    *,
    lower_is_better: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score each query's candidates ``score +/- weight * colour similarity`` and keep the best ``k``.

    ``ids`` index rows of ``parts`` (-1 = no result, kept last); returns ``(scores, ids)``, each ``[n, k]``.
    """
    n = len(ids)
    out_s = np.full((n, k), np.inf if lower_is_better else -np.inf, np.float32)
    out_i = np.full((n, k), -1, np.int64)
    for q in range(n):
        valid = ids[q] >= 0
        cand, s = ids[q][valid], scores[q][valid].astype(np.float32)
        sim = parts[cand] @ query_parts[q]
        fused = s - weight * sim if lower_is_better else s + weight * sim
        order = np.argsort(fused if lower_is_better else -fused, kind="stable")[:k]
        out_s[q, : len(order)], out_i[q, : len(order)] = fused[order], cand[order]
    return out_s, out_i
