"""The one-pass engines' decoder (Huang & Belongie 2017): VGG up to relu4_1 run backwards, with the content
skips this project adds; and the loading of a decoder file with the encoder it was trained for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from stransfer.backbone import ARCHITECTURES, VGGFeatures
from stransfer.engines import EngineInputs
from stransfer.engines.onepass import ENCODER_LAYER, SKIP_LAYERS
from stransfer.errors import ModelError, WeightsError
from stransfer.weights import find_model, load_model, resolve, tensor_digest


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
