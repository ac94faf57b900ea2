"""Index build of the shared real photos through each runtime: torch, onnx (FP32) and onnx-int8, one run.

What ``imgsearch-index model=efficientnet_lite0`` runs (:func:`imgsearch.retrieval.embed.embed_catalogue` of
the whole table, pretrained Lite0, no training) on the 4,863 Myntra photos of ``../shared/realdata``, once per
runtime: wall time of each (the ONNX rows include exporting and checking the graph, the INT8 row calibrating
and quantising it), the largest cosine distance of each runtime's vectors from PyTorch's, and retrieval
MAP@R by leave-one-out over the same vectors (relevant = same articleType). A second table: the bare
forward rate of the FP32 and INT8 graphs at 128 px, batch 16, on the same photos, in the same run.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np
import torch

try:
    from benchmarks._common import SHARED_REALDATA, command_for, goal, log, section, table
except ImportError:  # run as a script from benchmarks/
    from _common import SHARED_REALDATA, command_for, goal, log, section, table

NAME = "runtime_build"
FASHION = SHARED_REALDATA / "fashion-product-images-small"
#: INT8 becomes more than an option only if its MAP@R is within this of FP32's (issue #16).
MAP_TOLERANCE = 0.005

CONFIGS: dict[str, dict[str, Any]] = {
    "smoke": {"n_images": 48, "input_size": 64, "batch_size": 16, "seconds": 1.0, "threads": 2},
    "default": {"n_images": None, "input_size": 128, "batch_size": 32, "seconds": 10.0, "threads": 2},
}
CONFIGS["full"] = CONFIGS["default"]


def real_catalogue(n_images: int | None) -> Any:
    """The shared photos as a catalogue (label = articleType); ``None`` when the folder is absent."""
    from imgsearch.data.readers.generic import read_csv_catalogue

    path = FASHION / "styles_subset_joined.derived.csv"
    if not path.is_file():
        return None
    df = read_csv_catalogue(path, FASHION / "images", image_column="id", label_column="articleType")
    return df if n_images is None else df.head(int(n_images)).reset_index(drop=True)


def _rate(fn: Any, images: np.ndarray, seconds: float) -> float:
    fn(images)  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(images)
        n += len(images)
    return n / (time.perf_counter() - start)


def run(
    n_images: int | None, input_size: int, batch_size: int, seconds: float, threads: int, full: bool = False
) -> dict[str, Any]:
    import os

    from imgsearch.models.export import CACHE_ENV, min_cosine
    from imgsearch.models.pretrained import PretrainedEmbedder
    from imgsearch.retrieval.embed import embed_catalogue
    from imgsearch.retrieval.leave_one_out import leave_one_out_scores

    command = command_for(NAME)
    df = real_catalogue(n_images)
    if df is None:
        return section(NAME, "Index build through each runtime", command, skipped=f"{FASHION} not found")
    torch.set_num_threads(threads)
    title = f"Index build of the real photos ({len(df):,}) through each runtime: torch, onnx, onnx-int8"
    kw = {"num_workers": 0, "trainer_kwargs": {"accelerator": "cpu"}, "batch_size": batch_size}
    rows, out, seconds_of, maps = [], {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="imgsearch-onnx-bench-") as cache:
        before = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = cache  # a cold cache: the ONNX rows pay their export, like a first build
        try:
            model = PretrainedEmbedder("efficientnet_lite0", input_size=input_size)
            for runtime in ("torch", "onnx", "onnx-int8"):
                log(f"{NAME}: embedding {len(df)} photos with runtime={runtime}")
                t0 = time.perf_counter()
                emb = embed_catalogue(model, df, runtime=runtime, **kw)
                seconds_of[runtime] = time.perf_counter() - t0
                out[runtime] = emb
            from imgsearch.models.export import onnx_embedder_for
            from imgsearch.models.quantize import int8_embedder_for

            fp32 = onnx_embedder_for(model, None, threads=threads)
            int8 = int8_embedder_for(fp32, None, threads=threads)  # the graph the build quantised
        finally:
            if before is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = before
        ref = out["torch"]
        labels = df.iloc[ref.rows]["label"].to_numpy()
        for runtime, emb in out.items():
            same_rows = bool(np.array_equal(emb.rows, ref.rows))
            worst = min_cosine(emb["features"], ref["features"]) if same_rows else float("nan")
            maps[runtime] = leave_one_out_scores(emb["features"], labels)["MAP@R"]
            wall = seconds_of[runtime]
            rows.append([
                runtime, len(emb), round(wall, 1), round(len(emb) / wall, 1),
                round(seconds_of["torch"] / wall, 2), f"{1.0 - worst:.2e}", round(maps[runtime], 4),
            ])  # fmt: skip
        # the bare forward of both graphs on one batch of these photos (already preprocessed)
        from imgsearch.models.quantize import calibration_batches

        batch = np.concatenate(calibration_batches([fp32_batch(model, df, batch_size=16)], limit=16))
        fp32_rate = _rate(fp32, batch, seconds)
        int8_rate = _rate(int8, batch, seconds)
    forward = [
        ["onnx (FP32)", input_size, len(batch), round(fp32_rate, 1), 1.0],
        ["onnx-int8", input_size, len(batch), round(int8_rate, 1), round(int8_rate / fp32_rate, 2)],
    ]
    drop = maps["onnx"] - maps["onnx-int8"]
    goals = [
        goal(
            "onnx build gives PyTorch's vectors (max cosine distance <= 1e-4)",
            rows[1][5], (1.0 - min_cosine(out["onnx"]["features"], ref["features"])) <= 1e-4,
        ),
        goal(
            f"INT8 MAP@R within {MAP_TOLERANCE} of FP32 (else runtime=onnx-int8 stays an option)",
            f"FP32 {maps['onnx']:.4f}, INT8 {maps['onnx-int8']:.4f} (drop {drop:+.4f})",
            drop <= MAP_TOLERANCE,
        ),
    ]  # fmt: skip
    return section(
        NAME, title, command,
        tables=[
            table(
                f"embed_catalogue of the photos, pretrained efficientnet_lite0 at {input_size} px, batch "
                f"{batch_size}, {threads} torch threads",
                ["runtime", "vectors", "wall s", "img/s", "x torch", "max cosine distance to torch",
                 "MAP@R (leave-one-out, articleType)"],
                rows,
                note="wall s: the whole call, decoding included; the onnx rows export and check the graph "
                "first (cold cache), the onnx-int8 row also calibrates on the first 64 photos and quantises. "
                "MAP@R: every photo queries all others over these vectors; duplicate listings are kept.",
            ),
            table(
                "Bare forward of the exported graph, FP32 vs INT8 (one batch of the real photos)",
                ["graph", "px", "batch", "img/s", "x FP32"], forward,
            ),
        ],
        goals=goals,
        extra={"map_at_r": maps, "seconds": seconds_of},
    )  # fmt: skip


def fp32_batch(model: Any, df: Any, batch_size: int) -> torch.Tensor:
    """The first ``batch_size`` photos, decoded and preprocessed as the index build does."""
    from imgsearch.data.images import load_image
    from imgsearch.data.transforms import eval_transform

    transform = eval_transform(model.data_config)
    return torch.stack([transform(load_image(p)) for p in df["image_path"].head(batch_size)])


if __name__ == "__main__":
    import json

    print(json.dumps(run(**CONFIGS["default"]), indent=1, default=str))
