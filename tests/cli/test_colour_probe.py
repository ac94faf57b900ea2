"""The colour probe (#15, models/colour_probe.py) end to end: ``imgsearch-colour-probe`` fits it to a model
whose colour head is blind (every photo gets the same probabilities, so the head's colour is a coin toss),
the probe reads the colour from the pixels, and wherever the index's colour is predicted (the build's
predicted column, ``imgsearch-tag``, ``POST /tag``, a live catalogue's adds) the probe's colour is used."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from colour_shop import blind_colour_model
from imgsearch.cli.colour_probe import main as probe_main
from imgsearch.cli.tag import main as tag_main
from imgsearch.data.schema import validate_catalogue, write_catalogue
from imgsearch.models.colour_probe import ColourProbeError, load_colour_probe
from retrieval_fixtures import compose
from train_helpers import save_checkpoint

SHADES = {  # the val shade (the last) between the two train shades, in Lab as in RGB
    "Red": [(230, 30, 30), (215, 40, 40), (222, 35, 35)],
    "Blue": [(30, 30, 230), (40, 40, 215), (35, 35, 222)],
}


def _photo(path: Path, label: str, rgb: tuple[int, int, int], band: int) -> str:
    arr = np.full((16, 16, 3), 255, np.uint8)
    if label == "bags":
        arr[band * 3 : band * 3 + 4, :] = rgb
    else:
        arr[:, band * 3 : band * 3 + 4] = rgb
    Image.fromarray(arr).save(path)
    return str(path)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """48 photos (bags / shoes, red / blue, 3 shades, 4 bands): shades 0-1 train, shade 2 val; a blind
    colour head; the probe fitted by the CLI into ``colour_probe.pt``."""
    root = tmp_path_factory.mktemp("probe_shop")
    rows = []
    for label in ("bags", "shoes"):
        for colour, shades in SHADES.items():
            for s, rgb in enumerate(shades):
                for band in range(4):
                    item = f"{label}-{colour.lower()}-{s}{band}"
                    rows.append({"item_id": item, "label": label, "split": "val" if s == 2 else "train",
                                 "baseColour": colour, "title": f"{colour} {label}",
                                 "image_path": _photo(root / f"{item}.png", label, rgb, band)})  # fmt: skip
    write_catalogue(validate_catalogue(pd.DataFrame(rows)), root / "catalogue.csv")
    save_checkpoint(blind_colour_model(), root / "checkpoints" / "best.ckpt")
    assert (
        probe_main([str(root / "checkpoints" / "best.ckpt"), "--catalogue", str(root / "catalogue.csv")]) == 0
    )
    return root


def _build(shop: Path, out: Path, *extra: str, catalogue: Path | None = None) -> Path:
    from imgsearch.cli.index import build

    table = catalogue or shop / "catalogue.csv"
    overrides = [
        f"checkpoint={shop / 'checkpoints' / 'best.ckpt'}", f"catalogue={table}", f"output_dir={out}",
        "embed.num_workers=0", "embed.trainer.accelerator=cpu", "attribute_min_confidence=0",
        f"hydra.run.dir={out.parent / 'hydra'}", *extra,
    ]  # fmt: skip
    return build(compose("index", overrides))


def _untagged(shop: Path, tmp_path: Path) -> Path:
    """The shop's catalogue with every val photo's colour left out."""
    table = pd.read_csv(shop / "catalogue.csv", dtype=str, keep_default_na=False)
    table.loc[table["split"] == "val", "baseColour"] = ""
    write_catalogue(table, tmp_path / "untagged.csv")
    return tmp_path / "untagged.csv"


def test_the_cli_fits_a_probe_that_reads_the_colour_the_head_cannot(shop: Path) -> None:
    report = json.loads((shop / "colour_probe.pt.json").read_text())
    assert report["attribute"] == "baseColour" and report["fit"]["rows"] == 32
    assert report["val"]["rows"] == 16 and report["fit"]["unknown_labels"] == 0
    assert report["val"]["accuracy"]["head"] == 0.5  # uniform probabilities: always the first class
    assert report["val"]["accuracy"]["probe"] == 1.0
    probe = load_colour_probe(shop / "colour_probe.pt")
    assert probe.attribute == "baseColour" and probe.classes == ["Blue", "Red"]
    assert probe.info["val_accuracy"]["probe"] == 1.0
    photos = [Image.open(shop / f"shoes-{c}-21.png") for c in ("red", "blue")]
    probs = probe.predict_photos(np.full((2, 2), 0.5, np.float32), photos)
    assert probs.argmax(1).tolist() == [1, 0] and np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_the_cli_refuses_bad_input_with_one_line(shop: Path, tmp_path: Path, capsys) -> None:
    from imgsearch.models.classifier import ImageClassifier

    plain = ImageClassifier(backbone="svm", num_classes=2, class_names=["bags", "shoes"], input_size=8)
    ckpt = save_checkpoint(plain.eval(), tmp_path / "plain" / "checkpoints" / "best.ckpt")
    catalogue = str(shop / "catalogue.csv")
    assert probe_main([str(ckpt), "--catalogue", catalogue, "--out", str(tmp_path / "p.pt")]) == 2
    assert "no colour head" in capsys.readouterr().err
    best = str(shop / "checkpoints" / "best.ckpt")
    assert (
        probe_main([best, "--catalogue", catalogue, "--attribute", "colour", "--out", str(tmp_path / "p.pt")])
        == 2
    )
    assert "'colour' is not an attribute head" in capsys.readouterr().err
    few = pd.read_csv(catalogue, dtype=str, keep_default_na=False).head(10)
    write_catalogue(few, tmp_path / "few.csv")
    assert probe_main([best, "--catalogue", str(tmp_path / "few.csv"), "--out", str(tmp_path / "p.pt")]) == 2
    assert "at least 20" in capsys.readouterr().err
    assert not (tmp_path / "p.pt").exists()  # nothing half-written


def test_the_index_fills_predicted_colours_from_its_probe_and_keeps_it(shop: Path, tmp_path: Path) -> None:
    from imgsearch.retrieval.index import load_index_dir

    untagged = _untagged(shop, tmp_path)
    with_probe = _build(
        shop, tmp_path / "probe", f"colour_probe={shop / 'colour_probe.pt'}", catalogue=untagged
    )
    head_only = _build(shop, tmp_path / "head", catalogue=untagged)
    _, items, manifest = load_index_dir(with_probe)
    filled = items["baseColour_predicted"] == "true"
    assert filled.sum() == 16
    truth = items["item_id"].str.split("-").str[1].str.title()
    assert (items.loc[filled, "baseColour"] == truth[filled]).all()
    assert (
        manifest["colour_probe"]["attribute"] == "baseColour" and (with_probe / "colour_probe.pt").is_file()
    )
    _, blind, manifest = load_index_dir(head_only)
    assert "colour_probe" not in manifest and not (head_only / "colour_probe.pt").exists()
    assert (blind.loc[blind["baseColour_predicted"] == "true", "baseColour"] == "Blue").all()  # the coin toss
    # colour_part=head keeps the head's part; the default reads it through the probe
    kept = _build(shop, tmp_path / "kept", f"colour_probe={shop / 'colour_probe.pt'}", "colour_part=head")
    assert np.array_equal(np.load(kept / "colour.npy"), np.load(head_only / "colour.npy"))
    assert load_index_dir(with_probe)[2]["colour"]["source"] == "probe"
    assert "source" not in load_index_dir(kept)[2]["colour"]
    assert not np.allclose(np.load(with_probe / "colour.npy"), np.load(head_only / "colour.npy"))


def test_a_colour_weight_through_the_probe_ranks_the_query_colour_first(shop: Path, tmp_path: Path) -> None:
    from imgsearch.retrieval.search import Searcher

    probe = f"colour_probe={shop / 'colour_probe.pt'}"
    searcher = Searcher.from_index_dir(_build(shop, tmp_path / "probe", probe))
    blind = Searcher.from_index_dir(_build(shop, tmp_path / "blind", probe, "colour_part=head"))
    for query, colour in (("bags-red-21", "red"), ("shoes-blue-12", "blue")):
        photo = Image.open(shop / f"{query}.png")
        hits = searcher.search([photo], k=12, colour_weight=4.0)[0].hits
        assert [h.item_id.split("-")[1] for h in hits] == [colour] * 12
        blind_hits = blind.search([photo], k=12, colour_weight=4.0)[0].hits
        assert [h.item_id.split("-")[1] for h in blind_hits].count(colour) < 12
    from imgsearch.cli.inputs import InputError

    with pytest.raises(InputError, match="colour_part=probe needs colour_probe"):
        _build(shop, tmp_path / "none", "colour_part=probe")


def test_a_probe_that_does_not_fit_the_model_is_refused_before_embedding(shop: Path, tmp_path: Path) -> None:
    from imgsearch.models.colour_probe import fit_colour_probe, save_colour_probe

    other, _ = fit_colour_probe("baseColour", ["Blue", "Green", "Red"], np.full((30, 3), 1 / 3),
                                np.full((30, 245), 1 / 245), ["Red"] * 15 + ["Blue"] * 15)  # fmt: skip
    save_colour_probe(other, tmp_path / "other.pt")
    with pytest.raises(ColourProbeError, match="3 classes"):
        _build(shop, tmp_path / "bad", f"colour_probe={tmp_path / 'other.pt'}")
    (tmp_path / "junk.pt").write_bytes(b"not a probe")
    with pytest.raises(ColourProbeError, match="not a readable colour probe"):
        _build(shop, tmp_path / "bad", f"colour_probe={tmp_path / 'junk.pt'}")
    assert not (tmp_path / "bad").exists()
    from imgsearch.cli.inputs import InputError

    with pytest.raises(InputError, match="not shards="):
        _build(shop, tmp_path / "bad", f"colour_probe={shop / 'colour_probe.pt'}", f"shards={tmp_path}")


def test_tag_reads_the_colour_through_the_probe(shop: Path, tmp_path: Path, capsys) -> None:
    index = _build(shop, tmp_path / "index", f"colour_probe={shop / 'colour_probe.pt'}")
    capsys.readouterr()  # the build's own lines
    photos = [str(shop / "bags-red-20.png"), str(shop / "shoes-blue-23.png")]
    assert tag_main([*photos, "--index", str(index), "--json"]) == 0
    assert [r["tags"]["baseColour"]["value"] for r in json.loads(capsys.readouterr().out)] == ["Red", "Blue"]
    ckpt = str(shop / "checkpoints" / "best.ckpt")
    assert tag_main([*photos, "--checkpoint", ckpt, "--json"]) == 0  # no probe: the blind head
    assert [r["tags"]["baseColour"]["value"] for r in json.loads(capsys.readouterr().out)] == ["Blue", "Blue"]
    probe = str(shop / "colour_probe.pt")
    assert tag_main([*photos, "--checkpoint", ckpt, "--colour-probe", probe, "--json"]) == 0
    assert [r["tags"]["baseColour"]["value"] for r in json.loads(capsys.readouterr().out)] == ["Red", "Blue"]
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 10)
    assert tag_main([*photos, "--checkpoint", ckpt, "--colour-probe", str(tmp_path / "junk.pt")]) == 2
    assert "not a readable colour probe" in capsys.readouterr().err


def test_serve_and_live_adds_use_the_index_probe(shop: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from imgsearch.retrieval.search import Searcher
    from imgsearch.serve.app import create_app

    index = _build(shop, tmp_path / "index", f"colour_probe={shop / 'colour_probe.pt'}")
    buf = io.BytesIO()
    Image.open(shop / "shoes-red-22.png").save(buf, "PNG")
    client = TestClient(create_app(Searcher.from_index_dir(index), top_k=4))
    r = client.post("/tag", files={"file": ("q.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    assert r.json()["tags"]["baseColour"]["value"] == "Red"
    live_dir = tmp_path / "live"
    shutil.copytree(index, live_dir)
    searcher = Searcher.from_index_dir(live_dir, live=True)
    new = pd.DataFrame([{"item_id": "new-red", "label": "bags", "title": "Tote", "baseColour": "",
                         "image_path": str(shop / "bags-red-21.png")}])  # fmt: skip
    assert searcher.add_items(new)["added"] == 1
    item = searcher.item("new-red")
    assert item["baseColour"] == "Red" and item["baseColour_predicted"] == "true"
    # its colour part is read by the probe as the build read the same photo's
    built = int(searcher.item("bags-red-21").name)
    assert np.allclose(searcher.colour_parts[int(item.name)], searcher.colour_parts[built], atol=1e-5)
    # a probe file damaged after the build: the index refuses to open, with the reason
    (live_dir / "colour_probe.pt").write_bytes(b"broken")
    with pytest.raises(ColourProbeError, match="not a readable colour probe"):
        Searcher.from_index_dir(live_dir)
    # a manifest whose part is the probe's but that lost its probe
    manifest = json.loads((index / "manifest.json").read_text())
    del manifest["colour_probe"]
    (index / "manifest.json").write_text(json.dumps(manifest))
    from imgsearch.retrieval.index import IndexCompatibilityError

    with pytest.raises(IndexCompatibilityError, match="colour probe that its manifest does not hold"):
        Searcher.from_index_dir(index)
