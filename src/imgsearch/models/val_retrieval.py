"""Retrieval metrics of the validation split against itself, so checkpoints can be chosen by retrieval.

Validation accuracy measures the category head; a search vector trained for product similarity can get
better while it stalls (Luma: the best-by-``val/acc`` checkpoint was epoch 4 of 8). Every validation photo
queries all the other validation photos (the leave-one-out protocol of
:mod:`imgsearch.retrieval.leave_one_out`), relevant = same metric label (``labels=product|category``),
cosine on the ``features`` vector. pytorch-metric-learning's ``AccuracyCalculator`` computes MAP@R (R = the
other photos of the label) and precision@1, which in leave-one-out is Recall@1; photos whose label has no
other photo are left out, as in the project's own scoring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

#: logged names (``val/<name>``) -> AccuracyCalculator's keys
VAL_RETRIEVAL_METRICS = {"map_at_r": "mean_average_precision_at_r", "recall_at_1": "precision_at_1"}


def leave_one_out_accuracy(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float] | None:
    """``{"map_at_r", "recall_at_1"}`` of every row querying all other rows; ``None`` when no label has two
    rows (nothing can be retrieved: a score of 0 would read as a bad model)."""
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"{tuple(embeddings.shape)} embeddings for {len(labels)} labels")
    labels = labels.detach().cpu().long()
    if len(labels) < 2 or int(torch.unique(labels, return_counts=True)[1].max()) < 2:
        return None
    # normalised: the index searches by cosine (inner product of unit vectors), PML's default kNN by L2 -
    # the same order on unit vectors
    vectors = F.normalize(embeddings.detach().float().cpu(), dim=-1)
    calc = AccuracyCalculator(
        include=tuple(VAL_RETRIEVAL_METRICS.values()), k="max_bin_count", device=torch.device("cpu")
    )
    acc = calc.get_accuracy(vectors, labels)  # no reference: the rows query each other, self excluded
    return {name: float(acc[key]) for name, key in VAL_RETRIEVAL_METRICS.items()}
