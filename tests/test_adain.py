from __future__ import annotations

import pytest
import torch
from torch import nn

from stransfer import losses, weights
from stransfer.device import make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.engines.adain import SKIP_LAYERS, AdaIN, AdainConfig, Decoder, adain, skip_weight
from stransfer.engines.decoder import decoder_layout, encoder_from
from stransfer.errors import WeightsError

from conftest import cli, one_error_line


def test_adain_moves_channel_statistics_to_the_style():
    content = torch.randn(2, 8, 6, 6) * 3 + 1
    mean, std = torch.rand(2, 8, 1, 1), torch.rand(2, 8, 1, 1) + 0.5
    out_mean, out_std = losses.mean_std(adain(content, mean, std))
    torch.testing.assert_close(out_mean, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_std, std, atol=1e-3, rtol=1e-3)


def test_adain_is_fp32_under_bf16():
    content = torch.randn(1, 4, 5, 5).to(torch.bfloat16)
    assert adain(content, torch.zeros(1, 4, 1, 1), torch.ones(1, 4, 1, 1)).dtype == torch.float32


def test_decoder_mirrors_the_encoder():
    assert decoder_layout("vgg16") == [256, "U", 256, 256, 128, "U", 128, 64, "U", 64, 3]
    decoder = Decoder("vgg16")
    assert decoder(torch.rand(1, 512, 4, 5)).shape == (1, 3, 32, 40)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in decoder.modules()) == 8
    assert sum(p.numel() for p in decoder.parameters()) * 4 < 20e6  # ships under 20 MB in fp32


@pytest.fixture
def tiny_adain(random_vgg16):
    state = {k.removeprefix("layers."): v for k, v in random_vgg16.state_dict().items()}
    torch.manual_seed(0)
    return encoder_from("vgg16", state), Decoder("vgg16").eval()


@pytest.mark.parametrize("size", [(32, 32), (37, 21), (64, 3)])
def test_any_size_and_alpha_range(tiny_adain, size):
    encoder, decoder = tiny_adain
    engine = AdaIN(encoder, decoder, make_runtime("cpu"), alpha=1.0)
    out = engine.stylize(torch.rand(1, 3, *size), engine.prepare([torch.rand(1, 3, 40, 40)]))
    assert out.shape == (1, 3, *size) and 0 <= out.min() and out.max() <= 1


def test_alpha_zero_decodes_the_content_features(tiny_adain):
    encoder, decoder = tiny_adain
    content = torch.rand(1, 3, 32, 32)
    a0 = AdaIN(encoder, decoder, make_runtime("cpu"), alpha=0.0)
    with torch.no_grad():
        f = encoder(content, ["relu4_1", *SKIP_LAYERS])
        expected = decoder(f["relu4_1"], {k: f[k] for k in SKIP_LAYERS}).clamp(0, 1)
    torch.testing.assert_close(a0.stylize(content, a0.prepare([torch.rand(1, 3, 40, 40)])), expected, atol=1e-5,
                               rtol=1e-4)


def test_content_skips_fade_out_as_alpha_rises(tiny_adain):
    encoder, decoder = tiny_adain
    content = torch.rand(1, 3, 32, 32)
    seen = []

    class Recording(Decoder):
        def forward(self, features, skips=None):
            seen.append(skips)
            return super().forward(features, skips)

    recording = Recording("vgg16").eval()
    recording.load_state_dict(decoder.state_dict())
    with torch.no_grad():
        f = encoder(content, list(SKIP_LAYERS))
    for alpha in (1.0, 0.25):
        engine = AdaIN(encoder, recording, make_runtime("cpu"), alpha=alpha)
        engine.stylize(content, engine.prepare([torch.rand(1, 3, 40, 40)]))
    assert seen[0] is None  # alpha 1: the paper's decoder, nothing added
    for k in SKIP_LAYERS:
        torch.testing.assert_close(seen[1][k], skip_weight(0.25) * f[k])
    weights_by_alpha = [skip_weight(a / 10) for a in range(11)]
    assert weights_by_alpha[0] == 1.0 and weights_by_alpha[-1] == 0.0  # alpha 0: the full skips
    assert all(a > b for a, b in zip(weights_by_alpha, weights_by_alpha[1:]))


def test_zero_skips_add_nothing_and_real_ones_change_the_output():
    decoder = Decoder("vgg16").eval()
    features = torch.rand(1, 512, 4, 4)
    shapes = {"relu3_1": (256, 8), "relu2_1": (128, 16), "relu1_1": (64, 32)}
    zeros = {k: torch.zeros(1, c, s, s) for k, (c, s) in shapes.items()}
    ones = {k: torch.rand(1, c, s, s) for k, (c, s) in shapes.items()}
    with torch.no_grad():
        plain = decoder(features)
        assert torch.equal(decoder(features, zeros), plain)
        assert (decoder(features, ones) - plain).abs().mean() > 1e-4


def test_a_decoder_file_without_the_content_skips_is_refused_in_one_line(capsys, tmp_path, make_image,
                                                                       random_weights_file):
    state = {k: v for k, v in Decoder("vgg16").state_dict().items() if not k.startswith("skips.")}
    weights.save_model(tmp_path / "old.pth", "adain", state, backbone="vgg16", encoder_layer="relu4_1",
                       encoder_digest="0" * 64, train_config={}, steps=1, record={})
    photo, style = make_image("c.png", 24, 24), make_image("s.png", 24, 24, seed=1)
    code, _, err = cli(capsys, "stylize", photo, "-s", style, "-m", "adain", "--model", tmp_path / "old.pth",
                       "-o", tmp_path / "out.png", "--vgg-weights", random_weights_file, "--device", "cpu")
    assert code == 2 and "skips.relu3_1.weight" in one_error_line(err)  # a bad --model: a usage error
    assert not (tmp_path / "out.png").exists()


def test_registry_builds_from_a_decoder_file_for_its_own_encoder(tmp_path, random_weights_file, random_vgg16):
    state = {k.removeprefix("layers."): v for k, v in random_vgg16.state_dict().items()}
    encoder_state = {k.removeprefix("layers."): v for k, v in encoder_from("vgg16", state).state_dict().items()}
    inputs = EngineInputs(vgg_weights=random_weights_file)
    for name, digest in (("ours.pth", weights.tensor_digest(encoder_state)), ("other.pth", "0" * 64)):
        weights.save_model(tmp_path / name, "adain", Decoder("vgg16").state_dict(), backbone="vgg16",
                           encoder_layer="relu4_1", encoder_digest=digest, train_config={}, steps=1, record={})
    engine = ENGINES["adain"].build(AdainConfig(model=str(tmp_path / "ours.pth")), make_runtime("cpu"), inputs)
    assert engine.encoder.deepest == "relu4_1"
    assert engine.stylize(torch.rand(1, 3, 16, 16), engine.prepare([torch.rand(1, 3, 24, 24)])).shape == (1, 3, 16, 16)
    with pytest.raises(WeightsError, match="trained for other vgg16 weights"):
        ENGINES["adain"].build(AdainConfig(model=str(tmp_path / "other.pth")), make_runtime("cpu"), inputs)
