"""MSG-Net (stransfer/engines/msgnet.py, stransfer/train/msgnet.py) on tiny random generators and a random-weight
VGG16: the CoMatch layer, trained styles by name against their images, style size, blends, refusals, training and
kill-and-resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stransfer
from stransfer import losses, weights
from stransfer.engines.msgnet import CoMatch, MSGNet, MSGNetArch, load_msgnet, save_msgnet
from stransfer.errors import UsageError
from stransfer.images import load_image

from conftest import assert_kill_and_resume_continue_the_curve, cli, gradient_image, one_error_line

ARCH = MSGNetArch(width=4, channels=8, blocks=1)
SIZES = [64, 128]


@pytest.fixture
def tiny_msgnet(isolated_home, tmp_path):
    """A random two-style generator installed as NAME 'tinymsg' (styles 'waves' and 'dots', Grams stored at 64 and
    128 px), and the style images it stores them from."""
    paths = []
    for name, seed in (("waves", 3), ("dots", 5)):
        gradient_image(60, 44, seed=seed).save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    torch.manual_seed(0)
    net = MSGNet(ARCH)
    path = isolated_home / "models" / "tinymsg.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_msgnet(path, net, ["waves", "dots"], [load_image(p).rgb for p in paths], [p.name for p in paths], SIZES,
                backbone="vgg16", train_config={}, steps=1, record={})
    return path, paths


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    gradient_image(36, 28, seed=1).save(path)
    return path


def run(photo, style, **options) -> np.ndarray:
    out = stransfer.stylize(photo, style, method="msgnet", model="tinymsg", size=None, device="cpu",
                            precision="fp32", **options)
    return np.asarray(out, dtype=np.int16)


def test_comatch_with_the_weight_that_cancels_the_contents_own_gram_returns_its_input():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 7)
    gram = losses.gram(x)
    layer = CoMatch(8)
    with torch.no_grad():
        layer.weight.copy_(torch.linalg.inv(gram[0]))
    torch.testing.assert_close(layer(x[:1], gram[:1]), x[:1], rtol=1e-4, atol=1e-4)


def test_comatch_with_an_identity_weight_returns_its_input_up_to_scale():
    """(I G)^T F = G F: with the content's own Gram that is F times a scale where F's channels are uncorrelated and
    of equal energy (its Gram s I), and for any other features the Gram's own mix of them."""
    torch.manual_seed(0)
    rows = torch.linalg.qr(torch.randn(20, 6)).Q.T  # 6 orthonormal rows of 20 values: channels of a 4x5 map
    x = (3.0 * rows).reshape(1, 6, 4, 5)
    gram = losses.gram(x)
    layer = CoMatch(6)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(6))
    out = layer(x, gram)
    scale = 9.0 / (6 * 20)  # s of G = s I: 3^2 / (C H W)
    torch.testing.assert_close(gram[0], scale * torch.eye(6), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, scale * x, rtol=1e-5, atol=1e-6)
    general = torch.randn(1, 6, 4, 5)
    torch.testing.assert_close(layer(general, losses.gram(general)),
                               (losses.gram(general)[0] @ general.reshape(6, 20)).reshape(1, 6, 4, 5))


def test_the_generator_keeps_any_size_and_takes_a_gram_per_image_or_one_for_all():
    torch.manual_seed(0)
    net = MSGNet(ARCH).eval()
    x = torch.rand(2, 3, 19, 27)
    g1, g2 = net.gram(torch.rand(1, 3, 40, 30)), net.gram(torch.rand(1, 3, 24, 50))
    with torch.no_grad():
        both = net(x, torch.cat([g1, g2]))
        assert both.shape == (2, 3, 19, 27)
        torch.testing.assert_close(both[:1], net(x[:1], g1))
        torch.testing.assert_close(both[1:], net(x[1:], g2))


def test_a_trained_style_by_name_equals_its_image_at_a_stored_size(tiny_msgnet, photo):
    _, (waves, dots) = tiny_msgnet
    for size in SIZES:
        assert (run(photo, "waves", style_size=size) == run(photo, waves, style_size=size)).all()
    assert (run(photo, "dots", style_size=64) != run(photo, "waves", style_size=64)).any()
    # names and images mix, and blend by their Grams
    assert (run(photo, ["dots", waves], style_blend=[1, 0], style_size=64) == run(photo, dots, style_size=64)).all()


def test_between_stored_sizes_a_trained_style_is_interpolated_and_outside_them_refused(tiny_msgnet, photo):
    net, trained = load_msgnet(tiny_msgnet[0])
    between = trained.gram("waves", 90)
    low, high = trained.gram("waves", 64), trained.gram("waves", 128)
    assert ((between - low).abs().sum() > 0) and ((between - high).abs().sum() > 0)
    assert torch.all(between >= torch.minimum(low, high) - 1e-6) and torch.all(between <= torch.maximum(low, high)
                                                                                 + 1e-6)
    with pytest.raises(UsageError, match="stored for `style_size` 64 to 128"):
        run(photo, "waves", style_size=256)


def test_the_style_size_changes_the_output(tiny_msgnet, photo):
    waves = tiny_msgnet[1][0]
    assert (run(photo, waves, style_size=64) != run(photo, waves, style_size=128)).any()


def test_tiles_take_the_whole_images_statistics(tiny_msgnet, tmp_path):
    big = tmp_path / "big.png"
    gradient_image(300, 200, seed=2).save(big)
    whole = run(big, "waves", style_size=64, tile="off")
    tiled = run(big, "waves", style_size=64, tile="128", tile_overlap=32)
    assert whole.shape == tiled.shape
    assert np.abs(whole - tiled).mean() < 2.0  # of 255: seams and edges only


@pytest.mark.parametrize("call, words", [
    (dict(style=None), "needs a style: `style` FILE"),
    (dict(style="stripes"), "holds no style 'stripes' and there is no such image file"),
    (dict(style="waves", style_scale=0.5), "not by `style_scale`"),
    (dict(style=["waves", "dots"], style_blend=[1.0]), "1 weights for 2 styles"),
])
def test_bad_calls_are_usage_errors(tiny_msgnet, photo, call, words):
    with pytest.raises(UsageError, match=words):
        run(photo, **call)


def test_a_model_of_another_engine_is_refused_in_one_line(capsys, tmp_path, tiny_msgnet, tiny_johnson, photo):
    code, _, err = cli(capsys, "stylize", photo, "-m", "msgnet", "--model", "tiny", "-s", "waves", "-o",
                       tmp_path / "o.png")
    assert code == 2 and "is a model for the 'johnson' engine, not 'msgnet'" in one_error_line(err)
    code, _, err = cli(capsys, "stylize", photo, "-m", "johnson", "--model", "tinymsg", "-o", tmp_path / "o.png")
    assert code == 2 and "is a model for the 'msgnet' engine, not 'johnson'" in one_error_line(err)
    code, _, err = cli(capsys, "stylize", photo, "-m", "msgnet", "--model", "tinymsg", "-s", "waves", "--mask",
                       photo, "-o", tmp_path / "o.png")
    assert code == 2 and "matches each style as a whole, so no --mask" in one_error_line(err)
    assert not (tmp_path / "o.png").exists()


def test_the_cli_takes_a_name_or_an_image_and_names_the_output_after_it(capsys, tmp_path, tiny_msgnet, photo):
    waves = tiny_msgnet[1][0]
    code, out, err = cli(capsys, "stylize", photo, "-m", "msgnet", "--model", "tinymsg", "-s", "dots", "-s", waves,
                         "--style-size", "64", "-o", tmp_path, "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "photo_dots+waves_msgnet.png").exists()


def test_models_lists_the_styles_a_model_holds(capsys, tiny_msgnet):
    code, out, _ = cli(capsys, "models")
    assert code == 0
    assert "tinymsg: msgnet" in out and "2 styles (-s NAME): waves, dots or any style image (-s FILE)" in out


@pytest.fixture
def tiny_train_args(tmp_path, random_weights_file):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        gradient_image(40 + 4 * i, 36, seed=i).save(photos / f"p{i}.png")
    styles = []
    for name, seed in (("wave", 9), ("dots", 11)):
        gradient_image(48, 40, seed=seed).save(tmp_path / f"{name}.png")
        styles += ["-s", tmp_path / f"{name}.png"]
    toml = tmp_path / "tiny.toml"
    toml.write_text("width = 4\nchannels = 8\nblocks = 1\nimage_size = 32\nstyle_sizes = [64, 96]\nbatch_size = 2\n"
                    "log_every = 1\ncheckpoint_every = 4\npreview_every = 6\nstyle_layers = ['relu1_2', 'relu2_2']\n")
    return [*styles, "--data", photos, "--config", toml, "--vgg-weights", random_weights_file, "--device", "cpu",
            "--threads", "1", "--precision", "fp32"]


def test_training_writes_a_model_whose_styles_work_by_name(capsys, tmp_path, tiny_train_args, photo,
                                                           isolated_home):
    out = isolated_home / "models" / "trained.pth"
    out.parent.mkdir(parents=True, exist_ok=True)
    code, _, err = cli(capsys, "train", "msgnet", *tiny_train_args, "--steps", "6", "--run-dir", tmp_path / "run",
                       "-o", out)
    assert code == 0, err
    payload = weights.load_model(out, "msgnet")
    assert payload["styles"] == ["wave", "dots"] and payload["steps"] == 6
    assert payload["gram_sizes"] == [64, 96, 512] and payload["style_grams"].shape == (2, 3, 8, 8)
    assert (tmp_path / "run" / "preview_000006.png").exists()
    by_name = stransfer.stylize(photo, "dots", method="msgnet", model="trained", size=None, device="cpu",
                                precision="fp32", style_size=96)
    by_image = stransfer.stylize(photo, tmp_path / "dots.png", method="msgnet", model="trained", size=None,
                                 device="cpu", precision="fp32", style_size=96)
    assert (np.asarray(by_name) == np.asarray(by_image)).all()


def test_a_run_from_a_trained_model_may_change_crops_and_styles(capsys, tmp_path, tiny_train_args):
    """The staged schedule: small crops first, then --init at the size of use; the generator takes any style, so
    the second stage may train other styles, and its file names those."""
    code, _, err = cli(capsys, "train", "msgnet", *tiny_train_args, "--steps", "2", "--run-dir", tmp_path / "r1",
                       "-o", tmp_path / "first.pth")
    assert code == 0, err
    gradient_image(44, 44, seed=21).save(tmp_path / "grid.png")
    code, _, err = cli(capsys, "train", "msgnet", "--init", tmp_path / "first.pth", "-s", tmp_path / "grid.png",
                       *tiny_train_args[4:], "--image-size", "40", "--steps", "2", "--run-dir", tmp_path / "r2",
                       "-o", tmp_path / "second.pth")
    assert code == 0, err
    payload = weights.load_model(tmp_path / "second.pth", "msgnet")
    assert payload["styles"] == ["grid"] and payload["steps"] == 4
    assert [stage["train_config"]["image_size"] for stage in payload["record"]["lineage"]] == [32, 40]
    code, _, err = cli(capsys, "train", "msgnet", "--init", tmp_path / "first.pth", *tiny_train_args, "--channels",
                       "16", "--run-dir", tmp_path / "r3", "-o", tmp_path / "third.pth")
    assert code == 2 and "contradicts --init" in one_error_line(err)


def test_the_style_size_of_a_step_is_a_function_of_seed_and_step(tmp_path, tiny_train_args):
    from stransfer.train.msgnet import MSGNetTask, MSGNetTrainConfig

    cfg = MSGNetTrainConfig(style_sizes=(64, 96, 128), seed=3)
    task = MSGNetTask.__new__(MSGNetTask)
    task.cfg, task.rank = cfg, 0
    sizes = [task.style_size(step) for step in range(40)]
    assert sizes == [task.style_size(step) for step in range(40)] and set(sizes) == {64, 96, 128}


@pytest.mark.slow
def test_sigkill_then_resume_continues_the_msgnet_curve(tmp_path, tiny_train_args):
    assert_kill_and_resume_continue_the_curve(tmp_path, ["msgnet", *tiny_train_args], 16, tiny_train_args[9],
                                              kill_after=6)


def test_the_style_images_must_have_distinct_names(capsys, tmp_path, tiny_train_args):
    again = [*tiny_train_args[:2], *tiny_train_args]
    code, _, err = cli(capsys, "train", "msgnet", *again, "-o", tmp_path / "x.pth")
    assert code == 2 and "two style images named 'wave'" in one_error_line(err)
