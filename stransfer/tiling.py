"""Huge images in bounded memory: stylise overlapping tiles and blend them with feathered weights, so the
working set depends on the tile size, not on the image size."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stransfer.config import param
from stransfer.errors import ConfigError, InputError
from stransfer.images import resize

# The working set we allow one network pass: a quarter of the free memory, and never more than 2 GiB, so a
# 4096 px image stays within a few GB whatever the machine.
MAX_WORKING_SET = 2 << 30
DEFAULT_OVERLAP = 96  # about the receptive field of the networks' and the Gatys losses' deepest taps
MIN_AUTO_TILE = 256  # the smallest tile "auto" picks; below it the overlap would be most of each tile
MAX_TILE = 16384  # the largest --size: a tile beyond it could never be used
# Past this many tiles a run spends its time on tile edges (a 512 px image in 64 px tiles is 400); an image
# that needs more wants larger tiles.
MAX_TILES = 10_000


def available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this platform: assume a modest laptop
        return 8 << 30


def working_budget() -> int:
    return min(available_memory() // 4, MAX_WORKING_SET)


def fit_budget(height: int, width: int, bytes_per_pixel: int) -> tuple[int, int]:
    """The largest (h, w) of the same shape whose working set fits the budget (the size itself if it fits)."""
    scale = min(1.0, math.sqrt(working_budget() / bytes_per_pixel / (height * width)))
    return max(1, round(height * scale)), max(1, round(width * scale))


def parse_tile(value: str) -> int | None:
    """"auto" -> None (decide per image), "off" -> 0 (never tile), "N" -> N."""
    if value == "auto":
        return None
    if value == "off":
        return 0
    try:
        tile = int(value)
    except ValueError:
        raise ConfigError(f"'tile' must be auto, off or a size in pixels (got {value!r})") from None
    if not 64 <= tile <= MAX_TILE:
        raise ConfigError(f"'tile' must be auto, off or 64 to {MAX_TILE} pixels (got {tile})")
    return tile


@dataclass(frozen=True)
class TileConfig:
    """The tile settings of every engine that tiles."""

    tile: str = param("auto", help=("auto (tile only images whose working set would pass the memory budget), "
                                    "off, or the longest tile side in pixels."))
    tile_overlap: int | None = param(None, ge=0, help=(
        f"Pixels two tiles share and blend across (default {DEFAULT_OVERLAP}, or half the tile when smaller)."))


def overlap(setting: str, given: int | None) -> int:
    """The overlap to use with a tile setting. Unset, it follows the tile (never more than half of it); set, it is
    refused when it could not make progress: two tiles share at most half of each, else each step moves a few
    pixels and a thumbnail becomes thousands of tiles."""
    tile = parse_tile(setting)
    smallest = MIN_AUTO_TILE if tile is None else tile
    if given is None:
        return DEFAULT_OVERLAP if tile == 0 else min(DEFAULT_OVERLAP, smallest // 2)
    if tile != 0 and given > smallest // 2:
        raise ConfigError(f"'tile_overlap' must be at most half the tile side, {smallest // 2} px for tile "
                          f"{setting} (got {given}): lower `tile_overlap` or raise `tile`")
    return given


def choose_tile(setting: str, height: int, width: int, bytes_per_pixel: int, multiple: int) -> int:
    """Tile side for an image, 0 meaning no tiling. `bytes_per_pixel` is the engine's measured working set."""
    tile = parse_tile(setting)
    if tile is None:
        budget = working_budget()
        if height * width * bytes_per_pixel <= budget:
            return 0
        tile = max(MIN_AUTO_TILE, int(math.sqrt(budget / bytes_per_pixel)))
    return 0 if tile == 0 or tile >= max(height, width) else max(multiple, tile // multiple * multiple)


def starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Tile offsets, as few as cover the length, spread evenly: consecutive tiles share at least `overlap`
    pixels, and every offset is a multiple of `multiple` so each tile sees the network's pooling grid as the
    whole image would. The last tile runs to the end (up to multiple - 1 pixels longer than `tile`)."""
    if tile >= length:
        return [0]
    step_bound = max(multiple, tile - overlap - multiple)  # rounding to the grid may widen a step by < multiple
    count = 1 + math.ceil((length - tile) / step_bound)
    last = (length - tile) // multiple * multiple
    return sorted({min(last, int(i * last / (count - 1)) // multiple * multiple) for i in range(count)} | {last})


def _ramp(size: int, fade_start: bool, fade_end: bool, overlap: int) -> torch.Tensor:
    r = torch.ones(size)
    if overlap > 0:
        edge = (torch.arange(size, dtype=torch.float32) + 0.5) / overlap
        if fade_start:
            r = torch.minimum(r, edge)
        if fade_end:
            r = torch.minimum(r, edge.flip(0))
    return r.clamp_min(1e-3)


def fitted_side(length: int, tile: int, overlap: int, multiple: int) -> int:
    """The shortest side, at most `tile`, that covers `length` in as many tiles as `tile` does. A tile only a
    little shorter than the image would otherwise leave its neighbour almost all overlap: a 1024 px image in
    tiles of 1008 px, 2 x 2 of them, is 3.9x the image's pixels; in tiles fitted to 568 px, 1.23x."""
    count = len(starts(length, tile, overlap, multiple))
    side = tile
    while side - multiple >= 2 * overlap and len(starts(length, side - multiple, overlap, multiple)) == count:
        side -= multiple
    return side


def regions(height: int, width: int, tile: int, overlap: int, multiple: int) -> list[tuple[slice, slice]]:
    """The (rows, columns) of every tile, row by row; `tile` is the longest side a tile may have."""
    tile_h, tile_w = fitted_side(height, tile, overlap, multiple), fitted_side(width, tile, overlap, multiple)
    tops, lefts = starts(height, tile_h, overlap, multiple), starts(width, tile_w, overlap, multiple)
    if len(tops) * len(lefts) > MAX_TILES:
        raise InputError(f"{width}x{height} px in {tile} px tiles would be {len(tops) * len(lefts):,} tiles, more "
                         f"than {MAX_TILES:,}: use a larger `tile` (or `tile` auto) or a smaller `size`")
    return [(slice(top, height if top == tops[-1] else min(height, top + tile_h)),
             slice(left, width if left == lefts[-1] else min(width, left + tile_w)))
            for top in tops for left in lefts]


def feather(rows: slice, cols: slice, height: int, width: int, overlap: int) -> torch.Tensor:
    """(1, 1, h, w) weights of one tile: 1 inside, fading linearly to the edges it shares with other tiles."""
    wy = _ramp(rows.stop - rows.start, rows.start > 0, rows.stop < height, overlap)
    wx = _ramp(cols.stop - cols.start, cols.start > 0, cols.stop < width, overlap)
    return (wy[:, None] * wx[None, :])[None, None]


def apply(image: torch.Tensor, tile: int, overlap: int, fn: Callable[[torch.Tensor], torch.Tensor],
          multiple: int = 8) -> torch.Tensor:
    """fn over overlapping tiles of `image` (1, C, H, W), blended: each tile's weight fades linearly to its
    inner edges over `overlap` pixels, so no seam shows where two tiles meet."""
    _, _, h, w = image.shape
    out = torch.zeros(1, 3, h, w)
    weight = torch.zeros(1, 1, h, w)
    for rows, cols in regions(h, w, tile, overlap, multiple):
        mask = feather(rows, cols, h, w, overlap)
        out[..., rows, cols] += fn(image[..., rows, cols]).float().cpu() * mask
        weight[..., rows, cols] += mask
    return out / weight


class WholePictureNorm(nn.InstanceNorm2d):
    """Instance norm that can record one pass's statistics (`recording`) and reuse them (`frozen`): the tiles of a
    huge image all take those of the whole (downscaled) picture, so neighbouring tiles agree where they meet."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, affine=True)
        self.recording = False
        self.frozen: tuple[torch.Tensor, torch.Tensor] | None = None

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """`x` normalised, before the affine: by the frozen statistics if any (recorded from `x` first when
        recording), by its own otherwise."""
        if self.recording:
            xf = x.float()
            self.frozen = (xf.mean(dim=(2, 3), keepdim=True), xf.var(dim=(2, 3), keepdim=True, unbiased=False))
        if self.frozen is None:
            return F.instance_norm(x, eps=self.eps)
        mean, var = self.frozen
        return (x - mean.to(x.dtype)) * torch.rsqrt(var.to(x.dtype) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen is None and not self.recording:
            return super().forward(x)
        return self.normalise(x) * self.weight.view(1, -1, 1, 1).to(x.dtype) + self.bias.view(1, -1, 1, 1).to(x.dtype)


def apply_normalised_as_whole(images: torch.Tensor, tile: int, overlap: int,
                              fn: Callable[[torch.Tensor], torch.Tensor], norms: list[WholePictureNorm],
                              bytes_per_pixel: int, multiple: int) -> torch.Tensor:
    """`apply` to each image of the batch, every tile normalised by `norms` with the statistics of the whole
    picture (one pass over it, downscaled only as far as memory requires): tiles normalised by their own
    statistics would each get their own colours."""
    h, w = images.shape[-2:]
    outs = []
    for image in images.split(1):
        try:
            for norm in norms:
                norm.recording = True
            fn(resize(image, fit_budget(h, w, bytes_per_pixel)))
            for norm in norms:
                norm.recording = False
            outs.append(apply(image, tile, overlap, fn, multiple=multiple))
        finally:  # a failed pass leaves the norms as they were, for the batch's next image
            for norm in norms:
                norm.recording, norm.frozen = False, None
    return torch.cat(outs).clamp(0, 1)
