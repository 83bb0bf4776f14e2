from __future__ import annotations

import pytest
import torch

from stransfer import losses


def test_gram_is_normalised_outer_product():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, C=2, H=1, W=2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / (2 * 1 * 2)
    torch.testing.assert_close(losses.gram(f), expected)


def test_gram_is_fp32_even_for_bf16_features():
    f = torch.rand(1, 4, 3, 3).to(torch.bfloat16)
    assert losses.gram(f).dtype == torch.float32


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gram_gradient_is_autograds_and_keeps_the_features_layout(layout):
    torch.manual_seed(0)
    f = torch.rand(2, 5, 6, 7).contiguous(memory_format=layout).requires_grad_(True)
    upstream = torch.rand(2, 5, 5)  # not symmetric: the general case, not only the losses' symmetric one
    (losses.gram(f) * upstream).sum().backward()
    plain = f.detach().clone().requires_grad_(True)
    flat = plain.reshape(2, 5, 42)
    (torch.bmm(flat, flat.transpose(1, 2)) / (5 * 6 * 7) * upstream).sum().backward()
    torch.testing.assert_close(f.grad, plain.grad)
    assert f.grad.is_contiguous(memory_format=layout)


def test_relative_error_is_zero_at_target_and_scale_free():
    t = torch.rand(2, 3, 4, 4) + 0.1
    assert losses.relative_sq_error(t, t).abs().max() == 0
    x = t * 1.5
    torch.testing.assert_close(losses.relative_sq_error(x, t), losses.relative_sq_error(100 * x, 100 * t))
    torch.testing.assert_close(losses.relative_sq_error(x, t), torch.full((2,), 0.25))


def test_content_and_style_losses_vanish_only_at_their_targets():
    feats = {"a": torch.rand(1, 8, 5, 5), "b": torch.rand(1, 16, 3, 3)}
    other = {k: v + 0.3 * torch.rand_like(v) for k, v in feats.items()}
    assert losses.content_loss(feats, feats) == 0
    assert losses.content_loss(other, feats) > 0
    for name in losses.STYLE_LOSSES:  # mrf has layers of its own: tested on its own below
        if name != "mrf":
            objective = losses.StyleObjective.parse(name, ("a", "b"))
            targets = objective.targets(feats)
            assert objective(feats, targets) < 1e-6, name
            assert objective(other, targets) > 1e-4, name


@pytest.mark.parametrize("name", ["gram", "meanstd", "mmd-poly", "histogram"])
def test_distribution_losses_ignore_spatial_arrangement(name):
    f = torch.rand(1, 8, 6, 6)
    shuffled = f.flatten(2)[:, :, torch.randperm(36)].reshape(1, 8, 6, 6)
    objective = losses.StyleObjective.parse(name, ("a",))
    torch.testing.assert_close(objective({"a": shuffled}, objective.targets({"a": f})), torch.tensor(0.0),
                               atol=1e-6, rtol=0)


def test_mean_std_of_a_constant_map_and_its_loss():
    f = torch.full((1, 2, 4, 4), 3.0)
    mean, std = losses.mean_std(f, eps=0.0)
    assert mean.flatten().tolist() == [3.0, 3.0] and std.flatten().tolist() == [0.0, 0.0]
    objective = losses.StyleObjective.parse("meanstd", ("a",))
    # Twice the mean, the same (zero) spread: relative error of the mean (2-1)^2/1 = 1; the std term is 0/eps.
    loss = objective({"a": 2 * f}, objective.targets({"a": f}))
    torch.testing.assert_close(loss, torch.tensor(1.0), atol=1e-4, rtol=0)


def test_mmd_poly_with_c_zero_is_the_gram_loss_and_c_adds_the_means():
    f, g = torch.rand(1, 4, 5, 5), torch.rand(1, 4, 5, 5) + 0.5
    target = (losses.gram(g), g.mean(dim=(2, 3)))
    torch.testing.assert_close(losses.mmd_poly(f, target, 0.0), losses.relative_sq_error(losses.gram(f), target[0]))
    # By hand for C = 1, one position each: k(x, y) = (xy + c)^2, MMD^2 = x^4 + y^4 - 2 (xy + c)^2 + 2c^2 ... with
    # the constant terms cancelling: (x^2 - y^2)^2 + 2c (x - y)^2, relative to y^4 + 2c y^2.
    x, y, c = torch.tensor(2.0), torch.tensor(3.0), 0.5
    expected = ((x**2 - y**2) ** 2 + 2 * c * (x - y) ** 2) / (y**4 + 2 * c * y**2)
    got = losses.mmd_poly(x.view(1, 1, 1, 1), (y.view(1, 1, 1) ** 2, y.view(1, 1)), c)
    torch.testing.assert_close(got, expected.view(1))


def test_histogram_match_of_a_ramp():
    """A ramp 0..15 remapped to a style histogram of 100..115 keeps each position's rank."""
    ramp = torch.arange(16.0).reshape(1, 1, 4, 4)
    shuffled = ramp.flatten()[torch.randperm(16)].reshape(1, 1, 4, 4)
    target = losses.quantiles(ramp + 100, count=16)
    torch.testing.assert_close(losses.histogram_match(shuffled, target), shuffled + 100)


def test_histogram_match_breaks_ties_instead_of_flattening():
    zeros = torch.zeros(1, 1, 4, 4)  # a ReLU map that is all ties
    matched = losses.histogram_match(zeros, losses.quantiles(torch.arange(16.0).reshape(1, 1, 4, 4), count=16))
    assert sorted(matched.flatten().tolist()) == list(range(16))


def test_mrf_finds_the_nearest_patch_by_correlation_and_chunks_agree():
    style = torch.rand(1, 3, 6, 6)
    patches = losses.style_patches(style)
    assert patches.shape == (16, 3, 3, 3)
    # The style's own patches are each their own nearest patch (correlation is highest with itself).
    assert losses.nearest_patches(style, patches).flatten().tolist() == list(range(16))
    out = torch.rand(2, 3, 7, 8)
    torch.testing.assert_close(losses.nearest_patches(out, patches, chunk=3), losses.nearest_patches(out, patches))
    assert losses.mrf_loss(style, patches).item() < 1e-10
    # A patch made of two copies of a style patch, scaled, still picks that patch (normalised correlation).
    scaled = 5 * patches[7:8]
    assert losses.nearest_patches(scaled, patches).item() == 7


def test_mrf_takes_every_style_patch_within_its_budget_and_thins_them_beyond():
    assert losses.mrf_stride(6, 6, budget=16) == 1  # 4 x 4 patches
    assert losses.mrf_stride(7, 6, budget=16) == 2  # 5 x 4 = 20 > 16; every 2nd: 3 x 2
    assert losses.mrf_stride(130, 82, budget=4096) == 2  # a 512 px style at relu3_1: 64 x 40 = 2560
    style = torch.rand(1, 3, 11, 11)
    assert losses.mrf_targets(style, budget=81).shape[0] == 81
    thinned = losses.mrf_targets(style, budget=80)  # 81 > 80: every 2nd patch, 5 x 5
    torch.testing.assert_close(thinned, losses.style_patches(style, stride=2))
    assert thinned.shape[0] == 25


def test_mrf_weight_counts_its_scale():
    style = {"relu3_1": torch.rand(1, 4, 6, 6), "relu4_1": torch.rand(1, 4, 5, 5)}
    out = {k: v + 0.3 * torch.rand_like(v) for k, v in style.items()}
    targets = losses.StyleObjective.parse("mrf", ()).targets(style)
    raw = sum(losses.mrf_loss(out[k], targets["mrf"][k]).mean() for k in style) / 2
    for spec, weight in (("mrf", 1.0), ("mrf:2", 2.0)):
        objective = losses.StyleObjective.parse(spec, ())
        torch.testing.assert_close(objective(out, targets), weight * losses.MRF_SCALE * raw)


def test_style_loss_specs_parse_or_say_what_is_wrong():
    assert losses.parse_style_loss("gram") == (("gram", 1.0),)
    assert losses.parse_style_loss("gram:1, histogram:0.5") == (("gram", 1.0), ("histogram", 0.5))
    for bad, message in (("gramm", "unknown style loss"), ("gram:x", "must be a number"),
                         ("gram:nan", "finite"), ("gram:-1", ">= 0"), ("gram,gram", "distinct"),
                         ("gram:0", "not all weighted 0")):
        with pytest.raises(ValueError, match=message):
            losses.parse_style_loss(bad)


def test_blends_average_targets_and_mrf_pools_patches():
    a, b = torch.rand(1, 4, 6, 6), torch.rand(1, 4, 6, 6)
    objective = losses.StyleObjective.parse("gram,meanstd,histogram", ("x",))
    ta, tb = objective.targets({"x": a}), objective.targets({"x": b})
    blended = objective.blend([ta, tb], [0.25, 0.75])
    torch.testing.assert_close(blended["gram"]["x"], 0.25 * ta["gram"]["x"] + 0.75 * tb["gram"]["x"])
    torch.testing.assert_close(blended["histogram"]["x"], 0.25 * ta["histogram"]["x"] + 0.75 * tb["histogram"]["x"])
    mrf = losses.StyleObjective.parse("mrf", ())
    pooled = mrf.blend([mrf.targets({"relu3_1": a, "relu4_1": a}), mrf.targets({"relu3_1": b, "relu4_1": b})],
                       [0.5, 0.5])
    assert pooled["mrf"]["relu3_1"].shape[0] == 2 * losses.style_patches(a).shape[0]


def test_masked_gram_with_full_mask_equals_gram():
    f = torch.rand(1, 4, 6, 6)
    torch.testing.assert_close(losses.masked_gram(f, torch.ones(1, 1, 6, 6)), losses.gram(f))


def test_mean_std_and_total_variation():
    f = torch.tensor([[[[1.0, 3.0], [1.0, 3.0]]]])
    mean, std = losses.mean_std(f, eps=0.0)
    assert mean.item() == 2.0 and std.item() == 1.0
    assert losses.total_variation(torch.ones(1, 3, 5, 5)) == 0
    assert losses.total_variation(torch.rand(1, 3, 5, 5)) > 0


@pytest.mark.parametrize("spec", ["gram", "meanstd", "mmd-poly", "gram:1,meanstd:0.5"])
def test_per_item_targets_score_each_item_against_its_own_style(spec):
    """A batch whose items train for different styles (multi-style Johnson training) is scored in one pass with
    stacked targets: the same as the batch mean of each item scored alone against its style."""
    torch.manual_seed(0)
    objective = losses.StyleObjective.parse(spec, ("a", "b"))
    styles = [objective.targets({"a": torch.rand(1, 3, 8, 8), "b": torch.rand(1, 5, 4, 4)}) for _ in range(3)]
    feats = {"a": torch.rand(4, 3, 8, 8), "b": torch.rand(4, 5, 4, 4)}
    ids = [2, 0, 2, 1]
    alone = [objective({k: v[i:i + 1] for k, v in feats.items()}, styles[s]) for i, s in enumerate(ids)]
    together = objective(feats, objective.per_item([styles[s] for s in ids]))
    torch.testing.assert_close(together, torch.stack(alone).mean())
    # Against one style's targets for every item, a different number: the targets really are per item.
    assert not torch.allclose(together, objective(feats, styles[0]))


@pytest.mark.parametrize("spec", ["histogram", "mrf", "gram,histogram:0.5"])
def test_targets_that_do_not_stack_say_so(spec):
    objective = losses.StyleObjective.parse(spec, ("a",))
    target = objective.targets({"a": torch.rand(1, 3, 8, 8), "relu3_1": torch.rand(1, 3, 8, 8),
                                "relu4_1": torch.rand(1, 3, 8, 8)})
    assert objective.per_item([target, target]) is None
