"""Johnson et al. (2016), "Perceptual Losses for Real-Time Style Transfer": one feed-forward network per style,
with instance normalisation (Ulyanov et al., 2016) and resize-convolution upsampling (Odena et al., 2016)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stransfer import tiling
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec, Styles, pad_to_multiple
from stransfer.errors import ModelError, UsageError
from stransfer.events import EventCallback, ignore
from stransfer.images import resize
from stransfer.weights import find_model, load_model


@dataclass(frozen=True)
class JohnsonArch:
    # The paper's network is width 32 with 5 residual blocks (1.7M parameters); narrower ones trade a little
    # quality for speed on CPUs.
    width: int = 32
    residual_blocks: int = 5


class InstanceNorm(nn.InstanceNorm2d):
    """Instance norm that can reuse statistics recorded on another image: tiles of a huge image all take the
    statistics of the whole (downscaled) picture, so they agree where they meet."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, affine=True)
        self.recording = False
        self.frozen: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recording:
            xf = x.float()
            self.frozen = (xf.mean(dim=(2, 3), keepdim=True), xf.var(dim=(2, 3), keepdim=True, unbiased=False))
        if self.frozen is None:
            return super().forward(x)
        mean, var = self.frozen
        normed = (x - mean.to(x.dtype)) * torch.rsqrt(var.to(x.dtype) + self.eps)
        return normed * self.weight.view(1, -1, 1, 1).to(x.dtype) + self.bias.view(1, -1, 1, 1).to(x.dtype)


class ConvLayer(nn.Sequential):
    """Reflection padding (no dark borders), convolution, optional instance norm and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True,
                 relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        if norm:
            layers.append(InstanceNorm(cout))
        if relu:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvLayer(channels, channels, 3), ConvLayer(channels, channels, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Module):
    """Nearest-neighbour 2x upsampling then convolution: no checkerboard, unlike a transposed convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvLayer(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TransformerNet(nn.Module):
    """Image transformation network: RGB in [0, 1] of any size -> stylised RGB of the same size."""

    def __init__(self, arch: JohnsonArch = JohnsonArch()) -> None:
        super().__init__()
        w = arch.width
        self.arch = arch
        self.net = nn.Sequential(
            ConvLayer(3, w, 9),
            ConvLayer(w, 2 * w, 3, stride=2),
            ConvLayer(2 * w, 4 * w, 3, stride=2),
            *[ResidualBlock(4 * w) for _ in range(arch.residual_blocks)],
            UpsampleConv(4 * w, 2 * w),
            UpsampleConv(2 * w, w),
            ConvLayer(w, 3, 9, norm=False, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.net(pad_to_multiple(x, 4, minimum=16))[..., :h, :w]


def load_transformer(path: Path) -> tuple[TransformerNet, dict[str, Any]]:
    payload = load_model(path, "johnson")
    try:
        net = TransformerNet(JohnsonArch(**payload["arch"]))
        net.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise ModelError(f"{path}: johnson model does not match its architecture ({e})") from None
    return net.eval().requires_grad_(False), payload


@dataclass(frozen=True)
class JohnsonConfig:
    # NAME of a model in weights/ (or $STRANSFER_HOME/models), or a path to a .pth file.
    model: str = param("starry_night")
    # "auto": tile only images whose working set would pass the memory budget (stransfer/tiling.py);
    # "off", or a tile side in pixels.
    tile: str = param("auto")
    # Pixels two tiles share and blend across; about the network's receptive field.
    tile_overlap: int = param(96, ge=0)


# Working set of one inference pass per pixel: peak RSS at 1024 px, fp32, shipped architecture, was 0.39 GB
# above that at 256 px (about 400 B/px); bf16 needs less, and the margin covers wider networks.
BYTES_PER_PIXEL = 500


class Johnson:
    name: ClassVar[str] = "johnson"

    def __init__(self, net: TransformerNet, runtime: Runtime, tile: str = "auto", tile_overlap: int = 96) -> None:
        self.net, self.runtime = net.to(runtime.device), runtime
        self.tile, self.tile_overlap = tile, tile_overlap
        self.norms = [m for m in self.net.modules() if isinstance(m, InstanceNorm)]

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            return self.net(x.to(self.runtime.device)).float().clamp(0, 1).cpu()

    def prepare(self, styles: list[torch.Tensor]) -> Styles:
        if styles:
            raise UsageError("-m johnson applies a trained model (--model NAME); it takes no style image")
        return Styles([])

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, styles: Styles, on_event: EventCallback = ignore) -> torch.Tensor:
        h, w = content.shape[-2:]
        tile = tiling.choose_tile(self.tile, h, w, BYTES_PER_PIXEL, multiple=4)
        if not tile:
            return self._run(content)
        outs = []
        for image in content.split(1):
            # Statistics of the whole picture (downscaled only as far as memory requires), then every tile
            # normalised with them: tiles normalised by their own statistics would each get their own colours.
            for norm in self.norms:
                norm.recording = True
            self._run(resize(image, tiling.fit_budget(h, w, BYTES_PER_PIXEL)))
            for norm in self.norms:
                norm.recording = False
            try:
                outs.append(tiling.apply(image, tile, self.tile_overlap, self._run, multiple=4))
            finally:
                for norm in self.norms:
                    norm.frozen = None
        return torch.cat(outs).clamp(0, 1)


def build(config: JohnsonConfig, runtime: Runtime, inputs: EngineInputs) -> Johnson:
    tiling.check(config.tile, config.tile_overlap)
    net, _ = load_transformer(find_model(config.model))
    return Johnson(net, runtime, config.tile, config.tile_overlap)


SPEC = EngineSpec(name="johnson", config_type=JohnsonConfig, build=build, needs_style=False, batches=True)
