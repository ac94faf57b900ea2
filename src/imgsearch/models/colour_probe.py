"""A colour probe (#15): a small network that reads a photo's colour from its pixels and the colour head.

A model's colour head sees only the features it was trained with; in the default recipe those are trained on
the category, which discards colour (docs/results.md: the detached head reaches 0.481 baseColour accuracy on
the Myntra test split). The pixels keep it: the foreground Lab histogram of
:mod:`imgsearch.retrieval.lab_colour` votes 0.675 on its own. The probe is one hidden layer over ``[Lab
part, head part]`` (both square roots of distributions: ``lab_colour.lab_part`` and ``colour.colour_part``),
trained on the catalogue's labelled photos in a few seconds while the model stays frozen (``imgsearch-
colour-probe``). Its classes are the head's, so its probabilities stand in for the head's wherever a colour
is predicted: ``imgsearch-tag``, ``POST /tag``, the predicted colour column an index build and a live
catalogue's adds fill, and (``colour_part=auto|probe``, :mod:`imgsearch.retrieval.colour`) the index's colour
part, what ``colour_weight`` ranks by.

The file is a plain dict of tensors, strings and numbers, read with ``torch.load(weights_only=True)``; a probe
carries its attribute and class list, and is refused for a model whose head has other classes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

FORMAT = "imgsearch.colour_probe/1"
#: the probe's file name inside an index directory
PROBE_FILE = "colour_probe.pt"
#: fewer labelled photos than this cannot train a probe worth using
MIN_TRAIN_ROWS = 20


class ColourProbeError(ValueError):
    """A colour probe file is unreadable, or does not fit the model it is used with."""


@dataclass(frozen=True)
class FitSettings:
    """Chosen on the Myntra val split (scripts/lab_colour_eval.py): full-batch Adam, one hidden layer."""

    hidden: int = 256
    steps: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-3
    seed: int = 0


class ColourProbe(nn.Module):
    """``[Lab part, head part] -> logits`` over the colour head's classes."""

    def __init__(self, attribute: str, classes: Sequence[str], hidden: int = 256, lab_dim: int | None = None):
        super().__init__()
        from imgsearch.retrieval import lab_colour

        if not classes:
            raise ColourProbeError("a colour probe needs at least one colour class")
        self.attribute = str(attribute)
        self.classes = [str(c) for c in classes]
        self.lab_dim = int(lab_colour.DIM if lab_dim is None else lab_dim)
        self.hidden = int(hidden)
        self.net = nn.Sequential(
            nn.Linear(self.lab_dim + len(self.classes), self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, len(self.classes)),
        )
        self.info: dict[str, Any] = {}

    def inputs(self, head_probs: np.ndarray, lab_histograms: np.ndarray) -> torch.Tensor:
        from imgsearch.retrieval.colour import colour_part
        from imgsearch.retrieval.lab_colour import lab_part

        head, hists = np.asarray(head_probs), np.asarray(lab_histograms)
        if head.ndim != 2 or head.shape[1] != len(self.classes):
            raise ColourProbeError(
                f"the {self.attribute!r} probe expects {len(self.classes)} head probabilities a photo, "
                f"got {head.shape}"
            )
        if hists.ndim != 2 or hists.shape != (len(head), self.lab_dim):
            raise ColourProbeError(
                f"expected {len(head)} Lab histograms of {self.lab_dim} bins, got {hists.shape}"
            )
        return torch.from_numpy(np.hstack([lab_part(hists), colour_part(head)]).astype(np.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.inference_mode()
    def predict(self, head_probs: np.ndarray, lab_histograms: np.ndarray) -> np.ndarray:
        """``[N, classes]`` colour probabilities from photos' head probabilities and Lab histograms."""
        self.eval()
        return self(self.inputs(head_probs, lab_histograms)).softmax(-1).numpy()

    def predict_photos(self, head_probs: np.ndarray, images: Sequence[Any]) -> np.ndarray:
        """:meth:`predict` for photos (PIL images, RGB arrays or paths), their Lab histograms made here."""
        from imgsearch.retrieval.lab_colour import lab_descriptors

        return self.predict(head_probs, lab_descriptors(images))

    def describe(self) -> dict[str, Any]:
        """What an index manifest records of the probe it holds."""
        return {"attribute": self.attribute, "file": PROBE_FILE, "classes": len(self.classes), **self.info}

    def check_model(self, attribute_classes: Mapping[str, Sequence[str]]) -> None:
        """Refuse a model whose attribute heads do not include the probe's, with the same classes."""
        classes = attribute_classes.get(self.attribute)
        if classes is None:
            raise ColourProbeError(
                f"the colour probe reads the {self.attribute!r} head, which this model does not have "
                f"(its heads: {list(attribute_classes) or 'none'})"
            )
        if [str(c) for c in classes] != self.classes:
            raise ColourProbeError(
                f"the colour probe was fitted to a {self.attribute!r} head of {len(self.classes)} classes, "
                f"this model's has {len(classes)} others: fit the probe again for this model"
            )


@dataclass
class FitReport:
    """What fitting met: rows used, and labelled rows skipped because the head has no such class."""

    rows: int
    unknown_labels: int
    unknown_examples: list[str]
    settings: dict[str, Any]


def fit_colour_probe(
    attribute: str,
    classes: Sequence[str],
    head_probs: np.ndarray,
    lab_histograms: np.ndarray,
    labels: Sequence[str | None],
    settings: FitSettings | None = None,
) -> tuple[ColourProbe, FitReport]:
    """Train a probe on photos with colour ``labels`` (``None`` / ``""`` = unlabelled, left out).

    Raises:
        ColourProbeError: fewer than :data:`MIN_TRAIN_ROWS` photos carry a label the head knows.
    """
    settings = settings or FitSettings()
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(str(v), -1) if v not in (None, "") and v == v else -2 for v in labels])
    unknown = sorted({str(v) for v, t in zip(labels, y, strict=True) if t == -1})
    rows = np.flatnonzero(y >= 0)
    if len(rows) < MIN_TRAIN_ROWS:
        raise ColourProbeError(
            f"only {len(rows)} photos carry a {attribute!r} label the colour head knows (at least "
            f"{MIN_TRAIN_ROWS} are needed to fit a probe)"
        )
    if unknown:
        log.warning("%d photos skipped: %s values the head does not know, e.g. %s",
                    int((y == -1).sum()), attribute, unknown[:5])  # fmt: skip
    torch.manual_seed(settings.seed)
    probe = ColourProbe(attribute, classes, settings.hidden)
    x = probe.inputs(np.asarray(head_probs)[rows], np.asarray(lab_histograms)[rows])
    target = torch.from_numpy(y[rows])
    opt = torch.optim.Adam(probe.parameters(), settings.lr, weight_decay=settings.weight_decay)
    probe.train()
    for _ in range(settings.steps):
        opt.zero_grad()
        nn.functional.cross_entropy(probe(x), target).backward()
        opt.step()
    probe.eval()
    report = FitReport(len(rows), int((y == -1).sum()), unknown[:10], asdict(settings))
    probe.info = {"fitted_on": report.rows, "settings": report.settings}
    return probe, report


def save_colour_probe(probe: ColourProbe, path: str | Path) -> Path:
    """Write the probe as a plain dict (readable with ``weights_only=True``), atomically."""
    from imgsearch.utils.atomic import atomic_path

    record = {
        "format": FORMAT,
        "attribute": probe.attribute,
        "classes": list(probe.classes),
        "hidden": probe.hidden,
        "lab_dim": probe.lab_dim,
        "info": dict(probe.info),
        "state_dict": {k: v.detach().cpu() for k, v in probe.state_dict().items()},
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(record, tmp)
    return Path(path)


def load_colour_probe(path: str | Path) -> ColourProbe:
    """Read a probe written by :func:`save_colour_probe`.

    Raises:
        FileNotFoundError: no such file.
        ColourProbeError: not a readable probe (corrupt, another format, weights that do not fit).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"colour probe not found: {path}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, a pickle with code in it
        raise ColourProbeError(
            f"{path} is not a readable colour probe ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(record, Mapping) or record.get("format") != FORMAT:
        raise ColourProbeError(f"{path} is not an imgsearch colour probe (format {FORMAT!r} expected)")
    try:
        probe = ColourProbe(
            record["attribute"], record["classes"], int(record["hidden"]), int(record["lab_dim"])
        )
        probe.load_state_dict(record["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ColourProbeError(f"{path}: the colour probe's weights do not fit its record ({exc})") from exc
    probe.info = dict(record.get("info") or {})
    return probe.eval()


def probe_colour_probs(
    probe: ColourProbe | None,
    probs: Mapping[str, Any],
    images: Sequence[Any],
    lab_histograms: np.ndarray | None = None,
) -> dict[str, Any]:
    """``probs`` (heads' probabilities by name) with the probe's attribute replaced by the probe's reading of
    ``images`` (``lab_histograms``: theirs, when the caller already has them); unchanged without a probe."""
    out = dict(probs)
    if probe is None:
        return out
    head = out.get(probe.attribute)
    if head is None:
        raise ColourProbeError(
            f"the colour probe reads the {probe.attribute!r} head, which gave no probabilities"
        )
    head = head.detach().float().cpu().numpy() if isinstance(head, torch.Tensor) else np.asarray(head)
    if lab_histograms is None:
        out[probe.attribute] = probe.predict_photos(head, images)
    else:
        out[probe.attribute] = probe.predict(head, lab_histograms)
    return out


def index_probe_path(directory: str | Path, manifest: Mapping[str, Any]) -> Path | None:
    """The probe file an index directory holds (its manifest's ``colour_probe``), or ``None``."""
    info = manifest.get("colour_probe")
    return Path(directory) / str(info.get("file", PROBE_FILE)) if info else None


def load_index_probe(
    directory: str | Path, manifest: Mapping[str, Any], attribute_classes: Mapping[str, Sequence[str]] | None
) -> ColourProbe | None:
    """The probe an index directory holds (its manifest's ``colour_probe``), checked against the index's
    model; ``None`` for an index built without one."""
    path = index_probe_path(directory, manifest)
    if path is None:
        return None
    probe = load_colour_probe(path)
    probe.check_model(dict(attribute_classes or {}))
    return probe
