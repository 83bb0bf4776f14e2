"""Li & Wand (2016), "Precomputed Real-Time Texture Synthesis with Markovian Generative Adversarial Networks": a
network per style that decodes a photo's VGG relu4_1 features into the styled picture in one pass; it was trained
against a discriminator of neural patches (stransfer/train/mgan.py), so its style is in the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from stransfer import tiling, winograd
from stransfer.backbone import VGGFeatures
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec, Styles, pad_to_multiple
from stransfer.engines.decoder import Decoder, encoder_from
from stransfer.engines.onepass import BYTES_PER_PIXEL, ENCODER_LAYER
from stransfer.errors import ModelError, UsageError, WeightsError
from stransfer.events import EventCallback, ignore
from stransfer.weights import find_model, load_model, resolve, save_model, tensor_digest

ENGINE = "mgan"


class Generator(nn.Module):
    """VGG up to relu4_1 run backwards: the one-pass engines' decoder without its content skips, so it can start
    from the shipped AdaIN decoder, which already turns relu4_1 back into a picture. The paper's generator is
    three transposed convolutions with batch norm on VGG19's relu4_1; nearest upsampling and reflection padding
    leave no checkerboard, and no batch norm means a picture never depends on the others in its batch."""

    def __init__(self, arch: str = "vgg16") -> None:
        super().__init__()
        self.arch = arch
        self.net = Decoder(arch).net  # the same layers and names ("net.N.weight") as the AdaIN decoder's

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """relu4_1 features (N, 512, h, w) -> RGB (N, 3, 8h, 8w), unclamped."""
        return self.net(features)


def encoder_digest(encoder: VGGFeatures) -> str:
    """What identifies the VGG weights a generator was trained on: a generator decodes one encoder's features. Only
    the weights and biases count: a loss network with Winograd layers (stransfer/winograd.py) also holds their
    transformed filters."""
    return tensor_digest({k.removeprefix("layers."): v for k, v in encoder.state_dict().items()
                          if k.endswith((".weight", ".bias"))})


def save_generator(path: Path, generator: Generator, style: str, style_image: str, encoder: VGGFeatures,
                   **identity: Any) -> Path:
    return save_model(path, ENGINE, generator.state_dict(), backbone=generator.arch, encoder_layer=ENCODER_LAYER,
                      encoder_digest=encoder_digest(encoder), style=style, style_image=style_image, **identity)


def load_generator(path: Path) -> tuple[Generator, dict[str, Any]]:
    """A generator file, refused (ModelError) when it is another engine's or does not fit its architecture."""
    payload = load_model(path, ENGINE)
    try:
        generator = Generator(payload["backbone"])
        generator.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise ModelError(f"{path}: mgan generator does not match its architecture ({e})") from None
    return generator.eval().requires_grad_(False), payload


def load_networks(model: str, inputs: EngineInputs) -> tuple[VGGFeatures, Generator, dict[str, Any]]:
    """A generator file and the encoder it was trained for, checked to belong together."""
    path = find_model(model)
    generator, payload = load_generator(path)
    encoder = encoder_from(payload["backbone"], resolve(payload["backbone"], inputs.vgg_weights, inputs.on_event)[0])
    if payload.get("encoder_digest") and payload["encoder_digest"] != encoder_digest(encoder):
        raise WeightsError(f"{path}: this generator was trained for other {payload['backbone']} weights than the "
                           "ones in use (--vgg-weights or the cache)")
    return encoder, generator, payload


@dataclass(frozen=True)
class MganConfig(tiling.TileConfig):
    model: str = param("mgan_the_scream", help="Trained MGAN model: a NAME from `stransfer models` or a .pth path.")


class Mgan:
    """Encode, decode: AdaIN's path with no style to encode and nothing to transform."""

    name: ClassVar[str] = "mgan"

    def __init__(self, encoder: VGGFeatures, generator: Generator, runtime: Runtime, tile: str = "auto",
                 tile_overlap: int = tiling.DEFAULT_OVERLAP, style: str = "its style") -> None:
        # Channels-last and Winograd where the runtime wants them, as for the other one-pass engines.
        self.encoder = winograd.adopt(encoder.to(runtime.device, memory_format=torch.channels_last), runtime)
        self.generator = winograd.adopt(generator.to(runtime.device, memory_format=torch.channels_last), runtime)
        self.runtime, self.tile, self.tile_overlap, self.style = runtime, tile, tile_overlap, style

    def prepare(self, styles: list[Any]) -> Styles:
        if styles:
            raise UsageError(f"`method` {self.name} applies a trained model (`model` NAME) that holds its style "
                             f"({self.style}); it takes no `style`")
        return Styles([])

    def _run(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        # Three poolings: padded to a multiple of 8, the output covers the input exactly.
        x = pad_to_multiple(image, 8, minimum=16).to(self.runtime.device, memory_format=torch.channels_last)
        with torch.no_grad(), self.runtime.autocast():
            out = self.generator(self.encoder(x, (ENCODER_LAYER,))[ENCODER_LAYER])
        return out.float().clamp(0, 1).cpu().contiguous()[..., :h, :w]

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, styles: Styles, on_event: EventCallback = ignore) -> torch.Tensor:
        h, w = content.shape[-2:]
        # Every layer is local (no statistics of the whole picture), so tiles agree where they meet.
        tile = tiling.choose_tile(self.tile, h, w, BYTES_PER_PIXEL, multiple=8)
        if not tile:
            return self._run(content)
        return torch.cat([tiling.apply(image, tile, self.tile_overlap, self._run, multiple=8)
                          for image in content.split(1)]).clamp(0, 1)


def build(config: MganConfig, runtime: Runtime, inputs: EngineInputs) -> Mgan:
    overlap = tiling.overlap(config.tile, config.tile_overlap)
    encoder, generator, payload = load_networks(config.model, inputs)
    return Mgan(encoder, generator, runtime, config.tile, overlap, str(payload.get("style") or config.model))


SPEC = EngineSpec(name="mgan", config_type=MganConfig, build=build, style_input="none", batches=True)
