"""cli/inputs.py: one resolution of checkpoint / run / catalogue for every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from imgsearch.cli.inputs import (
    InputError,
    checkpoint_of_run,
    embed_kwargs,
    resolve_checkpoint,
    resolve_inputs,
    resume_checkpoint,
)


def _run(root: Path, name: str, *, best: str | None = "epoch_001.ckpt", mtime: float = 0.0) -> Path:
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"last")
    if best:
        (run / "checkpoints" / best).write_bytes(b"best")
    (run / "metrics.json").write_text(
        json.dumps({"best_checkpoint": str(run / "checkpoints" / best) if best else None})
    )
    (run / "catalogue.csv").write_text("item_id\n")
    os.utime(run / "metrics.json", (mtime, mtime))
    return run


def test_run_directory_best_and_last(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1")
    assert checkpoint_of_run(run, "best") == run / "checkpoints" / "epoch_001.ckpt"
    assert checkpoint_of_run(run, "last") == run / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(str(run)) == run / "checkpoints" / "epoch_001.ckpt"  # a run dir means best
    assert resolve_checkpoint("last", str(run)) == run / "checkpoints" / "last.ckpt"


def test_best_of_the_newest_run(tmp_path: Path) -> None:
    _run(tmp_path, "old", mtime=1_000)
    new = _run(tmp_path, "new", best="epoch_007.ckpt", mtime=2_000)
    assert resolve_checkpoint("best", runs_root=tmp_path) == new / "checkpoints" / "epoch_007.ckpt"
    with pytest.raises(InputError, match="no finished training run"):
        resolve_checkpoint("best", runs_root=tmp_path / "nothing")


def test_moved_run_still_finds_its_best(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1")
    moved = tmp_path / "elsewhere"
    run.rename(moved)  # metrics.json still names the old absolute path
    assert checkpoint_of_run(moved, "best") == moved / "checkpoints" / "epoch_001.ckpt"


def test_run_without_best_falls_back_to_last_and_bad_choice_refused(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1", best=None)
    assert checkpoint_of_run(run, "best") == run / "checkpoints" / "last.ckpt"
    with pytest.raises(InputError, match="one of"):
        checkpoint_of_run(run, "newest")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        resolve_checkpoint(str(tmp_path / "missing.ckpt"))
    assert resolve_checkpoint(None) is None and resolve_checkpoint("null") is None


def test_resolve_inputs_and_the_train_alias(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1")
    cfg = OmegaConf.create({"checkpoint": str(run), "catalogue": None, "run": None})
    ckpt, catalogue, run_dir = resolve_inputs(cfg)
    assert (ckpt, catalogue, run_dir) == (run / "checkpoints" / "epoch_001.ckpt", run / "catalogue.csv", run)
    last = str(run / "checkpoints" / "last.ckpt")
    assert resume_checkpoint(OmegaConf.create({"checkpoint": None, "ckpt_path": last})) == Path(last)
    with pytest.raises(InputError, match="disagree"):
        resume_checkpoint(OmegaConf.create({"checkpoint": str(run), "ckpt_path": last}))


def test_embed_group_becomes_embed_catalogue_kwargs() -> None:
    cfg = OmegaConf.create(
        {"embed": {"batch_size": 8, "num_workers": 0, "pixel_size": 32, "trainer": {"devices": 1}}}
    )
    assert embed_kwargs(cfg) == {
        "batch_size": 8,
        "num_workers": 0,
        "pixel_size": 32,
        "trainer_kwargs": {"devices": 1},
    }


@pytest.mark.parametrize(
    ("module", "wanted", "refused"),
    [
        ("index", ["embed", "model", "data"], ["logger", "trainer"]),
        ("evaluate", ["embed", "logger"], ["model", "data"]),
    ],
)
def test_help_lists_only_the_groups_a_command_takes(
    module: str, wanted: list[str], refused: list[str]
) -> None:
    out = subprocess.run([sys.executable, "-m", f"imgsearch.cli.{module}", "--help"],
                         capture_output=True, text=True, timeout=120, check=True).stdout  # fmt: skip
    groups = out.split("== Configuration groups ==")[1].split("== Config ==")[0]
    names = {line.split(":")[0].strip() for line in groups.splitlines() if ":" in line}
    assert set(wanted) <= names and not (set(refused) & names), groups


def test_index_command_without_a_model_is_one_line(tmp_path):
    (tmp_path / "c.csv").write_text("item_id\n")
    cmd = [
        sys.executable,
        "-m",
        "imgsearch.cli.index",
        f"catalogue={tmp_path / 'c.csv'}",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "needs a model: checkpoint=" in proc.stderr.strip().splitlines()[-1]
