"""Retrieval metrics of the validation split against itself, so checkpoints can be chosen by retrieval.

Validation accuracy measures the category head; a search vector trained for product similarity can get
better while it stalls (Luma: the best-by-``val/acc`` checkpoint was epoch 4 of 8). Every validation photo
queries all the other validation photos (the leave-one-out protocol of
:mod:`imgsearch.retrieval.leave_one_out`, the one the held-out products are reported with), relevant = same
metric label (``labels=product|category``), cosine on the ``features`` vector: MAP@R (R = the other photos of
the label) and Recall@1. Photos whose label has no other photo are left out.

This is the held-out report's own scoring, so val and held-out figures are one protocol. Not
pytorch-metric-learning's ``AccuracyCalculator``: importing it imports ``faiss.contrib.torch_utils``, which
replaces ``faiss.Index.search`` process-wide with a version that refuses the ``params=`` argument the index
search passes (``pytorch_metric_learning.samplers``, used for ``m_per_class``, does the same already).
"""

from __future__ import annotations

import torch

#: logged names (``val/<name>``) -> the leave-one-out scoring's keys
VAL_RETRIEVAL_METRICS = {"map_at_r": "MAP@R", "recall_at_1": "recall@1"}


def leave_one_out_accuracy(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float] | None:
    """``{"map_at_r", "recall_at_1"}`` of every row querying all other rows; ``None`` when no label has two
    rows (nothing can be retrieved: a score of 0 would read as a bad model)."""
    from imgsearch.retrieval.leave_one_out import leave_one_out_scores

    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"{tuple(embeddings.shape)} embeddings for {len(labels)} labels")
    labels = labels.detach().cpu().long()
    if len(labels) < 2 or int(torch.unique(labels, return_counts=True)[1].max()) < 2:
        return None
    # normalised: the index searches by cosine (inner product of unit vectors)
    vectors = torch.nn.functional.normalize(embeddings.detach().float().cpu(), dim=-1).numpy()
    scores = leave_one_out_scores(vectors, labels.numpy().astype(str), ks=(1,))
    return {name: float(scores[key]) for name, key in VAL_RETRIEVAL_METRICS.items()}
