"""The bad-image corpus: every odd file gets its defined outcome from the one guarded decoder."""

from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgsearch.data import ImageDecodeError, load_image
from imgsearch.data import images as images_mod
from imgsearch.data.images import SkipReport, load_image_bytes, verify_images


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _png16_rgb(path, w: int, h: int, value: int) -> None:
    """A 16-bit-per-channel RGB PNG written by hand (PIL cannot write one)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + struct.pack(">HHH", value, value // 2, 0) * w
    raw = row * h
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(png)


def _reason(path, **kw) -> str:
    with pytest.raises(ImageDecodeError) as info:
        load_image(path, **kw)
    assert str(path) in str(info.value)  # the message names the file
    return info.value.reason


def test_missing_file(tmp_path):
    assert _reason(tmp_path / "nope.jpg") == "missing"
    assert _reason("") == "missing"


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    assert _reason(p) == "empty"


def test_text_bytes_are_not_an_image(tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_text("<html>404 Not Found</html>")
    assert _reason(p) == "not_an_image"


def test_truncated_jpeg(tmp_path):
    p = tmp_path / "cut.jpg"
    full = tmp_path / "full.jpg"
    _noise(64, 64).save(full, quality=90)
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert _reason(p) == "truncated"
    assert _reason(p, draft_size=(16, 16)) == "truncated"  # reduced-size decoding still catches it
    assert load_image(full).size == (64, 64)


def test_directory_is_unreadable(tmp_path):
    assert _reason(tmp_path) == "unreadable"


def test_decompression_bomb_with_lowered_limit(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.new("RGB", (64, 64), "white").save(p)
    monkeypatch.setattr(images_mod, "MAX_IMAGE_PIXELS", 64 * 64 - 1)
    assert _reason(p) == "too_large"
    monkeypatch.setattr(images_mod, "MAX_IMAGE_PIXELS", 64 * 64)
    assert load_image(p).size == (64, 64)


def test_pil_own_bomb_guard_maps_to_too_large(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.new("RGB", (64, 64), "white").save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL errors above 2x this
    assert _reason(p) == "too_large"


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p, quality=95)  # pure red in CMYK
    assert Image.open(p).mode == "CMYK"
    im = load_image(p)
    assert im.mode == "RGB"
    r, g, b = im.getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60


def test_grayscale_becomes_rgb(tmp_path):
    p = tmp_path / "gray.png"
    Image.new("L", (8, 8), 77).save(p)
    im = load_image(p)
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (77, 77, 77)


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    p = tmp_path / "pal.png"
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 1)
    im.info["transparency"] = 0  # index 0 (black) is transparent
    im.save(p, transparency=0)
    out = load_image(p)
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)  # transparent -> white, not black
    assert out.getpixel((0, 0)) == (200, 0, 0)


def test_rgba_is_composited_on_white(tmp_path):
    p = tmp_path / "rgba.png"
    arr = np.zeros((8, 8, 4), dtype=np.uint8)
    arr[:, :4] = (0, 0, 255, 255)  # opaque blue left half
    arr[:, 4:] = (0, 0, 0, 0)  # fully transparent right half
    Image.fromarray(arr, "RGBA").save(p)
    out = load_image(p)
    assert out.getpixel((1, 1)) == (0, 0, 255)
    assert out.getpixel((6, 1)) == (255, 255, 255)


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "g16.png"
    arr = np.zeros((4, 4), dtype=np.uint16)
    arr[0, 0], arr[0, 1], arr[0, 2] = 65535, 32896, 1000
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")
    out = load_image(p)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (128, 128, 128)
    assert out.getpixel((2, 0)) == (4, 4, 4)  # 1000/257, a dark pixel stays dark (naive clipping gives 255)


def test_16bit_rgb_png(tmp_path):
    p = tmp_path / "rgb16.png"
    _png16_rgb(p, 4, 3, 65535)
    out = load_image(p)
    assert out.mode == "RGB" and out.size == (4, 3)
    r, g, b = out.getpixel((0, 0))
    assert r == 255 and 126 <= g <= 128 and b == 0


def test_exif_rotation_is_applied(tmp_path):
    p = tmp_path / "rot.jpg"
    arr = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high
    arr[:, :20] = (255, 0, 0)  # left half red
    arr[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(p, exif=exif, quality=95)
    out = load_image(p)
    assert out.size == (20, 40)  # now portrait
    top, bottom = out.getpixel((10, 5)), out.getpixel((10, 34))
    assert top[0] > 200 and top[2] < 60  # the left (red) edge is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_draft_size_decodes_jpeg_smaller(tmp_path):
    p = tmp_path / "big.jpg"
    _noise(256, 256).save(p)
    small = load_image(p, draft_size=(32, 32))
    assert 32 <= small.size[0] <= 64 and small.mode == "RGB"
    assert load_image(p).size == (256, 256)


def test_load_image_bytes_and_error_type():
    with pytest.raises(ValueError) as info:  # ImageDecodeError is a ValueError
        load_image_bytes(b"not an image", "upload")
    assert isinstance(info.value, ImageDecodeError) and info.value.reason == "not_an_image"
    with pytest.raises(ValueError, match="unknown image skip reason"):
        ImageDecodeError("x", "bogus")


def test_verify_images_drops_failures_and_hashes_good_files(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8), "red").save(good)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    df = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "e"],
            "image_path": [str(good), str(empty), str(text), str(tmp_path / "gone.jpg"), str(good)],
            "label": ["x"] * 5,
        }
    )
    ok, report = verify_images(df, workers=2)
    assert ok["item_id"].tolist() == ["a", "e"]
    assert ok["content_hash"].tolist() == [hashlib.sha1(good.read_bytes()).hexdigest()] * 2
    assert report.counts == {"empty": 1, "not_an_image": 1, "missing": 1}
    assert {i["item_id"]: i["reason"] for i in report.items} == {
        "b": "empty",
        "c": "not_an_image",
        "d": "missing",
    }
    d = report.to_dict()
    assert d["checked"] == 5 and d["skipped"] == 3
    assert "3 skipped" in report.summary()

    merged = SkipReport(total=2, counts={"empty": 2}).merge(report)
    assert merged.counts["empty"] == 3 and merged.total == 7 and len(merged.items) == 3
