"""#10: a live catalogue. Add, update, remove by id without a rebuild; crash safety; readers during writes."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

from imgsearch.data.schema import validate_catalogue
from imgsearch.retrieval import index as I
from imgsearch.retrieval.filters import filter_mask
from imgsearch.retrieval.live import LiveIndex, is_live
from imgsearch.retrieval.store import ItemStoreError

N, D = 120, 16
FACTORIES = ["Flat", "HNSW16", "IVF4,Flat"]


def _rows(ids, rng, prefix="/img") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ids,
            "product_id": [f"p{i}" for i in ids],
            "image_path": [f"{prefix}/{i}.jpg" for i in ids],
            "label": rng.choice(["bags", "shoes"], len(ids)),
            "brand": rng.choice(["Acme", "Bolt"], len(ids)),
            "price": rng.uniform(1, 100, len(ids)).round(2),
        }
    )


def _vectors(n: int, seed: int) -> np.ndarray:
    return I.prepare_vectors(np.random.default_rng(seed).standard_normal((n, D)), normalize=True)


def _built(directory: Path, factory: str = "Flat") -> Path:
    rng = np.random.default_rng(0)
    items = validate_catalogue(_rows([f"i{j}" for j in range(N)], rng))
    index = I.build_index(_vectors(N, 1), factory=factory, metric="ip", normalize=True)
    manifest = I.make_manifest(index=index, items=items, embedding="pixels", metric="ip", normalize=True,
                               factory=factory, checkpoint=None, checkpoint_sha256=None, backbone=None,
                               data_config=None, pixel_size=4)  # fmt: skip
    manifest["embedding"]["dim"] = D
    return I.save_index_dir(directory, index, items, manifest)


def _top(live: LiveIndex, query: np.ndarray, k: int = 5) -> list[str]:
    params = I.search_params(live.index, exclude=live.dead) if len(live.dead) else None
    _, ids = I.search_batched(live.index, query[None, :], k, params=params)
    return [str(live.items.loc[int(i), "item_id"]) for i in ids[0] if i >= 0]


def _consistent(live: LiveIndex) -> None:
    """Every item has exactly one vector in the index; every other vector is a known tombstone."""
    from imgsearch.retrieval.live import index_ids

    ids = index_ids(live.index)
    assert len(np.unique(ids)) == len(ids)
    assert set(live.items.index) <= set(ids.tolist())
    assert set(ids.tolist()) - set(live.items.index) == set(live.dead.tolist())
    assert live.items["item_id"].is_unique


@pytest.mark.parametrize("factory", FACTORIES)
def test_add_then_found_removed_then_never_returned(tmp_path, factory):
    directory = _built(tmp_path / "idx", factory)
    live = LiveIndex.open(directory)
    assert is_live(directory) and len(live.items) == N
    rng = np.random.default_rng(5)
    new = _vectors(3, 7)
    live.add(_rows(["n1", "n2", "n3"], rng), new)
    assert _top(live, new[1])[0] == "n2"
    # remove one new and one built item: neither is ever returned again, whatever k
    built_vector = live.vector_of("i7")
    live.remove(["n2", "i7"])
    assert "n2" not in _top(live, new[1], k=N + 3) and "i7" not in _top(live, built_vector, k=N + 3)
    _consistent(live)
    # the same after a reload in a fresh process state, and after compaction
    again = LiveIndex.open(directory, create=False)
    assert sorted(again.items["item_id"]) == sorted(live.items["item_id"])
    assert "n2" not in _top(again, new[1], k=N + 3) and _top(again, new[2])[0] == "n3"
    _consistent(again)
    live.compact()
    assert len(live.dead) == 0 and live.index.ntotal == N + 1
    third = LiveIndex.open(directory, create=False)
    assert third.index.ntotal == N + 1 and len(third.dead) == 0
    assert "i7" not in _top(third, built_vector, k=N + 3) and _top(third, new[0])[0] == "n1"
    _consistent(third)
    for handle in (live, again, third):
        handle.close()


@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_update_replaces_vector_and_metadata_and_another_reader_sees_it(tmp_path, factory):
    directory = _built(tmp_path / "idx", factory)
    writer, reader = LiveIndex.open(directory), LiveIndex.open(directory)
    rng = np.random.default_rng(3)
    fresh = _vectors(1, 42)
    rows = _rows(["i3"], rng)
    rows["title"] = "new photo"
    writer.add(rows, fresh, mode="update")
    assert reader.refresh() is True
    assert _top(reader, fresh[0])[0] == "i3"
    assert (reader.items["item_id"] == "i3").sum() == 1
    assert reader.items.loc[reader.items["item_id"] == "i3", "title"].item() == "new photo"
    writer.set_metadata("i3", {"price": 12.5, "colour": "red"})
    assert reader.refresh() is True and reader.refresh() is False  # nothing new the second time
    row = reader.items[reader.items["item_id"] == "i3"].iloc[0]
    assert row["price"] == 12.5 and row["colour"] == "red"
    _consistent(reader)
    writer.close()
    reader.close()


def test_writes_refuse_bad_ids_and_change_nothing(tmp_path):
    directory = _built(tmp_path / "idx")
    live = LiveIndex.open(directory)
    rng = np.random.default_rng(0)
    with pytest.raises(ItemStoreError, match="already in the catalogue"):
        live.add(_rows(["i1", "brand_new"], rng), _vectors(2, 0))
    with pytest.raises(ItemStoreError, match="not in the catalogue"):
        live.add(_rows(["nope"], rng), _vectors(1, 0), mode="update")
    with pytest.raises(ItemStoreError, match="not in the catalogue"):
        live.remove(["i1", "nope"])
    with pytest.raises(ItemStoreError, match="not allowed"):
        live.set_metadata("i1", {"bad name; DROP TABLE items": "x"})
    with pytest.raises(ValueError, match="vectors must be"):
        live.add(_rows(["x"], rng), np.zeros((1, D + 1), np.float32))
    assert len(live.items) == N and live.store.count() == N and live.index.ntotal == N
    assert "brand_new" not in set(live.items["item_id"]) and "i1" in set(live.items["item_id"])
    live.close()


def test_filters_on_a_live_catalogue_equal_brute_force(tmp_path):
    directory = _built(tmp_path / "idx", "HNSW16")
    live = LiveIndex.open(directory)
    rng = np.random.default_rng(9)
    live.add(_rows([f"n{j}" for j in range(30)], rng), _vectors(30, 11))
    live.remove([f"i{j}" for j in range(0, N, 4)])
    filters = {"brand": "Acme", "price": (20.0, 80.0)}
    allowed = live.items.index.to_numpy()[filter_mask(live.items, filters)]
    queries = _vectors(5, 13)
    params = I.search_params(live.index, ids=allowed, ef_search=400)
    _, got = I.search_batched(live.index, queries, 10, params=params)
    vectors = np.vstack([live.index.reconstruct(int(v)) for v in allowed])
    exact = allowed[np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    assert (got == exact).mean() > 0.95
    assert set(got.ravel().tolist()) <= set(allowed.tolist())
    live.close()


def test_moved_live_directory_loads_and_files_are_world_readable(tmp_path):
    old = os.umask(0o022)
    try:
        directory = _built(tmp_path / "idx", "Flat")
        live = LiveIndex.open(directory)
        images = tmp_path / "uploads"
        images.mkdir()
        rng = np.random.default_rng(0)
        rows = _rows(["u1"], rng, prefix=str(directory / "live" / "images"))
        live.add(rows, _vectors(1, 3))
        live.snapshot()
        live.close()
    finally:
        os.umask(old)
    for path in (directory / "live").iterdir():
        if path.is_file() and not path.name.endswith(("-wal", "-shm")):
            assert path.stat().st_mode & stat.S_IROTH, f"{path.name} is not readable by others"
    moved = shutil.move(str(directory), str(tmp_path / "elsewhere"))
    again = LiveIndex.open(moved, create=False)
    row = again.items[again.items["item_id"] == "u1"].iloc[0]
    assert row["image_path"] == str(Path(moved).resolve() / "live" / "images" / "u1.jpg")
    assert len(again.items) == N + 1
    again.close()


# ---------------------------------------------------------------------------------------- crash safety

_WRITER = """
import os, signal, sys
import numpy as np, pandas as pd
from imgsearch.retrieval import live as L
from imgsearch.retrieval.index import prepare_vectors

point, directory = sys.argv[1], sys.argv[2]
def crash(name):
    if name == point:
        os.kill(os.getpid(), signal.SIGKILL)
L.crash_point = crash
live = L.LiveIndex.open(directory)
rng = np.random.default_rng(int.from_bytes(os.urandom(2), "little"))
step = 0
while True:
    ids = [f"w{os.getpid()}x{step}_{j}" for j in range(5)]
    rows = pd.DataFrame({"item_id": ids, "image_path": [f"/img/{i}.jpg" for i in ids], "label": "bags"})
    live.add(rows, prepare_vectors(rng.standard_normal((5, {dim})), normalize=True))
    live.remove([ids[0]])
    if step % 3 == 2:
        live.snapshot(compact=True)
    step += 1
"""


def _run_writer(point: str, directory: Path, *, kill_after: float | None = None) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    code = textwrap.dedent(_WRITER).replace("{dim}", str(D))
    proc = subprocess.Popen([sys.executable, "-c", code, point, str(directory)], env=env)
    if kill_after is None:
        return proc.wait(timeout=120)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=60)


def _check_after_crash(directory: Path, before: set[str]) -> set[str]:
    live = LiveIndex.open(directory, create=False)
    _consistent(live)
    items = set(live.items["item_id"])
    assert before <= items | {i for i in before if i.startswith("w") and i.endswith("_0")}
    # adds are all-or-nothing: a batch of five is either absent, or there with only its first removed
    batches: dict[str, int] = {}
    for item in items - {f"i{j}" for j in range(N)}:
        batches[item.split("_")[0]] = batches.get(item.split("_")[0], 0) + 1
    assert all(n in (4, 5) for n in batches.values()), batches
    # it still searches, and the next writer can go on from here
    query = live.index.reconstruct(int(live.items.index[-1]))
    assert _top(live, query)[0] == live.items["item_id"].iloc[-1]
    live.close()
    return items


@pytest.mark.slow
@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_kill_9_at_each_write_step_leaves_a_consistent_index(tmp_path, factory):
    directory = _built(tmp_path / "idx", factory)
    LiveIndex.open(directory).close()
    seen: set[str] = set()
    for point in ("before_commit", "after_commit", "snapshot_written", "snapshot_renamed"):
        assert _run_writer(point, directory) == -signal.SIGKILL
        seen = _check_after_crash(directory, seen)
    # and killed from outside at arbitrary moments
    for delay in (1.5, 2.3, 3.1):
        assert _run_writer("never", directory, kill_after=delay) == -signal.SIGKILL
        seen = _check_after_crash(directory, seen)
    assert len(seen) > N  # the writers did get work committed between the crashes


def test_concurrent_searches_during_writes_never_error(tmp_path):
    directory = _built(tmp_path / "idx", "HNSW16")
    writer = LiveIndex.open(directory)
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        reader = LiveIndex.open(directory, create=False)
        queries = _vectors(4, 99)
        try:
            while not done.is_set():
                gone = set(removed)  # committed before this refresh, so it must not come back after it
                reader.refresh()
                with reader.lock:
                    for q in queries:
                        hits = _top(reader, q, k=8)
                        assert len(hits) == 8 and len(set(hits)) == 8
                        assert not set(hits) & gone
        except BaseException as exc:
            errors.append(exc)
        finally:
            reader.close()

    removed: set[str] = set()
    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    rng = np.random.default_rng(4)
    for step in range(25):
        ids = [f"c{step}_{j}" for j in range(4)]
        writer.add(_rows(ids, rng), _vectors(4, 100 + step))
        victim = f"i{step}"
        writer.remove([victim])
        removed.add(victim)  # after the commit: a reader may have it only until its next refresh
        if step == 12:
            writer.compact()
    done.set()
    for t in threads:
        t.join(timeout=60)
    writer.close()
    assert not errors, errors[0]


def test_a_built_index_goes_live_once_and_keeps_its_files(tmp_path):
    directory = _built(tmp_path / "idx", "Flat")
    built = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    first = LiveIndex.open(directory)
    second = LiveIndex.open(directory)  # already live: opens, does not re-create
    first.add(_rows(["z"], np.random.default_rng(0)), _vectors(1, 0))
    assert second.refresh() and "z" in set(second.items["item_id"])
    assert {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()} == built
    index, items, _ = I.load_index_dir(directory)  # the built state still loads as it was
    assert index.ntotal == N and len(items) == N
    assert isinstance(faiss.downcast_index(first.index), faiss.IndexIDMap2)
    first.close()
    second.close()
