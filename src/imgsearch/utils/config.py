"""Where the Hydra configs live.

In a checkout (an editable install) the configs are the repository's top-level ``conf/`` folder. A wheel ships
the same files as the package ``imgsearch.conf`` (pyproject's package-dir), found when no checkout is around.
``IMGSEARCH_CONFIG_DIR`` overrides both (a shop's own copy of the configs).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[3]


def _packaged_conf() -> Path | None:
    try:
        spec = importlib.util.find_spec("imgsearch.conf")
    except ModuleNotFoundError:
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def in_checkout() -> bool:
    """Whether the configs come from a repository checkout (rather than an installed wheel)."""
    return not os.environ.get("IMGSEARCH_CONFIG_DIR") and (REPO_ROOT / "conf" / "train.yaml").is_file()


def config_dir() -> str:
    env = os.environ.get("IMGSEARCH_CONFIG_DIR")
    if env:
        path = Path(env)
    elif in_checkout():
        path = REPO_ROOT / "conf"
    else:
        path = _packaged_conf() or REPO_ROOT / "conf"
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
    """Where data/ and outputs/ live unless IMGSEARCH_ROOT says otherwise: the checkout's root, or for an
    installed wheel the working directory (never site-packages)."""
    if in_checkout():
        return str(REPO_ROOT)
    env = os.environ.get("IMGSEARCH_CONFIG_DIR")
    return str(Path(env).parent) if env else os.getcwd()


# Configs say ``${imgsearch.root_dir:}`` so that runs started from any working directory agree on where
# data/ and outputs/ are. Registered on import because every entry point imports this module for config_dir().
if not OmegaConf.has_resolver("imgsearch.root_dir"):
    OmegaConf.register_new_resolver("imgsearch.root_dir", repo_root)
