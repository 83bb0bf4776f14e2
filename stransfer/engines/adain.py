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
from stransfer.engines import EngineInputs, EngineSpec, Styles, pad_to_multiple, style_set
from stransfer.errors import ModelError, WeightsError
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


# Content skips: the content's own features at each resolution the decoder climbs back to. relu4_1 alone
# loses the fine detail (the 6000-step decoder without them reconstructed the content at distance 0.53,
# between a 2x and a 4x blur); fed in with weight skip_weight(alpha), they give alpha 0 back its edges and
# leave alpha 1, where they weigh nothing, the paper's decoder.
SKIP_LAYERS = ("relu3_1", "relu2_1", "relu1_1")


def skip_weight(alpha: float) -> float:
    # Squared so the output's distance from the photo climbs evenly with alpha: with 1 - alpha, alpha 0.5 kept
    # content distance 0.16 on the way from 0.02 (alpha 0) to 0.77 (alpha 1) and still looked like the photo;
    # squared it is 0.43 (held-out pairs, weights/README.md).
    return (1.0 - alpha) ** 2


class Decoder(nn.Module):
    """Mirror of the encoder: reflection-padded 3x3 convolutions and nearest 2x upsampling (no checkerboard),
    no normalisation layers, as in the paper; after each upsampling a 1x1 convolution (no bias, so a zero
    skip adds nothing) of the content skip at that resolution is added."""

    def __init__(self, arch: str = "vgg16") -> None:
        super().__init__()
        self.arch = arch
        layout = decoder_layout(arch)
        layers: list[nn.Module] = []
        skip_channels: list[int] = []
        channels = 512
        for i, item in enumerate(layout):
            if item == "U":
                layers.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
                skip_channels.append(channels)
                continue
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, int(item), 3)]
            if i < len(layout) - 1:
                layers.append(nn.ReLU())
            channels = int(item)
        self.net = nn.Sequential(*layers)
        # relu3_1, relu2_1, relu1_1 have the channels of the decoder right after each upsampling.
        self.skips = nn.ModuleDict({layer: nn.Conv2d(c, c, 1, bias=False)
                                    for layer, c in zip(SKIP_LAYERS, skip_channels, strict=True)})

    def forward(self, features: torch.Tensor, skips: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """`skips`: SKIP_LAYERS features of the content, already weighted; None when they weigh nothing."""
        x, ups = features, 0
        for layer in self.net:
            x = layer(x)
            if skips is not None and isinstance(layer, nn.Upsample):
                name = SKIP_LAYERS[ups]
                x = x + self.skips[name](skips[name].to(x.dtype))
                ups += 1
        return x


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
        raise ModelError(f"{path}: adain decoder does not match its architecture ({e})") from None
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
# 256 px (about 780 B/px of VGG activations at full resolution); rounded up for safety. The content skips
# (alpha < 1) held through the decode added 380 B/px more (1.12 GB above 256 px at 1024 px).
BYTES_PER_PIXEL = 1000
SKIP_BYTES_PER_PIXEL = 500


class AdaIN:
    name: ClassVar[str] = "adain"

    def __init__(self, encoder: VGGFeatures, decoder: Decoder, runtime: Runtime, alpha: float,
                 inputs: EngineInputs = EngineInputs(), tile: str = "auto", tile_overlap: int = 96) -> None:
        # Channels-last: oneDNN's convolutions run 1.3x faster in it on the CPU (1024 px bf16: 3.7 s, not 4.7 s).
        self.encoder = encoder.to(runtime.device, memory_format=torch.channels_last)
        self.decoder = decoder.to(runtime.device, memory_format=torch.channels_last)
        self.runtime, self.alpha, self.inputs = runtime, alpha, inputs
        self.tile, self.tile_overlap = tile, tile_overlap

    def prepare(self, styles: list[torch.Tensor]) -> Styles:
        return style_set(self.name, styles, self.inputs)

    def _encode(self, image: torch.Tensor, skips: bool = False) -> dict[str, torch.Tensor]:
        """relu4_1 of the image, and its content skips when asked for."""
        # Three poolings: pad to a multiple of 8 so the decoder's output covers the input exactly.
        image = pad_to_multiple(image, 8, minimum=16)
        layers = (ENCODER_LAYER, *SKIP_LAYERS) if skips else (ENCODER_LAYER,)
        with torch.no_grad(), self.runtime.autocast():
            return self.encoder(image.to(self.runtime.device, memory_format=torch.channels_last), layers)

    def _stats_of(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel mean and std at relu4_1; a large image is encoded in tiles whose sums are pooled, so the
        statistics are those of the whole picture at bounded memory."""
        h, w = image.shape[-2:]
        tile = tiling.choose_tile(self.tile, h, w, BYTES_PER_PIXEL, multiple=8)
        if not tile:
            return losses.mean_std(self._encode(image)[ENCODER_LAYER])
        total = total_sq = None
        count = 0
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                f = self._encode(image[..., top: top + tile, left: left + tile])[ENCODER_LAYER].float()
                s1, s2 = f.sum(dim=(2, 3), keepdim=True), f.pow(2).sum(dim=(2, 3), keepdim=True)
                total, total_sq = (s1, s2) if total is None else (total + s1, total_sq + s2)
                count += f.shape[2] * f.shape[3]
        mean = total / count
        return mean, (total_sq / count - mean.pow(2)).clamp_min(0).add(1e-5).sqrt()

    def style_stats(self, styles: Styles, long_side: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Channel mean and std of each style at relu4_1, the style resized so its long side is the output's
        (times style_scale); computed once per output size."""
        side = max(16, round(long_side * self.inputs.style_scale))
        return styles.at(long_side, lambda: [
            self._stats_of(resize(s, fit_long_side(s.shape[-2], s.shape[-1], side))) for s in styles.images])

    def _target(self, features: torch.Tensor, stats: list[tuple[torch.Tensor, torch.Tensor]],
                content_stats: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor | None) -> torch.Tensor:
        """The AdaIN target: styles interpolated by weight in feature space, or with a mask (at the padded
        image's size), the first style where it is white and the second (or the content itself) where it is
        black; then alpha."""
        features = features.float()
        if mask is None:
            blend = self.inputs.style_weights or [1.0 / len(stats)] * len(stats)
            target = sum(weight * adain(features, mean, std, content_stats)
                         for weight, (mean, std) in zip(blend, stats))
        else:
            m = F.interpolate(mask.to(features), size=features.shape[-2:], mode="bilinear", align_corners=False)
            second = adain(features, *stats[1], content_stats) if len(stats) > 1 else features
            target = m * adain(features, *stats[0], content_stats) + (1 - m) * second
        return self.alpha * target + (1.0 - self.alpha) * features

    def _transfer(self, image: torch.Tensor, stats: list[tuple[torch.Tensor, torch.Tensor]],
                  content_stats: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor | None) -> torch.Tensor:
        """Encode, AdaIN, decode (with the content skips at skip_weight(alpha)), for an image padded to 8."""
        weight = skip_weight(self.alpha)
        features = self._encode(image, skips=weight > 0)
        target = self._target(features[ENCODER_LAYER], stats, content_stats, mask)
        # In place: at 1024 px a weighted copy of the skips would cost another 0.45 GB.
        skips = {k: features[k].mul_(weight) for k in SKIP_LAYERS} if weight > 0 else None
        with self.runtime.autocast():
            return self.decoder(target, skips).float().clamp(0, 1).cpu().contiguous()

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, styles: Styles, on_event: EventCallback = ignore) -> torch.Tensor:
        h, w = content.shape[-2:]
        stats = self.style_stats(styles, max(h, w))
        mask = None if self.inputs.mask is None else resize(self.inputs.mask, (h, w))
        per_pixel = BYTES_PER_PIXEL + (SKIP_BYTES_PER_PIXEL if skip_weight(self.alpha) > 0 else 0)
        tile = tiling.choose_tile(self.tile, h, w, per_pixel, multiple=8)
        if not tile:
            # The mask is padded like the image in _encode, so it lines up with the feature map.
            padded_mask = None if mask is None else pad_to_multiple(mask, 8, 16)
            return self._transfer(content, stats, None, padded_mask)[..., :h, :w]
        outs = []
        for image in content.split(1):
            content_stats = self._stats_of(image)

            # A mask rides through the tiler as a 4th channel, so each tile gets its piece of it.
            def run_tile(piece: torch.Tensor) -> torch.Tensor:
                ph, pw = piece.shape[-2:]
                piece_mask = pad_to_multiple(piece[:, 3:], 8, 16) if piece.shape[1] > 3 else None
                return self._transfer(piece[:, :3], stats, content_stats, piece_mask)[..., :ph, :pw]

            whole = image if mask is None else torch.cat([image, mask], dim=1)
            outs.append(tiling.apply(whole, tile, self.tile_overlap, run_tile, multiple=8))
        return torch.cat(outs).clamp(0, 1)


def build(config: AdainConfig, runtime: Runtime, inputs: EngineInputs) -> AdaIN:
    tiling.check(config.tile, config.tile_overlap)
    path = find_model(config.model)
    decoder, payload = load_decoder(path)
    state = resolve(payload["backbone"], inputs.vgg_weights, inputs.on_event)[0]
    encoder = encoder_from(payload["backbone"], state)
    encoder_state = {k.removeprefix("layers."): v for k, v in encoder.state_dict().items()}
    if payload.get("encoder_digest") and payload["encoder_digest"] != tensor_digest(encoder_state):
        # A decoder inverts one encoder's features; with other VGG weights it would decode noise.
        raise WeightsError(f"{path}: this decoder was trained for other {payload['backbone']} weights than "
                           "the ones in use (--vgg-weights or the cache)")
    return AdaIN(encoder, decoder, runtime, config.alpha, inputs, config.tile, config.tile_overlap)


SPEC = EngineSpec(name="adain", config_type=AdainConfig, build=build, needs_style=True, batches=True)
