"""Texture networks (stransfer/engines/texturenet.py, stransfer/train/texture.py) on tiny random generators and a
random-weight VGG16: seeded and sized sampling, the selection code, the diversity term, adding textures, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import stransfer
from stransfer import weights
from stransfer.engines.texturenet import TextureGenerator, TextureNetArch, load_generator, noise, save_generator
from stransfer.errors import UsageError
from stransfer.train.texture import diversity

from conftest import assert_kill_and_resume_continue_the_curve, cli, gradient_image, one_error_line

ARCH = TextureNetArch(scales=3, noise_channels=2, width=2)


def random_generator(arch: TextureNetArch, textures: int, seed: int = 0) -> TextureGenerator:
    """Random weights, the norm tables too (fresh ones are the same for every texture)."""
    torch.manual_seed(seed)
    net = TextureGenerator(arch, textures)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.5)
    return net.eval()


@pytest.fixture
def tiny_textures(isolated_home):
    """A random two-texture generator installed as NAME 'tinytex'."""
    net = random_generator(ARCH, 2)
    path = isolated_home / "models" / "tinytex.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_generator(path, net, ["dots", "lines"], ["dots.png", "lines.png"], backbone="vgg16", train_config={},
                   steps=1, record={})
    return path


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_the_same_seed_gives_the_same_texture_bit_for_bit(tiny_textures):
    maker = stransfer.TextureMaker("net", "dots", model="tinytex", device="cpu")
    first, again = maker(40, seed=3), maker(40, seed=3)
    assert (pixels(first) == pixels(again)).all()
    assert (pixels(first) != pixels(maker(40, seed=4))).any()
    # a sample depends on its own seed alone, whatever else the maker drew before
    assert (pixels(stransfer.texture("dots", 40, method="net", model="tinytex", seed=3, device="cpu"))
            == pixels(first)).all()


@pytest.mark.parametrize("width, height", [(16, 16), (17, 33), (64, 21), (101, 99)])
def test_any_size_works_odd_ones_too(tiny_textures, width, height):
    image = stransfer.texture("lines", width, height, method="net", model="tinytex", device="cpu")
    assert image.size == (width, height)


@pytest.mark.parametrize("width, height", [(16, 16), (32, 17)])
def test_the_shipped_architecture_makes_textures_whose_coarsest_scale_is_one_pixel(width, height):
    arch = TextureNetArch()  # six scales: a 16 or 32 px texture's coarsest noise is 1x1
    net = random_generator(arch, 2)
    with torch.no_grad():
        out = net(noise(arch, height, width, [0]), torch.tensor([[1.0, 0.0]]))
    assert out.shape == (1, 3, height, width) and torch.isfinite(out).all()


@pytest.mark.parametrize(("width", "height", "strip_values"), [(53, 37, 1 << 22), (53, 37, 300), (16, 16, 64),
                                                               (3, 1, 64)])
def test_generate_makes_what_forward_makes_in_strips_and_two_buffers(monkeypatch, width, height, strip_values):
    """The memory-lean path (in place, convolutions in strips of rows, whole-map statistics merged strip by strip)
    gives the network's own output: odd sizes, strips of one row, scales as large as the finest, blended codes."""
    from stransfer.engines import texturenet

    monkeypatch.setattr(texturenet, "STRIP_VALUES", strip_values)
    arch = TextureNetArch()
    net = random_generator(arch, 3)
    levels, code = noise(arch, height, width, [4, 5]), torch.tensor([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
    with torch.no_grad():
        expected = net(levels, code)
    assert torch.allclose(net.generate(levels, code), expected, atol=1e-4)


def test_texture_codes_pick_and_blend_textures(tiny_textures):
    net, _ = load_generator(tiny_textures)
    levels = noise(ARCH, 24, 24, [0])
    dots, lines = (net(levels, torch.tensor([code])) for code in ([1.0, 0.0], [0.0, 1.0]))
    half = net(levels, torch.tensor([[0.5, 0.5]]))
    assert not torch.equal(dots, lines)
    blended = stransfer.TextureMaker("net", ["dots", "lines"], style_blend=[1, 1], model="tinytex", device="cpu")
    assert (pixels(blended(24)) == pixels(stransfer.texture(["lines", "dots"], 24, method="net", model="tinytex",
                                                            device="cpu"))).all()
    assert not torch.equal(half, dots) and not torch.equal(half, lines)


@pytest.mark.parametrize("call, words", [
    (dict(style=None), "holds 2 styles: pick one"),
    (dict(style="stripes"), "holds no style 'stripes'"),
    (dict(style="dots", style_scale=0.5), "no `style_scale`"),
    (dict(style="dots", method="fractal"), "unknown texture method 'fractal'"),
])
def test_bad_texture_calls_are_usage_errors(tiny_textures, call, words):
    arguments = {"method": "net", "model": "tinytex", "device": "cpu", **call}
    with pytest.raises(UsageError, match=words):
        stransfer.texture(size=16, **arguments)


def test_a_texture_model_is_refused_by_stylize_and_a_style_model_by_texture(capsys, tmp_path, tiny_textures,
                                                                           tiny_johnson):
    photo = tmp_path / "photo.png"
    gradient_image(24, 20).save(photo)
    code, _, err = cli(capsys, "stylize", photo, "-m", "johnson", "--model", "tinytex", "-o", tmp_path / "o.png")
    assert code == 2 and "is a model for the 'texturenet' engine, not 'johnson'" in one_error_line(err)
    code, _, err = cli(capsys, "texture", "-m", "net", "--model", "tiny", "-o", tmp_path / "t.png")
    assert code == 2 and "is a model for the 'johnson' engine, not 'texturenet'" in one_error_line(err)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "t.png").exists()


def test_texture_count_writes_one_file_per_seed(capsys, tmp_path, tiny_textures):
    code, out, err = cli(capsys, "texture", "-m", "net", "--model", "tinytex", "-s", "dots", "--size", "20",
                         "--count", "3", "--seed", "5", "-o", tmp_path / "t.png", "--device", "cpu")
    assert code == 0, err
    written = [tmp_path / f"t_{seed}.png" for seed in (5, 6, 7)]
    assert out.split() == [str(p) for p in written]
    assert (pixels(Image.open(written[1])) == pixels(
        stransfer.texture("dots", 20, method="net", model="tinytex", seed=6, device="cpu"))).all()


def test_models_lists_the_textures_a_model_holds(capsys, tiny_textures):
    code, out, _ = cli(capsys, "models")
    assert code == 0
    assert "tinytex: texturenet" in out and "2 textures (-s NAME): dots, lines" in out


def test_diversity_rewards_samples_far_apart():
    near = torch.stack([torch.ones(4, 6, 6), torch.ones(4, 6, 6) * 1.01])
    far = torch.stack([torch.ones(4, 6, 6), -torch.ones(4, 6, 6)])
    assert diversity(far, 2) < diversity(near, 2)
    far.requires_grad_(True)
    diversity(far, 2).backward()
    assert far.grad is not None and far.grad.abs().sum() > 0
    assert diversity(torch.ones(3, 4, 2, 2), 1) == 0  # one sample per texture: nothing to spread


@pytest.fixture
def tiny_texture_args(tmp_path, random_weights_file):
    for i, name in enumerate(("dots", "lines")):
        gradient_image(40, 40, seed=20 + i).save(tmp_path / f"{name}.png")
    toml = tmp_path / "tiny.toml"
    toml.write_text("scales = 3\nnoise_channels = 2\nwidth = 2\nimage_size = 32\nstyle_size = 32\nbatch_size = 4\n"
                    "log_every = 1\ncheckpoint_every = 4\npreview_every = 6\nstyle_layers = ['relu1_2', 'relu2_2']\n"
                    "diversity_layer = 'relu2_2'\n")
    return ["-s", tmp_path / "dots.png", "-s", tmp_path / "lines.png", "--config", toml, "--vgg-weights",
            random_weights_file, "--device", "cpu", "--threads", "1", "--precision", "fp32"]


def test_sigkill_then_resume_continues_the_texture_curve(tmp_path, tiny_texture_args):
    assert_kill_and_resume_continue_the_curve(tmp_path, ["texture", *tiny_texture_args], 16, tiny_texture_args[7],
                                              kill_after=6)


def test_add_style_trains_a_third_texture_and_keeps_the_first_two(capsys, tmp_path, tiny_texture_args):
    code, _, err = cli(capsys, "train", "texture", *tiny_texture_args, "--steps", "4", "--run-dir", tmp_path / "r1",
                       "-o", tmp_path / "two.pth")
    assert code == 0, err
    gradient_image(40, 40, seed=30).save(tmp_path / "grid.png")
    rest = tiny_texture_args[4:]
    code, _, err = cli(capsys, "train", "texture", "--init", tmp_path / "two.pth", "--add-style", tmp_path / "grid.png",
                       *rest, "--steps", "4", "--run-dir", tmp_path / "r2", "-o", tmp_path / "three.pth")
    assert code == 0, err
    payload = weights.load_model(tmp_path / "three.pth", "texturenet")
    assert payload["styles"] == ["dots", "lines", "grid"]
    assert [stage["steps"] for stage in payload["record"]["lineage"]] == [4, 4]
    (two, _), (three, _) = load_generator(tmp_path / "two.pth"), load_generator(tmp_path / "three.pth")
    levels = noise(two.arch, 24, 24, [5])
    with torch.no_grad():
        for t in range(2):  # bit for bit: the trained network was frozen
            assert torch.equal(two(levels, torch.eye(2)[t:t + 1]), three(levels, torch.eye(3)[t:t + 1]))
    start = two.inputs[0].norms[0].weight.mean(0)  # where the new texture's rows began
    assert not torch.equal(three.inputs[0].norms[0].weight[2], start)
    code, _, err = cli(capsys, "train", "texture", "--init", tmp_path / "two.pth", "--add-style", tmp_path / "dots.png",
                       *rest, "--run-dir", tmp_path / "r3", "-o", tmp_path / "again.pth")
    assert code == 2 and "already holds style 'dots'" in one_error_line(err)


def test_batch_size_must_hold_whole_groups_of_samples(capsys, tmp_path, tiny_texture_args):
    code, _, err = cli(capsys, "train", "texture", *tiny_texture_args, "--batch-size", "3", "-o", tmp_path / "x.pth")
    assert code == 2 and "not a multiple of --samples-per-texture 2" in one_error_line(err)


def test_texture_networks_run_at_one_pass_on_any_arch():
    """The generator's channel bookkeeping holds for any number of scales, including one."""
    for arch in (TextureNetArch(1, 1, 1), TextureNetArch(4, 3, 5)):
        net = TextureGenerator(arch, 3)
        with torch.no_grad():
            out = net(noise(arch, 19, 23, [0, 1]), torch.eye(3)[:2])
        assert out.shape == (2, 3, 19, 23) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_each_code_learns_its_own_texture(capsys, tmp_path, random_weights_file):
    """Two textures far apart in colour: after a short run, each code's samples take their own exemplar's colour
    (a selection code the network ignored would give both the same average)."""
    rng = np.random.default_rng(0)
    for name, channel in (("red", 0), ("blue", 2)):
        pixels_ = rng.integers(0, 60, (40, 40, 3)).astype(np.uint8)
        pixels_[..., channel] = 230
        Image.fromarray(pixels_).save(tmp_path / f"{name}.png")
    toml = tmp_path / "tiny.toml"
    toml.write_text("scales = 2\nnoise_channels = 2\nwidth = 4\nimage_size = 32\nstyle_size = 32\nbatch_size = 4\n"
                    "learning_rate = 0.02\nstyle_layers = ['relu1_2']\ndiversity_layer = 'relu1_2'\n")
    code, _, err = cli(capsys, "train", "texture", "-s", tmp_path / "red.png", "-s", tmp_path / "blue.png",
                       "--config", toml, "--vgg-weights", random_weights_file, "--device", "cpu", "--threads", "1",
                       "--precision", "fp32", "--steps", "60", "--run-dir", tmp_path / "run", "-o", tmp_path / "rb.pth")
    assert code == 0, err
    red, blue = (pixels(stransfer.texture(name, 24, method="net", model=str(tmp_path / "rb.pth"), device="cpu"))
                 .reshape(-1, 3).mean(0) for name in ("red", "blue"))
    assert red[0] > red[2] + 40 and blue[2] > blue[0] + 40, (red, blue)
