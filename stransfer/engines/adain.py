"""Huang & Belongie (2017), "Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization":
encode with VGG up to relu4_1, align channel statistics to the style's, decode with a trained decoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from stransfer import losses
from stransfer.backbone import ARCHITECTURES, VGGFeatures
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec, pad_to_multiple
from stransfer.errors import UsageError, WeightsError
from stransfer.events import EventCallback, ignore
from stransfer.images import fit_long_side, resize
from stransfer.weights import find_model, load_model, resolve

ENCODER_LAYER = "relu4_1"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor) -> torch.Tensor:
    """Content features re-normalised to the style's channel statistics; in fp32 even under bf16 autocast,
    where the standard deviation of small activations would lose most of its digits."""
    mean, std = losses.mean_std(content)
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


class AdaIN:
    name: ClassVar[str] = "adain"

    def __init__(self, encoder: VGGFeatures, decoder: Decoder, runtime: Runtime, styles: list[torch.Tensor],
                 blend: list[float], alpha: float, style_name: str = "style") -> None:
        if not styles:
            raise ValueError("adain needs a style image")
        self.encoder, self.decoder = encoder.to(runtime.device), decoder.to(runtime.device)
        self.runtime, self.styles, self.blend, self.alpha = runtime, styles, blend, alpha
        self.style_name = style_name
        self._stats: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        # Three poolings: pad to a multiple of 8 so the decoder's output covers the input exactly.
        image = pad_to_multiple(image, 8, minimum=16)
        with torch.no_grad(), self.runtime.autocast():
            return self.encoder(image.to(self.runtime.device), [ENCODER_LAYER])[ENCODER_LAYER]

    def style_stats(self, long_side: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Channel mean and std of each style at relu4_1, the style resized so its long side matches the
        output's; computed once per output size."""
        if long_side not in self._stats:
            self._stats[long_side] = [
                losses.mean_std(self._encode(resize(s, fit_long_side(s.shape[-2], s.shape[-1], long_side))))
                for s in self.styles]
        return self._stats[long_side]

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, on_event: EventCallback = ignore) -> torch.Tensor:
        h, w = content.shape[-2:]
        features = self._encode(content).float()
        target = sum(weight * adain(features, mean, std)
                     for weight, (mean, std) in zip(self.blend, self.style_stats(max(h, w))))
        target = self.alpha * target + (1.0 - self.alpha) * features
        with self.runtime.autocast():
            out = self.decoder(target)
        return out[..., :h, :w].float().clamp(0, 1).cpu()


def build(config: AdainConfig, runtime: Runtime, inputs: EngineInputs) -> AdaIN:
    if not inputs.styles:
        raise UsageError("-m adain needs a style image: -s FILE")
    decoder, payload = load_decoder(find_model(config.model))
    encoder = encoder_from(payload["backbone"], resolve(payload["backbone"], inputs.vgg_weights, inputs.on_event)[0])
    blend = [1.0 / len(inputs.styles)] * len(inputs.styles)
    return AdaIN(encoder, decoder, runtime, inputs.styles, blend, config.alpha, "+".join(inputs.style_names))


SPEC = EngineSpec(name="adain", config_type=AdainConfig, build=build, needs_style=True, batches=True,
                  summary="arbitrary style in one pass (Huang & Belongie): encoder, AdaIN, trained decoder")
