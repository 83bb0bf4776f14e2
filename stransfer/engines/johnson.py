"""Johnson et al. (2016), "Perceptual Losses for Real-Time Style Transfer": a feed-forward network per style,
with instance normalisation (Ulyanov et al., 2016) and resize-convolution upsampling (Odena et al., 2016); or one
network for several styles by conditional instance norm (Dumoulin et al., 2017, "A Learned Representation for
Artistic Style"), whose styles blend by mixing their norm parameters."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stransfer import tiling
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec, Styles, pad_to_multiple
from stransfer.engines.named import model_styles, style_code
from stransfer.errors import ModelError, UsageError
from stransfer.events import EventCallback, ignore
from stransfer.weights import MULTISTYLE_FORMAT_VERSION, find_model, load_model, save_model


@dataclass(frozen=True)
class JohnsonArch:
    # The paper's network is width 32 with 5 residual blocks (1.7M parameters); narrower ones trade a little
    # quality for speed on CPUs.
    width: int = 32
    residual_blocks: int = 5


class InstanceNorm(tiling.WholePictureNorm):
    """Conditional instance norm (Dumoulin et al. 2017): a scale and shift per style, rows of (styles, C) tables,
    that TransformerNet mixes for the style asked for and substitutes for `weight` and `bias` during a pass: a
    (C,) vector for the whole batch (the fused affine of a plain instance norm, so a one-style model computes what
    it did before styles were tables), or (B, C) rows, one per image (training several styles in one batch).

    It can also reuse statistics recorded on another image: tiles of a huge image all take the statistics of the
    whole (downscaled) picture, so they agree where they meet."""

    def __init__(self, channels: int, styles: int = 1) -> None:
        super().__init__(channels)
        self.weight = nn.Parameter(torch.ones(styles, channels))
        self.bias = nn.Parameter(torch.zeros(styles, channels))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # One-style files (every file before multi-style models, and every one-style model since) hold a plain
        # instance norm's (C,) parameters: the one row of the table.
        for key in (prefix + "weight", prefix + "bias"):
            if key in state_dict and state_dict[key].dim() == 1:
                state_dict[key] = state_dict[key].unsqueeze(0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dim() != 1 and self.weight.shape[0] != x.shape[0]:
            raise ValueError(f"norm parameters for {self.weight.shape[0]} images, batch of {x.shape[0]}: "
                             "run the network through TransformerNet.forward, which mixes them per style")
        if self.weight.dim() == 1:  # the (C,) vector of one style for the whole batch
            return super().forward(x)
        shape = (-1, self.num_features, 1, 1)
        return self.normalise(x) * self.weight.reshape(shape).to(x.dtype) + self.bias.reshape(shape).to(x.dtype)


class ConvLayer(nn.Sequential):
    """Reflection padding (no dark borders), convolution, optional instance norm and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True,
                 relu: bool = True, styles: int = 1) -> None:
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        if norm:
            layers.append(InstanceNorm(cout, styles))
        if relu:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, styles: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvLayer(channels, channels, 3, styles=styles),
                                  ConvLayer(channels, channels, 3, relu=False, styles=styles))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Module):
    """Nearest-neighbour 2x upsampling then convolution: no checkerboard, unlike a transposed convolution."""

    def __init__(self, cin: int, cout: int, styles: int = 1) -> None:
        super().__init__()
        self.conv = ConvLayer(cin, cout, 3, styles=styles)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TransformerNet(nn.Module):
    """Image transformation network: RGB in [0, 1] of any size -> stylised RGB of the same size.

    With `styles` > 1 it holds several styles (Dumoulin et al. 2017): every weight is shared but the instance
    norms' scales and shifts, one row per style, which a pass mixes by the weights it is given."""

    def __init__(self, arch: JohnsonArch = JohnsonArch(), styles: int = 1) -> None:
        super().__init__()
        w, n = arch.width, styles
        self.arch = arch
        self.net = nn.Sequential(
            ConvLayer(3, w, 9, styles=n),
            ConvLayer(w, 2 * w, 3, stride=2, styles=n),
            ConvLayer(2 * w, 4 * w, 3, stride=2, styles=n),
            *[ResidualBlock(4 * w, n) for _ in range(arch.residual_blocks)],
            UpsampleConv(4 * w, 2 * w, n),
            UpsampleConv(2 * w, w, n),
            ConvLayer(w, 3, 9, norm=False, relu=False),
        )
        # Names of the norm tables within self.net, as functional_call takes them.
        self.table_names = [f"{name}.{key}" for name, m in self.net.named_modules() if isinstance(m, InstanceNorm)
                            for key in ("weight", "bias")]

    @property
    def styles(self) -> int:
        return self.tables()[self.table_names[0]].shape[0]

    def tables(self) -> dict[str, torch.Tensor]:
        """Each norm's (styles, C) scales and shifts, by name."""
        params = dict(self.net.named_parameters())
        return {name: params[name] for name in self.table_names}

    def mix(self, style: torch.Tensor, tables: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The norm parameters of `style`, weights over the styles: (N,) for a whole batch, (B, N) per image.
        A product and sum, not a matmul, so autocast leaves them fp32 and a one-hot row picks its style exactly."""
        tables = self.tables() if tables is None else tables
        first = next(iter(tables.values()))
        weights = style.to(first.device, first.dtype).unsqueeze(-1)  # moved once, not once per table
        return {name: (weights * t).sum(-2) for name, t in tables.items()}

    def run_with(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The network with the norm parameters `params` (from mix) in place of its tables."""
        h, w = x.shape[-2:]
        out = torch.func.functional_call(self.net, params, (pad_to_multiple(x, 4, minimum=16),))
        return out[..., :h, :w]

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """`style`: weights over the model's styles (see mix); None for the one style of a one-style model."""
        tables = self.tables()
        if style is None:
            rows = next(iter(tables.values())).shape[0]
            if rows != 1:
                raise ValueError(f"this network holds {rows} styles: say which (style weights)")
            # The one row itself: what mixing with weight 1 gives, without a product per table every pass.
            return self.run_with(x, {name: t[0] for name, t in tables.items()})
        return self.run_with(x, self.mix(style, tables))

    def baked(self, style: torch.Tensor) -> TransformerNet:
        """A one-style network whose norms hold the parameters of `style`: what export writes."""
        one = TransformerNet(self.arch)
        mixed = {f"net.{name}": value.detach().unsqueeze(0) for name, value in self.mix(style).items()}
        one.load_state_dict({**self.state_dict(), **mixed})
        return one.eval().requires_grad_(False)


def load_transformer(path: Path) -> tuple[TransformerNet, dict[str, Any]]:
    payload = load_model(path, "johnson")
    styles = model_styles(payload, path)
    try:
        net = TransformerNet(JohnsonArch(**payload["arch"]), len(styles))
        net.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise ModelError(f"{path}: johnson model does not match its architecture ({e})") from None
    return net.eval().requires_grad_(False), {**payload, "styles": styles}


def save_transformer(path: Path, net: TransformerNet, styles: list[str], style_images: list[str],
                     **identity: Any) -> Path:
    """A model file of `net` and the names of its styles. One style is written as a plain instance norm's (C,)
    parameters under format version 1, which stransfer before multi-style models reads too; several styles need
    version 2."""
    state = net.state_dict()
    if len(styles) == 1:
        state = {k: v[0] if k.removeprefix("net.") in net.table_names else v for k, v in state.items()}
        identity = {**identity, "style": styles[0], "style_image": style_images[0]}
    return save_model(path, "johnson", state, format_version=1 if len(styles) == 1 else MULTISTYLE_FORMAT_VERSION,
                      styles=styles, style_images=style_images, **identity)


@dataclass(frozen=True)
class JohnsonConfig(tiling.TileConfig):
    model: str = param("starry_night", help="Trained model: a NAME from `stransfer models` or a .pth path.")


# Working set of one inference pass per output pixel, fp32, shipped architecture, with stransfer's allocator
# settings (device.reuse_freed_memory): what --tile auto budgets with (benchmarks/batch_memory.py measures the
# peaks). bf16 needs less, and the margin covers wider networks.
BYTES_PER_PIXEL = 600


@dataclass
class StyleChoice(Styles):
    """Johnson's styles: picked by name among those its model holds, mixed once into norm parameters."""

    names: list[str] = field(default_factory=list)
    params: dict[str, torch.Tensor] = field(default_factory=dict)


class Johnson:
    name: ClassVar[str] = "johnson"

    def __init__(self, net: TransformerNet, runtime: Runtime, tile: str = "auto",
                 tile_overlap: int = tiling.DEFAULT_OVERLAP,
                 styles: list[str] | None = None, style_weights: list[float] | None = None,
                 model: str = "model") -> None:
        self.net, self.runtime = net.to(runtime.device), runtime
        self.tile, self.tile_overlap = tile, tile_overlap
        self.norms = [m for m in self.net.modules() if isinstance(m, InstanceNorm)]
        self.held = styles or [f"style{i}" for i in range(net.styles)]
        self.style_weights, self.model = style_weights, model

    def _run(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        with self.runtime.autocast():
            return self.net.run_with(x.to(self.runtime.device), params).float().clamp(0, 1).cpu()

    def prepare(self, styles: list[Any]) -> StyleChoice:
        """The styles of the model picked by name (none: the one style of a one-style model), blended by the
        run's --style-blend weights."""
        if any(not isinstance(s, str) for s in styles):
            raise UsageError("`method` johnson applies a trained model (`model` NAME); it takes no style image "
                             "(a model holding several styles picks them by name: `style` NAME)")
        code = style_code(self.held, list(styles), self.style_weights, self.model)
        with torch.no_grad():
            return StyleChoice([], names=list(styles), params=self.net.mix(code))

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, styles: Styles, on_event: EventCallback = ignore) -> torch.Tensor:
        if not isinstance(styles, StyleChoice):  # plain Styles([]): what prepare([]) picks
            styles = self.prepare([])
        h, w = content.shape[-2:]
        tile = tiling.choose_tile(self.tile, h, w, BYTES_PER_PIXEL, multiple=4)
        if not tile:
            return self._run(content, styles.params)
        run = functools.partial(self._run, params=styles.params)
        return tiling.apply_normalised_as_whole(content, tile, self.tile_overlap, run, self.norms, BYTES_PER_PIXEL, 4)


def build(config: JohnsonConfig, runtime: Runtime, inputs: EngineInputs) -> Johnson:
    overlap = tiling.overlap(config.tile, config.tile_overlap)
    net, payload = load_transformer(find_model(config.model))
    return Johnson(net, runtime, config.tile, overlap, payload["styles"], inputs.style_weights, config.model)


# Video: a johnson model's own best share of the previous frame (starry_night, benchmarks/video_flicker.py).
SPEC = EngineSpec(name="johnson", config_type=JohnsonConfig, build=build, style_input="names", batches=True,
                  video_defaults={"temporal_weight": 0.5})
