"""Config values are checked at start-up: each mistake is one line naming the key, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from imgsearch.cli.train import train
from imgsearch.utils.validate import EMBED_RULES, TRAIN_RULES, ConfigError, validate_config
from train_helpers import REPO, compose_train, tiny_overrides

pytestmark = pytest.mark.usefixtures("forget_hydra_config")


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.lr=abc", "model.lr='abc' must be a positive number"),
        ("data.loader.batch_size=0", "data.loader.batch_size=0 must be a positive integer"),
        ("data.loader.batch_size=-4", "data.loader.batch_size=-4 must be a positive integer"),
        ("trainer.max_epochs=-2", "trainer.max_epochs=-2 must be an integer >= 0, or -1"),
        ("data.prepare.split=[0.5,0.5,0.5]", "must be fractions summing to 1 (they sum to 1.5)"),
    ],
)
def test_bad_train_value_is_refused_before_anything_runs(demo_root, tmp_path, override, needle):
    cfg = compose_train([*tiny_overrides(demo_root), override], tmp_path / "run")
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run" / "catalogue.csv").exists()  # refused before the catalogue was built


def test_every_problem_is_listed_at_once():
    cfg = OmegaConf.create({"model": {"lr": "abc"}, "data": {"loader": {"batch_size": 0}}})
    with pytest.raises(ConfigError, match=r"model\.lr='abc'.*; data\.loader\.batch_size=0"):
        validate_config(cfg, TRAIN_RULES)


def test_good_values_and_absent_keys_pass():
    validate_config(OmegaConf.create({"model": {"lr": 1e-3}, "trainer": {"max_epochs": -1}}), TRAIN_RULES)
    with pytest.raises(ConfigError, match="search_batch_size=0"):
        validate_config(OmegaConf.create({"embed": {"batch_size": 8}, "search_batch_size": 0}), EMBED_RULES)


def test_train_cli_prints_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "imgsearch.cli.train", "model.lr=abc", f"hydra.run.dir={tmp_path}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "invalid config: model.lr='abc' must be a positive number, e.g. 1e-3"
    )


def test_index_cli_refuses_a_zero_batch_size_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "imgsearch.cli.index", "embed.batch_size=0", f"hydra.run.dir={tmp_path}"],
        cwd=Path(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "embed.batch_size=0 must be a positive integer" in proc.stderr.strip().splitlines()[-1]
