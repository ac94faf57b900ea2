"""Corrupted or mismatched artefacts are refused with one line: index files, item table, checkpoint."""

from __future__ import annotations

import json
import logging
import shutil
import sys

import pytest

from imgsearch.cli.search import main as search_main
from imgsearch.models.classifier import ImageClassifier
from imgsearch.retrieval import index as I
from imgsearch.retrieval.index import IndexCompatibilityError, load_index_dir
from imgsearch.retrieval.search import Searcher
from imgsearch.utils import atomic
from retrieval_fixtures import CLASSES
from train_helpers import save_checkpoint


@pytest.fixture()
def copy(index_dir, tmp_path):
    out = tmp_path / "index"
    shutil.copytree(index_dir, out)
    return out


def test_manifest_records_the_hash_of_index_and_items(index_dir):
    recorded = json.loads((index_dir / "manifest.json").read_text())["files"]
    assert recorded == {name: I.file_sha256(index_dir / name) for name in ("index.faiss", "items.csv")}
    assert "files" not in load_index_dir(index_dir)[2]  # the manifest read back is the one written


def test_index_with_flipped_bytes_is_refused(copy):
    data = bytearray((copy / "index.faiss").read_bytes())
    data[-5] ^= 0xFF  # a vector component: FAISS itself would load it and return other hits
    (copy / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(
        IndexCompatibilityError, match=r"index\.faiss changed since the index was written"
    ) as info:
        Searcher.from_index_dir(copy)
    assert "\n" not in str(info.value) and "rebuild the index" in str(info.value)


def test_doctored_items_table_is_refused(copy):
    text = (copy / "items.csv").read_text()
    (copy / "items.csv").write_text(text.replace(text.splitlines()[1].split(",")[0], "/etc/passwd", 1))
    with pytest.raises(IndexCompatibilityError, match=r"items\.csv changed since"):
        load_index_dir(copy)


@pytest.mark.parametrize("content", [b"", b"IxF2 truncated", bytes(range(256)) * 4])
def test_unreadable_index_file_is_one_line(copy, content, caplog):
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"]  # an index older than the hashes: FAISS itself meets the bad file
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "index.faiss").write_bytes(content)
    with caplog.at_level(logging.WARNING), pytest.raises(IndexCompatibilityError) as info:
        load_index_dir(copy)
    assert "records no file hashes" in caplog.text
    message = str(info.value)
    assert "index.faiss is not a readable FAISS index" in message and "\n" not in message


def test_search_cli_reports_a_broken_index_in_one_line(copy, capsys):
    image = load_index_dir(copy)[1]["image_path"].iloc[0]  # absolute, as the reader resolves it
    (copy / "index.faiss").write_bytes(b"")
    assert search_main([image, "--index", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "index.faiss changed since" in err


def _other_run_checkpoint(tmp_path):
    # same backbone and input size as the index's run, other weights: it fits the index's shape
    other = ImageClassifier(backbone="svm", num_classes=3, class_names=list(CLASSES), input_size=8)
    return save_checkpoint(other, tmp_path / "other-run.ckpt")


def test_checkpoint_of_another_run_is_refused_unless_allowed(index_dir, tmp_path, caplog):
    ckpt = _other_run_checkpoint(tmp_path)
    with pytest.raises(IndexCompatibilityError, match=r"is not the one the index .* was built with") as info:
        Searcher.from_index_dir(index_dir, checkpoint=ckpt)
    assert "--allow-other-checkpoint" in str(info.value)
    with caplog.at_level(logging.WARNING):
        searcher = Searcher.from_index_dir(index_dir, checkpoint=ckpt, allow_other_checkpoint=True)
    assert searcher.module is not None and "searching with it anyway" in caplog.text


def test_index_checkpoint_passed_explicitly_is_accepted(index_dir):
    recorded = json.loads((index_dir / "manifest.json").read_text())["checkpoint"]["path"]
    assert Searcher.from_index_dir(index_dir, checkpoint=recorded).module is not None


def test_search_cli_corrupt_checkpoint_is_one_line(index_dir, tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    image = load_index_dir(index_dir)[1]["image_path"].iloc[0]
    assert search_main([image, "--index", str(index_dir), "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.ckpt is not a readable checkpoint" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 exchange is Linux-only")
def test_index_swap_is_one_exchange_not_two_renames(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert atomic.exchange_paths(a, b)
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"

    target = tmp_path / "idx"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "v").write_text("1")

    def no_rename(*args):
        raise AssertionError("a rename would leave a moment with no directory at the target")

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    with atomic.atomic_dir(target) as tmp:
        (tmp / "v").write_text("2")
    assert (target / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "idx"]  # the old version is gone
