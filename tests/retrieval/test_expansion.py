"""Search-time options: flip averaging makes a photo and its mirror one vector; alpha-QE and DBA pull vectors
towards their neighbours, which lifts leave-one-out retrieval of products whose views are spread out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgsearch.retrieval.embed import embed_catalogue
from imgsearch.retrieval.expansion import (
    alpha_query_expansion,
    database_augmentation,
    flip_averaged,
    mean_of_views,
    unit,
)
from imgsearch.retrieval.leave_one_out import expanded, leave_one_out_scores

CPU = {"accelerator": "cpu", "enable_progress_bar": False}


def _position_sensitive(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1) * torch.linspace(1.0, 2.0, x[0].numel())  # mirrored images get other vectors


def test_flip_average_is_the_same_for_an_image_and_its_mirror() -> None:
    images = torch.rand(3, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    mirrored = torch.flip(images, dims=[-1])
    assert not torch.allclose(_position_sensitive(images), _position_sensitive(mirrored))
    a, b = flip_averaged(_position_sensitive, images), flip_averaged(_position_sensitive, mirrored)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(3))
    want = unit(unit(_position_sensitive(images).numpy()) + unit(_position_sensitive(mirrored).numpy()))
    np.testing.assert_allclose(a.numpy(), want, rtol=1e-5, atol=1e-6)


def test_embed_catalogue_flip_average_on_mirrored_files(catalogue, pixel_model, tmp_path: Path) -> None:
    mirrored = catalogue.copy()
    paths = []
    for i, path in enumerate(catalogue["image_path"]):
        out = tmp_path / f"m{i}.png"
        Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(out)
        paths.append(str(out))
    mirrored["image_path"] = paths

    def features(table, flip: bool) -> np.ndarray:
        return embed_catalogue(
            pixel_model, table, batch_size=5, num_workers=0, trainer_kwargs=CPU, flip_average=flip
        )["features"]

    plain, plain_mirrored = features(catalogue, False), features(mirrored, False)
    assert not np.allclose(plain, plain_mirrored, atol=1e-4)  # the model views' noise is not symmetric
    np.testing.assert_allclose(features(catalogue, True), features(mirrored, True), rtol=1e-4, atol=1e-5)


def test_dba_pulls_a_point_towards_its_neighbours_mean() -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(20, 8)))
    k = 3
    out = database_augmentation(vectors, k=k, alpha=1.0)
    sims = vectors @ vectors.T
    for i in range(len(vectors)):
        others = np.argsort(-sims[i])[1:k]  # its top-k are itself and these
        mean = unit(vectors[others].mean(axis=0, keepdims=True))[0]
        assert out[i] @ mean > vectors[i] @ mean + 1e-4
    np.testing.assert_allclose(database_augmentation(vectors, k=1), vectors, atol=1e-6)  # top-1 = itself


def test_alpha_qe_moves_a_query_to_its_neighbours_and_k0_is_identity() -> None:
    gallery = unit(np.array([[1.0, 0.1, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]))
    query = unit(np.array([[1.0, 0.0, 0.0]]))
    out = alpha_query_expansion(query, gallery, k=1, alpha=1.0)
    np.testing.assert_allclose(out, unit(query + (query @ gallery[0]) * gallery[:1]), atol=1e-6)
    assert out[0] @ gallery[1] > query[0] @ gallery[1]  # closer to the neighbour's own neighbourhood
    np.testing.assert_allclose(alpha_query_expansion(query, gallery, k=0), query, atol=1e-7)
    # leave-one-out: the query's own row is never one of its neighbours
    self_qe = alpha_query_expansion(gallery, gallery, k=1, alpha=0.0, exclude_self=True)
    np.testing.assert_allclose(self_qe[1], unit(gallery[1:2] + gallery[0])[0], atol=1e-6)  # not 2x itself


def test_qe_and_dba_lift_leave_one_out_of_spread_out_products() -> None:
    # each product: 4 views along a curve, so a view's nearest same-product view is close but the farthest
    # view is nearer to other products; expansion walks along the curve
    rng = np.random.default_rng(0)
    views, keys = [], []
    for p in range(12):
        start, step = unit(rng.normal(size=(1, 32)))[0], unit(rng.normal(size=(1, 32)))[0]
        views += [start + 0.55 * t * step for t in range(4)]
        keys += [f"p{p}"] * 4
    vectors = unit(np.array(views) + 0.2 * rng.normal(size=(48, 32)))
    plain = leave_one_out_scores(vectors, keys)
    queries, gallery = expanded(vectors, dba=2, qe=2, alpha=1.0)
    lifted = leave_one_out_scores(queries, keys, gallery=gallery)
    assert plain["MAP@R"] < 0.8
    assert lifted["MAP@R"] > plain["MAP@R"] + 0.02
    assert expanded(vectors)[0] is vectors  # both 0: untouched


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="k must be >= 0"):
        alpha_query_expansion(np.eye(2), np.eye(2), k=-1)
    with pytest.raises(ValueError, match="same d"):
        alpha_query_expansion(np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match="exclude_self"):
        alpha_query_expansion(np.eye(2), np.eye(3)[:, :2], exclude_self=True)


def test_index_built_with_flip_average_is_searched_with_it(trained_run, tmp_path: Path) -> None:
    from imgsearch.cli.index import build
    from imgsearch.retrieval.index import load_index_dir
    from imgsearch.retrieval.search import Searcher
    from retrieval_fixtures import compose

    ckpt = trained_run / "checkpoints" / "best.ckpt"
    common = [f"checkpoint={ckpt}", "embed.num_workers=0", "embed.trainer.accelerator=cpu"]
    flip = ["embed.flip_average=true", f"output_dir={tmp_path / 'flip'}", f"hydra.run.dir={tmp_path / 'h'}"]
    out = build(compose("index", [*common, *flip]))
    index, items, manifest = load_index_dir(out)
    assert manifest["flip_average"] is True
    searcher = Searcher.from_index_dir(out)
    image = Image.open(items.image_path[5]).convert("RGB")
    own, _ = searcher.embed([image])
    mirrored, _ = searcher.embed([image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    np.testing.assert_allclose(own, mirrored, rtol=1e-4, atol=1e-5)  # queries are flip-averaged too
    stored = np.asarray(index.reconstruct(5), dtype=np.float32)
    assert float(own[0] @ stored) == pytest.approx(1.0, abs=1e-4)  # the same vector as the indexed one
    # A query mirrors the model's input, as the build does (retrieval/embed.py), not the photo: for a photo
    # whose centre crop leaves an odd margin the two differ by a pixel's shift.
    from timm.data import create_transform

    side = searcher.transform.transforms[1].size[0]
    searcher.transform = create_transform(side, crop_pct=0.875, interpolation="bicubic", mean=(0.5,) * 3,
                                          std=(0.5,) * 3)  # fmt: skip
    odd = image.resize((101, 67))
    x = searcher.transform(odd).unsqueeze(0)
    with torch.inference_mode():
        views = [searcher.module.predict_step(v)["features"] for v in (x, torch.flip(x, dims=[-1]))]
    got, _ = searcher.embed([odd])
    assert float(got[0] @ mean_of_views(*views)[0].numpy()) == pytest.approx(1.0, abs=1e-5)


def test_self_positions_skip_only_the_queries_that_are_gallery_items() -> None:
    gallery = unit(np.array([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.0, 1.0, 0.2], [0.0, 0.2, 1.0]]))
    queries = np.concatenate([gallery[:1], unit(np.array([[0.0, 0.9, 0.3]]))])
    # query 0 is gallery row 0: its neighbour is row 1, not itself; query 1 is no gallery row: top-1 = row 2
    out = alpha_query_expansion(queries, gallery, k=1, alpha=1.0, self_positions=np.array([0, -1]))
    np.testing.assert_allclose(
        out[0], unit(queries[:1] + (queries[0] @ gallery[1]) * gallery[1:2])[0], atol=1e-6
    )
    np.testing.assert_allclose(
        out[1], unit(queries[1:] + (queries[1] @ gallery[2]) * gallery[2:3])[0], atol=1e-6
    )
    # exclude_self is the case where every query is its own gallery row
    np.testing.assert_allclose(
        alpha_query_expansion(gallery, gallery, k=2, exclude_self=True),
        alpha_query_expansion(gallery, gallery, k=2, self_positions=np.arange(4)),
        atol=1e-7,
    )
    with pytest.raises(ValueError, match="one gallery position"):
        alpha_query_expansion(queries, gallery, k=1, self_positions=np.array([0]))
