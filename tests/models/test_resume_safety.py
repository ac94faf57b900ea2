"""Resuming reads ``last.ckpt`` like any other checkpoint: weights only, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imgsearch.models.checkpoint import CheckpointError, read_resume_checkpoint

REPO = Path(__file__).resolve().parents[2]


class _RunsCodeWhenUnpickled:
    """Unpickling calls ``open(marker, "w")``: proof that a full pickle load ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCodeWhenUnpickled(marker)}, path)
    return path, marker


def test_malicious_checkpoint_is_refused_even_when_the_environment_forces_full_loads(tmp_path, monkeypatch):
    path, marker = _malicious_checkpoint(tmp_path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="objects other than weights") as info:
        read_resume_checkpoint(path)
    assert not marker.exists()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "the file is empty"), (b"\x00garbage" * 50, "not a readable checkpoint")],
)
def test_corrupt_resume_checkpoint_is_one_line_naming_the_file(tmp_path, content, match):
    path = tmp_path / "last.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as info:
        read_resume_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "ckpt_path=" in message and "\n" not in message


def test_missing_resume_checkpoint_names_the_option(tmp_path):
    with pytest.raises(CheckpointError, match="not found; check ckpt_path="):
        read_resume_checkpoint(tmp_path / "nope.ckpt")


def test_train_cli_refuses_a_malicious_last_ckpt_in_one_line(tmp_path):
    path, marker = _malicious_checkpoint(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "imgsearch.cli.train",
            f"ckpt_path={path}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert not marker.exists()
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "cannot resume" in line]
    assert len(lines) == 1 and str(path) in lines[0]
