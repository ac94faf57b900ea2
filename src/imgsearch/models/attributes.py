"""Tags from a classifier's heads: each attribute's value, its confidence and a low-confidence state.

A tag is what ``imgsearch-tag`` prints and what an index build writes into a catalogue column the shop left
empty: the top class of the head, its softmax probability as the confidence, and ``low_confidence`` when that
probability is under the model's ``min_confidence`` (so a page can show "probably red" or nothing at all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

#: The category head's tag name (the catalogue's ``label`` column).
CATEGORY = "label"


@dataclass(frozen=True)
class Tag:
    value: str
    confidence: float
    low_confidence: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def tags_from_probs(
    probs: Mapping[str, np.ndarray | torch.Tensor],
    classes: Mapping[str, Sequence[str]],
    min_confidence: float,
) -> list[dict[str, Tag]]:
    """Per row, ``{attribute: Tag}`` from each head's probabilities ``[N, classes]``.

    Raises:
        ValueError: a head's width differs from its class list, or the heads disagree on N.
    """
    names = list(probs)
    arrays = {k: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in probs.items()}
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) > 1:
        raise ValueError(f"heads give different numbers of rows: { {k: len(a) for k, a in arrays.items()} }")
    for name, array in arrays.items():
        if array.ndim != 2 or array.shape[1] != len(classes[name]):
            raise ValueError(f"{name}: {array.shape} probabilities for {len(classes[name])} classes")
    n = sizes.pop() if sizes else 0
    best = {k: a.argmax(axis=1) for k, a in arrays.items()}
    out: list[dict[str, Tag]] = []
    for i in range(n):
        row: dict[str, Tag] = {}
        for name in names:
            j = int(best[name][i])
            conf = float(arrays[name][i, j])
            row[name] = Tag(str(classes[name][j]), conf, conf < float(min_confidence))
        out.append(row)
    return out
