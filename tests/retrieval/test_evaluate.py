"""Query-vs-gallery evaluation: relevance, self-exclusion, classify-then-search, report files."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from imgsearch.retrieval import metrics as M
from imgsearch.retrieval.evaluate import Setting, evaluate_retrieval, vary
from imgsearch.retrieval.report import log_report, markdown_report, write_report
from imgsearch.retrieval.scoring import _drop_self, search_relevance, select_protocol

CPU = {"accelerator": "cpu", "enable_progress_bar": False}


def test_search_relevance_hand_made():
    # 1-D gallery on a line, L2: the query at 0.0 sees a(0.1), b(0.3), a(0.6), b(1.0) in that order
    gallery = np.array([[1.0], [0.1], [0.6], [0.3]], np.float32)
    gallery_keys = ["b", "a", "a", "b"]
    scores, kept, top, rel, truncated = search_relevance(
        np.array([[0.0]], np.float32), gallery, ["a"], gallery_keys, ks=(1, 3), metric="l2", normalize=False
    )
    assert kept.tolist() == [0]
    assert top[0].tolist() == [1, 3, 2]
    assert rel[0].tolist() == [True, False, True]
    assert scores["mAP@3"][0] == pytest.approx((1 + 2 / 3) / 2)
    assert scores["recall@1"][0] == 1.0
    # R = 2 relevant items: ranks 1..2 = [a, b] -> (1/1)/2
    assert scores["MAP@R"][0] == pytest.approx(0.5)
    assert truncated == 0


def test_search_relevance_matches_brute_force():
    rng = np.random.default_rng(0)
    g, q = rng.normal(size=(60, 8)).astype(np.float32), rng.normal(size=(15, 8)).astype(np.float32)
    g_keys, q_keys = rng.integers(0, 4, 60).astype(str), rng.integers(0, 4, 15).astype(str)
    scores, kept, _, _, _ = search_relevance(q, g, q_keys, g_keys, ks=(1, 5, 10), metric="ip", batch_size=4)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    order = np.argsort(-(qn @ gn.T), axis=1, kind="stable")
    relevant = g_keys[order] == q_keys[:, None]
    n_rel = (g_keys[None, :] == q_keys[:, None]).sum(1)
    want = M.retrieval_scores(relevant, n_rel, (1, 5, 10))  # all 60 columns: no MAP@R truncation
    for name in want:
        np.testing.assert_allclose(scores[name], want[name][kept], err_msg=name)


def test_query_is_never_its_own_match():
    # every item is a query and in the gallery; its own vector would always be rank 1
    vectors = np.array([[0, 0], [0.1, 0], [5, 5], [5.1, 5], [9, -9]], np.float32)
    keys = ["a", "a", "b", "b", "c"]
    scores, kept, top, _, _ = search_relevance(
        vectors, vectors, keys, keys, ks=(1, 2), metric="l2", normalize=False, query_self=np.arange(5)
    )
    assert kept.tolist() == [0, 1, 2, 3]  # 'c' has no other item: left out, not scored 0
    assert top[:, 0].tolist() == [1, 0, 3, 2]  # the partner, not itself
    assert (top != np.arange(4)[:, None]).all()
    assert scores["recall@1"].tolist() == [1.0] * 4
    assert scores["mAP@2_norm"].tolist() == [1.0] * 4  # n_relevant = 1 (itself does not count)


def test_drop_self_keeps_rank_order():
    ids = np.array([[4, 7, 1, 2], [3, 5, 6, 8], [9, 0, 1, 2]])
    # row 0: self (7) removed; row 1: self not found, the extra last column goes; row 2: no self (-1)
    out = _drop_self(ids, np.array([7, 4, -1]))
    assert out.tolist() == [[4, 1, 2], [3, 5, 6], [9, 0, 1]]


def test_classify_then_search_returns_only_predicted_category():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(40, 6)).astype(np.float32)
    g_labels = np.array(["bags", "shoes", "dresses", "hats"] * 10, dtype=object)
    q = rng.normal(size=(12, 6)).astype(np.float32)
    q_labels = np.array(["bags", "shoes", "dresses"] * 4, dtype=object)
    predicted = np.array(["shoes", "bags", "dresses", "hats"] * 3, dtype=object)  # deliberately often wrong
    _, kept, top, rel, _ = search_relevance(
        q, g, q_labels, g_labels, ks=(1, 5), restrict_query=predicted, restrict_gallery=g_labels
    )
    assert len(kept) == 12
    assert (top >= 0).all()
    assert (g_labels[top] == predicted[kept][:, None]).all()
    # a wrong prediction can only return wrong items: relevance follows
    assert (rel.any(axis=1) == (predicted[kept] == q_labels[kept])).all()


def test_protocol_selection_and_empty_sets(catalogue):
    label = select_protocol(catalogue, "label")
    assert set(catalogue.split.iloc[label.query_rows]) == {"test"}
    assert set(catalogue.split.iloc[label.gallery_rows]) == {"train", "val"}
    product = select_protocol(catalogue, "product")
    assert set(catalogue.view.iloc[product.query_rows]) == {"model"}
    assert set(catalogue.view.iloc[product.gallery_rows]) == {"cutout"}
    assert len(product.gallery_rows) == len(catalogue) // 2  # cutouts of every split
    with pytest.raises(ValueError, match="empty gallery"):
        select_protocol(catalogue, "label", gallery_splits=("nope",))
    with pytest.raises(ValueError, match="no queries"):
        select_protocol(catalogue.assign(view="main"), "product")
    with pytest.raises(ValueError, match="unknown relevance"):
        select_protocol(catalogue, "colour")
    with pytest.raises(ValueError, match="gallery is empty"):
        search_relevance(np.zeros((2, 3), np.float32), np.zeros((0, 3), np.float32), ["a", "b"], [])


def test_evaluate_report_end_to_end(catalogue, pixel_model, tmp_path):
    report = evaluate_retrieval(
        catalogue,
        pixel_model,
        compare={
            "embedding": ["features", "probs", "pixels"],
            "metric": ["cosine", "euclidean"],
            "classify_first": [True],
        },
        num_workers=0,
        trainer_kwargs=CPU,
        pixel_size=8,
    )
    s = report.summary
    for key in ["mAP@1", "mAP@5", "mAP@10", "mAP@10_norm", "MAP@R", "recall@1", "recall@5", "recall@10"]:
        assert 0.0 <= s[key] <= 1.0, key
    assert s["mAP@1"] == s["relevance"]["label"]["mAP@1"]
    assert s["main"]["relevance"] == "label"
    assert s["relevance"]["label"]["queries"] == 6 and s["relevance"]["label"]["gallery"] == 18
    assert s["relevance"]["product"]["queries"] == 3 and s["relevance"]["product"]["gallery"] == 12
    assert set(s["relevance"]["label"]["per_class"]) == {"bags", "dresses", "shoes"}
    assert set(s["compare"]) == {"embedding", "metric", "classify_first"}
    assert set(s["compare"]["embedding"]) == {"features", "probs", "pixels"}
    assert set(s["compare"]["metric"]) == {"cosine", "euclidean"}
    cosine = s["compare"]["metric"]["cosine"]["label"]  # = the main setting
    assert cosine == {k: v for k, v in s["relevance"]["label"].items() if k != "per_class"}
    # the main setting and its twin in the comparison are the same numbers
    assert s["compare"]["embedding"]["features"]["label"]["mAP@5"] == s["mAP@5"]
    # the stripes make each product findable from raw pixels
    assert s["compare"]["embedding"]["pixels"]["product"]["recall@1"] == 1.0
    # main results point at real catalogue rows of the right protocol
    res = report.main_results["product"]
    assert set(catalogue.view.iloc[res.top_rows[res.top_rows >= 0]]) == {"cutout"}

    files = write_report(report, tmp_path / "run")
    on_disk = json.loads(files["json"].read_text())
    assert on_disk["mAP@10"] == pytest.approx(s["mAP@10"])
    md = files["markdown"].read_text()
    assert "| features, cosine | label |" in md and "## embedding" in md
    for rel in ("label", "product"):
        with Image.open(files[f"grid_{rel}"]) as im:
            assert im.format == "PNG" and im.width > 300


def test_vary_names_similarities():
    main = Setting()
    assert vary(main, "metric", "euclidean") == Setting(metric="l2", normalize=False)
    assert vary(main, "metric", "cosine") == main
    assert vary(main, "metric", "l2") == Setting(metric="l2", normalize=True)  # keeps the normalisation
    assert vary(main, "classify_first", True).classify_first
    with pytest.raises(ValueError, match="unknown metric"):
        vary(main, "metric", "manhattan")
    with pytest.raises(ValueError, match="unknown compare option"):
        vary(main, "colour", "red")


def test_evaluate_needs_a_model_for_model_kinds(catalogue):
    with pytest.raises(ValueError, match="need a model"):
        evaluate_retrieval(catalogue, None, relevance=["label"])
    with pytest.raises(ValueError, match="unknown compare option"):
        evaluate_retrieval(catalogue, None, compare={"colour": ["red"]})


def test_pixels_only_evaluation_without_model(catalogue):
    report = evaluate_retrieval(
        catalogue,
        None,
        relevance=["product"],
        ks=(1, 3),
        main=Setting(embedding="pixels"),
        num_workers=0,
        trainer_kwargs=CPU,
        pixel_size=8,
    )
    assert report.summary["recall@1"] == 1.0
    assert "mAP@3_norm" in report.summary
    assert "| pixels, cosine | product |" in markdown_report(report.summary)


def test_report_goes_to_an_active_wandb_run(catalogue, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    report = evaluate_retrieval(
        catalogue,
        None,
        relevance=["product"],
        main=Setting(embedding="pixels"),
        num_workers=0,
        trainer_kwargs=CPU,
        pixel_size=8,
    )
    write_report(report, tmp_path, samples=2)
    logged: list[dict] = []
    monkeypatch.setattr(wandb, "run", object())  # a run is active (e.g. evaluation right after training)
    monkeypatch.setattr(wandb, "log", lambda data, **_: logged.append(data))
    log_report(report)
    (data,) = logged
    assert data["retrieval/product/mAP@1"] == pytest.approx(report.summary["mAP@1"])
    assert isinstance(data["retrieval/grid_product"], wandb.Image)
    # no active run: nothing is sent
    monkeypatch.setattr(wandb, "run", None)
    log_report(report)
    assert len(logged) == 1


@pytest.mark.parametrize("restrict", [False, True])
def test_scoring_in_small_query_blocks_equals_one_block(restrict):
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(60, 8)).astype(np.float32)
    g_keys = rng.choice(["a", "b", "c"], size=60)
    queries = np.concatenate([gallery[:10], rng.normal(size=(7, 8)).astype(np.float32)])
    q_keys = np.concatenate([g_keys[:10], rng.choice(["a", "b", "c"], size=7)])
    query_self = np.array([*range(10), *[-1] * 7])  # the first 10 queries are gallery items themselves
    kwargs = dict(ks=(1, 5), query_self=query_self, map_r_cap=50)
    if restrict:
        # one query predicts a category the gallery lacks: it gets no results
        kwargs |= dict(restrict_query=np.array([*q_keys[:16], "zzz"]), restrict_gallery=g_keys)
    one = search_relevance(queries, gallery, q_keys, g_keys, batch_size=4096, **kwargs)
    small = search_relevance(queries, gallery, q_keys, g_keys, batch_size=3, **kwargs)
    assert one[0].keys() == small[0].keys() and "MAP@R" in one[0]
    for name in one[0]:
        np.testing.assert_allclose(small[0][name], one[0][name], err_msg=name)
    for a, b in zip(one[1:], small[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    if restrict:
        assert one[0]["recall@5"][-1] == 0.0 and (one[2][-1] == -1).all()


def test_one_photo_per_product_skips_product_relevance_with_a_note(catalogue, tmp_path):
    # a shop with one photo per product: evaluation with the default relevance list still works
    one_view = catalogue[catalogue["view"] == "cutout"].reset_index(drop=True)
    report = evaluate_retrieval(
        one_view,
        None,
        main=Setting(embedding="pixels"),
        compare={},
        num_workers=0,
        trainer_kwargs=CPU,
        pixel_size=8,
    )
    s = report.summary
    assert list(s["relevance"]) == ["label"] and s["main"]["relevance"] == "label"
    assert "one photo" in s["skipped_relevance"]["product"]
    assert "product relevance was not measured" in markdown_report(s)
    with pytest.raises(ValueError, match="no relevance notion can be evaluated"):
        evaluate_retrieval(one_view, None, relevance=["product"], main=Setting(embedding="pixels"),
                           compare={}, num_workers=0, trainer_kwargs=CPU, pixel_size=8)  # fmt: skip


def test_search_loop_logs_one_summary_line_not_a_bar(caplog):
    # in a log file (no terminal) the evaluation loop writes one line with its count, no bar frames
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((10, 4)).astype(np.float32), rng.standard_normal((30, 4)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="imgsearch.retrieval.scoring"):
        search_relevance(q, g, ["a"] * 10, ["a", "b", "c"] * 10, ks=(1,), batch_size=4)
    lines = [r.getMessage() for r in caplog.records if r.name == "imgsearch.retrieval.scoring"]
    assert len(lines) == 1 and lines[0].startswith("searching query blocks: 3 blocks in")


def test_query_expansion_settings_score_the_expanded_vectors(catalogue, pixel_model):
    from imgsearch.retrieval.embed import embed_catalogue
    from imgsearch.retrieval.expansion import alpha_query_expansion, database_augmentation

    main = Setting(qe=1, dba=2, qe_alpha=1.0)
    report = evaluate_retrieval(
        catalogue, pixel_model, relevance=["label"], main=main, compare={"qe": [0, 2]},
        num_workers=0, trainer_kwargs=CPU,
    )  # fmt: skip
    s = report.summary
    assert s["main"]["qe"] == 1 and s["main"]["dba"] == 2 and "alpha-QE k=1" in markdown_report(s)
    # the same figures by hand: DBA on the gallery, then alpha-QE of the test photos against it
    vec = embed_catalogue(pixel_model, catalogue, num_workers=0, trainer_kwargs=CPU)["features"]
    labels = catalogue["label"].astype(str).to_numpy()
    q, g = (catalogue["split"] == "test").to_numpy(), catalogue["split"].isin(["train", "val"]).to_numpy()
    gallery = database_augmentation(vec[g], k=2, alpha=1.0)
    queries = alpha_query_expansion(vec[q], gallery, k=1, alpha=1.0)
    scores, *_ = search_relevance(queries, gallery, labels[q], labels[g])
    for key, value in M.summarize(scores).items():
        assert s[key] == pytest.approx(value, abs=1e-6), key
    # qe=0 keeps DBA: it differs from the main setting's query vectors, and the compared rows are scored apart
    plain, *_ = search_relevance(vec[q], gallery, labels[q], labels[g])
    assert s["compare"]["qe"]["0"]["label"]["MAP@R"] == pytest.approx(M.summarize(plain)["MAP@R"], abs=1e-6)
    untouched, *_ = search_relevance(vec[q], vec[g], labels[q], labels[g])
    moved = [M.summarize(x)["MAP@R"] for x in (untouched, plain, scores)]
    assert len({round(m, 6) for m in moved}) == 3, moved  # each expansion changed the ranking


def test_bad_query_expansion_settings_are_clear_errors():
    with pytest.raises(ValueError, match="qe must be an integer >= 0"):
        Setting(qe=-1)
    with pytest.raises(ValueError, match="dba must be an integer >= 0"):
        Setting(dba=1.5)
    with pytest.raises(ValueError, match="needs normalize=true"):
        Setting(qe=1, metric="l2", normalize=False)
    with pytest.raises(ValueError, match="needs normalize=true"):
        vary(Setting(dba=2), "metric", "euclidean")
