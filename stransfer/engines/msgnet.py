"""MSG-Net: Zhang & Dana (2017), "Multi-style Generative Network for Real-time Transfer". One generator for many
styles: its CoMatch layer maps the content's features through a learnt weight and the style's Gram matrix, which a
Siamese copy of the generator's own encoder computes from any style image. The model file also keeps the Grams of
the styles it trained on, so those are picked by name with no artwork shipped."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stransfer import losses, tiling
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec, Styles, pad_to_multiple
from stransfer.engines.named import model_styles
from stransfer.errors import ModelError, UsageError
from stransfer.events import EventCallback, ignore
from stransfer.images import fit_long_side, resize
from stransfer.weights import find_model, load_model, save_model

ENGINE = "msgnet"
STRIDE = 4  # two stride-2 blocks: the CoMatch layer works at a quarter of the image's side
MIN_SIDE = 16  # the 7x7 layers' reflection padding needs 4 px; the 3x3 ones at a quarter of the side, 2


@dataclass(frozen=True)
class MSGNetArch:
    # The paper's generator is 64 channels at full size and 512 (4 x 128) in its middle, about 30x the work of
    # the Johnson network shipped here. A quarter of each keeps 1024 px within the Johnson network's time on two
    # CPU cores (benchmarks/msgnet.py); the Gram the CoMatch layer takes is then 128 x 128.
    width: int = 16
    channels: int = 128
    blocks: int = 6  # bottleneck blocks after the CoMatch layer, as in the paper


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """A convolution with reflection padding, so no dark border is learnt."""
    return nn.Sequential(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class Bottleneck(nn.Module):
    """A pre-activation bottleneck block (He et al. 2016): norm, ReLU, 1x1 to a quarter of the channels; norm,
    ReLU, 3x3; norm, ReLU, 1x1 back out; plus the input. `stride` 2 halves the size (the encoder); `up` doubles it,
    the paper's upsampling residual block, whose identity path runs through the whole generator. Where the paper
    upsamples before its 1x1 convolutions, they run first here: a 1x1 convolution commutes with nearest
    upsampling, so the output is the same at a quarter of the work. A strided shortcut takes every other pixel
    before its 1x1 convolution, what a stride-2 1x1 convolution computes (whose backward pass in channels-last
    crashed torch 2.14 on the CPU for narrow layers)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, up: bool = False, mid: int | None = None) -> None:
        super().__init__()
        mid = mid or max(1, cout // 4)
        self.up, self.stride = up, stride
        self.shortcut = None if cin == cout and stride == 1 and not up else nn.Conv2d(cin, cout, 1)
        self.reduce = nn.Sequential(tiling.WholePictureNorm(cin), nn.ReLU(), nn.Conv2d(cin, mid, 1),
                                    tiling.WholePictureNorm(mid), nn.ReLU())
        self.spatial = _conv(mid, mid, 3, stride)
        self.expand = nn.Sequential(tiling.WholePictureNorm(mid), nn.ReLU(), nn.Conv2d(mid, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x[..., ::self.stride, ::self.stride])
        h = self.reduce(x)
        if self.up:
            skip, h = _up(skip), _up(h)
        return skip + self.expand(self.spatial(h))


class CoMatch(nn.Module):
    """The CoMatch layer: content features F (C x HW per image) become (W G)^T F, G the target Gram matrix (the
    style's, from the Siamese encoder) and W a learnt C x C weight. It is the paper's one-step stand-in for moving F
    toward second-order statistics G while keeping its layout; the blocks after it learn the rest. With the
    content's own Gram G_c and W = G_c^-1 it gives F back exactly; with W = I it gives G_c F, which is F up to scale
    when F's channels are uncorrelated and of equal energy (G_c = s I); tests/test_msgnet.py checks both."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # The paper's start: small positive weights, so the first steps pass a little of every channel.
        self.weight = nn.Parameter(torch.empty(channels, channels).uniform_(0.0, 0.02))

    def forward(self, x: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
        """`x` (B, C, H, W); `gram` (B, C, C), or (1, C, C) for the whole batch."""
        b, c, h, w = x.shape
        # fp32 even under bf16 autocast: Gram entries are small, and their products would lose most digits.
        with torch.autocast(x.device.type, enabled=False):
            p = self.weight.float() @ gram.float()
            out = p.transpose(-1, -2) @ x.float().reshape(b, c, h * w)
        return out.reshape(b, c, h, w).to(x.dtype)


class MSGNet(nn.Module):
    """The generator: an encoder (7x7 convolution, two stride-2 bottlenecks), the CoMatch layer, bottleneck
    blocks, and a decoder of two upsampling bottlenecks and a 7x7 convolution to RGB. The same encoder is the
    Siamese network that turns a style image into the Gram the CoMatch layer takes (gram)."""

    def __init__(self, arch: MSGNetArch = MSGNetArch()) -> None:
        super().__init__()
        w, c = arch.width, arch.channels
        self.arch = arch
        # The blocks outside the middle keep `width` channels in their 3x3 convolutions where the paper's quarter
        # of their output would leave 4 or 8: the only spatial filters at full and half size, too thin to draw.
        self.encoder = nn.Sequential(_conv(3, w, 7), Bottleneck(w, 2 * w, stride=2, mid=w),
                                     Bottleneck(2 * w, c, stride=2))
        self.comatch = CoMatch(c)
        self.body = nn.Sequential(*[Bottleneck(c, c) for _ in range(arch.blocks)])
        self.decoder = nn.Sequential(Bottleneck(c, 2 * w, up=True, mid=w), Bottleneck(2 * w, w, up=True, mid=w),
                                     tiling.WholePictureNorm(w), nn.ReLU(),
                                     _conv(w, 3, 7))

    def gram(self, style: torch.Tensor) -> torch.Tensor:
        """The target of a style image (N, 3, H, W) in [0, 1]: the Gram matrix (N, C, C), fp32, of its encoding."""
        return losses.gram(self.encoder(style))

    def forward(self, x: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
        """RGB (B, 3, H, W) in [0, 1] of any size -> stylised RGB of the same size (unclamped), toward `gram`."""
        h, w = x.shape[-2:]
        features = self.comatch(self.encoder(pad_to_multiple(x, STRIDE, minimum=MIN_SIDE)), gram)
        return self.decoder(self.body(features))[..., :h, :w]


# ------------------------------------------------------------------------------------------------ model files

def style_input(image: torch.Tensor, long_side: int) -> torch.Tensor:
    """A style image as the Siamese encoder takes it: long side `long_side`, never below the network's minimum."""
    h, w = fit_long_side(image.shape[-2], image.shape[-1], long_side)
    return resize(image, (max(h, MIN_SIDE), max(w, MIN_SIDE)))


@dataclass(frozen=True)
class TrainedStyles:
    """The styles a model trained on, by name, each as its Siamese Grams at a ladder of style sizes."""

    names: list[str]
    sizes: list[int]  # ascending
    grams: torch.Tensor  # (styles, sizes, C, C), fp32

    def gram(self, name: str, size: int) -> torch.Tensor:
        """Style `name`'s Gram (1, C, C) at style size `size`: the stored one, or between two stored sizes
        interpolated linearly in log size (the sizes are a ladder of ratios, and so is a stroke's scale)."""
        row = self.grams[self.names.index(name)]
        if size in self.sizes:
            return row[self.sizes.index(size)][None]
        if not self.sizes[0] <= size <= self.sizes[-1]:
            raise UsageError(f"trained style '{name}' is stored for `style_size` {self.sizes[0]} to "
                             f"{self.sizes[-1]} (got {size}); for another size give its image as `style` FILE")
        i = bisect.bisect(self.sizes, size)
        lo, hi = self.sizes[i - 1], self.sizes[i]
        t = math.log(size / lo) / math.log(hi / lo)
        return torch.lerp(row[i - 1], row[i], t)[None]


def load_msgnet(path: Path) -> tuple[MSGNet, TrainedStyles]:
    payload = load_model(path, ENGINE)
    names = model_styles(payload, path)
    try:
        net = MSGNet(MSGNetArch(**payload["arch"]))
        net.load_state_dict(payload["state_dict"])
        sizes, grams = [int(s) for s in payload["gram_sizes"]], payload["style_grams"].float()
        c = net.arch.channels
        if grams.shape != (len(names), len(sizes), c, c) or sizes != sorted(set(sizes)):
            raise ValueError(f"style Grams of shape {tuple(grams.shape)} at sizes {sizes}")
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as e:
        raise ModelError(f"{path}: msgnet model does not match its architecture ({e})") from None
    return net.eval().requires_grad_(False), TrainedStyles(names, sizes, grams)


@torch.no_grad()
def style_grams(net: MSGNet, images: list[torch.Tensor], sizes: list[int]) -> torch.Tensor:
    """(styles, sizes, C, C): each style image's Gram at each style size, what a model file stores."""
    was_training = net.training
    net.eval()
    param_ = next(net.parameters())
    grams = torch.stack([torch.cat([net.gram(style_input(image, size).to(param_.device)) for size in sizes])
                         for image in images])
    net.train(was_training)
    return grams.cpu()


def save_msgnet(path: Path, net: MSGNet, names: list[str], images: list[torch.Tensor], image_names: list[str],
                sizes: list[int], **identity: Any) -> Path:
    """A model file: the generator, and the Grams of the styles it trained on at `sizes`, computed now from
    `images` by the generator's own (final) encoder."""
    sizes = sorted(set(sizes))
    return save_model(path, ENGINE, net.state_dict(), arch=dataclasses.asdict(net.arch), styles=names,
                      style_images=image_names, holds="styles", any_style=True, gram_sizes=sizes,
                      style_grams=style_grams(net, images, sizes), **identity)


# ------------------------------------------------------------------------------------------------ the engine

@dataclass(frozen=True)
class MSGNetConfig(tiling.TileConfig):
    model: str = param("msgnet", help="Trained MSG-Net model: a NAME from `stransfer models` or a .pth path.")
    # The paper's 512: the size the shipped model's styles are seen at when the output is 512 px.
    style_size: int = param(512, ge=64, le=4096, help=(
        "-m msgnet: long side of the style image given to the Siamese encoder, in pixels; half as large gives "
        "finer strokes."))


# Working set of one inference pass per pixel, fp32, shipped architecture: peak RSS at 1024x768 less that at
# 256x192, per added pixel (benchmarks/msgnet.py, section memory), with a quarter more for allocator noise.
BYTES_PER_PIXEL = 660


@dataclass
class StyleTarget(Styles):
    """The Gram a run matches: the styles picked by name or given as images, blended."""

    gram: torch.Tensor | None = None  # (1, C, C), fp32


class MSGNetEngine:
    name: ClassVar[str] = ENGINE

    def __init__(self, net: MSGNet, trained: TrainedStyles, runtime: Runtime, config: MSGNetConfig,
                 inputs: EngineInputs) -> None:
        self.net, self.trained, self.runtime = net.to(runtime.device), trained, runtime
        self.config, self.inputs = config, inputs
        self.norms = [m for m in self.net.modules() if isinstance(m, tiling.WholePictureNorm)]

    def _gram(self, style: str | torch.Tensor) -> torch.Tensor:
        if isinstance(style, torch.Tensor):
            with torch.no_grad(), self.runtime.autocast():
                return self.net.gram(style_input(style, self.config.style_size).to(self.runtime.device)).float()
        if style not in self.trained.names:
            raise UsageError(f"`model` {self.config.model} holds no style '{style}' and there is no such image file "
                             f"(its styles: {', '.join(self.trained.names)}; or give any style image)")
        return self.trained.gram(style, self.config.style_size).to(self.runtime.device)

    def prepare(self, styles: list[Any]) -> StyleTarget:
        """Trained styles by name and style images, mixed: one Gram, the blend of theirs by --style-blend."""
        styles = list(styles)
        if not styles and len(self.trained.names) == 1:
            styles = list(self.trained.names)
        if not styles:
            raise UsageError(f"`method` {self.name} needs a style: `style` FILE (any image), or `style` NAME of a "
                             f"style `model` {self.config.model} trained on ({', '.join(self.trained.names)})")
        weights = self.inputs.style_weights or [1.0 / len(styles)] * len(styles)
        if len(weights) != len(styles):
            raise UsageError(f"`style_blend` has {len(weights)} weights for {len(styles)} styles")
        gram = sum(w * self._gram(s) for w, s in zip(weights, styles))
        assert isinstance(gram, torch.Tensor)
        return StyleTarget([s for s in styles if isinstance(s, torch.Tensor)], gram=gram)

    def _run(self, x: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            return self.net(x.to(self.runtime.device), gram).float().clamp(0, 1).cpu()

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, styles: Styles, on_event: EventCallback = ignore) -> torch.Tensor:
        if not isinstance(styles, StyleTarget) or styles.gram is None:
            styles = self.prepare(list(styles.images))
        assert styles.gram is not None
        h, w = content.shape[-2:]
        tile = tiling.choose_tile(self.config.tile, h, w, BYTES_PER_PIXEL, multiple=STRIDE)
        if not tile:
            return self._run(content, styles.gram)
        run = functools.partial(self._run, gram=styles.gram)
        overlap = tiling.overlap(self.config.tile, self.config.tile_overlap)
        return tiling.apply_normalised_as_whole(content, tile, overlap, run, self.norms, BYTES_PER_PIXEL, STRIDE)


def build(config: MSGNetConfig, runtime: Runtime, inputs: EngineInputs) -> MSGNetEngine:
    if inputs.style_scale not in (None, 1.0):
        raise UsageError("`method` msgnet sizes its style image by `style_size` (pixels), not by `style_scale`")
    tiling.overlap(config.tile, config.tile_overlap)  # a bad overlap is refused before the model loads
    net, trained = load_msgnet(find_model(config.model))
    return MSGNetEngine(net, trained, runtime, config, inputs)


SPEC = EngineSpec(name=ENGINE, config_type=MSGNetConfig, build=build, style_input="either", batches=True)
