from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from stransfer.backbone import IMAGENET_MEAN, IMAGENET_STD, VGGFeatures, deepest_layer, layer_names
from stransfer.errors import ConfigError, WeightsError


def test_layer_names_follow_torchvision_layout():
    names16, names19 = layer_names("vgg16"), layer_names("vgg19")
    assert len(names16) == len(torchvision.models.vgg.cfgs["D"]) + 13  # every conv adds a relu
    assert names16[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names16[-2:] == ["relu5_3", "pool5"]
    assert names19[-2:] == ["relu5_4", "pool5"]


def test_taps_return_named_features_with_expected_shapes(random_vgg16):
    x = torch.rand(1, 3, 32, 48)
    out = random_vgg16(x, ["relu1_1", "relu2_2", "relu4_3"])
    assert set(out) == {"relu1_1", "relu2_2", "relu4_3"}
    assert out["relu1_1"].shape == (1, 64, 32, 48)
    assert out["relu2_2"].shape == (1, 128, 16, 24)
    assert out["relu4_3"].shape == (1, 512, 4, 6)


def test_forward_stops_at_the_deepest_tap(random_vgg16):
    called = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: called.append(n))
             for n, m in zip(random_vgg16.names, random_vgg16.layers)]
    try:
        random_vgg16(torch.rand(1, 3, 16, 16), ["relu2_1"])
    finally:
        for h in hooks:
            h.remove()
    assert called[-1] == "relu2_1"
    assert "conv2_2" not in called


def test_truncated_backbone_holds_no_later_layers():
    net = VGGFeatures("vgg16", deepest="relu4_1")
    assert net.names[-1] == "relu4_1"
    assert net.channels("relu4_1") == 512
    assert sum(isinstance(m, nn.Conv2d) for m in net.layers) == 8
    with pytest.raises(ValueError, match="past this backbone"):
        net(torch.rand(1, 3, 16, 16), ["relu4_3"])


def test_matches_torchvision_vgg16_features_with_normalisation_inside():
    torch.manual_seed(1)
    reference = torchvision.models.vgg16(weights=None).features.eval()
    ours = VGGFeatures("vgg16")
    ours.load_weights(reference.state_dict())  # torchvision's keys ("28.weight") load as they are
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference[:30]((x - mean) / std)  # index 29 = relu5_3
        got = ours(x, ["relu5_3"])["relu5_3"]
    torch.testing.assert_close(got, expected)


def test_frozen_and_stays_in_eval_mode(random_vgg16):
    assert not any(p.requires_grad for p in random_vgg16.parameters())
    random_vgg16.train()
    assert not random_vgg16.training


def test_average_pooling_option():
    net = VGGFeatures("vgg19", pooling="avg", deepest="relu3_1")
    assert any(isinstance(m, nn.AvgPool2d) for m in net.layers)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.layers)


def test_gradients_flow_to_the_input(random_vgg16):
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    random_vgg16(x, ["relu3_1"])["relu3_1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_layer_and_wrong_weights_are_refused(random_vgg16):
    with pytest.raises(ConfigError, match="relu9_9"):
        deepest_layer("vgg16", ["relu1_1", "relu9_9"])
    assert deepest_layer("vgg16", ["relu4_3", "relu1_2"]) == "relu4_3"
    bad = {k.removeprefix("layers."): v for k, v in random_vgg16.state_dict().items()}
    bad["0.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(WeightsError, match="shape"):
        VGGFeatures("vgg16").load_weights(bad)
    with pytest.raises(WeightsError, match="lack"):
        VGGFeatures("vgg19").load_weights({k: v for k, v in bad.items() if k != "0.weight"})
