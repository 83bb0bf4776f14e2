"""The Python API: what it accepts, what it returns, and that the CLI gives the same pixels."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

import stransfer
from stransfer import weights
from stransfer.engines.decoder import Decoder, encoder_from
from stransfer.errors import ArgumentError, ConfigError, UsageError
from conftest import cli, gradient_image

GATYS_FAST = {"scales": "1", "iterations": "3", "device": "cpu"}


@pytest.fixture
def tiny_decoder(tmp_path, random_vgg16):
    """A random AdaIN decoder recorded as trained for the random-weight encoder."""
    state = {k.removeprefix("layers."): v for k, v in random_vgg16.state_dict().items()}
    encoder_state = {k.removeprefix("layers."): v for k, v in encoder_from("vgg16", state).state_dict().items()}
    torch.manual_seed(0)
    path = tmp_path / "decoder.pth"
    weights.save_model(path, "adain", Decoder("vgg16").state_dict(), backbone="vgg16", encoder_layer="relu4_1",
                       encoder_digest=weights.tensor_digest(encoder_state), train_config={}, steps=1, record={})
    return path


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_stylize_takes_paths_pil_images_and_tensors_alike(tmp_path, random_weights_file):
    photo, art = gradient_image(48, 32), gradient_image(40, 40, seed=3)
    photo.save(tmp_path / "photo.png")
    art.save(tmp_path / "art.png")
    common = dict(method="gatys", size=32, vgg_weights=random_weights_file, **GATYS_FAST)
    from_paths = stransfer.stylize(tmp_path / "photo.png", style=str(tmp_path / "art.png"), **common)
    from_pil = stransfer.stylize(photo, style=art, **common)
    as_tensor = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)
    from_tensor = stransfer.stylize(as_tensor, style=[art], **common)
    assert from_paths.size == (32, 21) and from_paths.mode == "RGB"
    assert np.array_equal(pixels(from_paths), pixels(from_pil))
    assert np.array_equal(pixels(from_paths), pixels(from_tensor))
    assert np.abs(pixels(from_paths) - pixels(photo.resize((32, 21)))).mean() > 1  # it did stylise


def test_one_stylizer_serves_many_images_and_keeps_alpha(tiny_johnson):
    stylizer = stransfer.Stylizer("johnson", model="tiny", device="cpu")
    rgba = gradient_image(40, 24).convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 90))
    out = stylizer(rgba, size=None)
    assert out.mode == "RGBA" and out.size == (40, 24) and out.getchannel("A").getextrema() == (90, 90)
    small = stylizer(gradient_image(40, 24, seed=1), size=20)
    assert small.size == (20, 12) and small.mode == "RGB"
    # Stacked images are stylised each as if alone (instance norm is per image).
    a, b = torch.rand(1, 3, 24, 32), torch.rand(1, 3, 24, 32)
    both = stylizer.stylize_tensor(torch.cat([a, b]))
    torch.testing.assert_close(both[1:], stylizer.stylize_tensor(b), atol=1e-5, rtol=1e-4)


def test_adain_stylizer_encodes_its_style_once_per_output_size(tiny_decoder, random_weights_file):
    stylizer = stransfer.Stylizer("adain", torch.rand(3, 32, 32), model=str(tiny_decoder),
                                  vgg_weights=random_weights_file, device="cpu")
    for _ in range(2):
        assert stylizer.stylize_tensor(torch.rand(2, 3, 24, 32)).shape == (2, 3, 24, 32)
    assert list(stylizer.styles.by_size) == [32]
    stylizer.stylize_tensor(torch.rand(1, 3, 16, 16))
    assert list(stylizer.styles.by_size) == [32, 16]


def test_histogram_colour_mode_recolours_a_copy_of_the_style_per_call(random_weights_file):
    style = torch.rand(1, 3, 32, 32) * 0.3
    common = dict(vgg_weights=random_weights_file, **GATYS_FAST)
    plain = stransfer.Stylizer("gatys", style, **common)
    recolour = stransfer.Stylizer("gatys", style, preserve_color="histogram", **common)
    content = torch.rand(1, 3, 32, 32)
    first, recoloured = plain.stylize_tensor(content), recolour.stylize_tensor(content)
    assert torch.equal(recolour.styles.images[0], style) and not recolour.styles.by_size
    assert not torch.allclose(first, recoloured)
    torch.testing.assert_close(plain.stylize_tensor(content), first)  # nothing carried over between calls
    assert not recolour.batches


def test_the_cli_writes_the_pixels_the_api_returns(capsys, tmp_path, tiny_johnson):
    gradient_image(48, 32).save(tmp_path / "photo.png")
    code, _, err = cli(capsys, "stylize", tmp_path / "photo.png", "-m", "johnson", "--model", "tiny", "--size", 40,
                       "--device", "cpu", "-o", tmp_path / "cli.png")
    assert code == 0, err
    api = stransfer.stylize(tmp_path / "photo.png", method="johnson", model="tiny", size=40, device="cpu")
    assert np.array_equal(pixels(Image.open(tmp_path / "cli.png").convert("RGB")), pixels(api))


def test_texture_is_seeded_and_sized(random_weights_file):
    art = gradient_image(40, 40, seed=3)
    common = dict(size=40, height=24, vgg_weights=random_weights_file, device="cpu", config=None, iterations=5)
    a = stransfer.texture(art, seed=1, **common)
    assert a.size == (40, 24)
    assert np.array_equal(pixels(a), pixels(stransfer.texture(art, seed=1, **common)))
    assert not np.array_equal(pixels(a), pixels(stransfer.texture(art, seed=2, **common)))


@pytest.mark.parametrize("call, error, words", [
    (dict(method="picasso", style="x"), UsageError, "unknown method 'picasso'"),
    (dict(method="johnson", model="tiny", style=torch.rand(3, 8, 8)), UsageError, "takes no style image"),
    (dict(method="johnson", model="tiny", mask=torch.rand(3, 8, 8)), UsageError, "no `mask`"),
    (dict(method="gatys"), UsageError, "needs a style image"),
    (dict(method="gatys", style=torch.rand(3, 8, 8), alpha=0.5), ConfigError, "unknown key 'alpha'"),
    (dict(method="gatys", style=torch.rand(2, 8, 8)), ArgumentError, "`style`: a tensor image must be float RGB"),
    (dict(method="gatys", style=[torch.rand(3, 8, 8)] * 2, style_blend=[1, 2, 3]), UsageError, "3 weights for 2"),
    (dict(method="adain", style=torch.rand(3, 8, 8), preserve_color="sepia"), UsageError, "`preserve_color`"),
])
def test_bad_calls_fail_with_one_clear_error(tiny_johnson, random_weights_file, call, error, words):
    with pytest.raises(error, match=words):
        stransfer.Stylizer(**call, vgg_weights=random_weights_file, device="cpu")


def test_the_library_names_settings_as_the_api_does_not_as_flags(random_weights_file):
    with pytest.raises(ConfigError, match=r"^'alpha' must be <= 1") as raised:
        stransfer.Stylizer("adain", torch.rand(3, 8, 8), alpha=2, vgg_weights=random_weights_file, device="cpu")
    assert "--" not in str(raised.value)
    with pytest.raises(ConfigError, match=r"^'size' must be >= 16"):
        stransfer.texture(torch.rand(3, 8, 8), size=0, vgg_weights=random_weights_file)


def test_a_content_that_is_not_an_image_is_an_argument_error(tiny_johnson):
    stylizer = stransfer.Stylizer("johnson", model="tiny", device="cpu")
    with pytest.raises(ArgumentError, match="float RGB"):
        stylizer(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(UsageError, match="size"):
        stylizer(torch.rand(3, 8, 8), size=0)
