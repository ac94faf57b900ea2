"""imgsearch-train end to end: multirun, Optuna sweep, DDP on CPU, offline W&B, a real short training.

The CLI tests run ``python -m imgsearch.cli.train`` in a subprocess, exactly as a user would.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import yaml

from imgsearch.cli.train import train
from imgsearch.utils.tracking import wandb_offline
from train_helpers import (
    compose_train,
    read_metrics,
    run_cli,
    tiny_overrides,
    wandb_history,
)

# every test here composes Hydra configs, which set its global run config
pytestmark = pytest.mark.usefixtures("forget_hydra_config")


def _job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )


@pytest.mark.slow
def test_two_model_multirun_gives_one_output_dir_per_job(demo_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    over = [o for o in tiny_overrides(demo_root) if not o.startswith("model=")]
    # with W&B on: each job must open (and finish) its own run, or the second job fails
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_API_KEY": ""}
    run_cli(
        [
            "-m",
            "model=svm,efficientnet_lite0",
            "model.input_size=48",
            "logger=[csv,wandb]",
            *over,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env=env,
    )
    jobs = _job_dirs(sweep)
    assert [p.name for p in jobs] == ["0", "1"]
    backbones = []
    for job in jobs:
        metrics = read_metrics(job)
        assert Path(metrics["run_dir"]) == job
        assert 0.0 <= metrics["test/acc"] <= 1.0
        assert Path(metrics["best_checkpoint"]).parent == job / "checkpoints"
        assert (job / "catalogue.csv").is_file() and (job / ".hydra" / "config.yaml").is_file()
        ckpt = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)
        backbones.append(ckpt["hyper_parameters"]["backbone"])
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert f"model={backbones[-1]}" in overrides
    assert backbones == ["svm", "efficientnet_lite0"]
    wandb_runs = [list((job / "wandb").glob("offline-run-*")) for job in jobs]
    assert [len(r) for r in wandb_runs] == [1, 1]
    assert wandb_runs[0][0].name.rsplit("-", 1)[1] != wandb_runs[1][0].name.rsplit("-", 1)[1]


@pytest.mark.slow
def test_optuna_sweep_runs_trials_and_reports_the_best(demo_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    run_cli(
        [
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            *tiny_overrides(demo_root),
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    jobs = _job_dirs(sweep)
    assert len(jobs) == 2
    values = [read_metrics(j)["optimized_metric"]["value"] for j in jobs]
    lrs = [yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["model"]["lr"] for j in jobs]
    assert lrs[0] != lrs[1]  # the sampler really proposed different trials
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs)
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(values))
    assert set(results["best_params"]) >= {"model.lr", "model.weight_decay", "model.dropout"}


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_metrics_file(demo_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    over = [o for o in tiny_overrides(demo_root) if not o.startswith("trainer=")]
    out = run_cli(
        [
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
            "trainer.num_sanity_val_steps=0",
            *over,
            f"hydra.run.dir={run_dir}",
            f"paths.log_dir={tmp_path / 'outputs'}",
        ],
        cwd=tmp_path,
    )
    assert "world_size=2" in out or "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out
    # rank 1 ran in the same run directory (its own log file) and did not start a second run
    assert (run_dir / "train_ddp_process_1.log").is_file()
    assert not (tmp_path / "outputs").exists()  # no rank opened a run directory of its own
    metrics_files = list(tmp_path.rglob("metrics.json"))
    assert metrics_files == [run_dir / "metrics.json"]
    metrics = read_metrics(run_dir)
    # each rank takes 2 batches: the global step counts optimizer steps, the same on every rank
    assert metrics["global_step"] == 2
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "wrote" in (run_dir / "train.log").read_text()
    assert "metrics.json" not in (run_dir / "train_ddp_process_1.log").read_text()


def test_wandb_is_offline_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_offline() is True
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_offline() is False
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_offline() is False  # wandb reads WANDB_MODE itself


@pytest.mark.slow
def test_offline_wandb_run_holds_the_logged_metrics(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT", "WANDB_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "wb"
    record = train(compose_train([*tiny_overrides(demo_root), "logger=wandb"], run_dir))
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((run_dir / "wandb").iterdir())
    run = runs[0]
    assert list(run.glob("*.wandb")), "no .wandb log to sync"
    # wandb-core writes the log from its own process: give it a moment to flush the last records
    deadline = time.monotonic() + 60
    while True:
        rows, config, kinds = wandb_history(next(run.glob("run-*.wandb")))
        logged = {k: v for row in rows for k, v in row.items()}  # the last value of every key
        if ("exit" in kinds and "test/acc" in logged) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert logged["test/acc"] == pytest.approx(record["test/acc"])
    assert logged["val/acc"] == pytest.approx(record["val/acc"])
    assert logged["trainer/global_step"] == record["global_step"]
    assert config["model"]["backbone"] == "svm" and config["seed"] == 42  # the run config went to W&B
    assert config["class_names"] == sorted(config["class_names"]) and len(config["class_names"]) == 12
    assert "exit" in kinds  # the run was closed properly
    media = {p.name.split("_")[0] for p in (run / "files" / "media" / "images" / "test").glob("*.png")}
    assert {"confusion", "samples"} <= media  # confusion matrix and sample predictions
    import wandb

    assert wandb.run is None  # finished, so the next job of a sweep opens its own run


@pytest.mark.slow
def test_short_real_training_beats_chance(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    over = [
        "experiment=demo",
        f"data.source.root={root}",
        "data.source.products_per_class=6",
        "data.source.image_size=64",
        "data.loader.num_workers=0",
        "data.loader.batch_size=16",
        "model.input_size=64",
        # a linear probe on the packaged ImageNet features: depthwise-conv backward is slow on CPU
        "model.finetune=head",
        "model.lr=5e-3",
        "trainer.max_epochs=3",
        "trainer.num_sanity_val_steps=0",
    ]
    record = train(compose_train(over, tmp_path / "real"))
    chance = 1.0 / record["num_classes"]
    assert record["num_classes"] >= 10
    assert record["val/acc_best"] > 3 * chance, record
    assert record["test/acc"] > 2 * chance, record
