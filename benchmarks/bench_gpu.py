"""GPU: ResNet50 training images/s with bf16 autocast + channels-last vs fp32, and vs timm's figure.

Skipped, with a note saying so, when ``torch.cuda.is_available()`` is False. Otherwise it trains
timm ``resnet50`` (random init, no download) with SGD on a synthetic batch already on the GPU,
``batch_size`` images of 224 px, timing ``steps`` steps after ``warmup`` steps with CUDA
synchronisation, in three settings: fp32 (PyTorch defaults: cuDNN may use TF32 for convolutions),
fp32 + channels-last, bf16 autocast + channels-last. It also times one batch's host-to-device copy
from pageable vs pinned memory (what ``pin_memory=True`` in the datamodule buys).

Reference: timm's published training benchmark for ResNet50 is on an RTX 3090 (PyTorch 1.12, CUDA 11.3,
AMP fp16, NHWC, batch 512, 224 px): 1218.01 images/s (huggingface/pytorch-image-models,
results/benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv). timm publishes no training figures for
A100/H100/H200-class GPUs, so the comparison is across GPU classes and says only "how many 3090s".
"""

from __future__ import annotations

import time
from typing import Any

import torch

try:
    from benchmarks._common import command_for, goal, log, section, table
except ImportError:  # run as a script from benchmarks/
    from _common import command_for, goal, log, section, table

NAME = "gpu"
TIMM_RTX3090_AMP_NHWC = 1218.01  # images/s, see module docstring

CONFIGS: dict[str, dict[str, Any]] = {
    "smoke": {"batch_size": 8, "steps": 2, "warmup": 1},
    "default": {"batch_size": 256, "steps": 30, "warmup": 10},
}
CONFIGS["full"] = CONFIGS["default"]


def train_rate(batch_size: int, steps: int, warmup: int, *, bf16: bool, channels_last: bool) -> float:
    import timm

    device = torch.device("cuda")
    model = timm.create_model("resnet50", pretrained=False, num_classes=1000).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch_size, 3, 224, 224, device=device).to(memory_format=fmt)
    y = torch.randint(0, 1000, (batch_size,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return batch_size * steps / (time.perf_counter() - t0)


def copy_rate(batch_size: int, pinned: bool, repeats: int = 10) -> float:
    """GB/s of copying one float32 224 px batch (what the loader hands over) from host to device."""
    host = torch.randn(batch_size, 3, 224, 224)
    if pinned:
        host = host.pin_memory()
    dev = torch.empty_like(host, device="cuda")
    dev.copy_(host, non_blocking=pinned)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        dev.copy_(host, non_blocking=pinned)
    torch.cuda.synchronize()
    return host.numel() * 4 * repeats / (time.perf_counter() - t0) / 1e9


def run(batch_size: int, steps: int, warmup: int, full: bool = False) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return section(
            NAME,
            "GPU: ResNet50 training, bf16 + channels-last vs fp32",
            command_for(NAME, full),
            skipped="no CUDA GPU on this machine (torch.cuda.is_available() is False): these figures were "
            "not measured here. Run the same command on a GPU machine.",
            goals=[
                goal(
                    "bf16 + channels-last faster than fp32; compared with timm's published figure",
                    "not run (no GPU)",
                    None,
                )
            ],
        )
    name = torch.cuda.get_device_name(0)
    settings = [
        ("fp32", False, False),
        ("fp32 + channels-last", False, True),
        ("bf16 + channels-last", True, True),
    ]
    rates = {}
    for label, bf16, cl in settings:
        log(f"gpu: {label}")
        rates[label] = train_rate(batch_size, steps, warmup, bf16=bf16, channels_last=cl)
        torch.cuda.empty_cache()
    rows = [
        [label, round(r, 1), round(r / rates["fp32"], 2), round(r / TIMM_RTX3090_AMP_NHWC, 2)]
        for label, r in rates.items()
    ]
    copies = [[("pinned" if p else "pageable"), round(copy_rate(batch_size, p), 2)] for p in (False, True)]
    speedup = rates["bf16 + channels-last"] / rates["fp32"]
    return section(
        NAME,
        "GPU: ResNet50 training, bf16 + channels-last vs fp32",
        command_for(NAME, full),
        tables=[
            table(
                f"timm resnet50 training on {name}, batch {batch_size}, 224 px, SGD, synthetic batch on GPU",
                ["setting", "images/s", "x fp32", "x timm RTX 3090 AMP NHWC (1218.01)"],
                rows,
            ),
            table(
                f"Host-to-device copy of one float32 batch ({batch_size}x3x224x224)",
                ["host memory", "GB/s"],
                copies,
            ),
        ],
        goals=[
            goal(
                "bf16 + channels-last faster than fp32",
                f"{speedup:.2f}x ({rates['bf16 + channels-last']:.0f} vs {rates['fp32']:.0f} images/s)",
                speedup > 1.0,
            )
        ],
        notes=[
            "timm's reference figure is for an RTX 3090 (the only GPU timm publishes training figures for); "
            "the last column is therefore a cross-GPU-class ratio, not a like-for-like check."
        ],
        extra={"rates": rates, "device": name},
    )
