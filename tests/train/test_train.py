"""imgsearch-train in-process: run files, checkpoints, resume, debug preset, config composition."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from imgsearch.cli.train import _check_multirun_ddp, train
from imgsearch.data.schema import read_catalogue
from imgsearch.utils.callbacks import ChannelsLast
from imgsearch.utils.config import config_dir
from train_helpers import REPO, compose_train, read_metrics, tiny_overrides

# every test here composes Hydra configs, which set its global run config
pytestmark = pytest.mark.usefixtures("forget_hydra_config")


@pytest.fixture(scope="module")
def smoke_run(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    record = train(compose_train(tiny_overrides(demo_root), run_dir))
    return run_dir, record


def test_smoke_run_writes_catalogue_checkpoints_and_metrics(smoke_run: tuple[Path, dict]) -> None:
    run_dir, record = smoke_run
    metrics = read_metrics(run_dir)
    assert metrics == record
    for key in ("train/loss", "val/acc", "test/acc", "test/acc_top5", "test/f1_macro"):
        assert 0.0 <= metrics[key] <= (1.0 if "acc" in key or "f1" in key else 100.0), key
    assert metrics["global_step"] == 2  # trainer=smoke: 2 training batches, 1 epoch
    assert metrics["optimized_metric"] == {"name": "val/acc", "value": metrics["val/acc_best"]}

    best = Path(metrics["best_checkpoint"])
    assert best.is_file() and best.parent == run_dir / "checkpoints"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert Path(metrics["last_checkpoint"]) == run_dir / "checkpoints" / "last.ckpt"

    catalogue = read_catalogue(run_dir / "catalogue.csv")
    assert set(catalogue["split"]) == {"train", "val", "test"}
    assert (run_dir / "skipped.json").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert (run_dir / "csv" / "confusion_matrix.png").stat().st_size > 0

    # the checkpoint rebuilds the model on its own: plain hyperparameters, classes of this catalogue
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["class_names"] == sorted(catalogue["label"].unique())
    assert hp["num_classes"] == metrics["num_classes"] == catalogue["label"].nunique()
    assert hp["backbone"] == "svm" and list(hp["data_config"]["input_size"]) == [3, 32, 32]


def test_metrics_match_what_the_logger_recorded(smoke_run: tuple[Path, dict]) -> None:
    run_dir, record = smoke_run
    logged = pd.read_csv(run_dir / "csv" / "metrics.csv")
    test_acc = logged["test/acc"].dropna()
    assert len(test_acc) == 1 and test_acc.iloc[0] == pytest.approx(record["test/acc"])
    val_acc = logged["val/acc"].dropna()
    assert val_acc.iloc[-1] == pytest.approx(record["val/acc"])
    assert max(val_acc) == pytest.approx(record["val/acc_best"])


def test_resume_continues_step_count_optimizer_and_schedule(
    smoke_run: tuple[Path, dict], demo_root: Path, tmp_path: Path
) -> None:
    run_dir, first = smoke_run
    last = run_dir / "checkpoints" / "last.ckpt"
    before = torch.load(last, map_location="cpu", weights_only=True)
    assert before["global_step"] == 2
    resumed_dir = tmp_path / "resumed"
    cfg = compose_train(
        [*tiny_overrides(demo_root), f"ckpt_path={last}", "trainer.max_epochs=2"], resumed_dir
    )
    record = train(cfg)
    assert record["global_step"] == 4  # 2 more steps on top of the 2 already taken
    assert record["epoch"] == 2
    after = torch.load(resumed_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert after["global_step"] == 4 and after["epoch"] == 1
    # SGD momentum buffers were restored and kept updating (not restarted from zero)
    buf_before = before["optimizer_states"][0]["state"][0]["momentum_buffer"]
    buf_after = after["optimizer_states"][0]["state"][0]["momentum_buffer"]
    assert buf_before.abs().sum() > 0 and not torch.equal(buf_before, buf_after)
    assert first["global_step"] == 2


def test_resume_restores_lr_schedule(demo_root: Path, tmp_path: Path) -> None:
    over = [
        *tiny_overrides(demo_root),
        "model.scheduler=cosine",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=1",
    ]
    # a 3-epoch run stopped after its first epoch, then resumed
    first = train(compose_train([*over, "trainer.max_steps=1"], tmp_path / "a"))
    ckpt = Path(first["last_checkpoint"])
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["lr_schedulers"][0]
    assert state["last_epoch"] == 1 and state["T_max"] == 3
    second = train(compose_train([*over, f"ckpt_path={ckpt}"], tmp_path / "b"))
    straight = train(compose_train(over, tmp_path / "c"))  # the same run, never interrupted
    assert second["global_step"] == straight["global_step"] == 3
    resumed = torch.load(Path(second["last_checkpoint"]), map_location="cpu", weights_only=True)[
        "lr_schedulers"
    ][0]
    reference = torch.load(Path(straight["last_checkpoint"]), map_location="cpu", weights_only=True)[
        "lr_schedulers"
    ][0]
    assert resumed["last_epoch"] == reference["last_epoch"] > state["last_epoch"]
    assert resumed["T_max"] == 3  # one cosine schedule over the whole resumed run, not a new one
    assert resumed["_last_lr"] == pytest.approx(reference["_last_lr"])
    assert resumed["_last_lr"][0] < state["_last_lr"][0]  # the learning rate kept decaying


def test_fast_dev_run_without_checkpoints_still_reports(demo_root: Path, tmp_path: Path) -> None:
    record = train(compose_train([*tiny_overrides(demo_root), "debug=fdr"], tmp_path / "fdr"))
    assert record["best_checkpoint"] is None
    assert 0.0 <= record["test/acc"] <= 1.0
    assert read_metrics(tmp_path / "fdr")["test/acc"] == record["test/acc"]


def test_train_false_tests_a_given_checkpoint(
    smoke_run: tuple[Path, dict], demo_root: Path, tmp_path: Path
) -> None:
    _, first = smoke_run
    over = [*tiny_overrides(demo_root), "train=false", f"ckpt_path={first['best_checkpoint']}"]
    record = train(compose_train(over, tmp_path / "eval"))
    assert record["test/acc"] == pytest.approx(first["test/acc"])  # same weights, same test split


def test_multirun_with_spawned_ddp_is_refused(demo_root: Path, tmp_path: Path, monkeypatch) -> None:
    for var in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    over = [*tiny_overrides(demo_root), "trainer=ddp", "trainer.devices=2", "hydra.mode=MULTIRUN"]
    cfg = compose_train(over, tmp_path / "x")
    with pytest.raises(RuntimeError, match="torchrun or SLURM"):
        _check_multirun_ddp(cfg)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")  # torchrun starts the ranks itself: fine
    _check_multirun_ddp(cfg)


def test_every_documented_config_composes() -> None:
    groups = {
        "data": ["demo", "farfetch", "amazon", "csv", "fashion_small"],
        "model": ["svm", "alexnet", "vgg16", "vgg16_bn", "resnet50", "inception_v3", "efficientnet_lite0"],
        "trainer": ["default", "cpu", "gpu", "ddp", "smoke"],
        "logger": ["csv", "wandb", "tensorboard", "none"],
        "debug": ["default", "fdr", "overfit", "limit", "profiler"],
        # every experiment file, so a new recipe cannot ship without composing
        "experiment": sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml")),
    }
    assert {"amazon_vgg16", "farfetch_resnet50", "demo", "demo_products", "luma_supcon"} <= set(
        groups["experiment"]
    )
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for group, options in groups.items():
            for option in options:
                cfg = compose(config_name="train", overrides=[f"{group}={option}"])
                assert cfg.model._target_ == "imgsearch.models.classifier.ImageClassifier"
                assert "_target_" in cfg.data.source and "loader" in cfg.data
        gpu = compose(config_name="train", overrides=["trainer=gpu"])
        assert gpu.trainer.precision == "bf16-mixed" and "channels_last" in gpu.callbacks
        vgg = compose(config_name="train", overrides=["experiment=amazon_vgg16"])
        assert (vgg.data.loader.batch_size, vgg.model.lr, vgg.model.weight_decay, vgg.model.dropout) == (
            100,
            7e-4,
            1e-2,
            0.5,
        )
        alex = compose(config_name="train", overrides=["experiment=amazon_alexnet"])
        assert (alex.data.loader.batch_size, alex.model.lr, alex.model.weight_decay, alex.model.dropout) == (
            128,
            1e-5,
            1e-2,
            0.5,
        )
        products = compose(config_name="train", overrides=["experiment=demo_products"])
        assert (products.labels, products.model.metric_loss, products.data.source.products_per_class) == (
            "product",
            "supcon",
            100,
        )
        # the demo's own settings underneath, and a folder of its own beside the default demo's
        assert products.model.backbone == "efficientnet_lite0" and products.model.finetune == "last_n"
        assert Path(products.data.source.root).name == "demo_products"
        # the val-chosen recipe of docs/results.md: EMA on top of the last 4 stages, batches of 64
        assert (
            products.callbacks.ema.decay,
            products.model.finetune_last_n,
            products.data.loader.batch_size,
        ) == (
            0.95,
            4,
            64,
        )
        svm = compose(config_name="train", overrides=["experiment=amazon_svm"])
        assert (svm.model.backbone, svm.model.lr, svm.model.weight_decay, svm.model.loss) == (
            "svm",
            5e-4,
            1e-3,
            "hinge",
        )
        assert (
            compose(config_name="train", overrides=["data=fashion_small"]).data.source.label_column
            == "articleType"
        )
        optuna = compose(config_name="train", overrides=["hparams_search=optuna"], return_hydra_config=True)
        assert optuna.hydra.sweeper.direction == "maximize"
        assert (
            "early_stopping"
            in compose(config_name="train", overrides=["callbacks=[default,early_stopping]"]).callbacks
        )


def test_paths_resolve_to_the_repository(tmp_path: Path) -> None:
    cfg = compose_train([], tmp_path / "p")
    assert Path(cfg.paths.root_dir).resolve() == REPO
    assert Path(cfg.paths.data_dir).resolve() == REPO / "data"
    # normpath, not resolve: ../shared may itself be a symbolic link to elsewhere
    assert Path(os.path.normpath(cfg.paths.shared_dir)) == REPO.parent / "shared"


def test_channels_last_callback_converts_convolutions() -> None:
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    ChannelsLast().setup(None, module, "fit")  # type: ignore[arg-type]
    assert module[0].weight.is_contiguous(memory_format=torch.channels_last)
