"""Backbone registry: names, preprocessing from each model's pretrained cfg, fine-tuning layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgsearch.models.backbones import create_backbone, list_backbones

IMAGENET_MEAN = (0.485, 0.456, 0.406)


@pytest.fixture(scope="module")
def resnet50():
    return create_backbone("resnet50")


@pytest.fixture(scope="module")
def inception_v3():
    return create_backbone("inception_v3")


def test_registry_lists_the_study_models() -> None:
    assert {"svm", "alexnet", "vgg16", "vgg16_bn", "resnet50", "inception_v3", "efficientnet_lite0"} <= set(
        list_backbones()
    )
    with pytest.raises(ValueError, match="registered"):
        create_backbone("resnet5O")
    with pytest.raises(ValueError, match="no model"):
        create_backbone("timm/not_a_model_at_all")


def test_data_config_comes_from_each_models_pretrained_cfg(resnet50, inception_v3) -> None:
    # inception_v3's torchvision weights expect 299 px and mean/std 0.5; resnet50's ImageNet mean and the
    # 0.95 crop of its a1 recipe.
    assert inception_v3.data_config["input_size"] == (3, 299, 299)
    assert inception_v3.data_config["mean"] == pytest.approx((0.5, 0.5, 0.5))
    assert inception_v3.data_config["std"] == pytest.approx((0.5, 0.5, 0.5))
    assert resnet50.data_config["input_size"] == (3, 224, 224)
    assert resnet50.data_config["mean"] == pytest.approx(IMAGENET_MEAN)
    assert resnet50.data_config["crop_pct"] == pytest.approx(0.95)
    for config in (resnet50.data_config, inception_v3.data_config):
        assert set(config) == {"input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode"}


def test_input_size_override_changes_only_height_and_width(resnet50) -> None:
    small = create_backbone("efficientnet_lite0", input_size=48)
    default = create_backbone("efficientnet_lite0")
    assert small.data_config["input_size"] == (3, 48, 48)
    assert default.data_config["input_size"] == (3, 224, 224)
    assert {k: v for k, v in small.data_config.items() if k != "input_size"} == {
        k: v for k, v in default.data_config.items() if k != "input_size"
    }
    # the packaged Lite0 weights are the TF port: their preprocessing is mean/std 0.5, not ImageNet's
    assert default.data_config["mean"] == pytest.approx((0.5, 0.5, 0.5))
    assert small(torch.randn(2, 3, 48, 48)).shape == (2, 1280)


def test_svm_backbone_is_flattened_raw_pixels() -> None:
    backbone = create_backbone("svm", input_size=8)
    assert backbone.num_features == 3 * 8 * 8
    assert backbone.data_config["mean"] == (0.5, 0.5, 0.5)
    assert list(backbone.parameters()) == []
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(backbone(x), x.reshape(2, -1))
    # other sizes are resized, not rejected
    assert backbone(torch.rand(2, 3, 20, 30)).shape == (2, 192)
    assert create_backbone("svm").num_features == 3 * 32 * 32
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_backbone("svm", pretrained=True)


def test_alexnet_features_are_fc7_and_fc6_fc7_count_as_head() -> None:
    backbone = create_backbone("alexnet", input_size=64)
    assert backbone.num_features == 4096
    assert backbone.data_config["crop_pct"] == pytest.approx(224 / 256)
    assert backbone.data_config["input_size"] == (3, 64, 64)
    assert backbone(torch.randn(2, 3, 64, 64)).shape == (2, 4096)
    trainable, frozen = backbone.param_groups_for_finetune("head")
    assert trainable == [
        "model.classifier.1.weight",
        "model.classifier.1.bias",
        "model.classifier.4.weight",
        "model.classifier.4.bias",
    ]
    assert all(name.startswith("model.features.") for name in frozen)
    last2, _ = backbone.param_groups_for_finetune("last_n", 2)
    assert set(last2) - set(trainable) == {
        "model.features.8.weight",
        "model.features.8.bias",
        "model.features.10.weight",
        "model.features.10.bias",
    }


def test_resnet50_last_n_trains_the_last_stage_and_frozen_bn_stays_in_eval(resnet50) -> None:
    trainable, _ = resnet50.param_groups_for_finetune("last_n", 1)
    assert trainable and all(name.startswith("model.layer4.") for name in trainable)
    everything, none = resnet50.param_groups_for_finetune("all", 0)
    assert none == [] and len(everything) == len(list(resnet50.parameters()))
    assert resnet50.param_groups_for_finetune("head", 0)[0] == []  # only the classifier's own linear layer
    with pytest.raises(ValueError, match="unknown"):
        resnet50.param_groups_for_finetune("some", 0)
    try:
        resnet50.apply_finetune("last_n", 1)
        resnet50.train()
        assert not resnet50.model.layer3[0].bn1.training
        assert resnet50.model.layer4[0].bn1.training
        assert not resnet50.model.layer3[0].conv1.weight.requires_grad
    finally:
        resnet50.apply_finetune("all")


def test_inception_v3_runs_at_its_minimum_size(inception_v3) -> None:
    inception_v3.eval()
    with torch.no_grad():
        assert inception_v3(torch.randn(1, 3, 75, 75)).shape == (1, 2048)


def test_timm_passthrough_builds_any_timm_model() -> None:
    backbone = create_backbone("timm/mobilenetv3_small_050", input_size=32, drop_rate=0.1)
    assert backbone.name == "timm/mobilenetv3_small_050"
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, backbone.num_features)
    assert isinstance(backbone, nn.Module)
