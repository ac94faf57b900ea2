"""Drawing for the built-in demo catalogue: product-like silhouettes and their two photo views.

Each product is drawn once, in unit coordinates, onto three layers of a square canvas: the *main* mask
(the part that carries the product's colour pattern), an *over* layer (soles, lenses, buttons, stitching:
parts with their own colour) and a *body* layer (a rough model wearing the item, used only by the model
view). From that :class:`Look` two views are rendered:

- ``cutout``: the item alone, centred on white (a packshot);
- ``model``: the same item, with the rough body, scaled, rotated and shifted onto a cluttered background,
  with changed light and colour temperature, a little blur, noise and a lower JPEG quality.

Everything is drawn at twice the output size and downsampled, which is cheaper than anti-aliased drawing
and keeps edges smooth. All randomness comes from the ``numpy.random.Generator`` passed in, so a view
is a pure function of its seed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]
Point = tuple[float, float]

SUPERSAMPLE = 2
WHITE: RGB = (255, 255, 255)

# Named base colours: the name goes into the product description, so it must describe the drawn colour.
COLOURS: dict[str, RGB] = {
    "black": (28, 28, 32),
    "navy": (30, 42, 92),
    "red": (192, 32, 42),
    "burgundy": (112, 22, 44),
    "pink": (236, 140, 172),
    "orange": (236, 122, 34),
    "yellow": (240, 200, 52),
    "olive": (108, 112, 42),
    "green": (40, 132, 72),
    "teal": (22, 122, 132),
    "sky blue": (112, 172, 226),
    "blue": (42, 82, 192),
    "purple": (112, 52, 142),
    "lilac": (182, 152, 212),
    "brown": (112, 72, 42),
    "camel": (196, 150, 96),
    "beige": (216, 196, 160),
    "grey": (132, 132, 138),
    "khaki": (166, 150, 100),
    "ivory": (238, 230, 210),
}
DENIM = ("navy", "blue", "sky blue", "black")
METALS: dict[str, RGB] = {"gold-tone": (214, 176, 60), "silver-tone": (196, 198, 206)}
SKIN: tuple[RGB, ...] = ((241, 204, 180), (224, 172, 130), (176, 120, 84), (120, 80, 56), (86, 58, 42))
PATTERNS = ("solid", "stripes", "dots", "checks", "gradient")


@dataclass
class Look:
    """A product's appearance, drawn once and shared by its views."""

    category: str
    colour_name: str
    pattern: str
    item: Image.Image  # RGBA, supersampled, item centred and fitted
    body: Image.Image  # RGBA, same frame: the rough model under the item (model view only)


class _Canvas:
    """Three drawing layers addressed in unit coordinates (0..1 across the square canvas)."""

    MAIN = "main"
    ERASE = "erase"

    def __init__(self, size: int) -> None:
        self.s = size
        self.mask = Image.new("L", (size, size), 0)
        self.over = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.body = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self._draw = {
            "mask": ImageDraw.Draw(self.mask),
            "over": ImageDraw.Draw(self.over),
            "body": ImageDraw.Draw(self.body),
        }

    def _target(self, fill: str | RGB, body: bool = False) -> tuple[ImageDraw.ImageDraw, int | tuple]:
        if body:
            return self._draw["body"], (*fill, 255)
        if fill == self.MAIN:
            return self._draw["mask"], 255
        if fill == self.ERASE:
            return self._draw["mask"], 0
        return self._draw["over"], (*fill, 255)

    def _pts(self, pts: Sequence[Point]) -> list[tuple[float, float]]:
        return [(x * self.s, y * self.s) for x, y in pts]

    def _box(self, box: Sequence[float]) -> list[float]:
        x0, y0, x1, y1 = (v * self.s for v in box)
        return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]

    def poly(self, pts: Sequence[Point], fill: str | RGB = MAIN, body: bool = False) -> None:
        draw, colour = self._target(fill, body)
        draw.polygon(self._pts(pts), fill=colour)

    def ellipse(
        self, box: Sequence[float], fill: str | RGB = MAIN, width: float = 0.0, body: bool = False
    ) -> None:
        draw, colour = self._target(fill, body)
        if width:
            draw.ellipse(self._box(box), outline=colour, width=max(1, round(width * self.s)))
        else:
            draw.ellipse(self._box(box), fill=colour)

    def rect(
        self, box: Sequence[float], fill: str | RGB = MAIN, radius: float = 0.0, width: float = 0.0
    ) -> None:
        draw, colour = self._target(fill)
        r = round(radius * self.s)
        if width:
            draw.rounded_rectangle(self._box(box), r, outline=colour, width=max(1, round(width * self.s)))
        else:
            draw.rounded_rectangle(self._box(box), r, fill=colour)

    def line(
        self, pts: Sequence[Point], fill: str | RGB = MAIN, width: float = 0.01, body: bool = False
    ) -> None:
        draw, colour = self._target(fill, body)
        draw.line(self._pts(pts), fill=colour, width=max(1, round(width * self.s)), joint="curve")

    def arc(
        self, box: Sequence[float], start: float, end: float, fill: str | RGB = MAIN, width: float = 0.01
    ) -> None:
        draw, colour = self._target(fill)
        draw.arc(self._box(box), start, end, fill=colour, width=max(1, round(width * self.s)))


@dataclass
class _Style:
    """What a drawer may use besides the canvas: random numbers and the product's colours."""

    rng: np.random.Generator
    primary: RGB
    secondary: RGB
    accent: RGB  # details: seams, collars, straps
    skin: RGB

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)


def _shade(c: RGB, k: float) -> RGB:
    """Darken (k < 1) or lighten (k > 1) a colour."""
    if k <= 1:
        return tuple(int(v * k) for v in c)  # type: ignore[return-value]
    return tuple(int(v + (255 - v) * (k - 1)) for v in c)  # type: ignore[return-value]


# --- rough body parts, drawn on the body layer -------------------------------------------------------


def _head_and_legs(c: _Canvas, st: _Style, neck_y: float, hem_y: float, half_w: float) -> None:
    c.ellipse((0.5 - 0.09, neck_y - 0.24, 0.5 + 0.09, neck_y - 0.04), st.skin, body=True)
    c.poly(
        [(0.46, neck_y - 0.06), (0.54, neck_y - 0.06), (0.55, neck_y + 0.03), (0.45, neck_y + 0.03)],
        st.skin,
        body=True,
    )
    leg = (0.5 - 0.6 * half_w, 0.5 - 0.12 * half_w, 0.5 + 0.12 * half_w, 0.5 + 0.6 * half_w)
    c.poly(
        [(leg[0], hem_y - 0.05), (leg[1], hem_y - 0.05), (leg[1] - 0.01, 1.2), (leg[0] + 0.01, 1.2)],
        st.skin,
        body=True,
    )
    c.poly(
        [(leg[2], hem_y - 0.05), (leg[3], hem_y - 0.05), (leg[3] - 0.01, 1.2), (leg[2] + 0.01, 1.2)],
        st.skin,
        body=True,
    )


def _torso_and_feet(c: _Canvas, st: _Style, waist_y: float, hem_y: float, half_w: float) -> None:
    top = _shade(st.secondary, 0.8)
    c.poly(
        [
            (0.5 - half_w, waist_y + 0.02),
            (0.5 + half_w, waist_y + 0.02),
            (0.5 + half_w * 1.15, -0.2),
            (0.5 - half_w * 1.15, -0.2),
        ],
        top,
        body=True,
    )
    c.ellipse((0.5 - half_w - 0.06, hem_y - 0.04, 0.5 - half_w + 0.08, hem_y + 0.04), (30, 30, 30), body=True)
    c.ellipse((0.5 + half_w - 0.08, hem_y - 0.04, 0.5 + half_w + 0.06, hem_y + 0.04), (30, 30, 30), body=True)


def _leg_into_shoe(c: _Canvas, st: _Style, x0: float, x1: float, ankle_y: float) -> None:
    c.poly(
        [(x0, ankle_y + 0.04), (x1, ankle_y + 0.04), (x1 + 0.02, -0.2), (x0 - 0.02, -0.2)], st.skin, body=True
    )


# --- silhouettes ---------------------------------------------------------------------------------------


def _torso(c: _Canvas, st: _Style, top: float, bot: float, w: float, flare: float = 0.0) -> None:
    c.poly(
        [
            (0.5 - w, top + 0.04),
            (0.5 - 0.08, top),
            (0.5 + 0.08, top),
            (0.5 + w, top + 0.04),
            (0.5 + w + flare, bot),
            (0.5 - w - flare, bot),
        ]
    )


def _long_sleeves(
    c: _Canvas, st: _Style, top: float, w: float, end_y: float, spread: float, cuff: RGB
) -> None:
    for s in (-1, 1):
        sx = 0.5 + s * w
        outer = sx + s * (0.08 + spread)
        c.poly(
            [
                (sx - s * 0.01, top + 0.035),
                (sx + s * 0.07, top + 0.07),
                (outer, end_y),
                (outer - s * 0.075, end_y + 0.01),
                (sx, top + 0.22),
            ]
        )
        c.line([(outer, end_y - 0.005), (outer - s * 0.075, end_y + 0.005)], cuff, 0.025)


def _tshirt(c: _Canvas, st: _Style) -> None:
    w, top, bot, sl = st.u(0.17, 0.23), 0.2, st.u(0.74, 0.86), st.u(0.12, 0.18)
    _head_and_legs(c, st, top, bot, w)
    _torso(c, st, top, bot, w)
    for s in (-1, 1):
        sx = 0.5 + s * w
        c.poly(
            [
                (sx - s * 0.02, top + 0.035),
                (sx + s * sl, top + 0.03 + sl * 0.75),
                (sx + s * sl * 0.55, top + 0.03 + sl * 1.35),
                (sx, top + 0.03 + sl * 0.95),
            ]
        )
    c.ellipse((0.5 - 0.075, top - 0.05, 0.5 + 0.075, top + 0.055), c.ERASE)
    c.arc((0.5 - 0.085, top - 0.06, 0.5 + 0.085, top + 0.065), 0, 180, st.accent, 0.015)


def _shirt(c: _Canvas, st: _Style) -> None:
    w, top, bot = st.u(0.17, 0.21), 0.18, st.u(0.8, 0.9)
    _head_and_legs(c, st, top, bot, w)
    _torso(c, st, top, bot, w)
    _long_sleeves(c, st, top, w, st.u(0.7, 0.8), st.u(0.02, 0.06), st.accent)
    c.poly(
        [(0.5, top + 0.07), (0.5 - 0.1, top - 0.01), (0.5 - 0.03, top - 0.02)],
        WHITE if st.coin() else st.accent,
    )
    c.poly(
        [(0.5, top + 0.07), (0.5 + 0.1, top - 0.01), (0.5 + 0.03, top - 0.02)],
        WHITE if st.coin() else st.accent,
    )
    c.line([(0.5, top + 0.07), (0.5, bot)], st.accent, 0.006)
    for i in range(5):
        y = top + 0.12 + i * (bot - top - 0.16) / 4
        c.ellipse((0.5 - 0.012, y - 0.012, 0.5 + 0.012, y + 0.012), (235, 235, 225))


def _sweater(c: _Canvas, st: _Style) -> None:
    w, top, bot = st.u(0.2, 0.25), 0.2, st.u(0.74, 0.82)
    _head_and_legs(c, st, top, bot, w)
    _torso(c, st, top, bot, w, flare=-0.02)
    _long_sleeves(c, st, top, w, st.u(0.72, 0.8), st.u(0.04, 0.08), _shade(st.primary, 0.7))
    rib = _shade(st.primary, 0.72)
    c.rect((0.5 - w + 0.02, bot - 0.05, 0.5 + w - 0.02, bot), rib)
    for i in range(12):
        x = 0.5 - w + 0.03 + i * (2 * w - 0.06) / 11
        c.line([(x, bot - 0.05), (x, bot)], _shade(rib, 0.8), 0.005)
    c.ellipse((0.5 - 0.08, top - 0.045, 0.5 + 0.08, top + 0.06), c.ERASE)
    c.arc((0.5 - 0.095, top - 0.055, 0.5 + 0.095, top + 0.075), 0, 180, rib, 0.03)


def _jacket(c: _Canvas, st: _Style) -> None:
    w, top, bot = st.u(0.2, 0.24), 0.2, st.u(0.66, 0.74)
    _head_and_legs(c, st, top, bot, w)
    _torso(c, st, top, bot, w)
    _long_sleeves(c, st, top, w, st.u(0.68, 0.76), st.u(0.03, 0.06), st.accent)
    c.poly(
        [
            (0.5 - 0.1, top - 0.03),
            (0.5 + 0.1, top - 0.03),
            (0.5 + 0.08, top + 0.04),
            (0.5 - 0.08, top + 0.04),
        ],
        _shade(st.primary, 0.7),
    )
    c.line([(0.5, top + 0.04), (0.5, bot)], (190, 190, 195), 0.012)
    for s in (-1, 1):
        c.line([(0.5 + s * 0.06, bot - 0.12), (0.5 + s * 0.15, bot - 0.12)], st.accent, 0.01)
    c.rect((0.5 - w, bot - 0.035, 0.5 + w, bot), _shade(st.primary, 0.75))


def _coat(c: _Canvas, st: _Style) -> None:
    w, top, bot = st.u(0.18, 0.22), 0.12, st.u(0.9, 0.97)
    _head_and_legs(c, st, top, bot, w)
    _torso(c, st, top, bot, w, flare=st.u(0.02, 0.07))
    _long_sleeves(c, st, top, w, st.u(0.62, 0.7), st.u(0.03, 0.06), _shade(st.primary, 0.7))
    lapel = _shade(st.primary, 0.75)
    c.poly([(0.5 - 0.08, top), (0.5, top + 0.25), (0.5 - 0.13, top + 0.12)], lapel)
    c.poly([(0.5 + 0.08, top), (0.5, top + 0.25), (0.5 + 0.13, top + 0.12)], lapel)
    c.line([(0.5, top + 0.25), (0.5, bot)], _shade(st.primary, 0.6), 0.006)
    for i in range(3):
        y = top + 0.32 + i * 0.1
        for s in (-1, 1):
            c.ellipse((0.5 + s * 0.05 - 0.013, y - 0.013, 0.5 + s * 0.05 + 0.013, y + 0.013), st.accent)
    if st.coin(0.4):
        c.rect((0.5 - w - 0.01, 0.5, 0.5 + w + 0.01, 0.54), st.accent)


def _dress(c: _Canvas, st: _Style) -> None:
    bw, ww, hem_w, top, waist, hem = (
        st.u(0.09, 0.12),
        st.u(0.07, 0.09),
        st.u(0.2, 0.33),
        0.16,
        0.4,
        st.u(0.82, 0.95),
    )
    _head_and_legs(c, st, top - 0.04, hem, 0.12)
    c.poly(
        [
            (0.5 - bw, top),
            (0.5 + bw, top),
            (0.5 + ww, waist),
            (0.5 + hem_w, hem),
            (0.5 - hem_w, hem),
            (0.5 - ww, waist),
        ]
    )
    for s in (-1, 1):
        c.line([(0.5 + s * (bw - 0.015), top + 0.01), (0.5 + s * 0.06, top - 0.1)], c.MAIN, 0.018)
    c.ellipse((0.5 - 0.045, top - 0.03, 0.5 + 0.045, top + 0.04), c.ERASE)
    c.rect((0.5 - ww - 0.005, waist - 0.015, 0.5 + ww + 0.005, waist + 0.015), st.accent)


def _skirt(c: _Canvas, st: _Style) -> None:
    ww, hem_w, waist, hem = st.u(0.14, 0.18), st.u(0.24, 0.34), 0.22, st.u(0.72, 0.88)
    _torso_and_feet(c, st, waist, hem + 0.2, ww)
    c.poly([(0.5 - ww, waist), (0.5 + ww, waist), (0.5 + hem_w, hem), (0.5 - hem_w, hem)])
    c.rect((0.5 - ww, waist, 0.5 + ww, waist + 0.04), st.accent)
    if st.coin():
        for i in range(1, 8):
            t = i / 8
            c.line(
                [(0.5 - ww + 2 * ww * t, waist + 0.04), (0.5 - hem_w + 2 * hem_w * t, hem)],
                _shade(st.primary, 0.75),
                0.006,
            )


def _legs(
    c: _Canvas, st: _Style, waist: float, crotch: float, hem: float, ww: float, ow: float, iw: float
) -> None:
    c.poly(
        [
            (0.5 - ww, waist),
            (0.5 + ww, waist),
            (0.5 + ow, hem),
            (0.5 + iw, hem),
            (0.5, crotch),
            (0.5 - iw, hem),
            (0.5 - ow, hem),
        ]
    )
    c.rect((0.5 - ww, waist, 0.5 + ww, waist + 0.04), _shade(st.primary, 0.8))
    c.line([(0.5, waist + 0.04), (0.5, crotch - 0.08)], _shade(st.primary, 0.6), 0.006)


def _trousers(c: _Canvas, st: _Style) -> None:
    ww, waist, hem = st.u(0.15, 0.18), 0.06, 0.95
    _torso_and_feet(c, st, waist, hem + 0.02, ww)
    _legs(c, st, waist, 0.36, hem, ww, ww + st.u(0.0, 0.06), st.u(0.02, 0.05))
    for s in (-1, 1):
        c.line(
            [(0.5 + s * ww * 0.5, waist + 0.04), (0.5 + s * ww * 0.55, hem)], _shade(st.primary, 0.8), 0.004
        )


def _jeans(c: _Canvas, st: _Style) -> None:
    ww, waist, hem = st.u(0.15, 0.18), 0.06, 0.95
    ow = ww + st.u(-0.02, 0.05)
    _torso_and_feet(c, st, waist, hem + 0.02, ww)
    _legs(c, st, waist, 0.36, hem, ww, ow, st.u(0.01, 0.04))
    stitch = (222, 140, 50)
    for s in (-1, 1):
        c.line([(0.5 + s * (ww - 0.015), waist + 0.05), (0.5 + s * (ow - 0.015), hem)], stitch, 0.005)
        c.arc((0.5 + s * 0.1 - 0.07, waist - 0.02, 0.5 + s * 0.1 + 0.07, waist + 0.14), 0, 180, stitch, 0.006)
        c.ellipse((0.5 + s * 0.04 - 0.01, waist + 0.06, 0.5 + s * 0.04 + 0.01, waist + 0.08), (200, 170, 90))
    c.rect((0.5 - ww, hem - 0.03, 0.5 - 0.02, hem), _shade(st.primary, 0.8))
    c.rect((0.5 + 0.02, hem - 0.03, 0.5 + ww + 0.03, hem), _shade(st.primary, 0.8))


def _shorts(c: _Canvas, st: _Style) -> None:
    ww, waist, hem = st.u(0.15, 0.18), 0.3, st.u(0.62, 0.7)
    _torso_and_feet(c, st, waist, 0.98, ww)
    _head_and_legs(c, st, -1.0, hem, ww)  # only the legs fall inside the canvas
    _legs(c, st, waist, 0.49, hem, ww, ww + st.u(0.05, 0.09), st.u(0.05, 0.08))
    c.line([(0.5 - ww - 0.05, hem - 0.025), (0.5 - 0.02, hem - 0.025)], _shade(st.primary, 0.7), 0.008)
    c.line([(0.5 + 0.02, hem - 0.025), (0.5 + ww + 0.05, hem - 0.025)], _shade(st.primary, 0.7), 0.008)


def _sole_colour(st: _Style) -> RGB:
    return ((240, 240, 236), (30, 30, 30), (176, 126, 74))[int(st.rng.integers(3))]


def _sneakers(c: _Canvas, st: _Style) -> None:
    h = st.u(0.0, 0.06)  # high-tops reach further up the ankle
    _leg_into_shoe(c, st, 0.17, 0.36, 0.4 - h)
    c.poly(
        [
            (0.12, 0.66),
            (0.13, 0.4 - h),
            (0.34, 0.38 - h),
            (0.42, 0.44),
            (0.62, 0.5),
            (0.82, 0.55),
            (0.9, 0.62),
            (0.9, 0.66),
        ]
    )
    c.rect((0.1, 0.64, 0.92, 0.72), _sole_colour(st), radius=0.03)
    c.poly([(0.72, 0.53), (0.86, 0.56), (0.9, 0.64), (0.7, 0.64)], _shade(st.primary, 0.8))
    for i in range(4):
        x = 0.44 + i * 0.055
        c.line([(x, 0.44 + i * 0.017), (x + 0.04, 0.47 + i * 0.017)], WHITE, 0.012)
    c.line([(0.22, 0.6), (0.4, 0.5), (0.6, 0.6)], st.secondary, 0.03)


def _boots(c: _Canvas, st: _Style) -> None:
    top, x1 = st.u(0.04, 0.2), st.u(0.48, 0.54)
    _leg_into_shoe(c, st, 0.27, 0.45, top)
    c.poly([(0.24, top), (x1, top), (x1, 0.55), (0.74, 0.63), (0.86, 0.72), (0.86, 0.8), (0.24, 0.8)])
    sole = _shade(st.primary, 0.4)
    c.rect((0.22, 0.79, 0.88, 0.84), sole, radius=0.01)
    c.rect((0.22, 0.8, 0.36, 0.9), sole)
    c.rect((0.24, top, x1, top + 0.04), _shade(st.primary, 0.75))
    c.line([(x1 - 0.04, top + 0.06), (x1 - 0.04, 0.56)], (200, 200, 205) if st.coin() else st.accent, 0.01)


def _sandals(c: _Canvas, st: _Style) -> None:
    _leg_into_shoe(c, st, 0.2, 0.34, 0.5)
    c.poly([(0.26, 0.54), (0.9, 0.6), (0.9, 0.64), (0.3, 0.62)], c.MAIN, body=False)
    c.ellipse((0.16, 0.58, 0.32, 0.64), _shade(st.primary, 0.8))
    for i in range(int(st.rng.integers(2, 4))):
        x = 0.45 + i * 0.15
        c.arc((x - 0.08, 0.45, x + 0.08, 0.7), 180, 360, c.MAIN, 0.03)
    c.arc((0.16, 0.38, 0.38, 0.66), 180, 360, c.MAIN, 0.025)
    c.rect((0.1, 0.63, 0.92, 0.68), _sole_colour(st), radius=0.02)
    c.rect((0.12, 0.64, 0.22, 0.74), _shade(st.primary, 0.5))


def _pumps(c: _Canvas, st: _Style) -> None:
    # Side view, toe to the right: a low-cut upper over an arched sole on a stiletto heel.
    heel = st.u(0.2, 0.28)
    _leg_into_shoe(c, st, 0.2, 0.34, 0.42)
    c.poly(
        [
            (0.18, 0.38),
            (0.24, 0.45),
            (0.4, 0.53),
            (0.52, 0.57),
            (0.66, 0.6),
            (0.84, 0.64),
            (0.93, 0.7),
            (0.9, 0.74),
            (0.62, 0.74),
            (0.4, 0.63),
            (0.22, 0.55),
        ]
    )
    c.poly([(0.2, 0.41), (0.4, 0.53), (0.52, 0.57), (0.4, 0.56), (0.22, 0.47)], _shade(st.primary, 0.35))
    c.line([(0.22, 0.55), (0.4, 0.63), (0.62, 0.74), (0.9, 0.74)], _shade(st.primary, 0.5), 0.012)
    c.poly([(0.18, 0.52), (0.27, 0.56), (0.235, 0.56 + heel), (0.21, 0.56 + heel)], _shade(st.primary, 0.6))


def _bag(c: _Canvas, st: _Style) -> None:
    top, bot, tw, bw = st.u(0.36, 0.46), st.u(0.82, 0.9), st.u(0.22, 0.3), st.u(0.3, 0.38)
    c.arc((0.5 - tw * 0.7, top - st.u(0.2, 0.3), 0.5 + tw * 0.7, top + 0.12), 180, 360, st.accent, 0.035)
    c.poly([(0.5 - tw, top), (0.5 + tw, top), (0.5 + bw, bot), (0.5 - bw, bot)])
    c.poly(
        [(0.5 - tw, top), (0.5 + tw, top), (0.5 + tw + 0.02, top + 0.18), (0.5 - tw - 0.02, top + 0.18)],
        _shade(st.primary, 0.8),
    )
    c.rect((0.5 - 0.035, top + 0.15, 0.5 + 0.035, top + 0.21), (214, 176, 60), radius=0.01)


def _wallet(c: _Canvas, st: _Style) -> None:
    h = st.u(0.18, 0.26)
    c.rect((0.14, 0.5 - h, 0.86, 0.5 + h), c.MAIN, radius=0.04)
    c.line([(0.14, 0.5 - h * 0.1), (0.86, 0.5 - h * 0.1)], _shade(st.primary, 0.65), 0.012)
    c.rect((0.18, 0.5 - h + 0.03, 0.82, 0.5 + h - 0.03), _shade(st.primary, 0.7), radius=0.03, width=0.006)
    c.ellipse((0.8, 0.5 - h * 0.1 - 0.035, 0.87, 0.5 - h * 0.1 + 0.035), (214, 176, 60))


def _belt(c: _Canvas, st: _Style) -> None:
    # A rolled belt: concentric rings of strap with the buckle on top, as in shop packshots.
    wid = st.u(0.05, 0.07)
    for r in (0.36, 0.36 - wid - 0.01, 0.36 - 2 * (wid + 0.01)):
        c.ellipse((0.5 - r, 0.5 - r, 0.5 + r, 0.5 + r), c.MAIN, width=wid)
    metal = METALS["gold-tone" if st.coin() else "silver-tone"]
    c.rect((0.43, 0.1, 0.57, 0.24), metal, radius=0.015, width=0.022)
    c.line([(0.5, 0.12), (0.5, 0.22)], metal, 0.012)
    for i in range(4):
        x = 0.5 + 0.34 * np.cos(np.pi * (0.15 + 0.08 * i))
        y = 0.5 + 0.34 * np.sin(np.pi * (0.15 + 0.08 * i))
        c.ellipse((x - 0.01, y - 0.01, x + 0.01, y + 0.01), (20, 20, 20))


def _hat(c: _Canvas, st: _Style) -> None:
    brim_w, crown_h, crown_w = st.u(0.34, 0.44), st.u(0.26, 0.36), st.u(0.18, 0.23)
    base = 0.64
    c.ellipse((0.5 - brim_w, base - 0.07, 0.5 + brim_w, base + 0.07))
    c.rect((0.5 - crown_w, base - crown_h, 0.5 + crown_w, base), c.MAIN, radius=0.08)
    c.rect((0.5 - crown_w, base - 0.07, 0.5 + crown_w, base - 0.015), st.accent)
    if st.coin():
        c.line([(0.5, base - crown_h + 0.01), (0.5, base - crown_h + 0.08)], _shade(st.primary, 0.7), 0.01)


def _sunglasses(c: _Canvas, st: _Style) -> None:
    lw, lh, round_ = st.u(0.15, 0.19), st.u(0.1, 0.15), st.coin()
    lens = _shade(st.secondary, 0.3)
    for cx in (0.5 - lw - 0.04, 0.5 + lw + 0.04):
        box = (cx - lw, 0.5 - lh, cx + lw, 0.5 + lh)
        inner = (cx - lw + 0.025, 0.5 - lh + 0.025, cx + lw - 0.025, 0.5 + lh - 0.025)
        if round_:
            c.ellipse(box)
            c.ellipse(inner, lens)
        else:
            c.rect(box, c.MAIN, radius=0.05)
            c.rect(inner, lens, radius=0.035)
        c.line([(cx - lw * 0.5, 0.5 - lh * 0.4), (cx - lw * 0.1, 0.5 - lh * 0.6)], _shade(lens, 2.5), 0.012)
    c.arc((0.5 - 0.06, 0.5 - lh * 0.7, 0.5 + 0.06, 0.5 + lh * 0.2), 190, 350, c.MAIN, 0.025)
    c.line([(0.5 - 2 * lw - 0.04, 0.5 - lh * 0.6), (0.03, 0.5 - lh * 0.9)], c.MAIN, 0.02)
    c.line([(0.5 + 2 * lw + 0.04, 0.5 - lh * 0.6), (0.97, 0.5 - lh * 0.9)], c.MAIN, 0.02)


def _scarf(c: _Canvas, st: _Style) -> None:
    bw = st.u(0.1, 0.14)
    c.ellipse((0.26, 0.08, 0.74, 0.34), c.MAIN, width=0.09)
    left_end, right_end = st.u(0.8, 0.9), st.u(0.7, 0.82)
    c.poly([(0.34, 0.26), (0.34 + bw, 0.28), (0.4 + bw, left_end), (0.4, left_end)])
    c.poly([(0.54, 0.28), (0.54 + bw, 0.26), (0.6 + bw, right_end), (0.6, right_end)])
    fringe = _shade(st.primary, 0.7)
    for x0, y0 in ((0.4, left_end), (0.6, right_end)):
        for i in range(7):
            x = x0 + i * bw / 6
            c.line([(x, y0), (x, y0 + 0.05)], fringe, 0.008)


def _jewellery(c: _Canvas, st: _Style) -> None:
    # A pendant necklace: the chain carries the metal colour (set in Look), the stone the product colour.
    metal = c.metal  # type: ignore[attr-defined]
    depth = st.u(0.45, 0.6)
    for t in np.linspace(-1, 1, 29):
        x, y = 0.5 + 0.32 * t, 0.12 + depth * (1 - t * t)
        c.ellipse((x - 0.014, y - 0.014, x + 0.014, y + 0.014), c.MAIN, width=0.007)
    py = 0.12 + depth + 0.02
    r = st.u(0.06, 0.09)
    c.poly(
        [
            (0.5, py),
            (0.5 + r + 0.02, py + r + 0.02),
            (0.5, py + 2 * r + 0.04),
            (0.5 - r - 0.02, py + r + 0.02),
        ],
        metal,
    )
    if st.coin():
        c.ellipse((0.5 - r, py + 0.02, 0.5 + r, py + 2 * r + 0.02), st.primary)
    else:
        c.poly(
            [(0.5, py + 0.02), (0.5 + r, py + r + 0.02), (0.5, py + 2 * r + 0.02), (0.5 - r, py + r + 0.02)],
            st.primary,
        )
    c.ellipse((0.5 - r * 0.4, py + r * 0.6, 0.5 - r * 0.1, py + r * 0.9), _shade(st.primary, 1.8))


DRAWERS: dict[str, Callable[[_Canvas, _Style], None]] = {
    "dress": _dress,
    "skirt": _skirt,
    "trousers": _trousers,
    "jeans": _jeans,
    "shorts": _shorts,
    "shirt": _shirt,
    "t-shirt": _tshirt,
    "sweater": _sweater,
    "jacket": _jacket,
    "coat": _coat,
    "sneakers": _sneakers,
    "boots": _boots,
    "sandals": _sandals,
    "pumps": _pumps,
    "bag": _bag,
    "wallet": _wallet,
    "belt": _belt,
    "hat": _hat,
    "scarf": _scarf,
    "sunglasses": _sunglasses,
    "jewellery": _jewellery,
}
SHOES = frozenset({"sneakers", "boots", "sandals", "pumps"})


# --- colour and pattern ------------------------------------------------------------------------------


def _pick_colours(category: str, rng: np.random.Generator) -> tuple[str, RGB, RGB]:
    names = list(DENIM) if category == "jeans" else list(COLOURS)
    name = names[int(rng.integers(len(names)))]
    primary = np.clip(np.array(COLOURS[name]) + rng.integers(-14, 15, 3), 0, 255)
    others = [n for n in COLOURS if n != name]
    second = COLOURS[others[int(rng.integers(len(others)))]]
    if category == "jeans":
        second = _shade(tuple(int(v) for v in primary), 1.35)  # type: ignore[arg-type]
    return name, tuple(int(v) for v in primary), tuple(int(v) for v in second)  # type: ignore[return-value]


def _texture(size: int, pattern: str, a: RGB, b: RGB, rng: np.random.Generator) -> np.ndarray:
    """An RGB float array of the product's material; pattern scale is relative to the canvas."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ca, cb = np.array(a, np.float32), np.array(b, np.float32)
    if pattern == "gradient":
        ang = rng.uniform(0, np.pi)
        t = np.cos(ang) * xx + np.sin(ang) * yy
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    else:
        period = rng.uniform(0.05, 0.12)
        if pattern == "stripes":
            ang = rng.choice([0.0, np.pi / 2, np.pi / 4, rng.uniform(0, np.pi)])
            u = (np.cos(ang) * xx + np.sin(ang) * yy) / period
            t = (np.mod(u, 1.0) < rng.uniform(0.3, 0.6)).astype(np.float32)
        elif pattern == "dots":
            u, v = np.mod(xx / period, 1.0) - 0.5, np.mod(yy / period, 1.0) - 0.5
            t = (u * u + v * v < rng.uniform(0.04, 0.1)).astype(np.float32)
        elif pattern == "checks":
            u, v = np.floor(xx / period), np.floor(yy / period)
            t = np.mod(u + v, 2).astype(np.float32)
        else:
            t = np.zeros_like(xx)
    # A faint weave keeps solid items from being a flat fill (and gives descriptors some texture).
    weave = rng.standard_normal((size, size, 1), dtype=np.float32) * 6.0
    return np.clip(ca * (1 - t[..., None]) + cb * t[..., None] + weave, 0, 255)


def _fit(layers: Sequence[Image.Image], alpha: Image.Image, size: int, frac: float) -> list[Image.Image]:
    """Scale and shift all layers together so the item (``alpha``) fills ``frac`` of the canvas, centred."""
    bbox = alpha.getbbox()
    if bbox is None:
        raise ValueError("demo drawer produced an empty item")
    x0, y0, x1, y1 = bbox
    k = frac * size / max(x1 - x0, y1 - y0)
    # Output pixel (u, v) samples the source at ((u - size/2) / k + cx, ...): one affine map per layer.
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    coeffs = (1 / k, 0.0, cx - size / 2 / k, 0.0, 1 / k, cy - size / 2 / k)
    return [
        layer.transform((size, size), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
        for layer in layers
    ]


def draw_look(category: str, rng: np.random.Generator, image_size: int) -> Look:
    """Draw one product of ``category`` (a key of :data:`DRAWERS`) with colours and pattern from ``rng``."""
    if category not in DRAWERS:
        raise ValueError(f"demo generator cannot draw category {category!r}; known: {sorted(DRAWERS)}")
    size = image_size * SUPERSAMPLE
    name, primary, secondary = _pick_colours(category, rng)
    pattern = "solid" if category in {"jewellery", "sunglasses"} else str(rng.choice(PATTERNS))
    if category == "jeans" and pattern in {"dots", "checks"}:
        pattern = "solid"
    style = _Style(rng, primary, secondary, _shade(primary, 0.55), SKIN[int(rng.integers(len(SKIN)))])
    canvas = _Canvas(size)
    metal_name = "gold-tone" if rng.random() < 0.5 else "silver-tone"
    canvas.metal = METALS[metal_name]  # type: ignore[attr-defined]
    DRAWERS[category](canvas, style)

    if category == "jewellery":
        tex = np.broadcast_to(np.array(METALS[metal_name], np.float32), (size, size, 3))
    else:
        tex = _texture(size, pattern, primary, secondary, rng)
    # Light from the top left, and darker rims: the cheap cues that make a flat fill read as an object.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    light = 1.08 - 0.16 * (0.6 * yy + 0.4 * xx)
    rgb = np.clip(tex * light[..., None], 0, 255).astype(np.uint8)
    item = Image.fromarray(rgb, "RGB").convert("RGBA")
    item.putalpha(canvas.mask)
    item = Image.alpha_composite(item, canvas.over)
    alpha = item.getchannel("A")
    a = np.asarray(alpha, np.float32)
    rim = np.clip(a - np.asarray(alpha.filter(ImageFilter.BoxBlur(2)), np.float32), 0, 255) * 2
    arr = np.asarray(item, np.float32).copy()
    arr[..., :3] *= (1 - 0.45 * np.minimum(rim, 255) / 255)[..., None]
    item = Image.fromarray(arr.astype(np.uint8), "RGBA")

    frac = float(rng.uniform(0.78, 0.9))
    item, body = _fit([item, canvas.body], alpha, size, frac)
    colour_name = metal_name if category == "jewellery" else name
    return Look(category, colour_name, pattern, item, body)


# --- views ---------------------------------------------------------------------------------------------


def render_cutout(look: Look, image_size: int) -> Image.Image:
    """The packshot: the item centred on pure white."""
    canvas = Image.new("RGBA", look.item.size, (*WHITE, 255))
    canvas.alpha_composite(look.item)
    return canvas.convert("RGB").reduce(SUPERSAMPLE)


def _background(size: int, rng: np.random.Generator) -> Image.Image:
    """A busy scene: a wall/floor or street-like backdrop with random furniture-like clutter."""
    yy = np.mgrid[0:size, 0:size][0].astype(np.float32) / size
    wall = rng.integers(60, 240, 3).astype(np.float32)
    floor = rng.integers(30, 200, 3).astype(np.float32)
    horizon = rng.uniform(0.5, 0.85)
    t = np.clip((yy - horizon) * 12 + 0.5, 0, 1)[..., None]
    shade = (1.1 - 0.3 * yy)[..., None]
    arr = (wall * (1 - t) + floor * t) * shade
    arr += rng.standard_normal((size, size, 1), dtype=np.float32) * rng.uniform(2, 12)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(4, 12))):
        colour = (*(int(v) for v in rng.integers(0, 256, 3)), int(rng.integers(90, 256)))
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.08, 0.5, 2) * size
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.line([x0, y0, x0 + w, y0 + h], fill=colour, width=int(rng.integers(2, max(3, size // 24))))
    return img


def render_model(look: Look, image_size: int, rng: np.random.Generator) -> Image.Image:
    """The "model" photo: item (worn by a rough figure) moved onto clutter with changed scale and light."""
    size = look.item.size[0]
    person = look.body.copy()
    person.alpha_composite(look.item)
    angle = float(rng.uniform(-25, 25))
    scale = float(rng.uniform(0.6, 1.0))
    side = max(1, round(size * scale))
    person = person.resize((side, side), Image.Resampling.BILINEAR).rotate(angle, Image.Resampling.BILINEAR)
    slack = (size - side) / 2
    dx, dy = (slack + rng.uniform(-1, 1, 2) * (slack + 0.08 * size)).round().astype(int)
    scene = _background(size, rng)
    scene.paste(person, (int(dx), int(dy)), person)

    arr = np.asarray(scene.reduce(SUPERSAMPLE), np.float32)
    contrast, brightness = rng.uniform(0.7, 1.2), rng.uniform(0.75, 1.2)
    warm = rng.uniform(-0.12, 0.12)  # colour temperature: warm light lifts red and sinks blue
    arr = (arr - 128) * contrast + 128
    arr = arr * brightness * np.array([1 + warm, 1.0, 1 - warm], np.float32)
    arr += rng.standard_normal(arr.shape, dtype=np.float32) * rng.uniform(0, 6)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    radius = float(rng.uniform(0, 0.9)) * image_size / 128
    return out.filter(ImageFilter.GaussianBlur(radius)) if radius > 0.15 else out


def jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    """Encode as baseline JPEG without metadata, so identical pixels give identical bytes."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()
