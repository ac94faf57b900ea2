"""A colour column read from the colour words of a product's title, for catalogues without one.

Farfetch and Amazon listings (and the built-in demo, which follows Farfetch) name an item's colour in its
title ("ivory striped knee-high leather boots") but have no colour field, so a colour head
(``model.attributes=[colour]``) has nothing to learn from. ``data.prepare.title_colour=colour`` fills that
column from :data:`COLOUR_WORDS`: the first colour phrase of the title, longest phrases first ("sky blue"
before "blue"), whole words only ("rose" is not read in "primrose"), normalised to one name per colour
("grey" and "gray" are both ``grey``). A title without a colour word leaves the cell empty, which adds
nothing to the colour loss; a cell the catalogue already fills is kept.
"""

from __future__ import annotations

import logging
import re

import pandas as pd

log = logging.getLogger(__name__)

_NAMES = (
    "black", "white", "ivory", "cream", "beige", "camel", "khaki", "brown", "tan", "chocolate", "grey",
    "silver", "gold", "navy", "blue", "sky blue", "light blue", "teal", "turquoise", "green", "olive", "mint",
    "yellow", "mustard", "orange", "coral", "red", "burgundy", "pink", "fuchsia", "purple", "lilac",
    "lavender", "nude", "multicolour",
)  # fmt: skip

#: colour phrase in a title -> the colour name it stands for (lower case)
COLOUR_WORDS: dict[str, str] = {
    **{name: name for name in _NAMES},
    "gray": "grey",
    "off-white": "ivory",
    "off white": "ivory",
    "navy blue": "navy",
    "gold-tone": "gold",
    "silver-tone": "silver",
    "multicolor": "multicolour",
    "multi-colour": "multicolour",
    "maroon": "burgundy",
    "bordeaux": "burgundy",
    "violet": "purple",
    "magenta": "fuchsia",
}

_LONGEST_FIRST = sorted(COLOUR_WORDS, key=len, reverse=True)
_WORDS = "|".join(map(re.escape, _LONGEST_FIRST))
_PATTERN = re.compile(rf"(?<![\w-])({_WORDS})(?![\w-])", re.IGNORECASE)


def colour_of_title(title: object) -> str:
    """The colour named first in ``title`` (a :data:`COLOUR_WORDS` value), or ``""`` when none is."""
    if not isinstance(title, str):
        return ""
    match = _PATTERN.search(title)
    return COLOUR_WORDS[match.group(1).lower()] if match else ""


def add_title_colour(table: pd.DataFrame, column: str = "colour") -> pd.DataFrame:
    """``table`` with ``column`` filled from each title where it is missing or empty (a copy)."""
    if "title" not in table.columns:
        raise ValueError(f"title_colour={column!r} reads the titles, but the catalogue has no title column")
    out = table.copy()
    current = out[column].fillna("").astype(str).str.strip() if column in out.columns else None
    read = out["title"].map(colour_of_title)
    out[column] = read if current is None else current.where(current != "", read)
    empty = int((out[column] == "").sum())
    log.info(
        "title colour: %s filled from the titles; %d of %d rows name no colour (left empty)",
        column,
        empty,
        len(out),
    )
    return out
