"""Where the Hydra configs live.

The configs are the top-level ``conf/`` folder of the repository. ``IMGSEARCH_CONFIG_DIR``
overrides it (e.g. for an installed wheel with a copied ``conf/``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[3]


def config_dir() -> str:
    env = os.environ.get("IMGSEARCH_CONFIG_DIR")
    path = Path(env) if env else REPO_ROOT / "conf"
    if not (path / "train.yaml").exists():
        raise FileNotFoundError(
            f"imgsearch configs not found at {path}; "
            "set IMGSEARCH_CONFIG_DIR to the repository's conf/ folder"
        )
    return str(path)


def to_plain_container(value: Any) -> Any:
    """OmegaConf containers (what Hydra hands over) as plain dicts/lists, resolved; anything else as it is."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def repo_root() -> str:
    """The folder above ``conf/``: data/ and outputs/ live here unless IMGSEARCH_ROOT says otherwise."""
    return str(Path(config_dir()).parent)


# Configs say ``${imgsearch.root_dir:}`` so that runs started from any working directory agree on where
# data/ and outputs/ are. Registered on import because every entry point imports this module for config_dir().
if not OmegaConf.has_resolver("imgsearch.root_dir"):
    OmegaConf.register_new_resolver("imgsearch.root_dir", repo_root)
