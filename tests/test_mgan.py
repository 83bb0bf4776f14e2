"""MGAN (stransfer/engines/mgan.py, stransfer/train/mgan.py): the critic learns, a run killed and resumed continues
both networks' curves, the engine refuses what is not its model, the style's augmentation leaves no empty canvas."""

from __future__ import annotations

import json

import pytest
import torch

from stransfer import weights
from stransfer.backbone import VGGFeatures
from stransfer.config import as_dict
from stransfer.device import make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.engines.decoder import Decoder
from stransfer.engines.mgan import Generator, MganConfig, load_generator
from stransfer.errors import UsageError, WeightsError
from stransfer.train.mgan import MganTrainConfig, PatchCritic, critic_hinge, generator_hinge, rotate, start_weights

from conftest import assert_kill_and_resume_continue_the_curve, cli, gradient_image, one_error_line

TINY = ("crop_size = 32\nstyle_size = 48\nbatch_size = 2\ncritic_width = 8\nstart_decoder = \"\"\nlog_every = 1\n"
        "checkpoint_every = 4\npreview_every = 6\n")


@pytest.fixture
def tiny_mgan_args(tmp_path, random_weights_file):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(8):
        gradient_image(40 + 4 * i, 36, seed=i).save(photos / f"p{i}.png")
    style = tmp_path / "style.png"
    gradient_image(64, 56, seed=9).save(style)
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    # fp32, not auto: two runs compared step for step must not choose different precisions on a busy machine.
    return ["-s", style, "--data", photos, "--config", toml, "--vgg-weights", random_weights_file,
            "--device", "cpu", "--threads", "1", "--precision", "fp32"]


@pytest.fixture
def tiny_mgan(capsys, tmp_path, tiny_mgan_args):
    """A 2-step MGAN model trained on the random-weight VGG16."""
    out = tmp_path / "mgan_style.pth"
    code, _, err = cli(capsys, "train", "mgan", *tiny_mgan_args, "--steps", "2", "--run-dir", tmp_path / "run",
                       "-o", out)
    assert code == 0, err
    return out


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_the_critic_learns_the_style_s_patches_from_the_generated_ones(capsys, tmp_path, tiny_mgan_args):
    """In a tiny run whose generator barely moves, the critic's loss on the style's windows falls (their scores
    rise past the margin) and the generated windows' loss as real rises (their scores fall): it learns to tell
    them apart."""
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "mgan", *tiny_mgan_args, "--steps", "30", "--learning-rate", "1e-9",
                       "--critic-learning-rate", "2e-3", "--run-dir", run, "-o", tmp_path / "m.pth")
    assert code == 0, err
    log = _log(run)
    first, last = log[:3], log[-3:]

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    assert mean(last, "critic_real") > mean(first, "critic_real") + 0.5  # the real windows' hinge term falls
    assert mean(last, "critic_fake") < mean(first, "critic_fake") - 0.5
    assert mean(last, "adversarial") > mean(first, "adversarial") + 0.5  # generated windows: their loss as real
    assert mean(last, "critic") < mean(first, "critic")
    assert log[-1]["critic_real"] > log[-1]["critic_fake"]


@pytest.mark.slow
def test_sigkill_then_resume_continues_the_generator_and_critic_curves(tmp_path, tiny_mgan_args):
    assert_kill_and_resume_continue_the_curve(tmp_path, ["mgan", *tiny_mgan_args], 16, tiny_mgan_args[7],
                                              kill_after=6, keys=("total", "critic", "critic_real", "critic_fake"))


def test_a_model_file_of_another_engine_is_refused_in_one_line(capsys, tmp_path, tiny_johnson, tiny_mgan,
                                                               random_weights_file):
    photo = tmp_path / "photo.png"
    gradient_image(24, 20).save(photo)
    code, _, err = cli(capsys, "stylize", photo, "-m", "mgan", "--model", "tiny", "-o", tmp_path / "a.png",
                       "--vgg-weights", random_weights_file, "--device", "cpu")
    assert code == 2 and "is a model for the 'johnson' engine, not 'mgan'" in one_error_line(err)
    code, _, err = cli(capsys, "stylize", photo, "-m", "johnson", "--model", tiny_mgan, "-o", tmp_path / "b.png",
                       "--device", "cpu")
    assert code == 2 and "is a model for the 'mgan' engine, not 'johnson'" in one_error_line(err)


def test_stylize_applies_the_model_at_any_size_and_takes_no_style(capsys, tmp_path, tiny_mgan, random_weights_file):
    photo = tmp_path / "photo.png"
    gradient_image(37, 29).save(photo)
    common = ["-m", "mgan", "--model", tiny_mgan, "--vgg-weights", random_weights_file, "--device", "cpu",
              "--size", "37"]
    code, _, err = cli(capsys, "stylize", photo, *common, "-o", tmp_path / "out.png")
    assert code == 0, err
    code, _, err = cli(capsys, "stylize", photo, *common, "-s", photo, "-o", tmp_path / "styled.png")
    assert code == 2 and "takes no -s" in one_error_line(err)
    engine = ENGINES["mgan"].build(MganConfig(model=str(tiny_mgan), tile="64", tile_overlap=16), make_runtime("cpu"),
                                   EngineInputs(vgg_weights=random_weights_file))
    content = torch.rand(2, 3, 75, 130)
    out = engine.stylize(content, engine.prepare([]))
    assert out.shape == content.shape and 0 <= out.min() and out.max() <= 1


def test_a_generator_for_other_vgg_weights_is_refused(tmp_path, tiny_mgan):
    other = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save({k.removeprefix("layers."): v for k, v in VGGFeatures("vgg16").state_dict().items()}, other)
    with pytest.raises(WeightsError, match="trained for other vgg16 weights"):
        ENGINES["mgan"].build(MganConfig(model=str(tiny_mgan)), make_runtime("cpu"), EngineInputs(vgg_weights=other))


def test_the_model_file_rebuilds_from_itself(tiny_mgan):
    generator, payload = load_generator(tiny_mgan)
    assert payload["engine"] == "mgan" and payload["style"] == "style" and payload["style_image"] == "style.png"
    assert payload["steps"] == 2 and payload["train_config"]["crop_size"] == 32
    assert generator(torch.rand(1, 512, 3, 5)).shape == (1, 3, 24, 40)


def test_the_generator_starts_from_an_adain_decoder(tmp_path):
    torch.manual_seed(3)
    decoder = Decoder("vgg16")
    path = tmp_path / "decoder.pth"
    weights.save_model(path, "adain", decoder.state_dict(), backbone="vgg16")
    generator = Generator("vgg16")
    generator.load_state_dict(start_weights(str(path), "vgg16"))
    features = torch.rand(1, 512, 4, 4)
    assert torch.equal(generator(features), decoder(features))
    with pytest.raises(UsageError, match="decodes vgg16 features, not vgg19's"):
        start_weights(str(path), "vgg19")
    with pytest.raises(UsageError, match="start_decoder"):
        start_weights(str(tmp_path / "missing.pth"), "vgg16")


def test_train_mgan_takes_one_style(capsys, tmp_path, tiny_mgan_args):
    code, _, err = cli(capsys, "train", "mgan", *tiny_mgan_args, "-s", tiny_mgan_args[1], "-o", tmp_path / "m.pth",
                       "--run-dir", tmp_path / "run")
    assert code == 2 and "one style" in one_error_line(err)


@pytest.mark.parametrize("degrees", [-10.0, 10.0, 30.0])
def test_a_rotated_style_has_no_empty_corners(degrees):
    white = torch.ones(1, 3, 60, 90)
    turned = rotate(white, degrees)
    assert turned.shape[-2] < 60 and turned.shape[-1] < 90
    assert turned.min() > 0.999  # every pixel came from inside the picture
    assert torch.equal(rotate(white, 0.0), white)


def test_the_hinge_losses_are_the_papers_margins():
    assert critic_hinge(torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])).item() == pytest.approx(0.25 + 0.5)
    assert generator_hinge(torch.tensor([2.0, 0.0])).item() == pytest.approx(0.5)


def test_the_critic_leaves_out_its_border_windows():
    critic = PatchCritic(16, 4)
    assert critic(torch.rand(2, 16, 24, 24)).shape == (2, 4 * 4)  # 6 x 6 scores, less the ring
    assert critic(torch.rand(1, 16, 8, 8)).shape == (1, 4)  # too few to leave any out


def test_the_training_defaults_keep_crops_of_at_least_384_px():
    assert MganTrainConfig().crop_size >= 384
    assert as_dict(MganTrainConfig())["style_rotations"] == [-10.0, 0.0, 10.0]
