"""Fixtures for the web service tests.

``ColourSearcher`` is a small real searcher with the interface of
``imgsearch.retrieval.search.Searcher``: it ranks a catalogue of colour swatches by the distance
between mean colours, so what it returns for a photo can be predicted from the photo alone and
the API tests do not need a model.
"""

from __future__ import annotations

import contextlib
import io
import math
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgsearch.retrieval.search import SearchHit, SearchResult
from train_helpers import save_checkpoint

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40),
    "green": (30, 170, 60),
    "blue": (40, 60, 200),
}


# the real result types, so the fake searcher cannot drift from the Searcher's interface
Hit = SearchHit
Result = SearchResult


class ColourSearcher:
    """Nearest neighbours by mean RGB colour; category = the class of the closest class mean."""

    def __init__(self, items: pd.DataFrame) -> None:
        self.items = items.reset_index(drop=True)
        self.calls: list[tuple[int, int, bool]] = []
        self._means = np.stack([_mean_rgb(Image.open(p)) for p in self.items["image_path"]])

    def search(
        self, images: Sequence[Image.Image], k: int = 10, *, restrict_to_predicted: bool = False
    ) -> list[Result]:
        self.calls.append((len(images), k, restrict_to_predicted))
        out = []
        for image in images:
            assert image.mode == "RGB", "the app must hand the searcher decoded RGB images"
            dist = np.linalg.norm(self._means - _mean_rgb(image), axis=1)
            labels = self.items["label"].to_numpy()
            class_dist = {c: dist[labels == c].min() for c in sorted(set(labels))}
            logits = np.array([-d / 10.0 for d in class_dist.values()])
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            best = int(np.argmax(probs))
            category = list(class_dist)[best]
            order = np.argsort(dist, kind="stable")
            if restrict_to_predicted:
                order = [i for i in order if labels[i] == category]
            hits = []
            for rank, i in enumerate(order[:k], start=1):
                row = self.items.iloc[int(i)]
                hits.append(
                    Hit(
                        rank=rank,
                        item_id=row["item_id"],
                        product_id=row["product_id"],
                        label=row["label"],
                        title=row["title"],
                        brand=row["brand"],
                        price=float(row["price"]),
                        image_path=row["image_path"],
                        score=float(-dist[i]),
                    )
                )
            out.append(Result(category=category, probability=float(probs[best]), hits=hits))
        return out


def _mean_rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)


def swatch(colour: tuple[int, int, int], *, size: int = 48, seed: int = 0) -> Image.Image:
    """A noisy square of one colour (noise so that JPEG/PNG files are not trivially tiny)."""
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour) + rng.normal(0, 12, size=(size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="session")
def colour_catalogue(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Nine swatch items (three per colour) on disk, in the catalogue schema's columns."""
    root = tmp_path_factory.mktemp("swatches")
    rows = []
    for c, (label, rgb) in enumerate(COLOURS.items()):
        for j in range(3):
            shade = tuple(int(v * (1.0 - 0.15 * j)) for v in rgb)
            # an id with a slash and a space: image URLs must survive ids that are not URL-safe
            item_id = f"{label}/{j} a" if j == 2 else f"{label}-{j}"
            suffix = ".png" if j == 1 else ".jpg"
            path = root / f"{label}_{j}{suffix}"
            swatch(shade, seed=10 * c + j).save(path)
            rows.append(
                {
                    "item_id": item_id,
                    "product_id": f"{label}-p{j}",
                    "view": "main",
                    "image_path": str(path),
                    "label": label,
                    "split": "test",
                    "title": f"{label.title()} swatch no. {j}",
                    "brand": "Acme",
                    "price": math.nan if j == 2 else 10.0 + j,
                    "gender": "",
                    "currency": "EUR",
                    "source": "test",
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture()
def colour_searcher(colour_catalogue: pd.DataFrame) -> ColourSearcher:
    return ColourSearcher(colour_catalogue)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def live_server(
    app: Any, *, timeout_s: float = 30.0, http: str = "auto", loop: str = "auto"
) -> Iterator[str]:
    """Run ``app`` under uvicorn (HTTP parser ``http``, event loop ``loop``) on 127.0.0.1 on a free port in a
    thread; yield its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound here and handed over, so no other process can take the port
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", http=http, loop=loop))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port} within {timeout_s}s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


# ---- a real index: EfficientNet-Lite0 (packaged ImageNet weights) over a tiny demo catalogue ---------

DEMO_IMAGE_SIZE = 96


def _nearest_class_mean_head(model: Any, table: pd.DataFrame) -> None:
    """Train-free classifier head: each class's weight row is its mean normalised ImageNet feature.

    Softmax over scaled cosine similarity to the class means (a nearest-class-mean classifier) gives
    categories that mean something, in one forward pass instead of a training run.
    """
    import torch

    from imgsearch.data.images import load_image
    from imgsearch.data.transforms import eval_transform as model_transform

    transform = model_transform(model.data_config)
    with torch.inference_mode():
        batch = torch.stack([transform(load_image(p)) for p in table["image_path"]])
        feats = model.embed(batch, "features")
        unit = torch.nn.functional.normalize(feats, dim=1)
        labels = table["label"].tolist()
        means = torch.stack(
            [unit[[i for i, lab in enumerate(labels) if lab == c]].mean(0) for c in model.class_names]
        )
        scale = 30.0 / feats.norm(dim=1).mean()  # logits ~ 30 x cosine for a typical feature norm
        model.head.weight.copy_(torch.nn.functional.normalize(means, dim=1) * scale)
        model.head.bias.zero_()


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index directory built by ``imgsearch-index`` (in-process) over 48 demo images (12 classes)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from imgsearch.cli.index import build
    from imgsearch.data.demo import demo_catalogue
    from imgsearch.data.schema import write_catalogue
    from imgsearch.models.classifier import ImageClassifier
    from imgsearch.utils.config import config_dir

    root = tmp_path_factory.mktemp("served")
    table = demo_catalogue(root / "demo", products_per_class=2, image_size=DEMO_IMAGE_SIZE)
    write_catalogue(table, root / "run" / "catalogue.csv")
    classes = sorted(table["label"].unique())
    model = ImageClassifier(
        backbone="efficientnet_lite0",
        num_classes=len(classes),
        class_names=classes,
        pretrained=True,
        input_size=64,
    ).eval()
    _nearest_class_mean_head(model, table)
    ckpt = save_checkpoint(model, root / "run" / "checkpoints" / "best.ckpt")
    overrides = [
        f"checkpoint={ckpt}",
        f"output_dir={root / 'index'}",
        "embed.num_workers=0",
        "embed.batch_size=16",
        "embed.trainer.accelerator=cpu",
        f"hydra.run.dir={root / 'hydra'}",
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="index", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    out = build(cfg)
    assert out == root / "index"
    return out


@pytest.fixture(scope="session")
def demo_searcher(demo_index: Path) -> Any:
    from imgsearch.retrieval.search import Searcher

    return Searcher.from_index_dir(demo_index)
