"""Johnson networks holding several styles (conditional instance norm, Dumoulin et al. 2017): one-style files as
before, picking and blending styles, training several at once and adding one to a trained model."""

from __future__ import annotations

import dataclasses
import json
import warnings
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

import stransfer
from stransfer import weights
from stransfer.device import Runtime, make_runtime
from stransfer.engines import ENGINES, EngineInputs, pad_to_multiple
from stransfer.engines.johnson import JohnsonArch, JohnsonConfig, TransformerNet, load_transformer, save_transformer
from stransfer.errors import ModelError, UsageError
from stransfer.images import pil_to_tensor
from stransfer.train.data import balanced_choices
from stransfer.train.johnson import JohnsonTask, JohnsonTrainConfig

from conftest import REPO, cli, gradient_image, one_error_line

ARCH = JohnsonArch(width=4, residual_blocks=1)


# The network as it was before styles were tables, built from stock torch modules under the same parameter
# names: what a one-style file computed then.
class _Conv(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True):
        layers = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        layers += [nn.InstanceNorm2d(cout, affine=True)] if norm else []
        super().__init__(*layers, *([nn.ReLU()] if relu else []))


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_Conv(c, c, 3), _Conv(c, c, 3, relu=False))

    def forward(self, x):
        return x + self.body(x)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _Conv(cin, cout, 3)

    def forward(self, x):
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class ReferenceNet(nn.Module):
    def __init__(self, arch: JohnsonArch):
        super().__init__()
        w = arch.width
        self.net = nn.Sequential(_Conv(3, w, 9), _Conv(w, 2 * w, 3, stride=2), _Conv(2 * w, 4 * w, 3, stride=2),
                                 *[_Residual(4 * w) for _ in range(arch.residual_blocks)], _Up(4 * w, 2 * w),
                                 _Up(2 * w, w), _Conv(w, 3, 9, norm=False, relu=False))

    def forward(self, x):
        h, w = x.shape[-2:]
        return self.net(pad_to_multiple(x, 4, minimum=16))[..., :h, :w]


def randomised(net: nn.Module, seed: int) -> nn.Module:
    """Every parameter random (norm scales and shifts too: fresh ones are all 1 and 0, the same in every style)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (0.5 if p.dim() <= 2 else 0.0))
    return net


def engine(model: str | Path, styles: list[str] = (), blend: list[float] | None = None, tile: str = "off"):
    eng = ENGINES["johnson"].build(JohnsonConfig(model=str(model), tile=tile, tile_overlap=16),
                                   make_runtime("cpu", "fp32"), EngineInputs(style_weights=blend))
    return eng, eng.prepare(list(styles))


def two_style_model(path: Path, names=("a", "b")) -> TransformerNet:
    net = randomised(TransformerNet(ARCH, len(names)), 1).eval()
    save_transformer(path, net, list(names), [f"{n}.jpg" for n in names], arch=dataclasses.asdict(ARCH),
                     backbone="vgg16", train_config={}, steps=1, record={})
    return net


def one_style_net(multi: TransformerNet, code: torch.Tensor) -> TransformerNet:
    """A one-style network holding the shared weights of `multi` and the norm parameters mixed by `code`,
    built by hand (not through baked())."""
    one = TransformerNet(multi.arch)
    state = multi.state_dict()
    for name in multi.table_names:
        state[f"net.{name}"] = (code[:, None] * state[f"net.{name}"]).sum(0, keepdim=True)
    one.load_state_dict(state)
    return one.eval()


def test_a_one_style_file_of_today_stylises_as_the_plain_network_did(tmp_path):
    """A file in the layout written before multi-style models ((C,) norm parameters, no styles list) gives the
    very bits the plain instance-norm network gives; a one-style model saved now is written
    in that same layout, format version 1."""
    reference = randomised(ReferenceNet(ARCH), 3).eval()
    old = tmp_path / "old.pth"
    weights.save_model(old, "johnson", reference.state_dict(), arch=dataclasses.asdict(ARCH), style="old",
                       style_image="old.jpg", backbone="vgg16", train_config={}, steps=1, record={})
    x = torch.rand(2, 3, 70, 90)
    with torch.no_grad():
        expected = reference(x).clamp(0, 1)
    eng, styles = engine(old)
    assert torch.equal(eng.stylize(x, styles), expected)
    assert torch.equal(engine(old, ["old"])[0].stylize(x, engine(old, ["old"])[1]), expected)

    net, payload = load_transformer(old)
    assert payload["styles"] == ["old"] and net.styles == 1
    again = tmp_path / "again.pth"
    save_transformer(again, net, ["old"], ["old.jpg"], arch=dataclasses.asdict(ARCH), backbone="vgg16")
    saved = torch.load(again, weights_only=True)
    assert saved["format_version"] == 1 and saved["style"] == "old" and saved["styles"] == ["old"]
    assert {k: v.shape for k, v in saved["state_dict"].items()} == {
        k: v.shape for k, v in reference.state_dict().items()}
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in reference.state_dict().items())


def test_a_shipped_model_stylises_as_before():
    """starry_night through today's engine equals the plain instance-norm network on its file's weights."""
    path = REPO / "weights" / "starry_night.pth"
    payload = weights.load_model(path, "johnson")
    reference = ReferenceNet(JohnsonArch(**payload["arch"]))
    reference.load_state_dict(payload["state_dict"])
    x = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference.eval()(x).clamp(0, 1)
    for styles in ([], ["starry_night"]):
        eng, chosen = engine(path, styles)
        assert torch.equal(eng.stylize(x, chosen), expected)


def test_each_style_takes_its_own_norm_parameters(tmp_path):
    multi = two_style_model(tmp_path / "ab.pth")
    x = torch.rand(1, 3, 36, 44)
    a, b = (engine(tmp_path / "ab.pth", [s]) for s in "ab")
    out_a, out_b = a[0].stylize(x, a[1]), b[0].stylize(x, b[1])
    assert (out_a - out_b).abs().mean() > 0.01
    with torch.no_grad():
        only_b = one_style_net(multi, torch.tensor([0.0, 1.0]))(x).clamp(0, 1)
    assert torch.equal(out_b, only_b)
    # A batch whose images take different styles (what training does) equals each style on its own.
    with torch.no_grad():
        mixed = multi(torch.cat([x, x]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])).clamp(0, 1)
    # (Per image, the norm's affine step is not fused into instance_norm: equal up to rounding.)
    torch.testing.assert_close(mixed, torch.cat([out_a, out_b]), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="holds 2 styles"):
        multi(x)


def test_blends_mix_the_norm_parameters(tmp_path):
    multi = two_style_model(tmp_path / "ab.pth")
    x = torch.rand(1, 3, 36, 44)
    a = engine(tmp_path / "ab.pth", ["a"])
    one_zero = engine(tmp_path / "ab.pth", ["a", "b"], [1.0, 0.0])
    assert torch.equal(one_zero[0].stylize(x, one_zero[1]), a[0].stylize(x, a[1]))
    half = engine(tmp_path / "ab.pth", ["a", "b"], [0.5, 0.5])
    for name, value in half[1].params.items():
        assert torch.equal(value, (multi.tables()[name][0] + multi.tables()[name][1]) / 2), name
    with torch.no_grad():
        mean_net = one_style_net(multi, torch.tensor([0.5, 0.5]))(x).clamp(0, 1)
    assert torch.equal(half[0].stylize(x, half[1]), mean_net)
    # The API: styles by name, weights normalised.
    api = stransfer.Stylizer("johnson", model=str(tmp_path / "ab.pth"), style=["a", "b"], style_blend=[3, 3],
                             device="cpu", precision="fp32")
    assert torch.equal(api.stylize_tensor(x), mean_net)
    with pytest.raises(UsageError, match=r"holds no style 'c' \(its styles: a, b\)"):
        stransfer.Stylizer("johnson", model=str(tmp_path / "ab.pth"), style="c", device="cpu")
    with pytest.raises(UsageError, match="holds 2 styles: pick one"):
        stransfer.Stylizer("johnson", model=str(tmp_path / "ab.pth"), device="cpu")
    with pytest.raises(UsageError, match="takes no style image"):
        stransfer.Stylizer("johnson", model=str(tmp_path / "ab.pth"), style=torch.rand(3, 8, 8), device="cpu")


def test_a_damaged_styles_list_is_refused(tmp_path):
    two_style_model(tmp_path / "ab.pth")
    payload = torch.load(tmp_path / "ab.pth", weights_only=True)
    assert payload["format_version"] == weights.MULTISTYLE_FORMAT_VERSION
    for styles in (["a", "a"], "ab", [], ["a", "b", "c"]):
        torch.save({**payload, "styles": styles}, tmp_path / "bad.pth")
        with pytest.raises(ModelError, match="styles|does not match"):
            load_transformer(tmp_path / "bad.pth")


@pytest.fixture
def ab_model(isolated_home):
    (isolated_home / "models").mkdir(exist_ok=True)
    two_style_model(isolated_home / "models" / "ab.pth")
    return ["-m", "johnson", "--model", "ab", "--size", "32", "--device", "cpu"]


def test_cli_picks_blends_and_refuses_styles(capsys, tmp_path, make_image, ab_model, tiny_johnson):
    photo, out = make_image("c.png"), tmp_path / "out"
    code, _, err = cli(capsys, "stylize", photo, *ab_model, "-s", "b", "-o", out)
    assert code == 0, err
    code, _, err = cli(capsys, "stylize", photo, *ab_model, "-s", "a", "-s", "b", "--style-blend", "0.7,0.3",
                       "-o", out)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"c_b_johnson.png", "c_a+b_johnson.png"}
    cases = [
        (["-s", "nope"], "holds no style 'nope' (its styles: a, b)"),
        ([], "holds 2 styles: pick one with -s NAME"),
        (["-s", "a", "--style-blend", "1,1"], "2 weights for 1 style"),
        (["-s", str(make_image("s.png"))], "takes the names of its styles, not style images"),
        (["-s", "a", "--mask", str(make_image("m.png"))], "no --mask"),
    ]
    for extra, message in cases:
        code, _, err = cli(capsys, "stylize", photo, *ab_model, *extra, "-o", tmp_path / "x")
        assert code == 2 and message in one_error_line(err), (extra, err)
    code, _, err = cli(capsys, "stylize", photo, "-m", "johnson", "--model", "tiny", "-s", "udnie", "-o", out)
    assert code == 2 and "holds no style 'udnie' (its styles: tiny)" in one_error_line(err)
    assert not (tmp_path / "x").exists()


def test_models_lists_the_styles_of_each_model(capsys, ab_model, tiny_johnson):
    code, stdout, _ = cli(capsys, "models")
    assert code == 0
    lines = {line.split(":")[0]: line for line in stdout.splitlines()}
    assert "2 styles (-s NAME): a, b" in lines["ab"] and "style " in lines["tiny"]


def test_export_bakes_one_style_or_a_blend(capsys, tmp_path, ab_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "export", "ab")
    assert code == 2 and "holds 2 styles: pick one" in one_error_line(err)
    code, stdout, err = cli(capsys, "export", "ab", "-s", "b")
    assert code == 0, err
    assert stdout.strip() == "ab_b.pt"
    code, _, err = cli(capsys, "export", "ab", "-s", "a", "-s", "b", "--style-blend", "1,3", "-o", "blend.pt")
    assert code == 0, err
    x = torch.rand(1, 3, 37, 45)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted_b, blend = torch.jit.load(tmp_path / "ab_b.pt"), torch.jit.load(tmp_path / "blend.pt")
    for scripted, styles, weights_ in ((scripted_b, ["b"], None), (blend, ["a", "b"], [0.25, 0.75])):
        eng, chosen = engine("ab", styles, weights_)
        torch.testing.assert_close(scripted(x).clamp(0, 1), eng.stylize(x, chosen), atol=1e-4, rtol=0)


def test_style_choices_are_balanced_and_a_function_of_seed_and_step():
    picks = [balanced_choices(3, 4, seed=5, step=s) for s in range(6)]
    assert picks == [balanced_choices(3, 4, seed=5, step=s) for s in range(6)]
    flat = [c for p in picks for c in p]
    assert all(sorted(flat[i:i + 3]) == [0, 1, 2] for i in range(0, 24, 3))  # every style once per round
    assert flat != [balanced_choices(3, 4, seed=6, step=s) for s in range(6)]
    assert balanced_choices(1, 4, seed=0, step=9) == [0, 0, 0, 0]


@pytest.mark.parametrize("weights", [(0.5,), (1.0, 3.0, 0.25)])
def test_a_batch_of_several_styles_scores_the_same_in_one_pass_as_style_by_style(random_vgg16, weights):
    """Items of different styles are scored in one pass with per-item targets where the loss allows (Gram); a
    loss whose targets do not stack (here histogram, at weight 0) takes one pass per style: the same numbers.
    What trains weighs each item's loss by its own style's style_weight."""
    styles = [pil_to_tensor(gradient_image(40, 48, seed=i)) for i in range(3)]
    paths = [Path(f"s{i}.jpg") for i in range(3)]
    torch.manual_seed(0)
    feats = random_vgg16(torch.rand(4, 3, 32, 32), set(JohnsonTrainConfig().style_layers))
    ids = [2, 0, 2, 1]
    scores = {}
    for spec in ("gram", "gram,histogram:0"):
        cfg = JohnsonTrainConfig(style_size=48, image_size=32, style_loss=spec, style_weight=weights)
        task = JohnsonTask(cfg, Runtime(torch.device("cpu")), random_vgg16, styles, paths, [], [])
        style_loss = partial(task.objective.of_styles, targets=task.style_targets.__getitem__,
                             weights=task.style_weights)
        scores[spec] = style_loss(feats, ids)
        assert not torch.allclose(scores[spec][0], style_loss(feats, [0, 0, 0, 0])[0])
    for one_pass, by_style in zip(scores["gram"], scores["gram,histogram:0"]):
        torch.testing.assert_close(one_pass, by_style)
    alone = [task.objective({k: v[i:i + 1] for k, v in feats.items()}, task.style_targets[s])
             for i, s in enumerate(ids)]
    weight = [weights[0] if len(weights) == 1 else weights[s] for s in ids]
    torch.testing.assert_close(scores["gram"][0], torch.stack(alone).mean())
    torch.testing.assert_close(scores["gram"][1], torch.stack([w * a for w, a in zip(weight, alone)]).mean())


@pytest.fixture
def train_args(tmp_path, random_weights_file):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        gradient_image(40 + 4 * i, 36, seed=i).save(photos / f"p{i}.png")
    styles = []
    for name, seed in (("wave", 9), ("dots", 11), ("new", 13)):
        gradient_image(48, 48, seed=seed).save(tmp_path / f"{name}.png")
        styles.append(tmp_path / f"{name}.png")
    toml = tmp_path / "tiny.toml"
    toml.write_text("width = 4\nresidual_blocks = 1\nimage_size = 32\nstyle_size = 32\nbatch_size = 3\n"
                    "log_every = 1\ncheckpoint_every = 3\npreview_every = 6\n")
    common = ["--data", photos, "--config", toml, "--vgg-weights", random_weights_file, "--device", "cpu",
              "--threads", "1"]
    return styles, common


def losses_of(run: Path) -> dict[int, float]:
    return {r["step"]: r["total"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


def test_train_several_styles_then_add_one_with_the_rest_frozen(capsys, tmp_path, train_args):
    (wave, dots, new), common = train_args
    two = tmp_path / "two.pth"
    code, _, err = cli(capsys, "train", "johnson", "-s", wave, "-s", dots, *common, "--steps", "6",
                       "--style-weight", "1,3", "--run-dir", tmp_path / "r1", "-o", two)
    assert code == 0, err
    net2, p2 = load_transformer(two)
    assert p2["styles"] == ["wave", "dots"] and p2["style_images"] == ["wave.png", "dots.png"]
    assert p2["train_config"]["style_weight"] == [1.0, 3.0]
    assert p2["format_version"] == 2 and net2.styles == 2
    a, b = (net2.tables()[net2.table_names[0]][i] for i in (0, 1))
    assert not torch.equal(a, b)  # each style's parameters trained apart

    three = tmp_path / "three.pth"
    code, _, err = cli(capsys, "train", "johnson", "--init", two, "--add-style", new, *common, "--steps", "4",
                       "--run-dir", tmp_path / "r2", "-o", three)
    assert code == 0, err
    net3, p3 = load_transformer(three)
    assert p3["styles"] == ["wave", "dots", "new"] and p3["steps"] == 10
    assert [s["steps"] for s in p3["record"]["lineage"]] == [6, 4]
    before, after = net2.state_dict(), net3.state_dict()
    for key, value in before.items():
        if key.removeprefix("net.") in net2.table_names:
            assert torch.equal(after[key][:2], value), key  # the old styles' rows, bit for bit
            start = value.mean(0)  # the new row started from the old rows' mean, and trained
            assert not torch.equal(after[key][2], start), key
        else:
            assert torch.equal(after[key], value), key  # every shared weight, bit for bit


def test_style_flags_that_do_not_fit_are_refused(capsys, tmp_path, train_args):
    (wave, dots, new), common = train_args
    two = tmp_path / "two.pth"
    assert cli(capsys, "train", "johnson", "-s", wave, "-s", dots, *common, "--steps", "1", "--run-dir",
               tmp_path / "r1", "-o", two)[0] == 0
    (tmp_path / "other").mkdir()
    gradient_image(40, 40).save(tmp_path / "other" / "wave.png")
    cases = [
        (["--add-style", new], "give it with --init MODEL"),
        (["--init", two, "--add-style", wave], "already holds style 'wave'"),
        (["--init", two, "-s", new], "holds 2 styles (wave, dots) and -s gives 1"),
        (["--init", two, "-s", dots, "-s", wave], "-s gives 'dots' as style 1, but --init"),
        (["-s", wave, "--add-style", new], "give one"),
        (["-s", wave, "-s", tmp_path / "other" / "wave.png"], "two style images named 'wave'"),
        (["-s", wave, "-s", dots, "--style-weight", "1,2,3"], "--style-weight has 3 values for 2 style image(s)"),
        (["--init", two, "--add-style", new, "--style-weight", "1,2"], "has 2 values for 1 style image(s)"),
        (["-s", wave, "--style-weight", "1,x"], "style_weight"),
    ]
    for extra, message in cases:
        code, _, err = cli(capsys, "train", "johnson", *extra, *common, "--run-dir", tmp_path / "rx",
                           "-o", tmp_path / "x.pth")
        assert code == 2 and message in one_error_line(err), (extra, err)


@pytest.mark.parametrize("stage", ["two styles", "add a style"])
def test_a_resumed_multistyle_run_continues_its_loss_curve_exactly(capsys, tmp_path, train_args, stage):
    """Stopped at a checkpoint and resumed, a run's losses equal those of the run that went straight through:
    the styles of each batch, like its crops, depend on the seed and step alone."""
    (wave, dots, new), common = train_args
    if stage == "two styles":
        inputs = ["-s", wave, "-s", dots]
    else:
        assert cli(capsys, "train", "johnson", "-s", wave, "-s", dots, *common, "--steps", "2", "--run-dir",
                   tmp_path / "r0", "-o", tmp_path / "base.pth")[0] == 0
        inputs = ["--init", tmp_path / "base.pth", "--add-style", new]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli(capsys, "train", "johnson", *inputs, *common, "--steps", "6", "--run-dir", whole,
               "-o", tmp_path / "whole.pth")[0] == 0
    assert cli(capsys, "train", "johnson", *inputs, *common, "--steps", "3", "--run-dir", cut,
               "-o", tmp_path / "cut.pth")[0] == 0
    (tmp_path / "cut.pth").unlink()
    code, _, err = cli(capsys, "train", "johnson", "--resume", cut, "--steps", "6", *common[4:6])
    assert code == 0, err
    resumed, reference = losses_of(cut), losses_of(whole)
    assert sorted(resumed) == list(range(1, 7))
    for step in range(1, 7):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-6), step
    a, b = load_transformer(tmp_path / "cut.pth")[0], load_transformer(tmp_path / "whole.pth")[0]
    for key, value in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[key], value, atol=1e-6, rtol=0, msg=key)


def test_a_run_folder_from_before_style_tables_resumes_exactly(capsys, tmp_path, train_args):
    """A checkpoint written when the norms held (C,) parameters (and Adam (C,) moments) resumes into today's
    (1, C) tables and continues the loss curve of a run that went straight through."""
    (wave, _, _), common = train_args
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    for run, steps in ((whole, "6"), (cut, "3")):
        assert cli(capsys, "train", "johnson", "-s", wave, *common, "--steps", steps, "--run-dir", run,
                   "-o", tmp_path / f"{run.name}.pth")[0] == 0
    (tmp_path / "cut.pth").unlink()
    state = torch.load(cut / "checkpoint.pth", weights_only=True)
    names = list(state["model"])  # parameters only, in the optimiser's order
    for i, name in enumerate(names):
        if state["model"][name].dim() == 2 and state["model"][name].shape[0] == 1:  # a norm's table
            state["model"][name] = state["model"][name][0]
            moments = state["optimizer"]["state"][i]
            for key in ("exp_avg", "exp_avg_sq"):
                moments[key] = moments[key][0]
    torch.save(state, cut / "checkpoint.pth")
    code, _, err = cli(capsys, "train", "johnson", "--resume", cut, "--steps", "6", *common[4:6])
    assert code == 0, err
    resumed, reference = losses_of(cut), losses_of(whole)
    assert all(resumed[s] == pytest.approx(reference[s], rel=1e-6) for s in range(1, 7)), (resumed, reference)
