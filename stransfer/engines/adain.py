"""Huang & Belongie (2017), "Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization":
encode with VGG up to relu4_1, align channel statistics to the style's, decode with a trained decoder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from stransfer import losses, tiling
from stransfer.backbone import ARCHITECTURES, VGGFeatures
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec
# skip_weight stays importable from here, where the decoder it weighs for lives.
from stransfer.engines.onepass import ENCODER_LAYER, SKIP_LAYERS, OnePass, skip_weight  # noqa: F401
from stransfer.errors import ModelError, WeightsError
from stransfer.weights import find_model, load_model, resolve, tensor_digest

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
                # In place: the upsampling made x and nothing else holds it (nor does its backward).
                x.add_(self.skips[name](skips[name].to(x.dtype)))
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
    # "off", or the longest tile side in pixels.
    tile: str = param("auto")
    # Pixels two tiles share and blend across; about the encoder's and decoder's receptive fields.
    tile_overlap: int = param(96, ge=0)


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


class AdainTransform:
    """Channel statistics: the style's mean and std at relu4_1 replace the content's."""

    def style_target(self, engine: OnePass, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.whole_image(engine, style)

    def whole_image(self, engine: OnePass, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return image_mean_std(engine, image)

    def __call__(self, features: torch.Tensor, targets: list[tuple[torch.Tensor, torch.Tensor]],
                 weights: list[float], whole: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Styles interpolated by weight in feature space; a tile normalises with its whole image's statistics."""
        return sum(weight * adain(features, mean, std, whole) for weight, (mean, std) in zip(weights, targets))


class AdaIN(OnePass):
    name: ClassVar[str] = "adain"

    def __init__(self, encoder: VGGFeatures, decoder: Decoder, runtime: Runtime, alpha: float,
                 inputs: EngineInputs = EngineInputs(), tile: str = "auto", tile_overlap: int = 96) -> None:
        super().__init__(AdainTransform(), encoder, decoder, runtime, alpha, inputs, tile, tile_overlap)


def load_networks(model: str, inputs: EngineInputs) -> tuple[VGGFeatures, Decoder]:
    """A decoder file and the encoder it was trained for, checked to belong together."""
    path = find_model(model)
    decoder, payload = load_decoder(path)
    state = resolve(payload["backbone"], inputs.vgg_weights, inputs.on_event)[0]
    encoder = encoder_from(payload["backbone"], state)
    encoder_state = {k.removeprefix("layers."): v for k, v in encoder.state_dict().items()}
    if payload.get("encoder_digest") and payload["encoder_digest"] != tensor_digest(encoder_state):
        # A decoder inverts one encoder's features; with other VGG weights it would decode noise.
        raise WeightsError(f"{path}: this decoder was trained for other {payload['backbone']} weights than "
                           "the ones in use (--vgg-weights or the cache)")
    return encoder, decoder


def build(config: AdainConfig, runtime: Runtime, inputs: EngineInputs) -> AdaIN:
    tiling.check(config.tile, config.tile_overlap)
    encoder, decoder = load_networks(config.model, inputs)
    return AdaIN(encoder, decoder, runtime, config.alpha, inputs, config.tile, config.tile_overlap)


SPEC = EngineSpec(name="adain", config_type=AdainConfig, build=build, needs_style=True, batches=True)
