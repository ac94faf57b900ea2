"""Retrieval metrics on hand-made rankings (answers worked out by hand) and against torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalMAP

from imgsearch.retrieval import metrics as M

# Three queries, five results each.
#   q0: hits at ranks 1 and 3, 3 relevant items in the gallery
#   q1: one hit at rank 5, 1 relevant item in the gallery
#   q2: no hit, 2 relevant items in the gallery
REL = np.array(
    [
        [1, 0, 1, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0],
    ],
    dtype=bool,
)
N_REL = np.array([3, 1, 2])


def test_map_at_k_hand_made():
    # q0: (1/1 + 2/3) / 2 hits; q1: (1/5) / 1 hit; q2: 0
    np.testing.assert_allclose(M.map_at_k(REL, 5), [(1 + 2 / 3) / 2, 0.2, 0.0])
    np.testing.assert_allclose(M.map_at_k(REL, 1), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(M.map_at_k(REL, 3), [(1 + 2 / 3) / 2, 0.0, 0.0])


def test_map_at_k_norm_hand_made():
    # same sums divided by min(k, n_relevant)
    np.testing.assert_allclose(M.map_at_k_norm(REL, N_REL, 5), [(1 + 2 / 3) / 3, 0.2 / 1, 0.0])
    np.testing.assert_allclose(M.map_at_k_norm(REL, N_REL, 1), [1.0, 0.0, 0.0])
    # one hit at rank 1 of 3 relevant: mAP@5 rewards it fully, the normalised one does not
    one_hit = np.array([[1, 0, 0, 0, 0]], dtype=bool)
    assert M.map_at_k(one_hit, 5)[0] == 1.0
    assert M.map_at_k_norm(one_hit, np.array([3]), 5)[0] == pytest.approx(1 / 3)


def test_map_at_r_hand_made():
    # q0: R=3, top 3 = [1,0,1] -> (1 + 2/3) / 3; q1: R=1, top 1 = [0] -> 0; q2: 0
    np.testing.assert_allclose(M.map_at_r(REL, N_REL), [(1 + 2 / 3) / 3, 0.0, 0.0])
    # R larger than the searched results: truncated to the 2 columns, like pytorch-metric-learning
    np.testing.assert_allclose(M.map_at_r(np.array([[1, 1]], dtype=bool), np.array([5])), [1.0])
    # example from Musgrave et al.: R=10, hits at ranks 1, 3 -> (1 + 2/3) / 10
    row = np.zeros((1, 10), dtype=bool)
    row[0, [0, 2]] = True
    np.testing.assert_allclose(M.map_at_r(row, np.array([10])), [(1 + 2 / 3) / 10])


def test_recall_and_precision_hand_made():
    np.testing.assert_allclose(M.recall_at_k(REL, 1), [1, 0, 0])
    np.testing.assert_allclose(M.recall_at_k(REL, 5), [1, 1, 0])
    np.testing.assert_allclose(M.precision_at_k(REL, 5), [0.4, 0.2, 0.0])
    # fewer results than k (tiny gallery): missing ranks count as misses
    np.testing.assert_allclose(M.precision_at_k(REL[:, :2], 5), [0.2, 0.0, 0.0])


def test_retrieval_scores_keys_and_summary():
    scores = M.retrieval_scores(REL, N_REL, ks=(1, 5))
    assert list(scores) == [
        "mAP@1", "mAP@5", "mAP@1_norm", "mAP@5_norm", "MAP@R",
        "recall@1", "recall@5", "precision@1", "precision@5",
    ]  # fmt: skip
    summary = M.summarize(scores)
    assert summary["recall@5"] == pytest.approx(2 / 3)
    assert summary["mAP@5"] == pytest.approx(((1 + 2 / 3) / 2 + 0.2) / 3)


def test_per_class_breakdown():
    scores = M.retrieval_scores(REL, N_REL, ks=(1,))
    table = M.per_class(scores, ["shoes", "bags", "shoes"])
    assert table["shoes"]["queries"] == 2
    assert table["shoes"]["recall@1"] == pytest.approx(0.5)
    assert table["bags"]["recall@1"] == 0.0


def test_empty_query_set_is_an_error():
    scores = M.retrieval_scores(np.zeros((0, 5), dtype=bool), np.zeros(0, dtype=int), ks=(1,))
    with pytest.raises(ValueError, match="zero queries"):
        M.summarize(scores)


def test_shape_errors():
    with pytest.raises(ValueError, match="2-D"):
        M.map_at_k(np.zeros(5, dtype=bool), 1)
    with pytest.raises(ValueError, match="n_relevant"):
        M.retrieval_scores(REL, np.array([1, 2]))


@pytest.mark.parametrize("k", [1, 3, 10])
def test_map_at_k_matches_torchmetrics(k):
    rng = np.random.default_rng(k)
    n_queries, n_gallery = 40, 25
    # positive scores: torchmetrics 1.9 treats an item scored <= 0 as non-relevant, a rule of its own
    scores = rng.uniform(0.01, 1.0, size=(n_queries, n_gallery))
    target = rng.random((n_queries, n_gallery)) < 0.2
    target[0] = False  # a query with no relevant item at all: both give 0
    order = np.argsort(-scores, axis=1, kind="stable")
    relevant = np.take_along_axis(target, order, axis=1)

    ours = M.map_at_k(relevant[:, :k], k).mean()

    metric = RetrievalMAP(top_k=k)
    indexes = torch.arange(n_queries).repeat_interleave(n_gallery)
    theirs = metric(
        torch.tensor(scores.ravel(), dtype=torch.float64), torch.tensor(target.ravel()), indexes=indexes
    )
    assert ours == pytest.approx(float(theirs), abs=1e-6)
