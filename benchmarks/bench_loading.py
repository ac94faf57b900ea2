"""Data loading: decoded-and-transformed images per second per worker vs what training consumes.

Images: synthetic 600x800 product photos at JPEG quality 90 (:mod:`benchmarks.photos`) and, when
present, the real 224x224 product JPEGs of ../shared/realdata. Everything goes through the project's
own code: :class:`~imgsearch.data.dataset.CatalogueDataset` (guarded ``load_image``) with the
EfficientNet-Lite0 timm transforms from :func:`~imgsearch.data.transforms.build_transforms`, and
:class:`~imgsearch.data.datamodule.CatalogueDataModule` loaders for the worker / persistent-worker
figures. The model side is a plain forward + backward + AdamW step of the project's
``ImageClassifier`` on batches already in memory: the rate a CPU run can consume.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

try:
    from benchmarks._common import command_for, goal, log, median_time, section, table
    from benchmarks.photos import catalogue_of, real_photos, write_photos
except ImportError:  # run as a script from benchmarks/
    from _common import command_for, goal, log, median_time, section, table
    from photos import catalogue_of, real_photos, write_photos

NAME = "loading"

CONFIGS: dict[str, dict[str, Any]] = {
    "smoke": {"n_images": 16, "n_real": 16, "batch_size": 4, "workers": [0, 1], "epochs": 2,
              "models": ["efficientnet_lite0"], "train_batch": 2, "train_steps": 1, "input_size": 64},
    "default": {"n_images": 192, "n_real": 384, "batch_size": 32, "workers": [0, 1, 2], "epochs": 3,
                "models": ["efficientnet_lite0", "resnet50"], "train_batch": 16, "train_steps": 3,
                "input_size": None},
}  # fmt: skip
CONFIGS["full"] = CONFIGS["default"]


def _classifier(backbone: str, input_size: int | None):
    from imgsearch.models.classifier import ImageClassifier

    return ImageClassifier(backbone, num_classes=10, pretrained=False, input_size=input_size, scheduler=None)


def per_image_rate(
    paths: list[Path], transform: Any, draft_size: tuple[int, int] | None, repeats: int
) -> float:
    """Images/s of ``CatalogueDataset.__getitem__`` (decode + transform) in one process: a worker's rate."""
    from imgsearch.data.dataset import CatalogueDataset

    ds = CatalogueDataset(catalogue_of(paths), {}, transform, draft_size=draft_size)

    def once() -> None:
        for i in range(len(ds)):
            ds[i]

    return len(ds) / median_time(once, repeats=repeats, warmup=1)


def loader_epochs(dm: Any, epochs: int) -> list[float]:
    """Seconds per epoch of ``dm.train_dataloader()`` (each epoch iterates a fresh iterator)."""
    loader = dm.train_dataloader()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for _batch in loader:
            pass
        times.append(time.perf_counter() - t0)
    return times


def train_rate(backbone: str, batch: int, steps: int, input_size: int | None) -> float:
    """Training images/s: forward + loss + backward + optimizer step on one in-memory batch."""
    model = _classifier(backbone, input_size).train()
    size = model.data_config["input_size"]
    x = torch.randn(batch, *size)
    y = torch.randint(0, 10, (batch,))
    opt = model.configure_optimizers()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = model.criterion(model(x), y)
        loss.backward()
        opt.step()

    return batch / median_time(step, repeats=steps, warmup=1)


def run(
    n_images: int, n_real: int, batch_size: int, workers: list[int], epochs: int, models: list[str],
    train_batch: int, train_steps: int, input_size: int | None, full: bool = False,
) -> dict[str, Any]:  # fmt: skip
    from imgsearch.data.datamodule import CatalogueDataModule
    from imgsearch.data.transforms import build_transforms, draft_size_for

    data_config = _classifier("efficientnet_lite0", input_size).data_config
    train_tf, eval_tf = build_transforms(data_config)
    draft = draft_size_for(data_config)
    repeats = 3
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="imgsearch-bench-") as tmp:
        log(f"loading: writing {n_images} 600x800 JPEGs")
        paths = write_photos(Path(tmp) / "photos", n_images)
        kib = statistics.median(p.stat().st_size for p in paths) / 1024
        sets = [("synthetic 600x800 q90", paths)]
        real = real_photos(n_real)
        if real:
            sets.append(("real 224x224 (fashion-product-images-small)", real))
        else:
            notes.append("The real 224 px JPEGs (../shared/realdata) were not found: their rows are missing.")

        rows, rates = [], {}
        for set_name, ps in sets:
            for tf_name, tf in (("eval", eval_tf), ("train (augmenting)", train_tf)):
                for mode, ds in (("full decode", None), ("draft decode", draft)):
                    log(f"loading: {set_name} {tf_name} {mode}")
                    r = per_image_rate(ps, tf, ds, repeats)
                    rates[(set_name, tf_name, mode)] = r
                    rows.append([set_name, tf_name, mode, round(r, 1), round(1e3 / r, 2)])
        per_image = table(
            "One worker: decode + transform images/s (CatalogueDataset.__getitem__ in one process)",
            ["images", "transform", "JPEG decoding", "images/s per worker", "ms / image"],
            rows,
            note=f"Synthetic files: median {kib:.0f} KiB. Draft decoding asks libjpeg for the smallest DCT "
            f"scale (1/2 .. 1/8) still >= {draft[0]}x{draft[1]} (draft_size_for the model's data config); "
            "224 px files are already that small, so draft changes nothing there.",
        )

        # DataLoader: workers, persistent workers (pinned memory needs a GPU: see notes)
        loader_rows = []
        cat = catalogue_of(paths)
        variants = [(w, False) for w in workers] + [(max(workers), True)]
        for w, persistent in variants:
            if persistent and w == 0:
                continue
            log(f"loading: DataLoader workers={w} persistent={persistent}")
            dm = CatalogueDataModule(
                cat, data_config, batch_size=batch_size, num_workers=w, persistent_workers=persistent,
                pin_memory=False, drop_last=False,
            )  # fmt: skip
            t = loader_epochs(dm, epochs)
            first, later = t[0], statistics.median(t[1:]) if len(t) > 1 else t[0]
            loader_rows.append(
                [w, "yes" if persistent else "no", round(n_images / first, 1), round(n_images / later, 1),
                 round(n_images / later / max(w, 1), 1)]
            )  # fmt: skip
        loader_table = table(
            f"DataLoader over {n_images} synthetic 600x800 JPEGs (train transform, draft decoding, "
            f"batch {batch_size}): images/s",
            ["workers", "persistent", "epoch 1", f"epochs 2-{epochs} (median)", "per worker"],
            loader_rows,
            note="Epoch 1 includes starting the worker processes; with persistent workers later epochs "
            "reuse them. On 2 cores, 2 workers compete with the main process for the same cores.",
        )

    # model consumption
    model_rows, consume = [], {}
    for m in models:
        log(f"loading: {m} training rate")
        r = train_rate(m, train_batch, train_steps, input_size)
        consume[m] = r
        model_rows.append([m, train_batch, round(r, 1)])
    model_table = table(
        f"What training consumes on this CPU (forward + backward + AdamW step, batch {train_batch}, "
        f"{torch.get_num_threads()} torch threads)",
        ["model", "batch", "training images/s"],
        model_rows,
    )

    syn = "synthetic 600x800 q90"
    worker_rate = rates[(syn, "train (augmenting)", "draft decode")]
    full_rate = rates[(syn, "train (augmenting)", "full decode")]
    ratio_rows = []
    for m, r in consume.items():
        ratio_rows.append(
            [m, round(worker_rate / r, 2), math.ceil(r / worker_rate), round(100 * r / worker_rate, 1),
             round(100 * r / full_rate, 1)]
        )  # fmt: skip
    ratio_table = table(
        "Loading vs training (synthetic 600x800, train transform)",
        ["model", "one worker / training rate", "workers to keep up",
         "CPU share spent loading, draft %", "same, full decode %"],
        ratio_rows,
        note="'CPU share spent loading': the fraction of one core's time decoding takes per trained image "
        "(training rate / per-worker rate). For a GPU: workers needed = GPU training images/s divided by the "
        "per-worker rate above (e.g. a GPU training at 1,000 images/s needs "
        f"{math.ceil(1000 / worker_rate)} workers of this CPU at {worker_rate:.0f} images/s each).",
    )  # fmt: skip

    goals = [
        goal(
            "loading is never the bottleneck of a CPU run (one worker outpaces training)",
            ", ".join(
                f"{m}: 1 worker = {worker_rate / r:.1f}x its training rate" for m, r in consume.items()
            ),
            all(worker_rate >= r for r in consume.values()),
        ),
        goal(
            "per-worker rate written down (draft decoding, train transform, 600x800 JPEG)",
            f"{worker_rate:.0f} images/s per worker (full decode: {full_rate:.0f})",
            True,
        ),
    ]
    if torch.cuda.is_available():
        notes.append("pin_memory was left off in these rows; see the GPU section for transfers.")
    else:
        notes.append(
            "Pinned memory was not measured: it only speeds up host-to-GPU copies, and without CUDA "
            "PyTorch ignores pin_memory=True. The datamodule pins by default when CUDA is available."
        )
    return section(
        NAME,
        "Data loading: images per second per worker vs training consumption",
        command_for(NAME, full),
        tables=[per_image, loader_table, model_table, ratio_table],
        goals=goals,
        notes=notes,
        extra={"worker_rate_draft": worker_rate, "worker_rate_full": full_rate, "train_rates": consume},
    )
