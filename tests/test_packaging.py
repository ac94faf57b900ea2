"""A non-editable install: the wheel holds every package and every config, and runs without a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package():
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(listed) == sorted([*find_packages(str(ROOT / "src")), "imgsearch.conf"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(ROOT)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    (wheel,) = tmp.glob("imgsearch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {
        f"imgsearch/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")
    }
    assert configs and configs <= names, f"configs missing from the wheel: {sorted(configs - names)[:5]}"
    assert "imgsearch/serve/static/index.html" in names
    target = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return target


def test_wheel_finds_its_configs_without_a_checkout(installed: Path, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSEARCH_")}
    env["PYTHONPATH"] = str(installed)
    code = (
        "import imgsearch, json\n"
        "from imgsearch.utils.config import config_dir, repo_root\n"
        "from hydra import compose, initialize_config_dir\n"
        "with initialize_config_dir(config_dir=config_dir(), version_base='1.3'):\n"
        "    cfg = compose(config_name='index', overrides=['checkpoint=x'])\n"
        "print(json.dumps([imgsearch.__file__, config_dir(), repo_root(), cfg.embed.batch_size]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    import json

    module, conf, root, batch = json.loads(out.strip().splitlines()[-1])
    assert module.startswith(str(installed)) and conf.startswith(str(installed))
    assert root == str(tmp_path)  # outputs/ and data/ go to the working directory, not site-packages
    assert batch == 64
