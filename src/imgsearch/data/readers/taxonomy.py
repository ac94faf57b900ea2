"""Keyword taxonomy: free-text product description -> category name.

A taxonomy is a YAML file under ``conf/taxonomy/`` (``categories: {name: [keyword, ...]}``).

Match rule (documented for users in ``conf/taxonomy/farfetch.yaml`` too):

* keywords match whole words, case-insensitively; a space or hyphen inside a keyword matches a
  space, a hyphen or nothing (``t-shirt`` ~ ``T-shirt`` / ``t shirt`` / ``tshirt``); a keyword
  also matches its plural with ``-s`` / ``-es``;
* among all hits, the one that **ends last** in the text wins, because English names the item
  with the last noun of a compound ("leather belt bag" is a bag, "mule sandals" are sandals);
* hits that end at the same position: the **longest** keyword wins ("trench coat" over "coat",
  "t-shirt" over "shirt");
* no hit: ``None``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def _keyword_pattern(keyword: str) -> str:
    words = [re.escape(w) for w in re.split(r"[\s\-]+", keyword.strip().lower()) if w]
    if not words:
        raise ValueError(f"empty keyword {keyword!r} in taxonomy")
    return r"[\s\-]?".join(words) + r"(?:s|es)?"


@dataclass
class Taxonomy:
    """Ordered categories, each with its keywords."""

    categories: dict[str, list[str]]
    name: str = "taxonomy"
    _patterns: list[tuple[str, re.Pattern[str]]] = field(init=False, repr=False)
    _cache: dict[str, str | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        self._patterns = []
        for category, keywords in self.categories.items():
            if isinstance(keywords, str) or not keywords:
                raise ValueError(f"taxonomy {self.name}: category {category!r} needs a list of keywords")
            for kw in keywords:
                key = re.sub(r"[\s\-]+", " ", str(kw).strip().lower())
                if key in seen and seen[key] != category:
                    raise ValueError(
                        f"taxonomy {self.name}: keyword {kw!r} is listed under both "
                        f"{seen[key]!r} and {category!r}"
                    )
                seen[key] = category
            # longest first, so that at one start position the alternation takes the longest keyword
            alts = sorted((_keyword_pattern(str(k)) for k in keywords), key=len, reverse=True)
            pattern = re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?!\w)", re.IGNORECASE)
            self._patterns.append((str(category), pattern))
        self._cache: dict[str, str | None] = {}

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self._patterns]

    def match(self, text: str) -> str | None:
        """The category of ``text`` by the rule in the module docstring, or ``None``."""
        if not isinstance(text, str) or not text.strip():
            return None
        if text not in self._cache:  # descriptions repeat a lot in real listings
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[text] = self._match(text)
        return self._cache[text]

    def _match(self, text: str) -> str | None:
        best: tuple[int, int] | None = None
        best_cat: str | None = None
        for category, pattern in self._patterns:
            for m in pattern.finditer(text):
                key = (m.end(), m.end() - m.start())
                if best is None or key > best:
                    best, best_cat = key, category
        return best_cat

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], name: str = "taxonomy") -> Taxonomy:
        cats = data.get("categories", data) if isinstance(data, Mapping) else None
        if not isinstance(cats, Mapping) or not cats:
            raise ValueError(f"taxonomy {name}: expected a mapping 'categories: {{name: [keywords]}}'")
        return cls({str(k): [str(x) for x in v] for k, v in cats.items()}, name=name)


def taxonomy_dir() -> Path:
    """``<config dir>/taxonomy``; falls back to the repository's ``conf/`` when no train config exists."""
    from imgsearch.utils import config

    try:
        return Path(config.config_dir()) / "taxonomy"
    except FileNotFoundError:
        env = os.environ.get("IMGSEARCH_CONFIG_DIR")
        return (Path(env) if env else config.REPO_ROOT / "conf") / "taxonomy"


def load_taxonomy(name_or_path: str | os.PathLike[str] | Mapping[str, Any] | Taxonomy) -> Taxonomy:
    """Load a taxonomy by name (``"farfetch"`` -> ``conf/taxonomy/farfetch.yaml``), path or mapping."""
    if isinstance(name_or_path, Taxonomy):
        return name_or_path
    if isinstance(name_or_path, Mapping):
        return Taxonomy.from_mapping(name_or_path)
    raw = str(name_or_path)
    path = Path(raw)
    if not (path.suffix in (".yaml", ".yml") or path.is_file()):
        path = taxonomy_dir() / f"{raw}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in taxonomy_dir().glob("*.yaml")) if taxonomy_dir().is_dir() else []
        raise FileNotFoundError(f"taxonomy {raw!r} not found at {path}; available: {available}")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return Taxonomy.from_mapping(data or {}, name=path.stem)
