from __future__ import annotations

import torch

from stransfer import losses


def test_gram_is_normalised_outer_product():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, C=2, H=1, W=2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / (2 * 1 * 2)
    torch.testing.assert_close(losses.gram(f), expected)


def test_gram_is_fp32_even_for_bf16_features():
    f = torch.rand(1, 4, 3, 3).to(torch.bfloat16)
    assert losses.gram(f).dtype == torch.float32


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
    grams = {k: losses.gram(v) for k, v in feats.items()}
    assert losses.style_loss(feats, grams) == 0
    assert losses.style_loss(other, grams) > 0


def test_style_loss_ignores_spatial_arrangement():
    f = torch.rand(1, 8, 6, 6)
    shuffled = f.flatten(2)[:, :, torch.randperm(36)].reshape(1, 8, 6, 6)
    torch.testing.assert_close(losses.style_loss({"a": shuffled}, {"a": losses.gram(f)}), torch.tensor(0.0),
                               atol=1e-6, rtol=0)


def test_masked_gram_with_full_mask_equals_gram():
    f = torch.rand(1, 4, 6, 6)
    torch.testing.assert_close(losses.masked_gram(f, torch.ones(1, 1, 6, 6)), losses.gram(f))


def test_mean_std_and_total_variation():
    f = torch.tensor([[[[1.0, 3.0], [1.0, 3.0]]]])
    mean, std = losses.mean_std(f, eps=0.0)
    assert mean.item() == 2.0 and std.item() == 1.0
    assert losses.total_variation(torch.ones(1, 3, 5, 5)) == 0
    assert losses.total_variation(torch.rand(1, 3, 5, 5)) > 0
