"""Huang & Belongie (2017), "Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization":
encode with VGG up to relu4_1, align channel statistics to the style's, decode with a trained decoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from stransfer import tiling
from stransfer.backbone import VGGFeatures
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec
# What the AdaIN paper defines stays importable from here: its decoder and its normalisation.
from stransfer.engines.decoder import Decoder, load_decoder, load_networks  # noqa: F401
from stransfer.engines.onepass import (ENCODER_LAYER, SKIP_LAYERS, OnePass, OnePassConfig, adain,  # noqa: F401
                                       image_mean_std, skip_weight)

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


@dataclass(frozen=True)
class AdainConfig(OnePassConfig):
    pass


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
                 inputs: EngineInputs = EngineInputs(), tile: str = "auto",
                 tile_overlap: int = tiling.DEFAULT_OVERLAP) -> None:
        super().__init__(AdainTransform(), encoder, decoder, runtime, alpha, inputs, tile, tile_overlap)


def build(config: AdainConfig, runtime: Runtime, inputs: EngineInputs) -> AdaIN:
    overlap = tiling.overlap(config.tile, config.tile_overlap)
    encoder, decoder = load_networks(config.model, inputs)
    return AdaIN(encoder, decoder, runtime, config.alpha, inputs, config.tile, overlap)


SPEC = EngineSpec(name="adain", config_type=AdainConfig, build=build, style_input="images", batches=True)
