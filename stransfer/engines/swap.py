"""Chen & Schmidt (2016), "Fast Patch-based Style Transfer of Arbitrary Style": every patch of the content's
relu4_1 features is replaced by the style patch with the highest normalised cross-correlation, and the AdaIN
decoder renders the swapped features (it was trained on AdaIN's, not on these: see
weights/records/adain_vgg16.json). Unlike the paper, the content's features take the style's channel statistics
(AdaIN) before they are matched (swap_features)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from stransfer import losses, tiling
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec, Styles
from stransfer.engines.decoder import load_networks
from stransfer.engines.onepass import (ENCODER_LAYER, ChannelSums, OnePass, OnePassConfig, adain, channel_sums,
                                       image_mean_std, pooled_mean_std)
from stransfer.errors import ConfigError, UsageError

# Memory for one chunk of correlation scores (style patches x content positions, fp32). The paper's single
# convolution over all style patches holds 1.1 GB of scores for a 1024 px square against a 1024 px style and
# 17 GB at 2048 px (and its one-hot map as much again); in chunks with a running maximum the swap holds this
# much whatever the sizes.
SCORE_BYTES = 64 << 20


def _grid(length: int, patch_size: int, stride: int) -> int:
    """Patches along one side of a map of `length` cells."""
    return (length - patch_size) // stride + 1


def _pad_to_grid(features: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """Pad bottom/right (replicating the edge) so the patch grid covers every cell; the caller crops back."""
    h, w = features.shape[-2:]
    th = patch_size + -(-max(0, h - patch_size) // stride) * stride
    tw = patch_size + -(-max(0, w - patch_size) // stride) * stride
    return features if (th, tw) == (h, w) else F.pad(features, (0, tw - w, 0, th - h), mode="replicate")


def patch_chunks(maps: Sequence[torch.Tensor], patch_size: int, stride: int, chunk: int) -> Iterator[torch.Tensor]:
    """The patches (n, C, k, k) of each (1, C, H, W) map, row-major, map after map, in bands of whole patch
    rows holding about `chunk` patches (at least one row)."""
    k, s = patch_size, stride
    for m in maps:
        rows, cols = _grid(m.shape[2], k, s), _grid(m.shape[3], k, s)
        band = max(1, chunk // cols)
        for r0 in range(0, rows, band):
            r1 = min(rows, r0 + band)
            piece = m[:, :, r0 * s: (r1 - 1) * s + k, :].unfold(2, k, s).unfold(3, k, s)
            yield piece.permute(0, 2, 3, 1, 4, 5).reshape(-1, m.shape[1], k, k)


def best_matches(content: torch.Tensor, maps: Sequence[torch.Tensor], patch_size: int, stride: int,
                 chunk: int) -> torch.Tensor:
    """For each patch position of `content` (1, C, H, W), the index of the style patch (taken every `stride`
    cells of `maps`, in patch_chunks' order) of highest normalised cross-correlation, `chunk` at a time."""
    return losses.best_patch_index(content, patch_chunks(maps, patch_size, stride, chunk))[0]


def _patch_corners(maps: Sequence[torch.Tensor], patch_size: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patch, in patch_chunks' order: the row, in the maps' cells stacked one after another, of its
    top-left cell, and the width of its map (one cell down is that many rows on)."""
    corners, widths, start = [], [], 0
    for m in maps:
        h, w = m.shape[2:]
        ys = torch.arange(_grid(h, patch_size, stride)) * stride
        xs = torch.arange(_grid(w, patch_size, stride)) * stride
        corners.append((start + ys[:, None] * w + xs[None, :]).flatten())
        widths.append(torch.full((corners[-1].numel(),), w))
        start += h * w
    return torch.cat(corners), torch.cat(widths)


def rebuild(maps: Sequence[torch.Tensor], index: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """The swapped features (1, C, H, W): each chosen raw patch (taken every `stride` cells of `maps`) laid at
    its place, overlaps averaged. This is the paper's transposed convolution of the one-hot map, done as k*k
    gathers of the winning cells, so it costs the output's size rather than (style patches x positions)."""
    k = patch_size
    channels = maps[0].shape[1]
    parts = [m[0].permute(1, 2, 0).reshape(-1, channels) for m in maps]  # (cells, C): views of channels-last maps
    cells = parts[0] if len(parts) == 1 else torch.cat(parts)
    corners, widths = _patch_corners(maps, k, stride)
    rows, cols = index.shape
    chosen = index.flatten().cpu()
    base, width = corners[chosen].to(cells.device), widths[chosen].to(cells.device)
    out = cells.new_zeros(rows + k - 1, cols + k - 1, channels)
    count = cells.new_zeros(rows + k - 1, cols + k - 1, 1)
    for dy in range(k):
        for dx in range(k):
            at = (slice(dy, dy + rows), slice(dx, dx + cols))
            out[at] += cells[base + dy * width + dx].view(rows, cols, channels)
            count[at] += 1
    return (out / count).permute(2, 0, 1).unsqueeze(0)


def style_swap(content: torch.Tensor, maps: Sequence[torch.Tensor], patch_size: int = 3, stride: int = 1,
               chunk: int | None = None) -> torch.Tensor:
    """Content features (N, C, H, W) with every patch swapped for its best style patch from `maps` (each
    (1, C, h, w), fp32, at least patch_size a side, padded to the stride's grid). Every content patch is
    swapped (so each cell averages k*k patches); `stride` thins the style's patches only. `chunk`: style
    patches correlated at a time (default: SCORE_BYTES of scores)."""
    outs = []
    for one in content.float().split(1):
        padded = _pad_to_grid(one, patch_size, 1)
        positions = _grid(padded.shape[2], patch_size, 1) * _grid(padded.shape[3], patch_size, 1)
        size = chunk or max(1, SCORE_BYTES // (4 * positions))
        index = best_matches(padded, maps, patch_size, stride, size)
        outs.append(rebuild(maps, index, patch_size, stride)[..., : one.shape[2], : one.shape[3]])
    return torch.cat(outs)


def swap_features(content: torch.Tensor, maps: Sequence[torch.Tensor], patch_size: int = 3, stride: int = 1,
                  content_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                  style_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """style_swap of the content's features after they take the channel mean and std of `maps` (AdaIN; with
    `content_stats` in place of their own, as a tile takes its whole image's; `style_stats`: those of `maps`,
    when already known). The paper matches the raw features, whose statistics are the photo's: its patches
    then keep choosing the few style patches nearest the photo's own, and the swapped map copies a narrow part
    of the style. Matched in the style's statistics, the output gains more of the style than it gives up of the
    photo, a better trade than alpha gives (benchmarks/quality.py swap)."""
    mean, std = style_stats or pooled_mean_std(channel_sums(m) for m in maps)
    return style_swap(adain(content, mean, std, content_stats), maps, patch_size, stride)


@dataclass(frozen=True)
class SwapTarget:
    """A style's relu4_1 map (in tiles, for a large style), padded to the stride's grid and channels-last, and
    each map's channel sums, so the statistics the content is matched in are not summed again per tile or
    frame."""

    maps: list[torch.Tensor]
    sums: list[ChannelSums]


class SwapTransform:
    """Style-swap as a one-pass feature transform; several styles pool their patches and their statistics. A
    tile is normalised with its whole image's statistics, as in AdaIN."""

    def __init__(self, patch_size: int, stride: int) -> None:
        self.patch_size, self.stride = patch_size, stride

    def style_target(self, engine: OnePass, style: torch.Tensor) -> SwapTarget:
        tile = engine.encoding_tile(style)
        maps = [engine.encode(style)[ENCODER_LAYER]] if not tile else list(engine.encode_tiles(style, tile))
        # Channels-last, so a cell's C values are contiguous for rebuild's gathers; a map smaller than a patch
        # is padded to one.
        maps = [_pad_to_grid(m.float(), self.patch_size, self.stride).contiguous(memory_format=torch.channels_last)
                for m in maps]
        return SwapTarget(maps, [channel_sums(m) for m in maps])

    def whole_image(self, engine: OnePass, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return image_mean_std(engine, image)

    def __call__(self, features: torch.Tensor, targets: list[SwapTarget], weights: list[float],
                 whole: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        # Several styles pool their patches: each content patch takes the best of all of them, so blend
        # weights have no meaning here (StyleSwap.prepare refuses unequal ones).
        maps = [m for t in targets for m in t.maps]
        style_stats = pooled_mean_std(s for t in targets for s in t.sums)
        return swap_features(features, maps, self.patch_size, self.stride, whole, style_stats)


@dataclass(frozen=True)
class SwapConfig(OnePassConfig):
    """AdaIN's settings (its decoder renders the swapped features; alpha 1 = swapped, 0 = the content rebuilt,
    with the same content skips, tiling), plus the patches."""

    # The shipped decoder renders swapped features, which it never trained on, with more of the style and less
    # of the photo than AdaIN's, so swap keeps more of the content skips than AdaIN's default alpha 1
    # (benchmarks/quality.py swap; weights/records/adain_vgg16.json).
    alpha: float = param(0.7, ge=0.0, le=1.0)
    # The paper's 3; larger patches copy larger pieces of the style at k*k the cost of each correlation.
    patch_size: int = param(3, ge=1, le=9, help="Patch side in relu4_1 cells, 8 px each.")
    # The content's patches are all swapped whatever the stride; 2 does 4x less correlation work for about the
    # same style distance (benchmarks/swap_speed.py).
    stride: int = param(2, ge=1, le=9, help="Step between the style's patches, at most the patch side.")


class StyleSwap(OnePass):
    name: ClassVar[str] = "swap"

    def prepare(self, styles: list[torch.Tensor]) -> Styles:
        weights = self.inputs.style_weights
        if weights is not None and max(weights) - min(weights) > 1e-9:
            raise UsageError("`method` swap pools the patches of all its styles, so `style_blend` weights cannot "
                             "apply (give equal ones, or use `method` adain)")
        return super().prepare(styles)


def build(config: SwapConfig, runtime: Runtime, inputs: EngineInputs) -> StyleSwap:
    if config.stride > config.patch_size:
        raise ConfigError(f"'stride' must be at most 'patch_size' ({config.patch_size}), or some of the style's "
                          f"cells would be in no patch (got {config.stride})")
    overlap = tiling.overlap(config.tile, config.tile_overlap)
    encoder, decoder = load_networks(config.model, inputs)
    return StyleSwap(SwapTransform(config.patch_size, config.stride), encoder, decoder, runtime, config.alpha,
                     inputs, config.tile, overlap)


SPEC = EngineSpec(name="swap", config_type=SwapConfig, build=build, style_input="images", batches=True)
