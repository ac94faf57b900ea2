"""Embedding runtime: PyTorch eager against the checked ONNX Runtime export, same model, same run.

    PYTHONPATH=src python -m benchmarks.bench_runtime --threads 2 --size 128 --batch 16

Prints images/s of each and the ratio, and the least cosine between their vectors (the export is only used
when it is >= 0.9999). A ratio, not a timed test: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

NAME = "runtime"
CONFIGS: dict[str, dict] = {
    "smoke": {"backbone": "efficientnet_lite0", "sizes": [64], "batch": 4, "threads": 2, "seconds": 0.5},
    "default": {"backbone": "efficientnet_lite0", "sizes": [128], "batch": 16, "threads": 2, "seconds": 10.0},
}
CONFIGS["full"] = CONFIGS["default"]


def _rate(fn, images, seconds: float) -> float:
    fn(images)  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(images)
        n += images.shape[0]
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from imgsearch.models.classifier import ImageClassifier
    from imgsearch.models.export import min_cosine, onnx_embedder_for

    model = ImageClassifier(
        backbone=args.backbone, num_classes=2, pretrained=True, input_size=args.size
    ).eval()
    with tempfile.TemporaryDirectory() as tmp:
        onnx = onnx_embedder_for(model, None, cache_dir=tmp, threads=args.threads)
        images = torch.randn(args.batch, 3, args.size, args.size)
        with torch.inference_mode():
            eager = _rate(lambda x: model.backbone(x), images, args.seconds)
            ref = model.backbone(images).numpy()
        ort = _rate(onnx, images, args.seconds)
        cosine = min_cosine(onnx(images)["features"], ref)
    out = {
        "backbone": args.backbone, "size": args.size, "batch": args.batch, "threads": args.threads,
        "torch_eager_img_s": round(eager, 1), "onnxruntime_img_s": round(ort, 1),
        "ratio": round(ort / eager, 2), "min_cosine": round(cosine, 6),
    }  # fmt: skip
    print(json.dumps(out))
    return out


def run(
    backbone: str, sizes: list[int], batch: int, threads: int, seconds: float, full: bool = False
) -> dict:
    """The suite's section (``benchmarks/run.py --only runtime``): one row per input size."""
    try:
        from benchmarks._common import command_for, goal, section, table
    except ImportError:  # run as a script from benchmarks/
        from _common import command_for, goal, section, table

    rows, goals = [], []
    for size in sizes:
        argv = ["--backbone", backbone, "--size", str(size), "--batch", str(batch), "--threads", str(threads),
                "--seconds", str(seconds)]  # fmt: skip
        r = main(argv)
        rows.append([size, batch, threads, r["torch_eager_img_s"], r["onnxruntime_img_s"], r["ratio"],
                     r["min_cosine"]])  # fmt: skip
        if size == 128 and batch == 16:
            goals.append(goal("ONNX Runtime >= 3x PyTorch eager at 128 px, batch 16", f"{r['ratio']}x",
                              r["ratio"] >= 3.0))  # fmt: skip
    return section(
        NAME, f"Embedding runtime: PyTorch eager vs ONNX Runtime ({backbone}, pretrained)", command_for(NAME),
        tables=[table("images/s of the bare forward, same model, same run",
                      ["px", "batch", "threads", "torch eager img/s", "onnxruntime img/s", "ratio",
                       "least cosine"], rows)],
        goals=goals,
    )  # fmt: skip


if __name__ == "__main__":
    main()
