"""Pure loss functions of tensors and feature dicts: content, total variation, and the style losses of the
optimisation family (Gram, mean/std, MMD, histogram, CNNMRF) with one registry that every trainer and engine
builds its style objective from."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

Features = Mapping[str, torch.Tensor]


class _SelfProduct(torch.autograd.Function):
    """F F^T for F of shape (B, C, N). Autograd's own backward of bmm(f, f.transpose) takes two products and
    adds them across layouts (one of them transposed); G is symmetric, so one product does: dF = (dG + dG^T) F.
    It is computed in F's own layout, so a channels-last feature map gets a channels-last gradient and the sum
    with the gradient from the next layer stays a plain add, which makes a Gatys evaluation faster
    (benchmarks/gatys_speed.py compares it with the bare VGG16)."""

    @staticmethod
    def forward(ctx: Any, f: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f)
        return torch.bmm(f, f.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (f,) = ctx.saved_tensors
        sym = (grad + grad.transpose(1, 2)).to(f.dtype)
        if f.stride(1) == 1:  # channels-last: F^T is the contiguous one; (dG_sym F)^T = F^T dG_sym
            return torch.bmm(f.transpose(1, 2), sym).transpose(1, 2)
        return torch.bmm(sym, f)


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix F F^T / (C H W) per batch item, returned in fp32. The product runs in the features' own
    dtype: under bf16 autocast that is bf16 with fp32 accumulation, faster with unchanged final distances
    (benchmarks/gatys_quality_speed.py); fp32 features give an fp32 product."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return _SelfProduct.apply(f).float() / (c * h * w)


def masked_gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gram matrix of the features where `mask` (B, 1, H, W in [0, 1]) is on, normalised by the mask's area."""
    b, c, h, w = features.shape
    m = _resized_mask(mask, features)
    f = (features.float() * m).reshape(b, c, h * w)
    area = m.reshape(b, -1).sum(dim=1).clamp_min(1.0).view(b, 1, 1)
    return torch.bmm(f, f.transpose(1, 2)) / (c * area)


def relative_sq_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||x - target||^2 / ||target||^2 per batch item: scale-free, so layers of very different magnitude
    weigh the same (the reference metric, stransfer.metrics, uses exactly this form)."""
    dims = tuple(range(1, target.dim()))
    diff = (x.float() - target.float()).pow(2).sum(dim=dims)
    return diff / target.float().pow(2).sum(dim=dims).clamp_min(1e-12)


def content_loss(features: Features, targets: Features) -> torch.Tensor:
    """Mean over layers of the relative squared error of the features (batch-averaged)."""
    losses = [relative_sq_error(features[k], targets[k]).mean() for k in targets]
    return torch.stack(losses).mean()


def mean_std(features: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel-wise mean and standard deviation over space, in fp32, shapes (B, C, 1, 1)."""
    f = features.float()
    mean = f.mean(dim=(2, 3), keepdim=True)
    std = (f.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return mean, std


def weighted_total(terms: Mapping[str, torch.Tensor],
                   weights: Mapping[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
    """The objective of every engine and trainer: each term times its weight (1 where `weights` has none, for a
    term that comes weighted already), summed; with each term's value and the total, for logs and progress."""
    parts = [weights.get(name, 1.0) * term.float() for name, term in terms.items()]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total, {name: term.item() for name, term in terms.items()} | {"total": total.item()}


def perceptual_total(features: Features, content_targets: Features, output: torch.Tensor,
                     style: tuple[torch.Tensor, torch.Tensor], content_weight: float,
                     tv_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """A feed-forward trainer's objective: content, the style term (unweighted, weighted) as StyleObjective.of_styles
    gives it, and the output's total variation; the log shows the style term unweighted."""
    term, weighted = style
    total, logged = weighted_total({"content": content_loss(features, content_targets), "style": weighted,
                                    "tv": total_variation(output.float())},
                                   {"content": content_weight, "tv": tv_weight})
    return total, logged | {"style": term.item()}


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (smoothness prior)."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def _resized_mask(mask: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(mask.float(), size=features.shape[-2:], mode="bilinear",
                                           align_corners=False)


def masked_mean_std(features: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel mean and std over the region where `mask` (B, 1, H, W in [0, 1]) is on, weighted by it."""
    m = _resized_mask(mask, features)
    area = m.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    f = features.float()
    mean = (f * m).sum(dim=(2, 3), keepdim=True) / area
    var = ((f - mean).pow(2) * m).sum(dim=(2, 3), keepdim=True) / area
    return mean, (var + eps).sqrt()


def mmd_poly(features: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor], c: float) -> torch.Tensor:
    """Squared MMD between the output's and the style's feature vectors under the kernel k(x, y) =
    (x.y / C + c)^2 (Li et al. 2017), relative to the style's own term, per batch item.

    Expanding the kernel gives a closed form with no pairwise sum: MMD^2 = ||G_x - G_y||^2 + (2c / C)
    ||mu_x - mu_y||^2 with G the Gram matrix of gram() and mu the channel means; c = 0 is the Gram loss."""
    g_target, mu_target = target
    ch = features.shape[1]
    g = gram(features)
    mu = features.float().mean(dim=(2, 3))
    num = (g - g_target).pow(2).sum(dim=(1, 2)) + (2 * c / ch) * (mu - mu_target).pow(2).sum(dim=1)
    den = g_target.pow(2).sum(dim=(1, 2)) + (2 * c / ch) * mu_target.pow(2).sum(dim=1)
    return num / den.clamp_min(1e-12)


HISTOGRAM_BINS = 256  # quantiles kept per channel: a style's histogram target, whatever the output's size


def quantiles(features: torch.Tensor, count: int = HISTOGRAM_BINS) -> torch.Tensor:
    """Per channel, `count` evenly spaced quantiles of the activations (C, count): a histogram that blends by
    averaging (the 1-D Wasserstein barycentre) and resamples to any number of output positions."""
    values = features.float()[0].flatten(1).sort(dim=1).values
    positions = (torch.arange(count, device=values.device) + 0.5) * values.shape[1] / count
    return values[:, positions.long().clamp_max(values.shape[1] - 1)]


def histogram_match(features: torch.Tensor, target_quantiles: torch.Tensor) -> torch.Tensor:
    """The features remapped, channel by channel, so their histogram is the target's while each activation
    keeps its rank (Risser et al. 2017). Ranks are broken at random among equal values (ReLU maps are full of
    zeros): a stable sort would send every tie to the same target value and the output would go flat."""
    b, c, h, w = features.shape
    f = features.detach().float().reshape(b, c, h * w)
    # Fixed noise far below any activation step: the same tie order every evaluation, so L-BFGS sees one loss.
    g = torch.Generator(device="cpu").manual_seed(0)
    jitter = torch.rand(f.shape, generator=g).to(f.device) * 1e-6
    order = (f + jitter).argsort(dim=2)
    n = h * w
    index = ((torch.arange(n, device=f.device) + 0.5) * target_quantiles.shape[1] / n).long()
    sorted_target = target_quantiles[:, index].unsqueeze(0).expand(b, -1, -1)
    matched = torch.empty_like(f).scatter_(2, order, sorted_target)
    return matched.reshape(b, c, h, w)


def histogram_loss(features: torch.Tensor, target_quantiles: torch.Tensor) -> torch.Tensor:
    """Relative squared distance of the features to themselves remapped to the style's histogram, per batch
    item. The target moves with the output every evaluation; no gradient flows through it."""
    return relative_sq_error(features, histogram_match(features, target_quantiles))


MRF_PATCH = 3
MRF_CHUNK = 1024  # style patches per convolution: bounds the (patches x H x W) similarity tensor


def style_patches(features: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """The style's 3x3 feature patches (K, C, 3, 3) of the first batch item."""
    p = torch.nn.functional.unfold(features[:1].float(), MRF_PATCH, stride=stride)  # (1, C*9, K)
    return p[0].T.reshape(-1, features.shape[1], MRF_PATCH, MRF_PATCH).contiguous()


def mrf_stride(height: int, width: int, budget: int) -> int:
    """The smallest step between style patches that keeps their number within `budget`."""
    stride = 1
    while math.ceil((height - MRF_PATCH + 1) / stride) * math.ceil((width - MRF_PATCH + 1) / stride) > budget:
        stride += 1
    return stride


def mrf_targets(features: torch.Tensor, budget: int) -> torch.Tensor:
    """A style layer's patches for the mrf loss: every one where the budget allows, else every 2nd, 3rd, ..."""
    return style_patches(features, mrf_stride(features.shape[-2], features.shape[-1], budget))


def best_patch_index(features: torch.Tensor, chunks: Iterable[torch.Tensor]) -> torch.Tensor:
    """For each patch position of `features` (B, C, H, W), the index of the candidate patch of highest normalised
    cross-correlation, candidates counted across `chunks` ((n, C, k, k) each) in order. Each chunk, divided by its
    patches' norms, is the filter bank of one convolution; a running maximum keeps the similarity tensor from
    ever existing whole, and the first of equal maxima wins. (The features' own patch norm is the same for every
    candidate, so it does not change the argmax.)"""
    f = features.detach().float()
    best = index = None
    offset = 0
    for patches in chunks:
        normed = patches / patches.flatten(1).norm(dim=1).clamp_min(1e-8).view(-1, 1, 1, 1)
        score, arg = torch.nn.functional.conv2d(f, normed).max(dim=1)
        if best is None or index is None:
            best, index = score, arg
        else:
            better = score > best
            best = torch.where(better, score, best)
            index = torch.where(better, arg + offset, index)
        offset += patches.shape[0]
    if index is None:
        raise ValueError("no candidate patches")
    return index


def nearest_patches(features: torch.Tensor, patches: torch.Tensor, chunk: int = MRF_CHUNK) -> torch.Tensor:
    """For each 3x3 patch position of `features` (B, C, H, W), the index of the nearest style patch (B, H-2, W-2),
    correlated `chunk` style patches at a time."""
    return best_patch_index(features, patches.split(chunk))


def mrf_loss(features: torch.Tensor, patches: torch.Tensor, chunk: int = MRF_CHUNK) -> torch.Tensor:
    """CNNMRF (Li & Wand 2016): every 3x3 patch of the output's features pulled to its nearest style patch
    (nearest_patches, recomputed every evaluation), as a relative squared error per batch item."""
    index = nearest_patches(features, patches, chunk)
    own = torch.nn.functional.unfold(features.float(), MRF_PATCH).transpose(1, 2)  # (B, L, C*9)
    matched = patches.flatten(1)[index.flatten(1)]  # (B, L, C*9)
    return (own - matched).pow(2).sum(dim=(1, 2)) / matched.pow(2).sum(dim=(1, 2)).clamp_min(1e-12)


# ------------------------------------------------------------------------------------ the style-loss registry

@dataclass(frozen=True)
class StyleLoss:
    """One style loss, layer by layer: a target from the style's features, the loss of the output's features
    against it (per batch item; `mask` None, or (B, 1, H, W) where it accepts masks), and how the targets of
    several styles blend. `per_item` says its targets carry a batch dimension of one that its loss broadcasts,
    so the targets of several styles stacked give each batch item its own. `layers` names its own layers where
    the method prescribes them; `scale` is what one unit of its weight counts, so that every loss at weight 1
    and the default style weight strikes a balance; `extra_bytes_per_pixel` is the memory an evaluation needs
    per output pixel beyond the Gram loss's (fp32, benchmarks/gatys_memory.py), which the Gatys engine's tiling
    budgets for."""

    targets: Callable[[torch.Tensor], Any]
    loss: Callable[[torch.Tensor, Any, torch.Tensor | None], torch.Tensor]
    blend: Callable[[list[Any], list[float]], Any]
    masks: bool = False
    per_item: bool = False
    layers: tuple[str, ...] | None = None
    scale: float = 1.0
    extra_bytes_per_pixel: int = 0


def _fieldwise(combine: Callable[[list[torch.Tensor]], torch.Tensor], targets: list[Any]) -> Any:
    """`combine` applied to several styles' targets: to the tensors, or field by field to tuples of tensors."""
    if isinstance(targets[0], tuple):
        return tuple(combine([t[i] for t in targets]) for i in range(len(targets[0])))
    return combine(targets)


def _average(targets: list[Any], weights: list[float]) -> Any:
    """Weighted average of targets."""
    return _fieldwise(lambda ts: sum(w * t for w, t in zip(weights, ts)), targets)


def _gram_term(features: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    g = gram(features) if mask is None else masked_gram(features, mask)
    return relative_sq_error(g, target.expand(features.shape[0], -1, -1))


def _stats_term(features: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None) -> torch.Tensor:
    mean, std = mean_std(features) if mask is None else masked_mean_std(features, mask)
    return relative_sq_error(mean, target[0].expand_as(mean)) + relative_sq_error(std, target[1].expand_as(std))


# c of the polynomial kernel: with features scaled as in gram(), 1 weighs the channel means about as much as
# the second moments at relu1_2 and less deeper down; 0 would be the Gram loss exactly.
MMD_POLY_C = 1.0
# Style patches per layer: all of them while they number at most this, else every 2nd (3rd, ...) pixel's, so an
# evaluation at 512 px stays in seconds on a CPU while a small style keeps every patch: a fixed stride left
# small styles too few candidates, and the output gave up more of the photo for the same style
# (benchmarks/style_losses.py).
MRF_PATCH_BUDGET = 4096
# mrf's weight counts this much: at the full weight its output keeps far less of the photo than Gram's, and at
# 0.4 about as much (benchmarks/style_losses.py).
MRF_SCALE = 0.4

STYLE_LOSSES: dict[str, StyleLoss] = {
    # Gatys et al. 2016: Gram matrices (second moments of the features).
    "gram": StyleLoss(gram, _gram_term, _average, masks=True, per_item=True),
    # Li et al. 2017: channel means and standard deviations, the statistics AdaIN matches.
    "meanstd": StyleLoss(lambda f: mean_std(f), _stats_term, _average, masks=True, per_item=True),
    # Li et al. 2017: squared MMD with a polynomial kernel (a mixture of styles is the average of both moments).
    "mmd-poly": StyleLoss(lambda f: (gram(f), f.float().mean(dim=(2, 3))),
                          lambda f, t, m: mmd_poly(f, t, MMD_POLY_C), _average, per_item=True,
                          extra_bytes_per_pixel=100),
    # Risser et al. 2017: per-channel histograms (blended as quantile functions); the sort keeps copies.
    "histogram": StyleLoss(quantiles, lambda f, t, m: histogram_loss(f, t), _average, extra_bytes_per_pixel=700),
    # Li & Wand 2016: nearest style patch per output patch; several styles pool their patches. Weighed like
    # Gram, it pulls the photo apart (MRF_SCALE).
    "mrf": StyleLoss(lambda f: mrf_targets(f, MRF_PATCH_BUDGET), lambda f, t, m: mrf_loss(f, t),
                     lambda ts, ws: torch.cat(ts), layers=("relu3_1", "relu4_1"), scale=MRF_SCALE,
                     extra_bytes_per_pixel=2400),
}


def parse_style_loss(spec: str) -> tuple[tuple[str, float], ...]:
    """'gram' or a weighted list 'gram:1,histogram:0.5' -> ((name, weight), ...); ValueError says what is wrong."""
    terms = []
    for part in (p.strip() for p in spec.split(",")):
        name, _, weight = part.partition(":")
        if name not in STYLE_LOSSES:
            raise ValueError(f"unknown style loss '{name}' (known: {', '.join(STYLE_LOSSES)})")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"weight of '{name}' must be a number (got {weight!r})") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"weight of '{name}' must be a finite number >= 0 (got {weight})")
        terms.append((name, value))
    if len({n for n, _ in terms}) < len(terms) or not any(w > 0 for _, w in terms):
        raise ValueError(f"needs distinct losses, not all weighted 0 (got {spec!r})")
    return tuple(terms)


@dataclass(frozen=True)
class StyleObjective:
    """A weighted sum of registered style losses, each over its layers (the style layers given, unless the
    loss prescribes its own): what the Gatys engine minimises and the Johnson trainer teaches."""

    terms: tuple[tuple[str, float], ...]
    style_layers: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str, style_layers: tuple[str, ...]) -> StyleObjective:
        return cls(parse_style_loss(spec), tuple(style_layers))

    def layers(self, name: str) -> tuple[str, ...]:
        return STYLE_LOSSES[name].layers or self.style_layers

    @property
    def taps(self) -> set[str]:
        return {layer for name, _ in self.terms for layer in self.layers(name)}

    @property
    def extra_bytes_per_pixel(self) -> int:
        return max(STYLE_LOSSES[name].extra_bytes_per_pixel for name, _ in self.terms)

    @property
    def takes_masks(self) -> bool:
        return all(STYLE_LOSSES[name].masks for name, _ in self.terms)

    def targets(self, style_features: Features) -> dict[str, dict[str, Any]]:
        """Targets of one style image's features (computed once, passed to every evaluation)."""
        return {name: {layer: STYLE_LOSSES[name].targets(style_features[layer]) for layer in self.layers(name)}
                for name, _ in self.terms}

    def blend(self, targets: list[dict[str, dict[str, Any]]], weights: list[float]) -> dict[str, dict[str, Any]]:
        return {name: {layer: STYLE_LOSSES[name].blend([t[name][layer] for t in targets], weights)
                       for layer in self.layers(name)} for name, _ in self.terms}

    def per_item(self, targets: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]] | None:
        """One target per batch item, item i's from targets[i] (several styles in one batch, one pass over it);
        None where a loss's targets do not stack (histogram, mrf)."""
        if not all(STYLE_LOSSES[name].per_item for name, _ in self.terms):
            return None
        return {name: {layer: _fieldwise(torch.cat, [t[name][layer] for t in targets]) for layer in self.layers(name)}
                for name, _ in self.terms}

    def items(self, features: Features, targets: Mapping[str, Mapping[str, Any]],
              mask: torch.Tensor | None = None) -> torch.Tensor:
        """Each batch item's loss: the weighted sum over losses of each loss's mean over its layers."""
        total = torch.zeros((), device=next(iter(features.values())).device)
        for name, weight in self.terms:
            loss = STYLE_LOSSES[name]
            per_layer = [loss.loss(features[layer], target, mask) for layer, target in targets[name].items()]
            total = total + weight * loss.scale * torch.stack(per_layer).mean(0)
        return total

    def __call__(self, features: Features, targets: Mapping[str, Mapping[str, Any]],
                 mask: torch.Tensor | None = None) -> torch.Tensor:
        """The batch mean of `items`."""
        return self.items(features, targets, mask).mean()

    def of_styles(self, features: Features, ids: list[int], targets: Callable[[int], Mapping[str, Any]],
                  weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each batch item against the targets of its own style (item i: style ids[i]), as the batch mean,
        unweighted (what a log shows) and weighted by its style's weight (what trains). Targets that stack take
        one pass over the batch; the others one pass per style over its items (feature maps sliced, which costs
        a full-size gradient per slice in the backward pass), weighted by the style's share of the batch."""
        styles = sorted(set(ids))
        if len(styles) == 1:
            term = self(features, targets(styles[0]))
            return term, weights[styles[0]] * term
        stacked = self.per_item([targets(s) for s in ids])
        if stacked is not None:
            per_item = self.items(features, stacked)
            return per_item.mean(), (per_item.new_tensor([weights[s] for s in ids]) * per_item).mean()
        terms, weighted = [], []
        for s in styles:
            items = [i for i, x in enumerate(ids) if x == s]
            terms.append(len(items) / len(ids) * self({k: v[items] for k, v in features.items()}, targets(s)))
            weighted.append(weights[s] * terms[-1])
        return torch.stack(terms).sum(), torch.stack(weighted).sum()
