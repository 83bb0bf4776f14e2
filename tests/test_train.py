from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stransfer.device import Runtime
from stransfer import losses
from stransfer.engines.adain import ENCODER_LAYER, SKIP_LAYERS, STYLE_LAYERS, Decoder, adain, load_decoder
from stransfer.engines.swap import style_swap
from stransfer.engines.johnson import JohnsonArch, TransformerNet, load_transformer
from stransfer.train.adain import AdainTask, AdainTrainConfig
from stransfer.train.johnson import widened
from stransfer.train.data import CropSampler, is_held_out, split

from conftest import assert_kill_and_resume_continue_the_curve, cli, gradient_image, log_losses, one_error_line


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(8):
        gradient_image(40 + 4 * i, 36, seed=i).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")  # an unreadable file is skipped, not fatal
    return folder


@pytest.fixture
def tiny_johnson_args(tmp_path, photo_folder, random_weights_file):
    style = tmp_path / "style.png"
    gradient_image(48, 48, seed=9).save(style)
    toml = tmp_path / "tiny.toml"
    toml.write_text("width = 4\nresidual_blocks = 1\nimage_size = 32\nstyle_size = 32\nbatch_size = 2\n"
                    "log_every = 1\ncheckpoint_every = 4\npreview_every = 6\n")
    # fp32, not auto: auto times bf16 against fp32 in each process, and on a busy machine two runs that a test
    # compares step for step could choose differently (seen once in the full suite: 3.679 against 3.660).
    return ["-s", style, "--data", photo_folder, "--config", toml, "--vgg-weights", random_weights_file,
            "--device", "cpu", "--threads", "1", "--precision", "fp32"]


def test_johnson_training_writes_run_folder_and_model(capsys, tmp_path, tiny_johnson_args):
    run, out = tmp_path / "run", tmp_path / "model.pth"
    code, _, err = cli(capsys, "train", "johnson", *tiny_johnson_args, "--steps", "6", "--run-dir", run, "-o", out)
    assert code == 0, err
    assert {"config.json", "checkpoint.pth", "log.jsonl", "run.json", "preview_000006.png", "loss_curve.png"} <= {
        p.name for p in run.iterdir()}
    assert sorted(log_losses(run)) == [1, 2, 3, 4, 5, 6]
    net, payload = load_transformer(out)
    assert payload["style"] == "style" and payload["steps"] == 6 and payload["arch"] == {
        "width": 4, "residual_blocks": 1}
    assert payload["train_config"]["image_size"] == 32 and payload["record"]["wall_time_s"] > 0
    assert net(torch.rand(1, 3, 20, 20)).shape == (1, 3, 20, 20)

    code, _, err = cli(capsys, "train", "johnson", *tiny_johnson_args, "--run-dir", run, "-o", tmp_path / "m2.pth")
    assert code == 2 and "already holds a training run" in one_error_line(err)


@pytest.mark.slow
@pytest.mark.parametrize("styles", [1, 2])
def test_sigkill_then_resume_continues_the_loss_curve(tmp_path, tiny_johnson_args, styles):
    """Kill -9 mid-run; the resumed run's losses equal those of an uninterrupted run, step for step (also for one
    network holding two styles, whose batches draw a style per image)."""
    if styles == 2:
        gradient_image(48, 48, seed=10).save(tmp_path / "style2.png")
    more = ["-s", str(tmp_path / "style2.png")] if styles == 2 else []
    assert_kill_and_resume_continue_the_curve(tmp_path, ["johnson", *tiny_johnson_args, *more], 24,
                                              tiny_johnson_args[7])


def test_finishing_a_run_at_its_checkpoint_keeps_the_last_losses(capsys, tmp_path, tiny_johnson_args):
    """A run stopped early is finished by resuming it with --steps at its checkpoint: no step runs, yet the
    model still records the losses it reached."""
    run, out = tmp_path / "run", tmp_path / "model.pth"
    code, _, err = cli(capsys, "train", "johnson", *tiny_johnson_args, "--steps", "4", "--run-dir", run,
                       "-o", out)
    assert code == 0, err
    trained = load_transformer(out)[1]["record"]["final_losses"]
    out.unlink()
    code, _, err = cli(capsys, "train", "johnson", "--resume", run, "--steps", "4")
    assert code == 0, err
    assert load_transformer(out)[1]["record"]["final_losses"] == pytest.approx(trained) and trained


def test_resume_needs_a_run_folder(capsys, tmp_path):
    code, _, err = cli(capsys, "train", "johnson", "--resume", tmp_path)
    assert code == 2 and "not a training run folder" in one_error_line(err)


def test_adain_training_writes_a_decoder(capsys, tmp_path, photo_folder, random_weights_file):
    run, out = tmp_path / "run", tmp_path / "decoder.pth"
    code, _, err = cli(capsys, "train", "adain", "--content-data", photo_folder, "--style-data", photo_folder,
                       "-o", out, "--run-dir", run, "--steps", "3", "--crop-size", "32", "--batch-size", "4",
                       "--identity-weight", "0.5", "--vgg-weights", random_weights_file, "--device", "cpu")
    assert code == 0, err
    decoder, payload = load_decoder(out)
    assert payload["backbone"] == "vgg16" and payload["steps"] == 3 and len(payload["encoder_digest"]) == 64
    assert payload["train_config"]["identity_weight"] == 0.5
    assert (run / "preview_000003.png").exists()


def test_batches_depend_only_on_seed_and_step(photo_folder):
    files = sorted(photo_folder.glob("*.png"))
    a = CropSampler(files, 24, seed=1).batch(7, 3)
    b = CropSampler(files, 24, seed=1).batch(7, 3)
    assert a.shape == (3, 3, 24, 24) and torch.equal(a, b)
    assert not torch.equal(a, CropSampler(files, 24, seed=1).batch(8, 3))
    assert not torch.equal(a, CropSampler(files, 24, seed=1, rank=1).batch(7, 3))


def test_held_out_split_is_stable_and_disjoint():
    files = [Path(f"img_{i}.jpg") for i in range(400)]
    train, held = split(files)
    assert not set(train) & set(held) and len(train) + len(held) == 400
    assert 5 <= len(held) <= 40
    assert all(is_held_out(p) for p in held)


@pytest.mark.slow
def test_two_process_ddp_training_writes_the_same_kind_of_checkpoint(tmp_path, tiny_johnson_args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, double = tmp_path / "single", tmp_path / "double"
    common = ["train", "johnson", *map(str, tiny_johnson_args), "--steps", "4"]
    subprocess.run([sys.executable, "-m", "stransfer", *common, "--run-dir", str(single),
                    "-o", str(tmp_path / "single.pth")], env=env, check=True, capture_output=True)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "stransfer", *common, "--run-dir", str(double), "-o", str(tmp_path / "double.pth")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    a = torch.load(single / "checkpoint.pth", weights_only=True)
    b = torch.load(double / "checkpoint.pth", weights_only=True)
    assert a.keys() == b.keys() and a["model"].keys() == b["model"].keys() and b["step"] == 4
    assert not any(k.startswith("module.") for k in b["model"])
    assert sorted(log_losses(double)) == [1, 2, 3, 4]  # one log, written by rank 0
    _, payload = load_transformer(tmp_path / "double.pth")
    assert payload["steps"] == 4


def test_adain_loss_reconstructs_a_quarter_of_the_batch(photo_folder, random_vgg16):
    """The first quarter of a batch is decoded from the content's own features (alpha 0), with content skips
    at strengths from 1 down to 0, and scored by the identity term; the stylised items get no skips; with
    identity_weight 0 every item is stylised."""
    files = sorted(photo_folder.glob("*.png"))
    seen = []

    class Recording(Decoder):
        def forward(self, features, skips=None):
            seen.append((features.detach(), skips))
            return super().forward(features, skips)

    for weight, expected in ((1.0, 2), (0.0, 0)):
        cfg = AdainTrainConfig(batch_size=8, crop_size=32, identity_weight=weight)
        task = AdainTask(cfg, Runtime(torch.device("cpu")), random_vgg16, files, files, [], [])
        content, style = task.batch(0)
        _, logged = task.loss((content, style), Recording())
        own = random_vgg16(content, [ENCODER_LAYER, *SKIP_LAYERS])
        features, skips = seen[-1]
        decoded_as_is = [torch.allclose(features[i], own[ENCODER_LAYER][i]) for i in range(8)]
        assert decoded_as_is == [True] * expected + [False] * (8 - expected)
        assert ("identity" in logged) == bool(expected)
        if not expected:
            assert skips is None
            continue
        for k in SKIP_LAYERS:
            torch.testing.assert_close(skips[k][0], own[k][0])  # strength 1: alpha 0
            assert not skips[k][1:].any()  # strength 0, then the stylised items


def test_adain_swap_fraction_trains_the_last_stylised_items_on_style_swap_targets(photo_folder, random_vgg16):
    """With swap_fraction 0.5, the last half of the stylised items are decoded from their content features
    style-swapped against their own style crop; the others keep AdaIN's target."""
    files = sorted(photo_folder.glob("*.png"))
    seen = []

    class Recording(Decoder):
        def forward(self, features, skips=None):
            seen.append(features.detach())
            return super().forward(features, skips)

    task = AdainTask(AdainTrainConfig(batch_size=8, crop_size=32, swap_fraction=0.5), Runtime(torch.device("cpu")),
                     random_vgg16, files, files, [], [])
    content, style = task.batch(0)
    task.loss((content, style), Recording())
    own = random_vgg16(content, [ENCODER_LAYER])[ENCODER_LAYER]
    style_maps = random_vgg16(style, [ENCODER_LAYER])[ENCODER_LAYER]
    assert task.identity_items() == 2 and task.swap_items() == 3
    for i in range(2, 8):
        j = i - 2  # this item's style crop
        if i < 5:
            expected = adain(own[i:i + 1], *losses.mean_std(style_maps[j:j + 1]))
        else:
            # As -m swap does it: the content in the style crop's statistics, then swapped.
            expected = style_swap(adain(own[i:i + 1], *losses.mean_std(style_maps[j:j + 1])), [style_maps[j:j + 1]], 3)
        torch.testing.assert_close(seen[0][i:i + 1], expected)
    # The swap is not AdaIN in disguise on these crops.
    assert not torch.allclose(seen[0][7:8], adain(own[7:8], *losses.mean_std(style_maps[5:6])), atol=1e-3)


def test_swap_inverse_network_objective_is_swapped_features_plus_smoothness(photo_folder, random_vgg16):
    """Chen & Schmidt's inverse network: every stylised item on style-swap's target, no style term, and total
    variation of the stylised outputs; its previews decode swapped features."""
    files = sorted(photo_folder.glob("*.png"))
    cfg = AdainTrainConfig(batch_size=4, crop_size=32, swap_fraction=1.0, style_weight=0.0, tv_weight=2.0)
    task = AdainTask(cfg, Runtime(torch.device("cpu")), random_vgg16, files, files, files[:2], files[:2])
    total, logged = task.loss(task.batch(0), task.model)
    assert task.swap_items() == 3 and set(logged) == {"content", "style", "identity", "tv", "total"}
    expected = logged["content"] + logged["identity"] + 2.0 * logged["tv"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        sheet = task.preview()
    assert sheet.shape[1] == 3 and sheet.shape[-2] > 3 * 32


@pytest.mark.parametrize("spec", ["meanstd", "gram", "gram:1,meanstd:0.5"])
def test_adain_style_term_is_the_configured_loss_against_each_items_own_style(photo_folder, random_vgg16, spec):
    """style_loss picks the decoder's style loss from the registry: each stylised item's output is scored at
    relu1_1..relu4_1 against its own style crop (the paper's meanstd by default)."""
    files = sorted(photo_folder.glob("*.png"))
    outputs = []

    class Recording(Decoder):
        def forward(self, features, skips=None):
            out = super().forward(features, skips)
            outputs.append(out.detach())
            return out

    task = AdainTask(AdainTrainConfig(batch_size=8, crop_size=32, style_loss=spec), Runtime(torch.device("cpu")),
                     random_vgg16, files, files, [], [])
    content, style = task.batch(0)
    _, logged = task.loss((content, style), Recording())
    n = content.shape[0] - style.shape[0]
    out_f, style_f = random_vgg16(outputs[0][n:], STYLE_LAYERS), random_vgg16(style, STYLE_LAYERS)

    def term(name, k):
        if name == "gram":
            return losses.relative_sq_error(losses.gram(out_f[k]), losses.gram(style_f[k]))
        (mo, so), (ms, ss) = losses.mean_std(out_f[k]), losses.mean_std(style_f[k])
        return losses.relative_sq_error(mo, ms) + losses.relative_sq_error(so, ss)

    expected = sum(w * torch.stack([term(name, k).mean() for k in STYLE_LAYERS]).mean()
                   for name, w in losses.parse_style_loss(spec))
    assert logged["style"] == pytest.approx(float(expected), rel=1e-4)


def test_init_continues_from_a_model_and_keeps_its_lineage(capsys, tmp_path, tiny_johnson_args):
    """--init starts from the model's weights (not from scratch), inherits its architecture, and the new
    model's record lists both stages with the total step count."""
    first = tmp_path / "first.pth"
    code, _, err = cli(capsys, "train", "johnson", *tiny_johnson_args, "--steps", "4", "--run-dir",
                       tmp_path / "r1", "-o", first)
    assert code == 0, err
    # An edit made to the file after training (e.g. a style removed by hand) stays in the next stage's lineage.
    payload = torch.load(first, weights_only=True)
    payload["record"]["edits"] = ["removed a style"]
    torch.save(payload, first)
    second = tmp_path / "second.pth"
    # No --width here: the tiny TOML's width 4 must come from the model (the default is 16).
    args = [a for a in tiny_johnson_args]
    args[args.index("--config") + 1] = tmp_path / "other.toml"
    (tmp_path / "other.toml").write_text("image_size = 32\nstyle_size = 32\nbatch_size = 2\nlog_every = 1\n")
    code, _, err = cli(capsys, "train", "johnson", *args, "--init", first, "--steps", "3", "--learning-rate",
                       "1e-9", "--run-dir", tmp_path / "r2", "-o", second)
    assert code == 0, err
    net1, p1 = load_transformer(first)
    net2, p2 = load_transformer(second)
    assert p2["arch"] == p1["arch"] == {"width": 4, "residual_blocks": 1}
    # A learning rate of 1e-9 barely moves the weights: they were loaded, not drawn afresh.
    for (k, a), b in zip(net1.state_dict().items(), net2.state_dict().values()):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=k)
    lineage = p2["record"]["lineage"]
    assert [s["steps"] for s in lineage] == [4, 3] and p2["steps"] == 7
    assert lineage[0]["train_config"]["width"] == 4 and lineage[1]["train_config"]["learning_rate"] == 1e-9
    assert lineage[0]["edits"] == ["removed a style"] and "edits" not in lineage[1] and "edits" not in p2["record"]
    # The second stage does not replay the first stage's batches.
    assert json.loads((tmp_path / "r2" / "config.json").read_text())["config"]["seed"] == 4


def test_init_may_start_a_new_style_from_a_trained_network(capsys, tmp_path, tiny_johnson_args):
    """A trained network is a good start for another style: --init with an image the model does not hold
    trains its row toward that image, under the image's name (only a held style given out of order is refused,
    test_multistyle)."""
    first = tmp_path / "first.pth"
    assert cli(capsys, "train", "johnson", *tiny_johnson_args, "--steps", "2", "--run-dir", tmp_path / "r1",
               "-o", first)[0] == 0
    art = tmp_path / "other_art.png"
    gradient_image(48, 48, seed=3).save(art)
    args = list(tiny_johnson_args)
    args[args.index("-s") + 1] = art
    second = tmp_path / "second.pth"
    code, _, err = cli(capsys, "train", "johnson", *args, "--init", first, "--steps", "1", "--run-dir",
                       tmp_path / "r2", "-o", second)
    assert code == 0, err
    assert load_transformer(second)[1]["styles"] == ["other_art"]


def test_widened_network_computes_what_the_narrow_one_did_and_its_copies_can_learn_apart():
    torch.manual_seed(0)
    small = TransformerNet(JohnsonArch(4, 2), styles=2)
    with torch.no_grad():  # norm tables away from their identity start, so they matter
        for t in small.tables().values():
            t.add_(torch.randn_like(t) * 0.3)
    big = widened(small, 7, torch.Generator().manual_seed(1))
    assert big.arch == JohnsonArch(7, 2) and big.styles == 2
    image = torch.rand(2, 3, 36, 44)
    code = torch.tensor([[1.0, 0.0], [0.3, 0.7]])
    torch.testing.assert_close(big(image, code), small(image, code), atol=1e-5, rtol=1e-4)
    # An added channel starts as a copy of an old one, but the next layer weighs the two differently, so
    # their gradients differ.
    big(image, code).square().mean().backward()
    first = big.net[0][1]
    for j in range(4, 7):
        i = next(i for i in range(4) if torch.equal(first.weight[i], first.weight[j]))
        assert not torch.allclose(first.weight.grad[i], first.weight.grad[j])
    with pytest.raises(ValueError):
        widened(big, 4, torch.Generator())


def test_init_widens_a_narrower_model(capsys, tmp_path, tiny_johnson_args):
    """--init MODEL --width W (wider) starts from the model's function in a wider network."""
    first, second = tmp_path / "first.pth", tmp_path / "second.pth"
    assert cli(capsys, "train", "johnson", *tiny_johnson_args, "--steps", "2", "--run-dir", tmp_path / "r1",
               "-o", first)[0] == 0
    code, _, err = cli(capsys, "train", "johnson", *tiny_johnson_args, "--init", first, "--width", "6", "--steps",
                       "1", "--learning-rate", "1e-9", "--run-dir", tmp_path / "r2", "-o", second)
    assert code == 0, err
    (net1, _), (net2, p2) = load_transformer(first), load_transformer(second)
    assert p2["arch"]["width"] == 6 and [s["train_config"]["width"] for s in p2["record"]["lineage"]] == [4, 6]
    image = torch.rand(1, 3, 32, 40)
    torch.testing.assert_close(net2(image), net1(image), atol=1e-4, rtol=1e-3)


def test_init_refuses_what_does_not_fit(capsys, tmp_path, tiny_johnson_args, random_weights_file):
    first = tmp_path / "first.pth"
    assert cli(capsys, "train", "johnson", *tiny_johnson_args, "--steps", "2", "--run-dir", tmp_path / "r1",
               "-o", first)[0] == 0
    cases = [
        (["--init", first, "--width", "2"], "contradicts --init"),
        (["--init", tmp_path / "missing.pth"], "--init"),
        (["--init", first, "--resume", tmp_path / "r1"], "give one of them"),
    ]
    for extra, message in cases:
        code, _, err = cli(capsys, "train", "johnson", *tiny_johnson_args, "--run-dir", tmp_path / "rx",
                           "-o", tmp_path / "x.pth", *extra)
        assert code == 2 and message in one_error_line(err), (extra, err)
    code, _, err = cli(capsys, "train", "adain", "--content-data", tmp_path, "--style-data", tmp_path,
                       "-o", tmp_path / "d.pth", "--init", first, "--vgg-weights", random_weights_file)
    assert code == 2 and "johnson" in one_error_line(err)


def test_training_on_an_avx2_cpu_runs_fp32(capsys, monkeypatch, tmp_path, tiny_johnson_args):
    monkeypatch.setattr("stransfer.device.cpu_flags", lambda: {"avx2", "fma"})
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "johnson", *tiny_johnson_args, "--steps", "1", "--precision", "auto",
                       "--run-dir", run, "-o", tmp_path / "m.pth")
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["runtime"]["precision"] == "fp32"
