"""Random-number state saved in every checkpoint, so a resumed run continues the same random stream.

``seed_everything`` makes a run reproducible from its start, but a run resumed from ``last.ckpt``
restarts the generators from the seed, not from where they were: the shuffling order, the
augmentations and dropout after the resume differ from the uninterrupted run (val/acc 0.458 vs
0.500 in the probe). Lightning restores callback state on resume (``state_dict`` /
``load_state_dict``), so the states of torch (CPU and CUDA), NumPy and Python's ``random`` travel
in the checkpoint as plain tensors, lists and tuples, readable with ``weights_only=True``. The
sampler draws its shuffling seed from torch's generator, so it follows.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


class RNGStateCheckpoint(L.Callback):
    """Save the global RNG states with each checkpoint and restore them on resume."""

    @property
    def state_key(self) -> str:
        return "RNGStateCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {
                "kind": kind,
                "keys": keys.tolist(),
                "pos": pos,
                "has_gauss": has_gauss,
                "gauss": gauss,
            },
            "python": random.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        cuda = state.get("cuda") or []
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        n = state["numpy"]
        np.random.set_state(
            (n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"])
        )
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
