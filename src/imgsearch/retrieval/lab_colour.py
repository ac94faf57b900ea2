"""A perceptual colour descriptor of a photo's foreground (#15): a histogram of its CIE Lab colours.

The search vector is trained on the category and discards colour; colour lives in the pixels. Catalogue
photos are mostly packshots on white, so the background is taken to be the near-white pixels connected to
the image border (a white shirt's inside is not connected to the border through white, its outline and
shadows cut it off; when the mask would leave under :data:`MIN_FOREGROUND` of the photo, e.g. a white item
touching the edges, every pixel counts instead and the fallback is counted in :class:`LabStats`).

The descriptor is a joint histogram over ``L x a x b`` bins of the foreground pixels
(``skimage.color.rgb2lab``, D65), each pixel split between its two nearest bins along each axis (trilinear
soft binning, so a colour on a bin edge does not flip bins), normalised to sum 1. :func:`lab_part` is its
square root: unit rows whose inner product is the Bhattacharyya coefficient of two colour distributions, the
same form as the colour head's part (:mod:`imgsearch.retrieval.colour`), so the two fuse into one part.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

#: photos are reduced to at most this side first: colour statistics need few pixels
DESCRIPTOR_SIDE = 96
#: bins along L (0..100), a and b (-:data:`AB_RANGE`..+:data:`AB_RANGE`)
L_BINS, AB_BINS = 5, 7
AB_RANGE = 60.0
#: background: L above this and chroma (sqrt(a^2 + b^2)) below :data:`WHITE_CHROMA`
WHITE_L = 90.0
WHITE_CHROMA = 8.0
#: a mask leaving less than this share of the photo is not trusted (every pixel counts)
MIN_FOREGROUND = 0.03
DIM = L_BINS * AB_BINS * AB_BINS


@dataclass
class LabStats:
    """What a batch of descriptors met: photos described, and those whose mask fell back to every pixel."""

    photos: int = 0
    whole_image_fallbacks: int = 0


def _to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        im = image.convert("RGB")
        if max(im.size) > DESCRIPTOR_SIDE:
            im = im.copy()
            im.thumbnail((DESCRIPTOR_SIDE, DESCRIPTOR_SIDE), Image.Resampling.BILINEAR)
        return np.asarray(im)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {arr.shape}")
    return arr


def to_lab(image: Image.Image | np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` CIE Lab (L in 0..100) of a PIL image or a uint8 / [0, 1] float RGB array."""
    from skimage.color import rgb2lab

    return rgb2lab(_to_rgb_array(image))


def foreground_mask(lab: np.ndarray) -> np.ndarray:
    """Boolean ``[H, W]``: True on the product. Background = near-white pixels connected to the border."""
    from scipy import ndimage

    white = (lab[..., 0] > WHITE_L) & (np.hypot(lab[..., 1], lab[..., 2]) < WHITE_CHROMA)
    labels, _ = ndimage.label(white)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border = border[border > 0]
    return ~np.isin(labels, border)


def lab_histogram(lab: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Soft ``L x a x b`` histogram (:data:`DIM` bins, sum 1) of the Lab pixels where ``mask`` is True."""
    px = lab.reshape(-1, 3) if mask is None else lab[mask]
    if len(px) == 0:
        raise ValueError("no pixels to describe")
    # continuous bin coordinates: bin centres at integers 0..n-1
    coords = np.stack(
        [
            px[:, 0] / 100.0 * L_BINS - 0.5,
            (px[:, 1] + AB_RANGE) / (2 * AB_RANGE) * AB_BINS - 0.5,
            (px[:, 2] + AB_RANGE) / (2 * AB_RANGE) * AB_BINS - 0.5,
        ],
        axis=1,
    )
    sizes = np.array([L_BINS, AB_BINS, AB_BINS])
    coords = np.clip(coords, 0.0, sizes - 1.0)
    lo = np.minimum(np.floor(coords).astype(np.int64), sizes - 2)
    frac = coords - lo
    hist = np.zeros(DIM, np.float64)
    for dl in (0, 1):  # trilinear: each pixel's weight split over the 8 surrounding bin centres
        wl = frac[:, 0] if dl else 1 - frac[:, 0]
        for da in (0, 1):
            wa = frac[:, 1] if da else 1 - frac[:, 1]
            for db in (0, 1):
                wb = frac[:, 2] if db else 1 - frac[:, 2]
                idx = ((lo[:, 0] + dl) * AB_BINS + lo[:, 1] + da) * AB_BINS + lo[:, 2] + db
                hist += np.bincount(idx, weights=wl * wa * wb, minlength=DIM)
    return (hist / hist.sum()).astype(np.float32)


def lab_descriptor(image: Image.Image | np.ndarray, stats: LabStats | None = None) -> np.ndarray:
    """The foreground Lab histogram ``[DIM]`` of one photo (see the module docstring)."""
    lab = to_lab(image)
    mask = foreground_mask(lab)
    if stats is not None:
        stats.photos += 1
    if mask.mean() < MIN_FOREGROUND:
        mask = None
        if stats is not None:
            stats.whole_image_fallbacks += 1
    return lab_histogram(lab, mask)


def lab_descriptors(
    images: Iterable[Image.Image | np.ndarray | str | Path], stats: LabStats | None = None
) -> np.ndarray:
    """``[N, DIM]`` descriptors of photos (PIL images, RGB arrays or paths).

    Raises:
        imgsearch.data.images.ImageDecodeError: a path that is not a readable image.
    """
    stats = stats if stats is not None else LabStats()
    rows = []
    for image in images:
        if isinstance(image, str | Path):  # decoded as training decodes: bombs and broken files refused
            from imgsearch.data.images import load_image

            rows.append(lab_descriptor(load_image(image), stats))
        else:
            rows.append(lab_descriptor(image, stats))
    if stats.whole_image_fallbacks:
        log.info(
            "lab colour: %d of %d photos had too little foreground, described whole",
            stats.whole_image_fallbacks,
            stats.photos,
        )
    return np.stack(rows) if rows else np.zeros((0, DIM), np.float32)


def lab_part(histograms: np.ndarray) -> np.ndarray:
    """``sqrt`` of the histograms: unit rows whose inner product is the Bhattacharyya coefficient."""
    return np.sqrt(np.clip(np.asarray(histograms, np.float32), 0.0, None))
