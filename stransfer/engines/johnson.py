"""Johnson et al. (2016), "Perceptual Losses for Real-Time Style Transfer": one feed-forward network per style,
with instance normalisation (Ulyanov et al., 2016) and resize-convolution upsampling (Odena et al., 2016)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec, pad_to_multiple
from stransfer.errors import UsageError, WeightsError
from stransfer.events import EventCallback, ignore
from stransfer.weights import find_model, load_model


@dataclass(frozen=True)
class JohnsonArch:
    # The paper's network is width 32 with 5 residual blocks (1.7M parameters); narrower ones trade a little
    # quality for speed on CPUs.
    width: int = 32
    residual_blocks: int = 5


class ConvLayer(nn.Sequential):
    """Reflection padding (no dark borders), convolution, optional instance norm and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True,
                 relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
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
        raise WeightsError(f"{path}: johnson model does not match its architecture ({e})") from None
    return net.eval().requires_grad_(False), payload


@dataclass(frozen=True)
class JohnsonConfig:
    # NAME of a model in weights/ (or $STRANSFER_HOME/models), or a path to a .pth file.
    model: str = param("starry_night")


class Johnson:
    name: ClassVar[str] = "johnson"

    def __init__(self, net: TransformerNet, runtime: Runtime, style_name: str) -> None:
        self.net, self.runtime, self.style_name = net.to(runtime.device), runtime, style_name

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, on_event: EventCallback = ignore) -> torch.Tensor:
        with self.runtime.autocast():
            out = self.net(content.to(self.runtime.device))
        return out.float().clamp(0, 1).cpu()


def build(config: JohnsonConfig, runtime: Runtime, inputs: EngineInputs) -> Johnson:
    if inputs.styles:
        raise UsageError("-m johnson applies a trained model (--model NAME); it takes no style image")
    net, payload = load_transformer(find_model(config.model))
    return Johnson(net, runtime, str(payload.get("style", Path(config.model).stem)))


SPEC = EngineSpec(name="johnson", config_type=JohnsonConfig, build=build, needs_style=False, batches=True,
                  summary="feed-forward network per style (Johnson et al.): real time once trained")
