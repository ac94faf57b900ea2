"""Index CLI, Searcher, search CLI and eval CLI on a tiny run directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from imgsearch.cli.search import main as search_main
from imgsearch.data.images import load_image
from imgsearch.retrieval.index import IndexCompatibilityError, load_index_dir
from imgsearch.retrieval.search import Searcher, SearchHit
from retrieval_fixtures import CLASSES
from train_helpers import save_checkpoint


def test_searcher_finds_the_item_itself(trained_run, index_dir):
    searcher = Searcher.from_index_dir(index_dir)
    items = searcher.items
    picks = [0, 9, 17]
    images = [load_image(items.image_path.iloc[i]) for i in picks]
    results = searcher.search(images, k=4)
    assert len(results) == 3
    for i, result in zip(picks, results, strict=True):
        top = result.hits[0]
        assert isinstance(top, SearchHit)
        assert top.item_id == items.item_id.iloc[i]
        assert top.score == pytest.approx(1.0, abs=1e-4)  # cosine with itself
        assert [h.rank for h in result.hits] == [1, 2, 3, 4]
        assert result.category in CLASSES and 0.0 < result.probability <= 1.0
        assert top.title == items.title.iloc[i] and top.price == items.price.iloc[i]
        assert set(top.to_dict()) == {
            "rank", "item_id", "product_id", "label", "title", "brand", "price", "image_path", "score"
        }  # fmt: skip
    # k larger than the catalogue: every item once, no padding
    (everything,) = searcher.search(images[:1], k=500)
    assert sorted(h.item_id for h in everything.hits) == sorted(items.item_id)


def test_restrict_to_predicted_returns_only_that_category(index_dir):
    searcher = Searcher.from_index_dir(index_dir)
    images = [load_image(p) for p in searcher.items.image_path.iloc[::5]]
    for result in searcher.search(images, k=10, restrict_to_predicted=True):
        assert result.hits, "the predicted category has items"
        assert {h.label for h in result.hits} == {result.category}


def test_changed_checkpoint_is_refused(trained_run, index_dir, tmp_path):
    from imgsearch.models.classifier import ImageClassifier

    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["checkpoint"]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCompatibilityError, match="changed since the index was built"):
        Searcher.from_index_dir(copy)
    # an explicit checkpoint skips the hash but not the guard: 6x6 pixels give 108-d vectors, not 192-d
    other = ImageClassifier(backbone="svm", num_classes=3, class_names=list(CLASSES), input_size=6)
    ckpt = save_checkpoint(other, tmp_path / "other.ckpt")
    with pytest.raises(IndexCompatibilityError, match="dimension mismatch"):
        Searcher.from_index_dir(copy, checkpoint=ckpt)


def test_search_cli_json(index_dir, capsys):
    _, items, _ = load_index_dir(index_dir)  # image paths made absolute again
    code = search_main([items.image_path[3], "--index", str(index_dir), "-k", "2", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload[0]["query"] == items.image_path[3]
    assert payload[0]["hits"][0]["item_id"] == items.item_id[3]
    assert len(payload[0]["hits"]) == 2


def test_search_cli_table(index_dir, capsys):
    _, items, _ = load_index_dir(index_dir)  # image paths made absolute again
    assert search_main([items.image_path[0], "--index", str(index_dir), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert items.item_id[0] in out and "score" in out


def test_search_cli_unreadable_image_exits_non_zero(index_dir, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    proc = subprocess.run(
        [sys.executable, "-m", "imgsearch.cli.search", str(bad), "--index", str(index_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "cannot read query image" in proc.stderr
    assert proc.stdout == ""
    assert search_main([str(tmp_path / "missing.png"), "--index", str(index_dir)]) == 2
    assert search_main([str(bad), "--index", str(tmp_path)]) == 2


def test_query_expansion_searches_the_query_plus_its_neighbours(index_dir):
    import numpy as np

    from imgsearch.retrieval.expansion import unit

    searcher = Searcher.from_index_dir(index_dir)
    image = load_image(searcher.items.image_path.iloc[9])
    (plain,) = searcher.search([image], k=5)
    (expanded,) = searcher.search([image], k=5, qe=2, qe_alpha=1.0)
    # by hand: the query plus its two nearest stored vectors, each weighted by its cosine
    query, _ = searcher.embed([image])
    id_of = {str(i): vid for vid, i in searcher.items["item_id"].items()}
    stored = np.stack([searcher.index.reconstruct(int(id_of[h.item_id])) for h in plain.hits[:2]])
    want = unit(query + (np.clip(query @ stored.T, 0, None) @ stored))
    (by_hand,) = searcher.search_vectors(want, None, k=5)
    assert [h.item_id for h in expanded.hits] == [h.item_id for h in by_hand.hits]
    np.testing.assert_allclose([h.score for h in expanded.hits], [h.score for h in by_hand.hits], atol=1e-5)
    assert [h.score for h in expanded.hits] != pytest.approx([h.score for h in plain.hits], abs=1e-4)
    assert expanded.category == plain.category  # the category stays the photo's own prediction
    (off,) = searcher.search([image], k=5, qe=0)
    assert [h.item_id for h in off.hits] == [h.item_id for h in plain.hits]


def test_bad_query_expansion_is_a_clear_error(index_dir):
    searcher = Searcher.from_index_dir(index_dir)
    image = load_image(searcher.items.image_path.iloc[0])
    with pytest.raises(ValueError, match="qe must be an integer >= 0"):
        searcher.search([image], qe=-1)
    with pytest.raises(ValueError, match="qe_alpha must be a number >= 0"):
        searcher.search([image], qe=1, qe_alpha=-2.0)
    searcher.normalize = False  # as an index built with normalize=false
    with pytest.raises(ValueError, match="needs a cosine index"):
        searcher.search([image], qe=1)


def test_search_cli_query_expansion(index_dir, capsys):
    _, items, _ = load_index_dir(index_dir)
    args = [items.image_path[9], "--index", str(index_dir), "-k", "5", "--json"]
    assert search_main(args) == 0
    plain = json.loads(capsys.readouterr().out)[0]["hits"]
    assert search_main([*args, "--qe", "2", "--qe-alpha", "1"]) == 0
    expanded = json.loads(capsys.readouterr().out)[0]["hits"]
    searcher = Searcher.from_index_dir(index_dir)
    (want,) = searcher.search([load_image(items.image_path[9])], k=5, qe=2, qe_alpha=1.0)
    assert [h["item_id"] for h in expanded] == [h.item_id for h in want.hits]
    assert [h["score"] for h in expanded] != pytest.approx([h["score"] for h in plain], abs=1e-4)
    assert search_main([*args, "--qe", "-1"]) == 2
    assert "qe must be an integer" in capsys.readouterr().err


def test_search_vectors_expands_as_search_does(index_dir):
    # the batched service searches photos with other options through search_vectors
    searcher = Searcher.from_index_dir(index_dir)
    images = [load_image(searcher.items.image_path.iloc[i]) for i in (2, 11)]
    vectors, probs = searcher.embed(images)
    direct = searcher.search(images, k=4, qe=1, qe_alpha=2.0)
    via_vectors = searcher.search_vectors(vectors, probs, 4, qe=1, qe_alpha=2.0)
    for a, b in zip(direct, via_vectors, strict=True):
        assert [h.item_id for h in a.hits] == [h.item_id for h in b.hits]
        assert [h.score for h in a.hits] == pytest.approx([h.score for h in b.hits], abs=1e-6)
