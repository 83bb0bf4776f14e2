"""One-pass engines: encode with the shared VGG to relu4_1, transform the features toward the style, decode with
a trained decoder. The transform (AdaIN's statistics, style-swap's patches) is the only part that differs; the
encoding, decoding, content skips, alpha, masks and tiling are written here once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F

from stransfer import losses, tiling, winograd
from stransfer.backbone import VGGFeatures
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, Styles, pad_to_multiple, style_set
from stransfer.events import EventCallback, ignore
from stransfer.images import fit_long_side, resize

ENCODER_LAYER = "relu4_1"

# Content skips (not in the paper): the content's own features at each resolution the decoder climbs back to.
# relu4_1 alone loses the fine detail (a decoder without them rebuilds the photo about as sharp as a 2x to 4x
# blur: benchmarks/blur_floor.py); fed in with weight skip_weight(alpha), they give alpha 0 back its edges and
# leave alpha 1, where they weigh nothing, the paper's decoder.
SKIP_LAYERS = ("relu3_1", "relu2_1", "relu1_1")

# Working set of one encode + decode pass per output pixel, the most of AdaIN and swap at either precision, and
# what the content skips (alpha < 1) add, held through the decode: what --tile auto budgets with
# (benchmarks/batch_memory.py measures the peaks). The margin covers run-to-run noise and the holes that reusing
# freed blocks leaves (device.reuse_freed_memory), which the next, slightly larger block does not fit.
BYTES_PER_PIXEL = 1400
SKIP_BYTES_PER_PIXEL = 550


def skip_weight(alpha: float) -> float:
    # Squared so the output's distance from the photo climbs evenly with alpha: with 1 - alpha the skips still
    # weigh so much at alpha 0.5 that it looks like the photo (benchmarks/quality.py adain --alpha 0.5).
    return (1.0 - alpha) ** 2


class FeatureTransform(Protocol):
    """What one family of one-pass engines does to the content's relu4_1 features."""

    def style_target(self, engine: OnePass, style: torch.Tensor) -> Any:
        """What one style image (already at the output's scale) contributes, computed once per output size."""
        ...

    def whole_image(self, engine: OnePass, image: torch.Tensor) -> Any:
        """What a tile must know of its whole image (None when the transform is local)."""
        ...

    def __call__(self, features: torch.Tensor, targets: list[Any], weights: list[float],
                 whole: Any) -> torch.Tensor:
        """fp32 features moved toward `targets` (several styles combined by `weights`)."""
        ...


class OnePass:
    """An encoder, a decoder and a feature transform, as an Engine."""

    name: ClassVar[str]

    def __init__(self, transform: FeatureTransform, encoder: VGGFeatures, decoder: torch.nn.Module,
                 runtime: Runtime, alpha: float, inputs: EngineInputs = EngineInputs(), tile: str = "auto",
                 tile_overlap: int = tiling.DEFAULT_OVERLAP) -> None:
        # Channels-last: oneDNN's convolutions run faster in it on the CPU (benchmarks/layout.py).
        self.encoder = winograd.adopt(encoder.to(runtime.device, memory_format=torch.channels_last), runtime)
        self.decoder = winograd.adopt(decoder.to(runtime.device, memory_format=torch.channels_last), runtime)
        self.transform = transform
        self.runtime, self.alpha, self.inputs = runtime, alpha, inputs
        self.tile, self.tile_overlap = tile, tile_overlap

    def prepare(self, styles: list[torch.Tensor]) -> Styles:
        return style_set(self.name, styles, self.inputs)

    def encode(self, image: torch.Tensor, skips: bool = False) -> dict[str, torch.Tensor]:
        """relu4_1 of the image, and its content skips when asked for."""
        # Three poolings: pad to a multiple of 8 so the decoder's output covers the input exactly.
        image = pad_to_multiple(image, 8, minimum=16)
        layers = (ENCODER_LAYER, *SKIP_LAYERS) if skips else (ENCODER_LAYER,)
        with torch.no_grad(), self.runtime.autocast():
            return self.encoder(image.to(self.runtime.device, memory_format=torch.channels_last), layers)

    def encoding_tile(self, image: torch.Tensor) -> int:
        """Tile side for encoding the whole of a large image piece by piece (0: in one pass)."""
        return tiling.choose_tile(self.tile, *image.shape[-2:], BYTES_PER_PIXEL, multiple=8)

    def encode_tiles(self, image: torch.Tensor, tile: int) -> Iterator[torch.Tensor]:
        """relu4_1 of non-overlapping tiles of the image, one at a time, so memory is bounded by the tile."""
        h, w = image.shape[-2:]
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                yield self.encode(image[..., top: top + tile, left: left + tile])[ENCODER_LAYER]

    def style_targets(self, styles: Styles, long_side: int) -> list[Any]:
        """Each style's target, the style resized so its long side is the output's (times style_scale);
        computed once per output size."""
        side = max(16, round(long_side * self.inputs.style_scale))
        return styles.at(long_side, lambda: [
            self.transform.style_target(self, resize(s, fit_long_side(s.shape[-2], s.shape[-1], side)))
            for s in styles.images])

    def _target(self, features: torch.Tensor, targets: list[Any], whole: Any,
                mask: torch.Tensor | None) -> torch.Tensor:
        """The transformed features: styles combined by the transform, or with a mask (at the padded image's
        size), the first style where it is white and the second (or the content itself) where it is black;
        then alpha."""
        features = features.float()
        if mask is None:
            blend = self.inputs.style_weights or [1.0 / len(targets)] * len(targets)
            target = self.transform(features, targets, blend, whole)
        else:
            m = F.interpolate(mask.to(features), size=features.shape[-2:], mode="bilinear", align_corners=False)
            second = self.transform(features, targets[1:2], [1.0], whole) if len(targets) > 1 else features
            target = m * self.transform(features, targets[:1], [1.0], whole) + (1 - m) * second
        return self.alpha * target + (1.0 - self.alpha) * features

    def _transfer(self, image: torch.Tensor, targets: list[Any], whole: Any,
                  mask: torch.Tensor | None) -> torch.Tensor:
        """Encode, transform, decode (with the content skips at skip_weight(alpha)), for an image padded to 8."""
        weight = skip_weight(self.alpha)
        features = self.encode(image, skips=weight > 0)
        target = self._target(features[ENCODER_LAYER], targets, whole, mask)
        # In place: at 1024 px a weighted copy of the skips would cost another 0.45 GB.
        skips = {k: features[k].mul_(weight) for k in SKIP_LAYERS} if weight > 0 else None
        with self.runtime.autocast():
            return self.decoder(target, skips).float().clamp(0, 1).cpu().contiguous()

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, styles: Styles, on_event: EventCallback = ignore) -> torch.Tensor:
        h, w = content.shape[-2:]
        targets = self.style_targets(styles, max(h, w))
        mask = None if self.inputs.mask is None else resize(self.inputs.mask, (h, w))
        per_pixel = BYTES_PER_PIXEL + (SKIP_BYTES_PER_PIXEL if skip_weight(self.alpha) > 0 else 0)
        tile = tiling.choose_tile(self.tile, h, w, per_pixel, multiple=8)
        if not tile:
            # The mask is padded like the image in encode(), so it lines up with the feature map.
            padded_mask = None if mask is None else pad_to_multiple(mask, 8, 16)
            return self._transfer(content, targets, None, padded_mask)[..., :h, :w]
        outs = []
        for image in content.split(1):
            whole = self.transform.whole_image(self, image)

            # A mask rides through the tiler as a 4th channel, so each tile gets its piece of it.
            def run_tile(piece: torch.Tensor) -> torch.Tensor:
                ph, pw = piece.shape[-2:]
                piece_mask = pad_to_multiple(piece[:, 3:], 8, 16) if piece.shape[1] > 3 else None
                return self._transfer(piece[:, :3], targets, whole, piece_mask)[..., :ph, :pw]

            joined = image if mask is None else torch.cat([image, mask], dim=1)
            outs.append(tiling.apply(joined, tile, self.tile_overlap, run_tile, multiple=8))
        return torch.cat(outs).clamp(0, 1)


@dataclass(frozen=True)
class OnePassConfig(tiling.TileConfig):
    """Settings every one-pass engine has."""

    model: str = param("adain_vgg16", help="Trained model: a NAME from `stransfer models` or a .pth path.")
    alpha: float = param(1.0, ge=0.0, le=1.0, help="Content-style trade-off: 0 content, 1 full style.")


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
          content_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Content features re-normalised to the style's channel statistics; in fp32 even under bf16 autocast,
    where the standard deviation of small activations would lose most of its digits. `content_stats`
    replaces the features' own statistics (a tile takes those of its whole image)."""
    mean, std = content_stats or losses.mean_std(content)
    return (content.float() - mean) / std * style_std + style_mean


ChannelSums = tuple[torch.Tensor, torch.Tensor, int]


def channel_sums(features: torch.Tensor) -> ChannelSums:
    """Per-channel sum and sum of squares (fp32, (1, C, 1, 1)) over the cells of a (1, C, h, w) map, and its
    cell count: what pooled_mean_std adds up."""
    f = features.float()
    return f.sum(dim=(2, 3), keepdim=True), f.pow(2).sum(dim=(2, 3), keepdim=True), f.shape[2] * f.shape[3]


def pooled_mean_std(sums: Iterable[ChannelSums]) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel mean and std, fp32, (1, C, 1, 1), of several maps' channel_sums taken as one picture: the tiles
    of a large image, or the maps of several styles."""
    total = total_sq = None
    count = 0
    for s1, s2, cells in sums:
        total, total_sq = (s1, s2) if total is None else (total + s1, total_sq + s2)
        count += cells
    mean = total / count
    return mean, (total_sq / count - mean.pow(2)).clamp_min(0).add(1e-5).sqrt()


def image_mean_std(engine: OnePass, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel mean and std at relu4_1; a large image is encoded in tiles whose sums are pooled, so the
    statistics are those of the whole picture at bounded memory."""
    tile = engine.encoding_tile(image)
    if not tile:
        return losses.mean_std(engine.encode(image)[ENCODER_LAYER])
    return pooled_mean_std(channel_sums(f) for f in engine.encode_tiles(image, tile))
