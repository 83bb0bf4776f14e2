"""StyleBank (stransfer/engines/stylebank.py, stransfer/train/stylebank.py) on tiny random networks and a
random-weight VGG16: the (T+1) schedule, banks added with everything else frozen, fusion by blend and by region,
tiling, resume, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import stransfer
from stransfer.device import Runtime, make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.engines.stylebank import StyleBankArch, StyleBankConfig, StyleBankNet, load_network, save_network
from stransfer.errors import UsageError
from stransfer.images import pil_to_tensor
from stransfer.train.loop import place
from stransfer.train.stylebank import (StyleBankTask, StyleBankTrainConfig, autoencoder_step,
                                       stylising_index)

from conftest import assert_kill_and_resume_continue_the_curve, cli, gradient_image, one_error_line

ARCH = StyleBankArch(width=4, bank_layers=2)


def randomised(net: StyleBankNet, seed: int) -> StyleBankNet:
    """Every parameter random (the banks' norm scales and shifts too, which start equal in every bank)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (0.5 if p.dim() == 1 else 0.0))
    return net.eval()


def save_tiny(path: Path, names: tuple[str, ...] = ("wave", "dots")) -> StyleBankNet:
    net = randomised(StyleBankNet(ARCH, len(names)), 1)
    save_network(path, net, list(names), [f"{n}.jpg" for n in names], backbone="vgg16", train_config={},
                 steps=1, record={})
    return net


@pytest.fixture
def tiny_bank(isolated_home) -> Path:
    """A random two-style StyleBank model installed as NAME 'tinybank'."""
    path = isolated_home / "models" / "tinybank.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tiny(path)
    return path


def engine(model: Path, styles: list[str] = (), blend: list[float] | None = None, mask: torch.Tensor | None = None,
           tile: str = "off", overlap: int = 16):
    eng = ENGINES["stylebank"].build(StyleBankConfig(model=str(model), tile=tile, tile_overlap=overlap),
                                     make_runtime("cpu", "fp32"), EngineInputs(style_weights=blend, mask=mask))
    return eng, eng.prepare(list(styles))


def stylised(model: Path, x: torch.Tensor, styles: list[str] = (), **inputs) -> torch.Tensor:
    eng, choice = engine(model, styles, **inputs)
    return eng.stylize(x, choice)


# ------------------------------------------------------------------------------------------------ the network


@pytest.mark.parametrize("size", [(16, 16), (17, 33), (40, 23), (64, 80)])
def test_any_input_size_gives_the_same_output_size(size):
    net = StyleBankNet(ARCH, 2).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        assert net(x).shape == x.shape and net(x, torch.tensor([0.0, 1.0])).shape == x.shape
        assert net(x, ids=[1, 0]).shape == x.shape


def test_architecture_follows_the_paper_in_shape():
    """Encoder at a quarter of the side with 4 x width channels, a bank of 3x3 layers per style on them, and a
    decoder back to RGB; instance norm only in the banks."""
    net = StyleBankNet(StyleBankArch(width=8, bank_layers=3), 5)
    with torch.no_grad():
        features = net.encoder(torch.rand(1, 3, 64, 48))
    assert features.shape == (1, 32, 16, 12)
    assert net.styles == 5 and len(net.banks[0]) == 3
    assert all(layer[1].kernel_size == (3, 3) and layer[1].in_channels == 32 for layer in net.banks[4])
    norms = [name for name, m in net.named_modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and all(name.startswith("banks.") for name in norms)


def test_each_item_goes_through_its_own_bank():
    net = randomised(StyleBankNet(ARCH, 3), 2)
    x = torch.rand(3, 3, 24, 24)
    with torch.no_grad():
        mixed = net(x, ids=[2, 0, 2])
        for i, s in enumerate([2, 0, 2]):
            alone = net(x[i:i + 1], torch.nn.functional.one_hot(torch.tensor(s), 3).float())
            assert torch.allclose(mixed[i:i + 1], alone, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------- fusion: blend, regions


def test_a_blend_of_one_and_zero_is_the_single_style_and_a_mix_lies_between(tiny_bank):
    x = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(0))
    wave, dots = stylised(tiny_bank, x, ["wave"]), stylised(tiny_bank, x, ["dots"])
    assert not torch.equal(wave, dots)
    assert torch.equal(stylised(tiny_bank, x, ["wave", "dots"], blend=[1.0, 0.0]), wave)
    assert torch.equal(stylised(tiny_bank, x, ["wave", "dots"], blend=[0.0, 1.0]), dots)
    half = stylised(tiny_bank, x, ["wave", "dots"], blend=[0.5, 0.5])
    assert not torch.equal(half, wave) and not torch.equal(half, dots)
    net, _ = load_network(tiny_bank)
    with torch.no_grad():  # linear fusion of the banks' outputs, then the decoder
        features = net.encoder(x)
        expected = net.decoder(0.5 * net.banks[0](features) + 0.5 * net.banks[1](features)).clamp(0, 1)
    assert torch.allclose(half, expected, atol=1e-6)


def test_a_mask_fuses_banks_by_region(tiny_bank):
    x = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(1))
    white, black = torch.ones(1, 1, 40, 52), torch.zeros(1, 1, 40, 52)
    wave, dots = stylised(tiny_bank, x, ["wave"]), stylised(tiny_bank, x, ["dots"])
    assert torch.equal(stylised(tiny_bank, x, ["wave", "dots"], mask=white), wave)
    assert torch.equal(stylised(tiny_bank, x, ["wave", "dots"], mask=black), dots)
    net, _ = load_network(tiny_bank)
    with torch.no_grad():  # one style: black is the photo through the auto-encoder
        assert torch.equal(stylised(tiny_bank, x, ["wave"], mask=black), net(x).clamp(0, 1))
    half = torch.cat([torch.ones(1, 1, 40, 26), torch.zeros(1, 1, 40, 26)], dim=-1)
    split = stylised(tiny_bank, x, ["wave", "dots"], mask=half)
    # away from the seam each side is its own style (the decoder's reach is a few pixels)
    assert torch.allclose(split[..., :, :8], wave[..., :, :8], atol=1e-5)
    assert torch.allclose(split[..., :, -8:], dots[..., :, -8:], atol=1e-5)


def test_the_api_and_cli_take_a_mask_and_blends(capsys, tmp_path, tiny_bank):
    photo, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    gradient_image(36, 28).save(photo)
    from PIL import Image

    Image.new("L", (36, 28), 255).save(mask)
    whole = stransfer.stylize(photo, style=["wave", "dots"], method="stylebank", model="tinybank", size=None,
                              mask=mask, device="cpu", precision="fp32")
    alone = stransfer.stylize(photo, style="wave", method="stylebank", model="tinybank", size=None, device="cpu",
                              precision="fp32")
    assert torch.equal(pil_to_tensor(whole), pil_to_tensor(alone))
    code, out, err = cli(capsys, "stylize", photo, "-m", "stylebank", "--model", "tinybank", "-s", "wave", "-s",
                         "dots", "--style-blend", "0.7,0.3", "-o", tmp_path / "out.png", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "out.png").exists()


@pytest.mark.parametrize("styles, inputs, words", [
    ([], {}, "holds 2 styles: pick one"),
    (["stripes"], {}, "holds no style 'stripes'"),
    (["wave", "dots", "wave"], {"mask": torch.ones(1, 1, 8, 8)}, "`mask` takes one or two styles"),
    (["wave", "dots"], {"mask": torch.ones(1, 1, 8, 8), "blend": [0.5, 0.5]}, "no `style_blend` with it"),
    (["wave", "dots"], {"blend": [1.0]}, "1 weights for 2 styles"),
])
def test_style_choices_that_do_not_fit_are_refused(tiny_bank, styles, inputs, words):
    with pytest.raises(UsageError, match=words):
        engine(tiny_bank, styles, **inputs)


def test_a_model_of_another_engine_is_refused_in_one_line(capsys, tmp_path, tiny_bank, tiny_johnson):
    photo = tmp_path / "photo.png"
    gradient_image(24, 20).save(photo)
    code, _, err = cli(capsys, "stylize", photo, "-m", "stylebank", "--model", "tiny", "-o", tmp_path / "o.png")
    assert code == 2 and "is a model for the 'johnson' engine, not 'stylebank'" in one_error_line(err)
    code, _, err = cli(capsys, "stylize", photo, "-m", "johnson", "--model", "tinybank", "-o", tmp_path / "o.png")
    assert code == 2 and "is a model for the 'stylebank' engine, not 'johnson'" in one_error_line(err)
    code, _, err = cli(capsys, "stylize", photo, "-m", "stylebank", "--model", "tinybank", "-s", photo,
                       "-o", tmp_path / "o.png")
    assert code == 2 and "takes the names of its styles, not style images" in one_error_line(err)
    assert not (tmp_path / "o.png").exists()


def test_models_lists_the_styles_of_a_stylebank_model(capsys, tiny_bank, isolated_home):
    save_tiny(isolated_home / "models" / "onebank.pth", ("udnie",))
    code, out, _ = cli(capsys, "models")
    assert code == 0
    assert "tinybank: stylebank" in out and "2 styles (-s NAME): wave, dots" in out
    assert "onebank: stylebank" in out and "udnie.jpg" in out


def test_tiles_take_the_whole_images_statistics(isolated_home):
    """Tiled, each bank's norms use the whole image's statistics: the tiles agree with the untiled output, and
    nothing stays frozen for the next image."""
    torch.manual_seed(0)
    net = StyleBankNet(ARCH, 2).eval()
    path = isolated_home / "fresh.pth"
    save_network(path, net, ["wave", "dots"], ["wave.jpg", "dots.jpg"], backbone="vgg16")
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(3)), 9, 1, 4)
    mask = torch.zeros(1, 1, 96, 160)
    mask[..., :, :70] = 1
    for styles, inputs in ((["wave"], {}), (["wave", "dots"], {"blend": [0.3, 0.7]}),
                           (["wave", "dots"], {"mask": mask})):
        whole = stylised(path, x, styles, **inputs)
        eng, choice = engine(path, styles, tile="64", overlap=32, **inputs)
        tiled = eng.stylize(x, choice)
        assert tiled.shape == whole.shape
        assert (tiled - whole).abs().mean() < 0.008, styles  # 0.013 with each tile's own statistics
        assert eng.norms and all(norm.frozen is None for norm in eng.norms)


# ---------------------------------------------------------------------------------------------------- training


def test_the_t_plus_one_schedule():
    assert [s for s in range(9) if autoencoder_step(s, 2)] == [2, 5, 8]
    assert [s for s in range(6) if autoencoder_step(s, 1)] == [1, 3, 5]
    assert [stylising_index(s, 2) for s in range(7)] == [0, 1, 2, 2, 3, 4, 4]  # step 2 and 5 train no style


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(8):
        gradient_image(40, 36, seed=i).save(folder / f"p{i}.png")
    return folder


TINY = dict(width=4, bank_layers=2, image_size=32, style_size=32, batch_size=3, stylize_steps=2,
            style_layers=("relu1_2", "relu2_2"), content_layers=("relu2_2",))


def tiny_task(random_vgg16, photos: Path, styles: int = 2, frozen=None, **changes) -> StyleBankTask:
    cfg = StyleBankTrainConfig(**{**TINY, **changes})
    images = [pil_to_tensor(gradient_image(40, 40, seed=20 + i)) for i in range(styles)]
    files = sorted(photos.glob("*.png"))
    return StyleBankTask(cfg, Runtime(torch.device("cpu")), random_vgg16, images,
                         [Path(f"s{i}.png") for i in range(styles)], files, files[:2], frozen=frozen)


def test_the_task_follows_the_schedule_and_balances_the_styles(random_vgg16, photos):
    task = tiny_task(random_vgg16, photos, styles=3)
    batches = [task.batch(step) for step in range(9)]
    assert [b.styles is None for b in batches] == [autoencoder_step(s, 2) for s in range(9)]
    seen = [s for b in batches if b.styles is not None for s in b.styles]
    assert sorted(seen) == [0] * 6 + [1] * 6 + [2] * 6  # 6 stylising steps of 3 crops, every style as often
    adding = tiny_task(random_vgg16, photos, styles=1, frozen=(["a", "b"], ["a.jpg", "b.jpg"]))
    assert all(adding.batch(step).styles == [0, 0, 0] for step in range(6))  # every step stylises


def _parameters(net: StyleBankNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_the_auto_encoder_step_touches_no_bank(random_vgg16, photos):
    """After stylising steps (so Adam holds moments for every bank), an auto-encoder step moves the encoder and the
    decoder and leaves every bank exactly as it was."""
    task = tiny_task(random_vgg16, photos)
    model = place(task.model, Runtime(torch.device("cpu"))).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def step(number: int) -> dict[str, float]:
        optimizer.zero_grad(set_to_none=True)
        loss, logged = task.loss(task.batch(number), model)
        loss.backward()
        optimizer.step()
        return logged

    step(0), step(1)
    before = _parameters(task.model)
    logged = step(2)
    assert "psnr_db" in logged and "style" not in logged
    after = _parameters(task.model)
    for key, value in before.items():
        if key.startswith("banks."):
            assert torch.equal(after[key], value), key
    moved = [k for k in before if not k.startswith("banks.") and not torch.equal(after[k], before[k])]
    assert any(k.startswith("encoder.") for k in moved) and any(k.startswith("decoder.") for k in moved)


@pytest.fixture
def train_args(tmp_path, photos, random_weights_file):
    styles = []
    for name, seed in (("wave", 9), ("dots", 11), ("new", 13)):
        gradient_image(48, 48, seed=seed).save(tmp_path / f"{name}.png")
        styles.append(tmp_path / f"{name}.png")
    toml = tmp_path / "tiny.toml"
    toml.write_text("width = 4\nbank_layers = 2\nimage_size = 32\nstyle_size = 32\nbatch_size = 3\n"
                    "stylize_steps = 2\nlog_every = 1\ncheckpoint_every = 4\npreview_every = 6\n"
                    "style_layers = ['relu1_2', 'relu2_2']\ncontent_layers = ['relu2_2']\n")
    common = ["--data", photos, "--config", toml, "--vgg-weights", random_weights_file, "--device", "cpu",
              "--threads", "1", "--precision", "fp32"]
    return styles, common


def test_a_bank_added_leaves_the_encoder_decoder_and_other_banks_unchanged(capsys, tmp_path, train_args):
    (wave, dots, new), common = train_args
    two = tmp_path / "two.pth"
    code, _, err = cli(capsys, "train", "stylebank", "-s", wave, "-s", dots, *common, "--steps", "6",
                       "--style-weight", "1,3", "--run-dir", tmp_path / "r1", "-o", two)
    assert code == 0, err
    net2, p2 = load_network(two)
    assert p2["styles"] == ["wave", "dots"] and p2["style_images"] == ["wave.png", "dots.png"]
    assert p2["train_config"]["style_weight"] == [1.0, 3.0] and p2["arch"] == {"width": 4, "bank_layers": 2}

    three = tmp_path / "three.pth"
    code, _, err = cli(capsys, "train", "stylebank", "--init", two, "--add-style", new, *common, "--steps", "4",
                       "--run-dir", tmp_path / "r2", "-o", three)
    assert code == 0, err
    net3, p3 = load_network(three)
    assert p3["styles"] == ["wave", "dots", "new"] and p3["steps"] == 10
    assert [s["steps"] for s in p3["record"]["lineage"]] == [6, 4]
    before, after = net2.state_dict(), net3.state_dict()
    assert set(after) - set(before) == {k.replace("banks.0.", "banks.2.") for k in before if k.startswith("banks.0.")}
    for key, value in before.items():
        assert torch.equal(after[key], value), key  # encoder, decoder and both old banks, bit for bit
    started = [k for k in after if k.startswith("banks.2.")]
    assert any(not torch.equal(after[k], before[k.replace("banks.2.", "banks.0.")]) for k in started)  # it trained
    x = torch.rand(1, 3, 30, 34)
    for name in ("wave", "dots"):
        assert torch.equal(stylised(two, x, [name]), stylised(three, x, [name]))


def test_training_refuses_what_does_not_fit(capsys, tmp_path, train_args, tiny_johnson):
    (wave, dots, new), common = train_args
    two = tmp_path / "two.pth"
    assert cli(capsys, "train", "stylebank", "-s", wave, "-s", dots, *common, "--steps", "1", "--run-dir",
               tmp_path / "r1", "-o", two)[0] == 0
    code, _, err = cli(capsys, "train", "stylebank", "--init", "tiny", "--add-style", new, *common,
                       "-o", tmp_path / "x.pth")
    assert code == 2 and "is a model for the 'johnson' engine, not 'stylebank'" in one_error_line(err)
    code, _, err = cli(capsys, "train", "stylebank", "--init", two, "--add-style", dots, *common,
                       "-o", tmp_path / "x.pth")
    assert code == 2 and "already holds style 'dots'" in one_error_line(err)
    code, _, err = cli(capsys, "train", "stylebank", "--init", two, "--add-style", new, *common, "--width", "8",
                       "-o", tmp_path / "x.pth")
    assert code == 2 and "--width 8 contradicts --init" in one_error_line(err)


def test_sigkill_then_resume_continues_the_curve(tmp_path, train_args):
    (wave, dots, _), common = train_args
    assert_kill_and_resume_continue_the_curve(tmp_path, ["stylebank", "-s", wave, "-s", dots, *common], 15,
                                              common[5], kill_after=5)


def test_the_training_step_benchmark_runs_each_kind_of_step(random_vgg16, photos):
    """benchmarks/stylebank.py step times the task's own steps; a benchmark that no longer runs measures nothing."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from stylebank import step_seconds

    cfg = StyleBankTrainConfig(**TINY)
    seconds = step_seconds(cfg, Runtime(torch.device("cpu")), random_vgg16, 2, sorted(photos.glob("*.png")), 1)
    assert set(seconds) == {"stylising", "auto-encoder", "--add-style", "mean over the schedule"}
    assert all(wall > 0 and cpu > 0 for wall, cpu in seconds.values())
