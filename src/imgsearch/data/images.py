"""The one guarded image decoder, and the one-pass verification of a catalogue's images.

Every stage that opens an image (catalogue building, training, indexing, search, serving) goes
through :func:`load_image`, so that every odd file gets the same defined outcome:

=========================================  =========================================
input                                      outcome
=========================================  =========================================
no file / ``""`` path                      ``ImageDecodeError(reason="missing")``
0-byte file                                ``reason="empty"``
bytes PIL does not recognise               ``reason="not_an_image"``
file that ends early (cut-off download)    ``reason="truncated"``
more than ``MAX_IMAGE_PIXELS`` pixels      ``reason="too_large"`` (decompression bomb)
permission denied, corrupt data, ...       ``reason="unreadable"``
RGBA / LA / palette or L with transparency composited on white, then RGB
CMYK / YCbCr / L / 1 / P                   converted to RGB
I;16 / I / F (16-bit, float)               scaled to 8 bit, then RGB
EXIF orientation tag                       applied (the pixels come back upright)
=========================================  =========================================
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from struct import error as struct_error  # raised by some PIL plugins on corrupt headers
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from imgsearch.utils.progress import progress

log = logging.getLogger(__name__)

#: Images with more pixels than this are refused as decompression bombs (``reason="too_large"``).
#: Read at call time, so it can be lowered (tests) or raised (huge product shots) by assignment.
#: PIL's own guard (``PIL.Image.MAX_IMAGE_PIXELS``, an error above twice that value) still applies.
MAX_IMAGE_PIXELS: int = 89_478_485

SKIP_REASONS: tuple[str, ...] = ("missing", "empty", "not_an_image", "truncated", "too_large", "unreadable")

#: Draft size used by :func:`verify_images`: decoding at reduced DCT scale still reads every byte
#: of the entropy-coded stream, so truncation is caught at a fraction of the cost.
VERIFY_DRAFT_SIZE: tuple[int, int] = (64, 64)


class ImageDecodeError(ValueError):
    """An image that cannot be used, with a reason from :data:`SKIP_REASONS`."""

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str = "") -> None:
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown image skip reason {reason!r}; expected one of {SKIP_REASONS}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    """Scale a 16-bit / 32-bit integer or float single-band image to 8-bit ``L``."""
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        arr = arr.astype(np.float64) / 257.0
    else:
        arr = arr.astype(np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if lo >= 0.0 and hi <= 1.0 and im.mode == "F":
            arr = arr * 255.0  # float images in [0, 1]
        elif lo >= 0.0 and hi <= 255.0:
            pass  # already 8-bit range
        elif lo >= 0.0 and hi <= 65535.0:
            arr = arr / 257.0  # 16-bit data stored as mode "I"
        else:
            arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
    arr = np.nan_to_num(arr, nan=0.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _has_transparency(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any decoded PIL image to 8-bit RGB (transparent pixels become white)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        im = _to_8bit_gray(im)
    if _has_transparency(im):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


def _decode(
    source: str | io.BytesIO,
    path: str,
    draft_size: tuple[int, int] | None,
    max_pixels: int | None = None,
    max_side: int | None = None,
) -> Image.Image:
    # the tighter of the module-wide guard and the caller's budget (a service sets its own)
    limit = MAX_IMAGE_PIXELS if max_pixels is None else min(int(max_pixels), MAX_IMAGE_PIXELS)
    if max_side is not None and draft_size is None:
        draft_size = (int(max_side), int(max_side))
    try:
        with Image.open(source) as im:
            w, h = im.size
            if w * h > limit:
                name = "MAX_IMAGE_PIXELS" if max_pixels is None else "the pixel budget"
                raise ImageDecodeError(path, "too_large", f"{w}x{h} pixels > {name}={limit}")
            if draft_size is not None and im.format == "JPEG":
                im.draft("RGB", tuple(draft_size))
            im.load()  # decode every byte now, so a truncated file fails here and not mid-epoch
            if max_side is not None and max(im.size) > max_side:
                # shrink in the decoded mode (1 or 8 bit for many bombs) before the RGB copy triples it
                im.thumbnail((int(max_side), int(max_side)))
            try:
                upright = ImageOps.exif_transpose(im)
            except Exception as exc:  # a broken EXIF block must not cost a good image
                log.debug("ignoring unreadable EXIF in %s: %s", path, exc)
                upright = im
            return to_rgb(upright if upright is not None else im).copy()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(path, "too_large", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(path, "not_an_image", "not a recognised image format") from exc
    except EOFError as exc:
        raise ImageDecodeError(path, "truncated", str(exc) or "unexpected end of file") from exc
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or "premature end" in msg.lower():
            raise ImageDecodeError(path, "truncated", msg) from exc
        raise ImageDecodeError(path, "unreadable", msg) from exc
    except (ValueError, SyntaxError, TypeError, IndexError, struct_error, MemoryError) as exc:
        msg = str(exc)
        reason = "too_large" if "too large" in msg.lower() else "unreadable"
        raise ImageDecodeError(path, reason, f"{type(exc).__name__}: {msg}") from exc


def _check_file(path: str | os.PathLike[str]) -> Path:
    if path is None or str(path) == "":
        raise ImageDecodeError("", "missing", "no image path")
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise ImageDecodeError(p, "missing", "no such file") from exc
    except OSError as exc:
        raise ImageDecodeError(p, "unreadable", str(exc)) from exc
    if not p.is_file():
        raise ImageDecodeError(p, "unreadable", "not a regular file")
    if st.st_size == 0:
        raise ImageDecodeError(p, "empty", "0 bytes")
    return p


def load_image(
    path: str | os.PathLike[str],
    *,
    draft_size: tuple[int, int] | None = None,
    max_pixels: int | None = None,
    max_side: int | None = None,
) -> Image.Image:
    """Decode an image file to an 8-bit RGB ``PIL.Image``, upright, fully loaded.

    Args:
        path: the image file.
        draft_size: for JPEGs, let the decoder produce a smaller image (DCT scaling, 1/2 to
            1/8) that is still at least this ``(width, height)``; much faster for thumbnails and
            models with small inputs. Other formats ignore it. The exact size is not guaranteed.
        max_pixels: refuse (``too_large``) images with more pixels than this, read from the header
            before any decoding; the module-wide :data:`MAX_IMAGE_PIXELS` applies in any case.
        max_side: return at most this many pixels on the longer side (aspect kept): JPEGs are
            decoded at reduced DCT scale, other formats shrunk before the conversion to RGB.

    Raises:
        ImageDecodeError: with ``reason`` in :data:`SKIP_REASONS`.
    """
    p = _check_file(path)
    return _decode(str(p), str(p), draft_size, max_pixels, max_side)


def load_image_bytes(
    data: bytes,
    path: str | os.PathLike[str] = "<bytes>",
    *,
    draft_size: tuple[int, int] | None = None,
    max_pixels: int | None = None,
    max_side: int | None = None,
) -> Image.Image:
    """:func:`load_image` for bytes already in memory (uploads, or a file read once for hashing)."""
    if not data:
        raise ImageDecodeError(path, "empty", "0 bytes")
    return _decode(io.BytesIO(data), str(path), draft_size, max_pixels, max_side)


@dataclass
class SkipReport:
    """What was skipped and why: counts per reason plus one entry per skipped item."""

    counts: dict[str, int] = field(default_factory=dict)
    items: list[dict[str, str]] = field(default_factory=list)
    total: int = 0

    def add(self, item_id: str, image_path: str, reason: str, detail: str = "") -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.items.append({"item_id": item_id, "image_path": image_path, "reason": reason, "detail": detail})

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: SkipReport) -> SkipReport:
        """Add ``other``'s counts and items to this report (in place) and return it."""
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
        self.items.extend(other.items)
        self.total += other.total
        return self

    def summary(self) -> str:
        if not self.skipped:
            return f"images: {self.total} checked, none skipped"
        parts = ", ".join(f"{r}={n}" for r, n in sorted(self.counts.items(), key=lambda kv: -kv[1]))
        return f"images: {self.total} checked, {self.skipped} skipped ({parts})"

    def log(self, logger: logging.Logger = log) -> None:
        (logger.warning if self.skipped else logger.info)(self.summary())

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.total,
            "skipped": self.skipped,
            "counts": dict(self.counts),
            "items": self.items,
        }


def _verify_one(path: str) -> tuple[str, str, str]:
    """Return ``(content_hash, reason, detail)``; reason is ``""`` for a good image."""
    try:
        p = _check_file(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ImageDecodeError(p, "unreadable", str(exc)) from exc
        load_image_bytes(data, p, draft_size=VERIFY_DRAFT_SIZE)
        return hashlib.sha1(data).hexdigest(), "", ""
    except ImageDecodeError as exc:
        return "", exc.reason, exc.detail


def verify_images(df: pd.DataFrame, *, workers: int | None = None) -> tuple[pd.DataFrame, SkipReport]:
    """Decode each row's image once; drop the rows that fail; add ``content_hash``.

    ``content_hash`` is the sha1 of the file's bytes (for exact-duplicate removal). Files shared
    by several rows are read once. A thread pool overlaps I/O and decoding (PIL releases the GIL).

    Returns:
        ``(ok_rows, report)``: the good rows (index reset) and what was skipped and why.
    """
    report = SkipReport(total=len(df))
    if df.empty:
        out = df.copy()
        out["content_hash"] = pd.Series([], dtype=object)
        return out, report
    paths = [str(p) for p in df["image_path"].tolist()]
    unique = list(dict.fromkeys(paths))
    n_workers = workers or min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
        checked = progress(
            pool.map(_verify_one, unique),
            total=len(unique),
            desc="verifying images",
            logger=log,
            unit="image",
        )
        results = dict(zip(unique, checked, strict=True))
    hashes, keep = [], []
    for item_id, path in zip(df["item_id"].tolist(), paths, strict=True):
        digest, reason, detail = results[path]
        keep.append(not reason)
        hashes.append(digest)
        if reason:
            report.add(str(item_id), path, reason, detail)
    out = df.copy()
    out["content_hash"] = hashes
    out = out[keep].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    report.log()
    return out, report


#: Extensions (lower case) that "any image extension" means when images are looked up by name stem.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def url_file_name(url: str) -> str:
    """The last path segment of a URL (query and fragment dropped): the usual name of a downloaded copy."""
    text = str(url or "").strip()
    if not text:
        return ""
    return text.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


class ImageDirIndex:
    """Looks file names up in image folders, listing each folder only once.

    A real catalogue folder holds ~10^5 files; one ``os.scandir`` per folder instead of one
    ``stat`` per (row, extension) keeps resolution fast on network disks.
    """

    def __init__(self) -> None:
        self._names: dict[Path, dict[str, str]] = {}
        self._stems: dict[Path, dict[str, str]] = {}

    def _list(self, folder: Path) -> dict[str, str]:
        if folder not in self._names:
            names: dict[str, str] = {}
            stems: dict[str, str] = {}
            try:
                with os.scandir(folder) as it:
                    entries = sorted((e.name, e.path) for e in it if e.is_file())
            except OSError:
                entries = []
            for name, path in entries:
                names[name] = str(Path(path).resolve())
                stem, ext = os.path.splitext(name)
                # first extension in IMAGE_EXTENSIONS order wins, so the choice is deterministic
                if ext.lower() in IMAGE_EXTENSIONS:
                    old = stems.get(stem)
                    rank = IMAGE_EXTENSIONS.index(ext.lower())
                    if old is None or rank < IMAGE_EXTENSIONS.index(os.path.splitext(old)[1].lower()):
                        stems[stem] = names[name]
            self._names[folder] = names
            self._stems[folder] = stems
        return self._names[folder]

    def by_name(self, folders: Iterable[Path], name: str) -> str:
        """Absolute path of ``name`` in the first folder that has it, else ``""``."""
        if not name:
            return ""
        for folder in folders:
            hit = self._list(folder).get(name)
            if hit:
                return hit
        return ""

    def by_stem(self, folders: Iterable[Path], stem: str) -> str:
        """Absolute path of ``<stem>.<any image extension>`` in the first folder that has one, else ``""``."""
        if not stem:
            return ""
        for folder in folders:
            self._list(folder)
            hit = self._stems[folder].get(stem)
            if hit:
                return hit
        return ""
