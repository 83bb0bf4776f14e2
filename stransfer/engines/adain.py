"""Huang & Belongie (2017), "Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization":
encode with VGG up to relu4_1, align channel statistics to the style's, decode with a trained decoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stransfer import losses, tiling
from stransfer.backbone import ARCHITECTURES, VGGFeatures
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec, pad_to_multiple
from stransfer.errors import UsageError, WeightsError
from stransfer.events import EventCallback, ignore
from stransfer.images import fit_long_side, resize
from stransfer.weights import find_model, load_model, resolve, tensor_digest

ENCODER_LAYER = "relu4_1"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
          content_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Content features re-normalised to the style's channel statistics; in fp32 even under bf16 autocast,
    where the standard deviation of small activations would lose most of its digits. `content_stats`
    replaces the features' own statistics (a tile takes those of its whole image)."""
    mean, std = content_stats or losses.mean_std(content)
    return (content.float() - mean) / std * style_std + style_mean


def decoder_layout(arch: str) -> list[int | str]:
    """Output channels of each decoder convolution ("U" = 2x upsampling): the encoder up to relu4_1 run
    backwards, so each decoder conv undoes one encoder conv (512 -> 256, U, 256 -> 256, ... -> 3)."""
    inputs: list[int | str] = []
    channels, pools = 3, 0
    for item in ARCHITECTURES[arch]:
        if item == "M":
            pools += 1
            inputs.append("U")
            continue
        inputs.append(channels)
        channels = int(item)
        if pools == 3:  # the first conv of block 4 ends at relu4_1
            break
    return list(reversed(inputs))


class Decoder(nn.Module):
    """Mirror of the encoder: reflection-padded 3x3 convolutions and nearest 2x upsampling (no checkerboard),
    no normalisation layers, as in the paper."""

    def __init__(self, arch: str = "vgg16") -> None:
        super().__init__()
        self.arch = arch
        layout = decoder_layout(arch)
        layers: list[nn.Module] = []
        channels = 512
        for i, item in enumerate(layout):
            if item == "U":
                layers.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
                continue
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, int(item), 3)]
            if i < len(layout) - 1:
                layers.append(nn.ReLU())
            channels = int(item)
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def encoder_from(arch: str, state: dict[str, torch.Tensor]) -> VGGFeatures:
    encoder = VGGFeatures(arch, deepest=ENCODER_LAYER)
    encoder.load_weights(state)
    return encoder


def load_decoder(path: Path) -> tuple[Decoder, dict[str, Any]]:
    payload = load_model(path, "adain")
    try:
        decoder = Decoder(payload["backbone"])
        decoder.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise WeightsError(f"{path}: adain decoder does not match its architecture ({e})") from None
    return decoder.eval().requires_grad_(False), payload


@dataclass(frozen=True)
class AdainConfig:
    # NAME of a decoder in weights/ (or $STRANSFER_HOME/models), or a path to a .pth file.
    model: str = param("adain_vgg16")
    # 1 = the style's statistics; 0 = the decoder's reconstruction of the content.
    alpha: float = param(1.0, ge=0.0, le=1.0)
    # "auto": tile only images whose working set would pass the memory budget (stransfer/tiling.py);
    # "off", or a tile side in pixels.
    tile: str = param("auto")
    # Pixels two tiles share and blend across; about the encoder's and decoder's receptive fields.
    tile_overlap: int = param(96, ge=0)


# Working set of one encode + decode pass per pixel: peak RSS at 1024 px, fp32, was 0.77 GB above that at
# 256 px (about 780 B/px of VGG activations at full resolution); rounded up for safety.
BYTES_PER_PIXEL = 1000


class AdaIN:
    name: ClassVar[str] = "adain"

    def __init__(self, encoder: VGGFeatures, decoder: Decoder, runtime: Runtime, styles: list[torch.Tensor],
                 blend: list[float], alpha: float, style_name: str = "style", mask: torch.Tensor | None = None,
                 style_scale: float = 1.0, tile: str = "auto", tile_overlap: int = 96) -> None:
        if not styles:
            raise ValueError("adain needs a style image")
        self.encoder, self.decoder = encoder.to(runtime.device), decoder.to(runtime.device)
        self.runtime, self.styles, self.blend, self.alpha = runtime, styles, blend, alpha
        self.style_name, self.mask, self.style_scale = style_name, mask, style_scale
        self.tile, self.tile_overlap = tile, tile_overlap
        self._stats: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        # Three poolings: pad to a multiple of 8 so the decoder's output covers the input exactly.
        image = pad_to_multiple(image, 8, minimum=16)
        with torch.no_grad(), self.runtime.autocast():
            return self.encoder(image.to(self.runtime.device), [ENCODER_LAYER])[ENCODER_LAYER]

    def _stats_of(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel mean and std at relu4_1; a large image is encoded in tiles whose sums are pooled, so the
        statistics are those of the whole picture at bounded memory."""
        h, w = image.shape[-2:]
        tile = tiling.choose_tile(self.tile, h, w, BYTES_PER_PIXEL, multiple=8)
        if not tile:
            return losses.mean_std(self._encode(image))
        total = total_sq = None
        count = 0
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                f = self._encode(image[..., top: top + tile, left: left + tile]).float()
                s1, s2 = f.sum(dim=(2, 3), keepdim=True), f.pow(2).sum(dim=(2, 3), keepdim=True)
                total, total_sq = (s1, s2) if total is None else (total + s1, total_sq + s2)
                count += f.shape[2] * f.shape[3]
        mean = total / count
        return mean, (total_sq / count - mean.pow(2)).clamp_min(0).add(1e-5).sqrt()

    def style_stats(self, long_side: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Channel mean and std of each style at relu4_1, the style resized so its long side is the output's
        (times style_scale); computed once per output size."""
        if long_side not in self._stats:
            side = max(16, round(long_side * self.style_scale))
            self._stats[long_side] = [self._stats_of(resize(s, fit_long_side(s.shape[-2], s.shape[-1], side)))
                                      for s in self.styles]
        return self._stats[long_side]

    def _target(self, features: torch.Tensor, stats: list[tuple[torch.Tensor, torch.Tensor]],
                content_stats: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor | None) -> torch.Tensor:
        """The AdaIN target: styles interpolated by weight in feature space, or with a mask (at the padded
        image's size), the first style where it is white and the second (or the content itself) where it is
        black; then alpha."""
        features = features.float()
        if mask is None:
            target = sum(weight * adain(features, mean, std, content_stats)
                         for weight, (mean, std) in zip(self.blend, stats))
        else:
            m = F.interpolate(mask.to(features), size=features.shape[-2:], mode="bilinear", align_corners=False)
            second = adain(features, *stats[1], content_stats) if len(stats) > 1 else features
            target = m * adain(features, *stats[0], content_stats) + (1 - m) * second
        return self.alpha * target + (1.0 - self.alpha) * features

    def _decode(self, target: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            return self.decoder(target).float().clamp(0, 1).cpu()

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, on_event: EventCallback = ignore,
                styles: list[torch.Tensor] | None = None) -> torch.Tensor:
        h, w = content.shape[-2:]
        if styles is not None:  # e.g. recoloured to this content: statistics for this call only
            saved, self.styles, self._stats = (self.styles, self._stats), styles, {}
            try:
                return self.stylize(content, on_event)
            finally:
                self.styles, self._stats = saved
        stats = self.style_stats(max(h, w))
        mask = None if self.mask is None else resize(self.mask, (h, w))
        tile = tiling.choose_tile(self.tile, h, w, BYTES_PER_PIXEL, multiple=8)
        if not tile:
            # The mask is padded like the image in _encode, so it lines up with the feature map.
            padded_mask = None if mask is None else pad_to_multiple(mask, 8, 16)
            return self._decode(self._target(self._encode(content), stats, None, padded_mask))[..., :h, :w]
        outs = []
        for image in content.split(1):
            content_stats = self._stats_of(image)

            # A mask rides through the tiler as a 4th channel, so each tile gets its piece of it.
            def run_tile(piece: torch.Tensor) -> torch.Tensor:
                ph, pw = piece.shape[-2:]
                piece_mask = pad_to_multiple(piece[:, 3:], 8, 16) if piece.shape[1] > 3 else None
                target = self._target(self._encode(piece[:, :3]), stats, content_stats, piece_mask)
                return self._decode(target)[..., :ph, :pw]

            whole = image if mask is None else torch.cat([image, mask], dim=1)
            outs.append(tiling.apply(whole, tile, self.tile_overlap, run_tile, multiple=8))
        return torch.cat(outs).clamp(0, 1)


def build(config: AdainConfig, runtime: Runtime, inputs: EngineInputs) -> AdaIN:
    if not inputs.styles:
        raise UsageError("-m adain needs a style image: -s FILE")
    tiling.parse_tile(config.tile)
    path = find_model(config.model)
    decoder, payload = load_decoder(path)
    state = resolve(payload["backbone"], inputs.vgg_weights, inputs.on_event)[0]
    encoder = encoder_from(payload["backbone"], state)
    encoder_state = {k.removeprefix("layers."): v for k, v in encoder.state_dict().items()}
    if payload.get("encoder_digest") and payload["encoder_digest"] != tensor_digest(encoder_state):
        # A decoder inverts one encoder's features; with other VGG weights it would decode noise.
        raise WeightsError(f"{path}: this decoder was trained for other {payload['backbone']} weights than "
                           "the ones in use (--vgg-weights or the cache)")
    blend = inputs.style_weights or [1.0 / len(inputs.styles)] * len(inputs.styles)
    return AdaIN(encoder, decoder, runtime, inputs.styles, blend, config.alpha, "+".join(inputs.style_names),
                 inputs.mask, inputs.style_scale, config.tile, config.tile_overlap)


SPEC = EngineSpec(name="adain", config_type=AdainConfig, build=build, needs_style=True, batches=True,
                  summary="arbitrary style in one pass (Huang & Belongie): encoder, AdaIN, trained decoder")
