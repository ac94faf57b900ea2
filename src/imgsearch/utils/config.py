"""Where the Hydra configs live.

The configs are the top-level ``conf/`` folder of the repository. ``IMGSEARCH_CONFIG_DIR``
overrides it (e.g. for an installed wheel with a copied ``conf/``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def config_dir() -> str:
    env = os.environ.get("IMGSEARCH_CONFIG_DIR")
    path = Path(env) if env else REPO_ROOT / "conf"
    if not (path / "train.yaml").exists():
        raise FileNotFoundError(
            f"imgsearch configs not found at {path}; set IMGSEARCH_CONFIG_DIR to the repository's conf/ folder"
        )
    return str(path)
