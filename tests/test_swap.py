from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stransfer import weights
from stransfer.device import make_runtime
from stransfer.engines import EngineInputs
from stransfer.engines.decoder import Decoder, encoder_from
from stransfer.engines.swap import StyleSwap, SwapTransform, style_swap, swap_features
from stransfer.errors import UsageError

from test_cli import cli, one_error_line


def paper_swap(content: torch.Tensor, style: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """The paper's formulation in one piece: all style patches (every s cells) as filters, one-hot argmax over
    every content position, transposed conv."""
    patches = style.unfold(2, k, s).unfold(3, k, s).permute(0, 2, 3, 1, 4, 5).reshape(-1, style.shape[1], k, k)
    scores = F.conv2d(content, patches / patches.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    one_hot = torch.zeros_like(scores).scatter_(1, scores.argmax(1, keepdim=True), 1)
    return F.conv_transpose2d(one_hot, patches) / F.conv_transpose2d(one_hot, torch.ones_like(patches))


def test_the_swap_of_a_feature_map_against_itself_gives_it_back():
    torch.manual_seed(0)
    features = torch.rand(1, 32, 9, 13)
    torch.testing.assert_close(style_swap(features, [features], patch_size=3, stride=1), features)


def test_swap_features_match_in_the_styles_statistics():
    """Content that is the style map with other channel statistics (each channel scaled and shifted) swaps back
    to the style map itself, patch for patch; the paper's raw matching picks other patches for it."""
    torch.manual_seed(0)
    style = torch.rand(1, 16, 9, 11)
    scale, shift = torch.rand(1, 16, 1, 1) + 0.5, torch.randn(1, 16, 1, 1)
    content = style * scale + shift
    torch.testing.assert_close(swap_features(content, [style], 3, 1), style, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(style_swap(content, [style], 3, 1), style, atol=1e-2)
    torch.testing.assert_close(swap_features(style, [style], 3, 1), style, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_chunked_and_unchunked_swaps_agree(stride):
    torch.manual_seed(0)
    content = torch.rand(1, 16, 11, 9)
    styles = [torch.rand(1, 16, 7, 8), torch.rand(1, 16, 5, 6)]  # two maps: patches pooled across them
    whole = style_swap(content, styles, 3, stride, chunk=10**6)
    for chunk in (1, 3, 7):
        torch.testing.assert_close(style_swap(content, styles, 3, stride, chunk=chunk), whole)
    assert whole.shape == content.shape


@pytest.mark.parametrize("stride", [1, 2])
def test_swap_is_the_papers_one_hot_transposed_convolution(stride):
    torch.manual_seed(1)
    content, style = torch.rand(1, 16, 9, 11), torch.rand(1, 16, 7, 7)  # 7 fits the stride-2 grid
    torch.testing.assert_close(style_swap(content, [style], 3, stride, chunk=4), paper_swap(content, style, 3, stride))


@pytest.fixture
def tiny_networks(random_vgg16):
    state = {k.removeprefix("layers."): v for k, v in random_vgg16.state_dict().items()}
    torch.manual_seed(0)
    return encoder_from("vgg16", state), Decoder("vgg16").eval()


def test_swap_engine_any_size_mask_and_tiles(tiny_networks):
    encoder, decoder = tiny_networks
    engine = StyleSwap(SwapTransform(3, 1), encoder, decoder, make_runtime("cpu", "fp32"), alpha=1.0, tile="off")
    content, styles = torch.rand(1, 3, 96, 136), engine.prepare([torch.rand(1, 3, 64, 64)])
    whole = engine.stylize(content, styles)
    assert whole.shape == content.shape and 0 <= whole.min() and whole.max() <= 1
    engine.tile, engine.tile_overlap = "64", 32
    assert engine.stylize(content, engine.prepare([torch.rand(1, 3, 64, 64)])).shape == content.shape
    # A mask with one style: swapped where white, the content's own features (as alpha 0) where black.
    mask = torch.zeros(1, 1, 96, 136)
    masked = StyleSwap(SwapTransform(3, 1), encoder, decoder, make_runtime("cpu", "fp32"), alpha=1.0,
                       inputs=EngineInputs(mask=mask), tile="off")
    kept = masked.stylize(content, masked.prepare([torch.rand(1, 3, 64, 64)]))
    with torch.no_grad():
        own = decoder(encoder(content, ["relu4_1"])["relu4_1"]).clamp(0, 1)
    torch.testing.assert_close(kept, own, atol=1e-5, rtol=1e-4)


def test_unequal_blend_weights_are_refused_for_swap(tiny_networks):
    encoder, decoder = tiny_networks
    engine = StyleSwap(SwapTransform(3, 1), encoder, decoder, make_runtime("cpu"), alpha=1.0,
                       inputs=EngineInputs(style_weights=[0.7, 0.3]))
    with pytest.raises(UsageError, match="pools the patches"):
        engine.prepare([torch.rand(1, 3, 32, 32)] * 2)


@pytest.fixture
def decoder_file(tmp_path):
    path = tmp_path / "decoder.pth"
    weights.save_model(path, "adain", Decoder("vgg16").state_dict(), backbone="vgg16", encoder_layer="relu4_1")
    return path


def test_swap_through_the_cli_writes_an_image(capsys, make_image, tmp_path, decoder_file, random_weights_file):
    out = tmp_path / "out.png"
    code, _, err = cli(capsys, "stylize", make_image("c.png", 40, 32), "-s", make_image("s.png", 32, 32, seed=1),
                       "-m", "swap", "--model", decoder_file, "--patch-size", "3", "--stride", "2", "--size", "40",
                       "-o", out, "--vgg-weights", random_weights_file, "--device", "cpu")
    assert code == 0, err
    assert out.exists() and out.stat().st_size > 0


@pytest.mark.parametrize("flag", ["--patch-size", "--stride"])
def test_swap_flags_are_refused_for_adain(capsys, make_image, tmp_path, flag):
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-s", make_image("s.png"), "-m", "adain",
                       flag, "2", "-o", tmp_path / "o.png")
    assert code == 2 and f"{flag} does not apply to -m adain" in one_error_line(err)


def test_a_stride_past_the_patch_is_refused(capsys, make_image, tmp_path, decoder_file):
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-s", make_image("s.png"), "-m", "swap",
                       "--model", decoder_file, "--patch-size", "2", "--stride", "3", "-o", tmp_path / "o.png")
    assert code == 2 and "'stride' must be at most 'patch_size' (2)" in one_error_line(err)
