"""Shared set-up of the training tests: a tiny demo catalogue, the Hydra overrides that use it, and saving a
model as training does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from imgsearch.utils.config import config_dir

REPO = Path(__file__).resolve().parents[1]

# 4 products a class at 48 px: ~100 images, enough for every split, seconds to generate.
DEMO_PRODUCTS = 4
DEMO_SIZE = 48


def tiny_overrides(demo_root: Path, *, model: str = "svm") -> list[str]:
    return [
        "trainer=smoke",
        f"model={model}",
        f"data.source.root={demo_root}",
        f"data.source.products_per_class={DEMO_PRODUCTS}",
        f"data.source.image_size={DEMO_SIZE}",
        "data.loader.num_workers=0",
        "data.loader.batch_size=8",
        "data.prepare.split=[0.5,0.25,0.25]",
    ]


def compose_train(overrides: list[str], run_dir: Path) -> DictConfig:
    """The composed ``train.yaml`` as ``imgsearch-train`` would see it, writing into ``run_dir``."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[*overrides, f"paths.output_dir={run_dir}", f"paths.log_dir={run_dir.parent}"],
            return_hydra_config=True,
        )
    HydraConfig().set_config(cfg)  # so ${hydra:...} interpolations resolve as in a real run
    return cfg


def run_cli(args: list[str], cwd: Path, timeout: int = 600, env: dict[str, str] | None = None) -> str:
    """Run ``python -m imgsearch.cli.train <args>``; fail with its output when it fails."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "imgsearch.cli.train", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, (
        f"imgsearch.cli.train {' '.join(args)} failed ({proc.returncode}):\n{out[-6000:]}"
    )
    return out


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def wandb_history(run_file: Path) -> tuple[list[dict[str, Any]], dict[str, Any], set[str]]:
    """Read an offline W&B run log (``run-<id>.wandb``): ``(history rows, config, record kinds)``.

    wandb >= 0.19 dropped its Python reader; the file is a LevelDB-style log (7-byte ``:W&B``
    header, 32 KiB blocks, records ``crc32 | length | type`` + protobuf ``Record``).
    """
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run log"
    pos, block, buf = 7, 32768, b""
    rows: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    kinds: set[str] = set()
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):  # full / first fragment
            buf = chunk
        else:  # middle / last fragment
            buf += chunk
        if kind in (2, 3):
            continue
        record = pb.Record()
        record.ParseFromString(buf)
        which = record.WhichOneof("record_type")
        kinds.add(which)
        if which == "history":
            rows.append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
        elif which == "config":
            for i in record.config.update:
                config[i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
    return rows, config, kinds


def save_checkpoint(model: Any, path: Path) -> Path:
    """Save ``model`` the way training does (Lightning checkpoint with its hyperparameters)."""
    import lightning as L

    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.strategy.connect(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path
