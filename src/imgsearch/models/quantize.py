"""INT8 of an ONNX export (``runtime=onnx-int8``): ONNX Runtime's static quantisation on catalogue photos.

An option, not the default: docs/serve.md and docs/benchmarks.md record its speed and retrieval MAP@R beside
FP32, and it is kept optional unless MAP@R holds within 0.005.

* :func:`quantize_export` writes ``<fp32 export stem>.int8.onnx`` (QDQ format, per-channel int8 weights,
  uint8 activations with min/max ranges from the calibration photos) and its sidecar. ``Pad`` stays in
  float: the Lite models' TensorFlow "same" padding is an explicit ``Pad`` whose zeros, quantised, are not
  zero; with it quantised the Lite0 vectors collapsed (cosine to FP32 0.0-0.4 on small photos, 0.80-0.88
  on the Myntra photos), without it 0.90-0.995.
* :func:`int8_embedder_for`: reuse that file, or quantise first; checked against the FP32 export on
  calibration photos (cosine >= :data:`INT8_MIN_COSINE` per vector), else refused.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgsearch.models.export import ExportError, OnnxEmbedder, min_cosine, sidecar_path

log = logging.getLogger(__name__)

#: Least cosine between an INT8 vector and the FP32 export's, per calibration photo, for the INT8 graph to
#: be used. Measured with the pretrained Lite0: least 0.90 on 24 small synthetic photos (64 px); INT8 moves
#: these vectors far more than FP32 ONNX does. Far under that means a broken calibration (e.g. blank
#: images) or graph, not quantisation noise.
INT8_MIN_COSINE = 0.7
#: Operators quantised (every compute op of the exported families; not ``Pad``, see above).
QUANTIZED_OPS = (
    "Conv",
    "Clip",
    "Relu",
    "Add",
    "Mul",
    "GlobalAveragePool",
    "AveragePool",
    "MaxPool",
    "Gemm",
    "MatMul",
)
#: Calibration photos used at most (more barely moves the min/max ranges and costs time).
CALIBRATION_IMAGES = 64


def int8_path(fp32_path: str | os.PathLike[str]) -> Path:
    """``<stem>.int8.onnx`` beside the FP32 export, so it inherits its cache key (checkpoint or weights)."""
    p = Path(fp32_path)
    return p.with_name(f"{p.stem}.int8.onnx")


class _Calibration:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over image batches (``get_next`` -> feed dict)."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = (
            {input_name: np.ascontiguousarray(b, np.float32)} for b in batches
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def calibration_batches(batches: Iterable[Any], limit: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """At most ``limit`` preprocessed images from ``batches`` (tensors, arrays, or loader batches whose first
    element is the images), as float32 arrays."""
    out, n = [], 0
    for batch in batches:
        if batch is None:
            continue
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        if isinstance(images, torch.Tensor):
            images = images.detach().to("cpu", torch.float32).numpy()
        images = np.asarray(images, np.float32)[: limit - n]
        out.append(images)
        n += len(images)
        if n >= limit:
            break
    return out


def quantize_export(
    fp32: OnnxEmbedder, batches: Iterable[np.ndarray], out: str | os.PathLike[str] | None = None
) -> Path:
    """Static INT8 quantisation of ``fp32`` (QDQ, per-channel weights), calibrated on ``batches``.

    Raises:
        ExportError: no calibration images, or ONNX Runtime's quantiser fails (the reason is kept).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from imgsearch.utils.atomic import atomic_path, atomic_write_json

    batches = [b for b in batches if len(b)]
    if not batches:
        raise ExportError("INT8 quantisation needs calibration photos, and none were given")
    out = Path(out) if out is not None else int8_path(fp32.path)
    with (
        tempfile.TemporaryDirectory(prefix="imgsearch-int8-") as tmp,
        atomic_path(out, suffix=".onnx") as dst,
    ):
        pre = Path(tmp) / "pre.onnx"
        try:
            # shape inference + graph folding first, as ONNX Runtime recommends before static quantisation
            quant_pre_process(str(fp32.path), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre), str(dst), _Calibration(fp32.input_name, batches),
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                op_types_to_quantize=list(QUANTIZED_OPS),
            )  # fmt: skip
        except Exception as exc:
            raise ExportError(
                f"INT8 quantisation of {fp32.path} failed: {type(exc).__name__}: {exc}"
            ) from exc
    meta = dict(fp32.meta) | {
        "quantization": {
            "format": "QDQ", "per_channel": True, "weights": "int8", "activations": "uint8",
            "calibration": "minmax", "ops": list(QUANTIZED_OPS),
            "calibration_images": int(sum(len(b) for b in batches)),
            "fp32_export": fp32.path.name,
        }
    }  # fmt: skip
    atomic_write_json(sidecar_path(out), meta)
    log.info(
        "INT8 export written to %s (%d calibration photos)", out, meta["quantization"]["calibration_images"]
    )
    return out


def check_int8(int8: OnnxEmbedder, fp32: OnnxEmbedder, batches: Iterable[np.ndarray]) -> float:
    """The least cosine of the INT8 graph's ``features`` with the FP32 export's on ``batches``.

    Raises:
        ExportError: under :data:`INT8_MIN_COSINE`, or the graph cannot run.
    """
    worst = 1.0
    for images in batches:
        try:
            got = int8(images)["features"]
        except Exception as exc:
            raise ExportError(f"{int8.path} cannot run a calibration batch: {exc}") from exc
        worst = min(worst, min_cosine(got, fp32(images)["features"]))
    if not worst >= INT8_MIN_COSINE:
        raise ExportError(
            f"{int8.path}: INT8 vectors are too far from FP32 (least cosine {worst:.4f} < "
            f"{INT8_MIN_COSINE}); delete it to quantise again"
        )
    return worst


def int8_embedder_for(
    fp32: OnnxEmbedder, batches: Iterable[np.ndarray] | None = None, *, threads: int | None = None
) -> OnnxEmbedder:
    """The INT8 graph of an already checked FP32 export: the cached ``<stem>.int8.onnx``, or quantised now
    from ``batches`` (catalogue photos, preprocessed). Checked against the FP32 export on ``batches``; a
    cached file reused without photos (a search process) is only checked for its source, outputs and that
    ONNX Runtime loads it.

    Raises:
        ExportError: no cached file and no photos to calibrate on, a failed quantisation, or a graph whose
            vectors are too far from FP32's.
    """
    path = int8_path(fp32.path)
    batches = list(batches) if batches is not None else []
    if not path.is_file():
        if not batches:
            raise ExportError(f"no INT8 export at {path}, and no catalogue photos to calibrate one")
        quantize_export(fp32, batches, path)
    int8 = OnnxEmbedder(path, threads=threads)
    recorded = int8.meta.get("source_sha256")
    if recorded != fp32.meta.get("source_sha256") or "quantization" not in int8.meta:
        raise ExportError(
            f"{path} is not the INT8 graph of {fp32.path.name} (sha256 {str(recorded)[:12]}...)"
        )
    if tuple(int8.outputs) != tuple(fp32.outputs):
        raise ExportError(f"{path} outputs {list(int8.outputs)}, the FP32 export {list(fp32.outputs)}")
    if batches:
        check_int8(int8, fp32, batches)
    log.info("embedding with the INT8 export %s", json.dumps(int8.meta["quantization"]))
    return int8
