from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

from stransfer import tiling
from stransfer.device import make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.engines.gatys import (BYTES_PER_PIXEL, PLATEAU_WINDOW, TEXTURE_DEFAULTS, Gatys, GatysConfig,
                                     plateaued, synthesize_texture, texture_canvas)
from stransfer.errors import ConfigError
from stransfer.events import Snapshot, Step

from conftest import cli, gradient_image, one_error_line


def structured(seed: int, h: int = 32, w: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)


def run(random_vgg16, seed=0, precision="fp32", iterations=(20,), **overrides):
    cfg = dataclasses.replace(GatysConfig(), scales=(1.0,), iterations=iterations, **overrides)
    engine = Gatys(cfg, make_runtime("cpu", precision, seed=seed), random_vgg16)
    events = []
    out = engine.stylize(structured(2), engine.prepare([structured(1, 40, 40)]), events.append)
    return out, [e for e in events if isinstance(e, Step)], events


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_loss_falls_on_a_random_weight_backbone(random_vgg16, optimizer):
    out, steps, _ = run(random_vgg16, optimizer=optimizer, learning_rate=0.05)
    assert out.shape == (1, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert len(steps) == 20 and steps[-1].step == 20
    assert steps[-1].losses["total"] < 0.5 * steps[0].losses["total"]
    assert steps[-1].losses["style"] < steps[0].losses["style"]


def test_same_seed_same_pixels_noise_init(random_vgg16):
    a, _, _ = run(random_vgg16, seed=5, init="noise")
    b, _, _ = run(random_vgg16, seed=5, init="noise")
    c, _, _ = run(random_vgg16, seed=6, init="noise")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_save_every_emits_snapshots(random_vgg16):
    _, _, events = run(random_vgg16, save_every=8)
    assert [e.step for e in events if isinstance(e, Snapshot)] == [8, 16]


def test_bf16_path_runs_and_lowers_the_loss(random_vgg16):
    _, steps, _ = run(random_vgg16, precision="bf16")
    assert steps[-1].losses["total"] < steps[0].losses["total"]


def test_plateau_rule_compares_the_best_loss_with_the_best_a_window_ago():
    steady = [100.0 * 0.99 ** i for i in range(PLATEAU_WINDOW + 5)]  # about 10% better per window
    assert not plateaued(steady[:PLATEAU_WINDOW], 0.5)  # too few evaluations to judge
    assert not plateaued(steady, 0.05) and plateaued(steady, 0.2)
    assert not plateaued(steady, 0.0)  # 0 = never stop early
    assert plateaued([5.0, 4.0] + [4.0] * PLATEAU_WINDOW, 1e-6)
    # a spike does not count as progress: the best loss is what is compared
    spiky = [5.0, 4.0] + [9.0, 4.0] * (PLATEAU_WINDOW // 2)
    assert plateaued(spiky, 1e-6)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_plateau_ends_a_scale_early_and_iterations_stay_a_ceiling(random_vgg16, optimizer):
    _, all_steps, _ = run(random_vgg16, optimizer=optimizer, iterations=(60,))
    _, steps, _ = run(random_vgg16, optimizer=optimizer, iterations=(60,), plateau=0.2)
    assert len(all_steps) == 60 and PLATEAU_WINDOW < len(steps) < 60
    totals = [s.losses["total"] for s in steps]
    assert plateaued(totals, 0.2) and not plateaued(totals[:-1], 0.2)  # stopped at the first plateau


def targets(random_vgg16, cfg, styles, **inputs):
    """The style regions a Gatys engine built with these inputs makes for a 32 x 32 output."""
    engine = Gatys(cfg, make_runtime("cpu"), random_vgg16, EngineInputs(**inputs))
    return engine.regions(engine.prepare(styles), (32, 32))


def test_style_targets_are_computed_once_per_size_and_style_set(random_vgg16):
    engine = Gatys(dataclasses.replace(GatysConfig(), iterations=(2,)), make_runtime("cpu"), random_vgg16)
    styles = engine.prepare([structured(1)])
    first = engine.regions(styles, (32, 32))
    assert engine.regions(styles, (32, 32)) is first
    assert engine.regions(styles, (32, 48)) is not first
    # One engine serves another set of styles without forgetting the first's targets.
    other = engine.regions(engine.prepare([structured(5)]), (32, 32))
    assert not torch.equal(other[0].targets["gram"]["relu1_2"], first[0].targets["gram"]["relu1_2"])
    assert engine.regions(styles, (32, 32)) is first


def test_registry_builds_gatys_from_a_weights_file(random_weights_file):
    spec = ENGINES["gatys"]
    engine = spec.build(dataclasses.replace(GatysConfig(), iterations=(2,)), make_runtime("cpu"),
                        EngineInputs(vgg_weights=random_weights_file))
    assert engine.backbone.deepest == "relu4_3"  # nothing past the deepest tap is built
    assert engine.stylize(structured(3, 16, 24), engine.prepare([structured(1)])).shape == (1, 3, 16, 24)


def test_schedule_goes_coarse_to_fine_and_skips_tiny_scales(random_vgg16):
    cfg = dataclasses.replace(GatysConfig(), scales=(0.1, 0.25, 0.5, 1.0), iterations=(40, 30, 20, 10))
    engine = Gatys(cfg, make_runtime("cpu"), random_vgg16)
    assert engine.schedule(384, 512) == [((96, 128), 30), ((192, 256), 20), ((384, 512), 10)]  # 51 px skipped
    single = Gatys(dataclasses.replace(cfg, scales=(1.0,), iterations=(7,)), make_runtime("cpu"), random_vgg16)
    assert single.schedule(30, 40) == [((30, 40), 7)]


def test_multi_scale_run_reports_every_stage(random_vgg16):
    cfg = dataclasses.replace(GatysConfig(), scales=(0.5, 1.0), iterations=(6, 3))
    engine = Gatys(cfg, make_runtime("cpu"), random_vgg16)
    events = []
    out = engine.stylize(structured(2, 128, 128), engine.prepare([structured(1)]), events.append)
    steps = [e for e in events if isinstance(e, Step)]
    assert out.shape == (1, 3, 128, 128)
    assert [e.step for e in steps] == list(range(1, 10)) and {e.total for e in steps} == {9}
    assert steps[0].stage.startswith("gatys 64 px") and steps[-1].stage.startswith("gatys 128 px")


def test_blend_weights_interpolate_the_gram_targets(random_vgg16):
    a, b = structured(1), structured(5)
    cfg = dataclasses.replace(GatysConfig(), scales=(1.0,), iterations=(1,))
    blended = targets(random_vgg16, cfg, [a, b], style_weights=[0.7, 0.3])
    only_a, only_b = targets(random_vgg16, cfg, [a]), targets(random_vgg16, cfg, [b])
    for layer in cfg.style_layers:
        expected = 0.7 * only_a[0].targets["gram"][layer] + 0.3 * only_b[0].targets["gram"][layer]
        torch.testing.assert_close(blended[0].targets["gram"][layer], expected)


def test_mask_gives_each_region_its_own_style(random_vgg16):
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :, :16] = 1.0
    cfg = dataclasses.replace(GatysConfig(), scales=(1.0,), iterations=(1,))
    two = targets(random_vgg16, cfg, [structured(1), structured(5)], mask=mask)
    assert len(two) == 2 and torch.equal(two[0].mask + two[1].mask, torch.ones(1, 1, 32, 32))
    one = targets(random_vgg16, cfg, [structured(1)], mask=mask)
    assert len(one) == 1  # black stays content: no style target there


def test_style_scale_changes_the_style_targets(random_vgg16):
    cfg = dataclasses.replace(GatysConfig(), scales=(1.0,), iterations=(1,))
    style = structured(1, 64, 64)
    full = targets(random_vgg16, cfg, [style])[0].targets["gram"]
    half = targets(random_vgg16, cfg, [style], style_scale=0.5)[0].targets
    assert not torch.allclose(full["relu1_2"], half["gram"]["relu1_2"])


def test_tiled_scale_optimises_every_tile_and_blends_them(random_vgg16):
    cfg = dataclasses.replace(GatysConfig(), scales=(0.5, 1.0), iterations=(3, 2), tile="64", tile_overlap=16)
    engine = Gatys(cfg, make_runtime("cpu"), random_vgg16)
    events = []
    out = engine.stylize(structured(2, 96, 128), engine.prepare([structured(1)]), events.append)
    steps = [e for e in events if isinstance(e, Step)]
    # 48x64 fits one tile; 96x128 takes 2 x 3 tiles of 64 px (stride 48): 3 + 6 * 2 evaluations in all.
    assert steps[-1].step == steps[-1].total == 3 + 6 * 2
    assert any("tile 6/6" in e.stage for e in steps)
    assert out.shape == (1, 3, 96, 128) and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("spec, auto_tiles", [("gram", 1), ("histogram", 4), ("gram:1,histogram:1", 4)])
def test_auto_tiling_budgets_for_the_style_loss_memory(random_vgg16, monkeypatch, spec, auto_tiles):
    """--tile auto sizes tiles by the engine's bytes per pixel plus what the style loss adds: with a budget that
    fits 96 x 96 px of a Gram evaluation exactly, the histogram loss (which needs more) is tiled."""
    monkeypatch.setattr(tiling, "working_budget", lambda: 96 * 96 * BYTES_PER_PIXEL)
    monkeypatch.setattr(tiling, "MIN_AUTO_TILE", 64)
    cfg = dataclasses.replace(GatysConfig(), scales=(1.0,), iterations=(1,), style_loss=spec, tile_overlap=8)
    engine = Gatys(cfg, make_runtime("cpu"), random_vgg16)
    steps = []
    engine.stylize(structured(2, 96, 96), engine.prepare([structured(1)]), steps.append)
    assert steps[-1].total == auto_tiles


@pytest.mark.parametrize("spec", ["gram", "meanstd", "mmd-poly", "histogram", "mrf", "gram:1,histogram:1"])
def test_every_style_loss_lowers_its_own_objective(random_vgg16, spec):
    """Each registered loss drives the optimiser: a few evaluations lower the style term (Adam: L-BFGS's
    trial steps on a random-weight network jump about)."""
    cfg = dataclasses.replace(GatysConfig(), scales=(1.0,), iterations=(8,), style_loss=spec, tv_weight=0.0,
                              content_weight=0.0, optimizer="adam", learning_rate=0.05)
    engine = Gatys(cfg, make_runtime("cpu"), random_vgg16)
    steps = []
    engine.stylize(structured(7, 48, 48), engine.prepare([structured(3, 48, 48)]), steps.append)
    assert steps[-1].losses["style"] < 0.7 * steps[0].losses["style"], spec


def test_a_mask_needs_a_loss_that_takes_masks(random_vgg16):
    cfg = dataclasses.replace(GatysConfig(), style_loss="histogram")
    with pytest.raises(ConfigError, match="`mask` works with the style losses gram, meanstd"):
        Gatys(cfg, make_runtime("cpu"), random_vgg16, EngineInputs(mask=torch.ones(1, 1, 8, 8)))


def test_texture_command_writes_a_seeded_texture_of_the_asked_size(capsys, tmp_path, random_weights_file):
    style = tmp_path / "style.png"
    gradient_image(40, 32, seed=2).save(style)
    args = ["texture", "-s", style, "--size", 48, "--height", 32, "--vgg-weights", random_weights_file,
            "--device", "cpu", "--seed", 5, "--iterations", 5]
    outs = []
    for name in ("a.png", "b.png"):
        code, out, err = cli(capsys, *args, "-o", tmp_path / name)
        assert code == 0, err
        outs.append(Image.open(tmp_path / name))
    assert outs[0].size == (48, 32) and outs[0].tobytes() == outs[1].tobytes()
    code, _, err = cli(capsys, *args, "-o", tmp_path / "a.png")
    assert code == 1 and "exists" in one_error_line(err)
    code, _, err = cli(capsys, *args, "--style-loss", "gramm", "-o", tmp_path / "c.png")
    assert code == 2 and "unknown style loss 'gramm'" in one_error_line(err)


def test_a_texture_is_the_middle_of_a_larger_canvas():
    asked = []

    class RecordingEngine:  # what synthesize_texture uses of an engine: its config and stylize
        config = dataclasses.replace(GatysConfig(), **TEXTURE_DEFAULTS)

        def stylize(self, blank, styles, on_event):
            asked.append(tuple(blank.shape[-2:]))
            return torch.arange(blank.numel(), dtype=torch.float32).reshape(blank.shape)

    out = synthesize_texture(RecordingEngine(), None, 40, 96)
    height, width, margin = texture_canvas(40, 96)
    assert asked == [(height, width)] and (height, width, margin) == (46, 102, 3)
    canvas = torch.arange(3 * height * width, dtype=torch.float32).reshape(1, 3, height, width)
    assert torch.equal(out, canvas[..., 3:43, 3:99])
