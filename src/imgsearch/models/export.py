"""Export a classifier to ONNX and run it with ONNX Runtime, checked against PyTorch before it is trusted.

On a CPU, ONNX Runtime runs the project's models several times faster than PyTorch eager (see
docs/benchmarks.md), so index, eval, search and serve embed through it by default (``runtime=auto``).

* :func:`export_onnx` writes ``<name>.onnx`` (one graph: images ``[B, 3, H, W]`` -> ``features``, plus
  ``probs`` and one ``attr:<column>`` per attribute head for a classifier; ``features`` alone for a
  pretrained-only :class:`~imgsearch.models.pretrained.PretrainedEmbedder`) and ``<name>.json`` beside it
  (the preprocessing, the outputs, the source's sha256, versions).
* :func:`cached_export_path`: the export of a checkpoint lives beside it, keyed by the checkpoint's sha256,
  so a changed checkpoint never reuses a stale graph. A pretrained-only model has no checkpoint: its export
  lives in :func:`default_cache_dir`, keyed by :func:`pretrained_export_key` (backbone, weights file sha256,
  input size).
* :class:`OnnxEmbedder` runs the graph; :func:`check_equivalence` compares it with the PyTorch module on a
  probe batch (cosine >= :data:`MIN_COSINE` per vector), so a corrupt or mismatched file is refused.
* :func:`select_runtime` decides: it returns an :class:`OnnxEmbedder`, or ``None`` (use PyTorch) with the
  reason logged.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8")
#: Least cosine similarity between an exported vector and PyTorch's for the export to be used.
MIN_COSINE = 0.9999
OPSET = 17
FORMAT_VERSION = 1
#: The outputs of a classifier's export (its attribute heads add ``attr:<column>`` after them).
OUTPUTS: tuple[str, ...] = ("features", "probs")
#: Where a pretrained-only model's exports are cached (default: ``$XDG_CACHE_HOME/imgsearch/onnx``).
CACHE_ENV = "IMGSEARCH_ONNX_CACHE"


class ExportError(RuntimeError):
    """The model cannot be exported, or an export cannot be loaded or does not match the model."""


def outputs_of(module: Any) -> tuple[str, ...]:
    """The graph outputs of ``module``'s export, in order: ``features``, then ``probs`` when it has a
    classifier head, then ``attr:<column>`` per attribute head (its :meth:`predict_step` keys)."""
    if getattr(module, "head", None) is None:
        return ("features",)  # a pretrained-only backbone: no classifier, so no probs
    heads = getattr(module, "attribute_heads", None) or {}
    return (*OUTPUTS, *(f"attr:{name}" for name in heads))


class _InferenceGraph(nn.Module):
    """What gets exported: the model's own ``predict_step`` outputs (``features`` is the retrieval neck's
    vector when it has one, else the pooled features) from one forward pass."""

    def __init__(self, module: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.module = module
        self.outputs = outputs

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.module.predict_step(images)
        return tuple(out[name] for name in self.outputs)


def input_size_of(module: Any) -> tuple[int, int, int]:
    """``(C, H, W)`` the module's preprocessing produces."""
    size = tuple(int(v) for v in module.data_config["input_size"])
    if len(size) != 3:
        raise ExportError(f"data_config input_size {size} is not (C, H, W)")
    return size  # type: ignore[return-value]


def sidecar_path(onnx_path: str | os.PathLike[str]) -> Path:
    return Path(onnx_path).with_suffix(".json")


def cached_export_path(checkpoint: str | os.PathLike[str], sha256: str) -> Path:
    """``<checkpoint>.<sha256[:16]>.onnx``: beside the checkpoint, keyed by the exact weights."""
    ckpt = Path(checkpoint)
    return ckpt.with_name(f"{ckpt.name}.{sha256[:16]}.onnx")


def export_onnx(
    module: Any, path: str | os.PathLike[str], *, source_sha256: str | None = None, opset: int = OPSET
) -> Path:
    """Write ``module`` (an :class:`~imgsearch.models.classifier.ImageClassifier`, or a pretrained-only
    :class:`~imgsearch.models.pretrained.PretrainedEmbedder`: ``features`` only) to ONNX at ``path``.

    The batch dimension is dynamic; the image size is the one of ``module.data_config`` (the export is only
    valid with that preprocessing, which the sidecar JSON records). Both files are written atomically.

    Raises:
        ExportError: the model has no ``backbone``/``data_config``, or the exporter fails (reason kept).
    """
    from imgsearch.utils.atomic import atomic_path, atomic_write_json

    if not all(hasattr(module, a) for a in ("backbone", "data_config", "predict_step")):
        raise ExportError(f"{type(module).__name__} is not an imgsearch model (no backbone/data_config)")
    path = Path(path)
    outputs = outputs_of(module)
    graph = _InferenceGraph(module, outputs).eval().to("cpu")
    c, h, w = input_size_of(module)
    example = torch.zeros(2, c, h, w)
    axes = {"images": {0: "batch"}} | {name: {0: "batch"} for name in outputs}
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo, which takes ~10x longer on these
        # models for the same graph; it is used only when the TorchScript one fails
        warnings.simplefilter("ignore")
        try:
            with torch.no_grad():
                torch.onnx.export(
                    graph, (example,), str(tmp), input_names=["images"], output_names=list(outputs),
                    dynamic_axes=axes, opset_version=opset, dynamo=False,
                )  # fmt: skip
        except Exception as first:
            log.info("TorchScript ONNX export failed (%s); trying the dynamo exporter", first)
            try:
                batch = torch.export.Dim("batch", min=1, max=4096)
                with torch.no_grad():
                    torch.onnx.export(
                        graph, (example,), str(tmp), input_names=["images"], output_names=list(outputs),
                        dynamic_shapes=({0: batch},), opset_version=max(opset, 18), dynamo=True,
                    )  # fmt: skip
            except Exception as exc:
                raise ExportError(
                    f"backbone {module.hparams.get('backbone', '?')!r} cannot be exported to ONNX: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ) from exc
    meta = {
        "format_version": FORMAT_VERSION,
        "backbone": module.hparams.get("backbone"),
        "num_classes": int(module.hparams.get("num_classes", 0)),
        "class_names": list(getattr(module, "class_names", []) or []),
        "data_config": dict(module.data_config),
        "outputs": list(outputs),
        "source_sha256": source_sha256,
        "opset": opset,
        "torch": torch.__version__,
    }
    atomic_write_json(sidecar_path(path), meta)
    log.info("exported %s to %s", meta["backbone"], path)
    return path


class OnnxEmbedder:
    """An exported model on ONNX Runtime: ``embedder(images)`` -> ``{output name: numpy array}``
    (:attr:`outputs`: ``features``, and ``probs`` / ``attr:<column>`` for a classifier).

    Args:
        path: the ``.onnx`` file; its sidecar JSON must be beside it.
        threads: intra-op threads; ``None`` = ONNX Runtime's default (every core this process may use).

    Raises:
        ExportError: the file or its sidecar is missing, corrupt, or not an imgsearch export.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        try:
            meta = json.loads(sidecar_path(self.path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"{sidecar_path(self.path)}: cannot read the export's sidecar: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise ExportError(f"{sidecar_path(self.path)} is not an imgsearch export (v{FORMAT_VERSION})")
        self.meta: dict[str, Any] = meta
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ExportError(f"{self.path} cannot be loaded by ONNX Runtime: {exc}") from exc
        names = [o.name for o in self.session.get_outputs()]
        recorded = list(meta.get("outputs") or OUTPUTS)
        if names != recorded or "features" not in names:
            raise ExportError(f"{self.path} outputs {names}, its sidecar records {recorded}")
        self.outputs: tuple[str, ...] = tuple(names)
        self.input_name = self.session.get_inputs()[0].name

    @property
    def data_config(self) -> dict[str, Any]:
        return dict(self.meta["data_config"])

    def __call__(self, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        if isinstance(images, torch.Tensor):
            images = images.detach().to("cpu", torch.float32).numpy()
        got = self.session.run(None, {self.input_name: np.ascontiguousarray(images, np.float32)})
        return dict(zip(self.outputs, got, strict=True))


def probe_batch(module: Any, n: int = 4, seed: int = 0) -> torch.Tensor:
    """``n`` deterministic normalised-range images at the module's input size."""
    c, h, w = input_size_of(module)
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine similarity of two ``[N, D]`` arrays (1.0 for two zero rows)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return -1.0
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
    return float(np.where(both_zero, 1.0, cos).min())


def check_equivalence(embedder: OnnxEmbedder, module: Any, probe: torch.Tensor | None = None) -> float:
    """The least cosine between the export's and PyTorch's vectors on ``probe``; raises below MIN_COSINE.

    Raises:
        ExportError: the export gives other vectors (wrong weights, wrong input size, a corrupt graph).
    """
    probe = probe_batch(module) if probe is None else probe
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            # the reference is the module's own answer, so a graph that drifts from it (a neck left out,
            # say) is caught, not compared with itself
            pred = module.to("cpu").predict_step(probe.to("cpu"))
    finally:
        module.train(was_training)
    want = outputs_of(module)
    if tuple(embedder.outputs) != want:
        raise ExportError(f"{embedder.path} outputs {list(embedder.outputs)}, the model gives {list(want)}")
    try:
        got = embedder(probe)
    except Exception as exc:
        raise ExportError(f"{embedder.path} cannot run a probe batch {tuple(probe.shape)}: {exc}") from exc
    worst = min(min_cosine(got[name], pred[name].numpy()) for name in want)
    if not worst >= MIN_COSINE:
        raise ExportError(
            f"{embedder.path} does not match the PyTorch model (least cosine on a probe batch {worst:.6f} < "
            f"{MIN_COSINE}); delete it to export again"
        )
    return worst


def _state_digest(module: nn.Module) -> str:
    """sha256 of the weights, for a model that has no checkpoint file (a pretrained-only backbone)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """Where pretrained-only exports are cached: ``$IMGSEARCH_ONNX_CACHE``, else
    ``$XDG_CACHE_HOME/imgsearch/onnx`` (``~/.cache/imgsearch/onnx``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "imgsearch" / "onnx"


def pretrained_export_key(module: Any) -> str:
    """sha256 of what a pretrained-only model's graph depends on: the backbone name, the sha256 of its
    weights file (``module.weights_file()``; the weights themselves when it has none, e.g. timm's hub
    cache), the input size and the backbone's extra arguments."""
    from imgsearch.models.checkpoint import checkpoint_sha256

    source = module.weights_file() if hasattr(module, "weights_file") else None
    weights = checkpoint_sha256(source) if source is not None else _state_digest(module)
    key = {
        "backbone": module.hparams.get("backbone"),
        "weights_sha256": weights,
        "input_size": list(input_size_of(module)),
        "backbone_kwargs": _plain(dict(module.hparams.get("backbone_kwargs") or {})),
        "format_version": FORMAT_VERSION,
    }
    import hashlib

    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        return root
    except OSError as exc:
        # a read-only home (a container) must not cost the speed-up: export for this process only
        tmp = Path(tempfile.mkdtemp(prefix="imgsearch-onnx-"))
        log.warning("cannot create the ONNX cache %s (%s); exporting to %s for this run", root, exc, tmp)
        return tmp


def onnx_embedder_for(
    module: Any,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
) -> OnnxEmbedder:
    """The checked export of ``module``: reuse the cached one, or export it first.

    With a ``checkpoint`` the export is cached beside it (:func:`cached_export_path`). Without one (a
    pretrained-only model) it is cached in ``cache_dir`` (default :func:`default_cache_dir`) as
    ``<backbone>.<key[:16]>.onnx``, keyed by :func:`pretrained_export_key`.

    Raises:
        ExportError: the model cannot be exported, or the (cached) export does not match it.
    """
    if checkpoint is not None:
        from imgsearch.models.checkpoint import checkpoint_sha256

        sha = checkpoint_sha256(checkpoint)
        path = cached_export_path(checkpoint, sha)
    else:
        sha = pretrained_export_key(module)
        name = f"{module.hparams.get('backbone', 'model')}.{sha[:16]}.onnx".replace("/", "_")
        path = _cache_root(cache_dir) / name
    if not path.is_file():
        export_onnx(module, path, source_sha256=sha)
    embedder = OnnxEmbedder(path, threads=threads)
    if embedder.meta.get("source_sha256") == sha and tuple(embedder.outputs) != outputs_of(module):
        # exported before its attribute heads were graph outputs: the same weights, so export again
        log.info(
            "%s lacks outputs %s: exporting it again",
            path,
            sorted(set(outputs_of(module)) - set(embedder.outputs)),
        )
        export_onnx(module, path, source_sha256=sha)
        embedder = OnnxEmbedder(path, threads=threads)
    recorded = embedder.meta.get("source_sha256")
    if recorded != sha:
        raise ExportError(f"{path} was exported from other weights (sha256 {str(recorded)[:12]}...)")
    if _plain(embedder.meta.get("data_config")) != _plain(module.data_config):
        raise ExportError(f"{path} records another preprocessing than the model's data_config")
    check_equivalence(embedder, module)
    return embedder


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str)) if value is not None else None


def wants_gpu(device: str | None = None, trainer_kwargs: Mapping[str, Any] | None = None) -> bool:
    """Whether the caller runs the model on an accelerator (then PyTorch is used)."""
    if device is not None:
        return not str(device).startswith("cpu")
    accel = str((trainer_kwargs or {}).get("accelerator", "auto"))
    if accel == "cpu":
        return False
    if accel == "auto":
        return bool(torch.cuda.is_available())
    return True


def select_runtime(
    module: Any | None,
    checkpoint: str | os.PathLike[str] | None = None,
    runtime: str = "auto",
    *,
    gpu: bool = False,
    threads: int | None = None,
    calibration: Any = None,
) -> OnnxEmbedder | None:
    """The ONNX Runtime embedder to use, or ``None`` for PyTorch; the reason for PyTorch is logged.

    ``runtime``: ``torch`` (PyTorch), ``onnx`` (ONNX Runtime on the CPU), ``auto`` (ONNX Runtime on a CPU,
    PyTorch on an accelerator), ``onnx-int8`` (the export statically quantised to INT8, see
    :mod:`imgsearch.models.quantize`; ``calibration``: preprocessed catalogue photos, or a callable giving
    them, used when no INT8 graph is cached yet; without one the FP32 export is used, with a warning).
    A model that cannot be exported, or an export that does not match the model, falls back to PyTorch with
    a warning.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "torch" or module is None:
        return None
    if gpu:
        log.log(
            logging.WARNING if runtime == "onnx" else logging.INFO,
            "runtime=%s: the model runs on an accelerator, so PyTorch is used", runtime,
        )  # fmt: skip
        return None
    try:
        embedder = onnx_embedder_for(module, checkpoint, threads=threads)
    except ExportError as exc:
        log.warning("runtime=%s: ONNX Runtime not used, falling back to PyTorch: %s", runtime, exc)
        return None
    if runtime == "onnx-int8":
        from imgsearch.models.quantize import int8_embedder_for, int8_path

        try:
            photos = calibration
            if callable(calibration):  # reading photos costs a pass over them: only when quantising
                photos = None if int8_path(embedder.path).is_file() else calibration()
            return int8_embedder_for(embedder, photos, threads=threads)
        except ExportError as exc:
            log.warning("runtime=onnx-int8: INT8 not used, embedding with the FP32 export: %s", exc)
    log.info("embedding with ONNX Runtime (%s)", embedder.path)
    return embedder
