"""Fixtures shared by the training tests (``tests/test_train*.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig

from imgsearch.data.demo import ensure_demo
from train_helpers import DEMO_PRODUCTS, DEMO_SIZE


@pytest.fixture
def forget_hydra_config():
    """compose_train sets Hydra's global run config; leave no trace for other tests."""
    yield
    HydraConfig.instance().cfg = None


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny demo catalogue, generated once per test module."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    ensure_demo(root, products_per_class=DEMO_PRODUCTS, image_size=DEMO_SIZE)
    return root


@pytest.fixture(autouse=True, scope="session")
def onnx_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Pretrained-only ONNX exports (models/export.py) go to a session temp dir, never the user's cache."""
    import os

    from imgsearch.models.export import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("onnx-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before
