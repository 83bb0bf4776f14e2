"""Feed-forward texture generators: Ulyanov et al. (2016), "Texture Networks", with the instance norm of Ulyanov
et al. (2017), "Improved Texture Networks"; several textures in one network through a selection unit, as in Li et
al. (2017), "Diversified Texture Synthesis with Feed-forward Networks"."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, Styles, SynthesizerSpec
from stransfer.engines.named import model_styles, style_code
from stransfer.errors import ModelError, UsageError
from stransfer.events import EventCallback, ignore
from stransfer.weights import find_model, load_model, save_model

ENGINE = "texturenet"
# Values of one strip (input or output) of a convolution in `TextureGenerator.generate`: bounds its temporaries
# whatever the texture's size. 4 MB strips stay in the cache for the statistics and the normalisation that follow
# each convolution: a 512 px texture is made a fifth faster than with 16 MB ones.
STRIP_VALUES = 1 << 20
NORM_EPS = 1e-5  # F.instance_norm's
# Added to each strip's variance when it is standardised, so a constant channel gives zeros, not NaN; too small to
# change any other's.
STRIP_EPS = 1e-30
LEAK = 0.1  # the leaky ReLUs' slope


@dataclass(frozen=True)
class TextureNetArch:
    # Noise at the full size and at 1/2, 1/4, ... of it: the coarsest scale sets the largest structure the network
    # can place (1/32 of a 256 px training sample is 8 px of noise, each cell steering a 32 px region).
    scales: int = 6
    noise_channels: int = 3
    # Channels each scale adds to the path that joins them (the paper's 8): the finest join has scales x width.
    width: int = 8


class CodedNorm(nn.Module):
    """Instance norm whose scale and shift are rows of (textures, C) tables mixed by the selection code (Dumoulin
    et al.'s conditional instance norm). Li et al. join a one-hot code to the noise instead, but their networks use
    batch norm: under instance norm a spatially constant input is a constant per channel after the convolution,
    and the normalisation subtracts it, so every code gave the same texture (seen in a first 8-texture run)."""

    def __init__(self, channels: int, textures: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(textures, channels))
        self.bias = nn.Parameter(torch.zeros(textures, channels))

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        scale, shift = code @ self.weight, code @ self.bias
        # A one-pixel map (the coarsest scale of a small texture) is its own mean: normalised, it is zero, which
        # instance_norm refuses to compute.
        normed = F.instance_norm(x, eps=NORM_EPS) if x.shape[-2] * x.shape[-1] > 1 else torch.zeros_like(x)
        return normed * scale[:, :, None, None].to(x) + shift[:, :, None, None].to(x)

    def normalise_(self, x: torch.Tensor, strips: StandardisedStrips, code: torch.Tensor,
                   slope: float | None = None) -> None:
        """`forward` in place on a map written as `strips`, then a leaky ReLU of `slope` if given: strip by strip,
        each strip's own standardisation and the whole map's normalisation in one affine, so the leaky ReLU finds
        the strip in the cache."""
        mean, var = strips.result()  # float64 on the CPU (MPS has no float64)
        a = (code @ self.weight).cpu().double() * torch.rsqrt(var + NORM_EPS)
        b = (code @ self.bias).cpu().double() - mean * a
        for top, bottom, strip_mean, strip_std in strips.parts:
            part = x[:, :, top:bottom]
            scale, shift = a * strip_std, a * strip_mean + b  # of the standardised values
            torch.addcmul(shift[:, :, None, None].to(x), part, scale[:, :, None, None].to(x), out=part)
            if slope is not None:
                F.leaky_relu_(part, slope)


class Block(nn.Module):
    """The paper's unit: 3x3, 3x3, 1x1 convolutions, each with instance norm and a leaky ReLU. Replicated edges:
    a coarse scale of a small texture may be one pixel wide, where reflection is undefined."""

    def __init__(self, cin: int, cout: int, textures: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, cout, k) for c, k in ((cin, 3), (cout, 3), (cout, 1)))
        self.norms = nn.ModuleList(CodedNorm(cout, textures) for _ in range(3))

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            if conv.kernel_size[0] == 3:
                x = F.pad(x, (1, 1, 1, 1), mode="replicate")
            x = F.leaky_relu(norm(conv(x), code), LEAK)
        return x

    def generate(self, x: torch.Tensor, code: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
        """`forward` without autograd, each layer's output written into the next of `outs` (views of the buffers
        of `TextureGenerator.generate`)."""
        for conv, norm, out in zip(self.convs, self.norms, outs):
            norm.normalise_(out, conv_in_strips(conv, x, out), code, LEAK)
            x = out
        return x


class StandardisedStrips:
    """A map written strip by strip, each strip standardised by its own per-channel mean and standard deviation:
    batch norm's statistics kernel computes them and writes the strip in one vectorised pass (on the CPU three
    times as fast as a mean and a dot product of the deviations, and the copy a convolution's output needs anyway).
    Each strip's statistics are kept, to be undone by `CodedNorm.normalise_`, and merged into the whole map's as
    Chan et al.'s parallel algorithm does (no sum of squares to lose the variance of a map whose mean is large),
    in float64 on the CPU."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = self.m2 = torch.zeros((), dtype=torch.float64)
        self.parts: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []  # top, bottom, mean, std per sample

    def write(self, target: torch.Tensor, strip: torch.Tensor, top: int) -> None:
        """`strip` standardised into `target` (rows top.. of the map; both channels-last, of one shape)."""
        n, c = strip.shape[:2]
        strip = strip.to(target.dtype)  # a convolution under autocast may give bf16
        means, inverse_stds = target.new_empty(n, c), target.new_empty(n, c)
        for i in range(n):
            torch.native_batch_norm(_columns(strip[i:i + 1]), None, None, None, None, True, 0.0, STRIP_EPS,
                                    out=(_columns(target[i:i + 1]), means[i], inverse_stds[i]))
        mean, std = means.cpu().double(), inverse_stds.cpu().double().reciprocal()
        var = (std.square() - STRIP_EPS).clamp_min(0)
        count = strip.shape[-2] * strip.shape[-1]
        self.parts.append((top, top + strip.shape[-2], mean, std))
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + var * count + delta.square() * (self.count * count / total)
        self.count = total

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean, self.m2 / self.count


def _columns(x: torch.Tensor) -> torch.Tensor:
    """A channels-last (1, C, H, W) map as a (1, C, H * W, 1) view, what batch norm takes per sample."""
    return x.permute(0, 2, 3, 1).reshape(1, -1, x.shape[1]).transpose(1, 2)[..., None]


def strips(height: int, row_values: int) -> list[tuple[int, int]]:
    rows = max(1, STRIP_VALUES // max(1, row_values))
    return [(top, min(height, top + rows)) for top in range(0, height, rows)]


def convolved_strips(conv: nn.Conv2d, x: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """`conv` of `x` with replicated edges (as `Block.forward` pads), in strips of rows: (first row, strip)."""
    n, _, h, w = x.shape
    r = conv.kernel_size[0] // 2
    for top, bottom in strips(h, n * max(conv.in_channels, conv.out_channels) * w):
        strip = x[:, :, max(0, top - r):bottom + r]
        if r:  # the rows of the strips above and below; replicated edges where there are none
            strip = F.pad(strip, (r, r, r - min(r, top), r - min(r, h - bottom)), mode="replicate")
        yield top, conv(strip)


def conv_in_strips(conv: nn.Conv2d, x: torch.Tensor, out: torch.Tensor) -> StandardisedStrips:
    """`conv` of `x` written into `out` standardised strip by strip."""
    written = StandardisedStrips()
    for top, y in convolved_strips(conv, x):
        written.write(out[:, :, top:top + y.shape[-2]], y, top)
    return written


def upsample_into(out: torch.Tensor, path: torch.Tensor) -> StandardisedStrips:
    """Nearest upsampling of `path` (F.interpolate's nearest: source index floor(i * in / out)) written into `out`
    standardised strip by strip."""
    (h, w), (ph, pw) = out.shape[-2:], path.shape[-2:]
    source = path.permute(0, 2, 3, 1)  # channels last: rows are whole blocks
    cols = torch.arange(w, device=path.device) * pw // w
    written = StandardisedStrips()
    for top, bottom in strips(h, out.shape[0] * out.shape[1] * w):
        rows = torch.arange(top, bottom, device=path.device) * ph // h
        written.write(out[:, :, top:bottom], source.index_select(1, rows).index_select(2, cols).permute(0, 3, 1, 2),
                      top)
    return written


class TextureGenerator(nn.Module):
    """Noise at `arch.scales` scales, coarse to fine: each scale's noise passes a block; the path so far is
    upsampled to the next scale, normalised, joined to that scale's block by concatenation and mixed by another
    block; a 1x1 convolution and a sigmoid make RGB in [0, 1]. Every normalisation takes the scale and shift of
    the texture asked for (its selection code). Fully convolutional: any size, odd ones too."""

    def __init__(self, arch: TextureNetArch, textures: int = 1) -> None:
        super().__init__()
        self.arch, self.textures = arch, textures
        self.inputs = nn.ModuleList(Block(arch.noise_channels, arch.width, textures) for _ in range(arch.scales))
        # joins[k] mixes scale k's block with the path from the scales coarser than k (the coarsest has none)
        self.joins = nn.ModuleList(Block(arch.width * (arch.scales - k), arch.width * (arch.scales - k), textures)
                                   for k in range(arch.scales - 1))
        self.up_norms = nn.ModuleList(CodedNorm(arch.width * (arch.scales - k - 1), textures)
                                      for k in range(arch.scales - 1))
        self.to_rgb = nn.Conv2d(arch.width * arch.scales, 3, 1)

    def forward(self, noises: list[torch.Tensor], code: torch.Tensor | None = None) -> torch.Tensor:
        """`noises[k]`: (N, noise_channels, H_k, W_k) at scale k (0 = full size); `code`: (N, textures) weights
        over the network's textures (None: the first texture, for a one-texture network)."""
        code = self._code(noises, code)
        path: torch.Tensor | None = None
        for k in reversed(range(self.arch.scales)):
            block = self.inputs[k](noises[k], code)
            if path is None:
                path = block
                continue
            path = F.interpolate(path, size=block.shape[-2:], mode="nearest")
            path = self.joins[k](torch.cat([self.up_norms[k](path, code), block], 1), code)
        assert path is not None
        return torch.sigmoid(self.to_rgb(path))

    def _code(self, noises: list[torch.Tensor], code: torch.Tensor | None) -> torch.Tensor:
        if code is None:
            if self.textures > 1:
                raise ValueError("a network of several textures needs a selection code")
            code = noises[0].new_ones(noises[0].shape[0], 1)
        return code.to(noises[0].device, torch.float32)

    @torch.no_grad()
    def generate(self, noises: list[torch.Tensor], code: torch.Tensor | None = None) -> torch.Tensor:
        """`forward` for making textures: the same output, computed layer by layer in place, each convolution in
        strips, every map a view of two buffers the size of the finest join's map (48 channels). Its working set
        is those two (a 2048 px texture in under 3 GB), whatever the allocator makes of freed blocks."""
        code = self._code(noises, code)
        noises = [z.contiguous(memory_format=torch.channels_last) for z in noises]
        n, (h, w), full = noises[0].shape[0], noises[0].shape[-2:], self.arch.width * self.arch.scales
        path_buffer, join_buffer = (noises[0].new_empty(n * full * h * w) for _ in range(2))
        path: torch.Tensor | None = None
        for k in reversed(range(self.arch.scales)):
            size, c = noises[k].shape[-2:], 0 if path is None else path.shape[1]
            # The noise branch's first two maps go behind the path (a quarter of the finest map's area, at most
            # 40 of its 48 channels); its last is the tail of the join's input, or the path itself at the coarsest.
            branch = (n, self.arch.width, *size)
            behind = math.prod(branch) if path is None else path.numel()
            scratch = [carve(path_buffer, behind + i * math.prod(branch), branch) for i in range(2)]
            joined = carve(join_buffer, 0, (n, c + self.arch.width, *size))
            last = joined[:, c:] if path is not None else carve(path_buffer, 0, branch)
            block = self.inputs[k].generate(noises[k], code, [*scratch, last])
            if path is None:
                path = block
                continue
            self.up_norms[k].normalise_(joined[:, :c], upsample_into(joined[:, :c], path), code)
            spare = carve(path_buffer, 0, joined.shape)
            path = self.joins[k].generate(joined, code, [spare, joined, spare])
        rgb = path.new_empty(n, 3, h, w)
        for top, y in convolved_strips(self.to_rgb, path):
            rgb[:, :, top:top + y.shape[-2]] = y
        return rgb.sigmoid_()


def carve(buffer: torch.Tensor, offset: int, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """A channels-last map of `shape` (N, C, H, W) on `buffer`'s elements from `offset` on; a new one where they
    are too few (a texture a few pixels wide, whose coarse scales are as large as its finest). Channels last:
    oneDNN's direct convolutions of these widths run about 1.5x as fast so."""
    n, c, h, w = shape
    count = math.prod(shape)
    flat = buffer[offset:offset + count] if offset + count <= buffer.numel() else buffer.new_empty(count)
    return flat.view(n, h, w, c).permute(0, 3, 1, 2)


def scale_sizes(height: int, width: int, scales: int) -> list[tuple[int, int]]:
    """The noise size at each scale: the full size, then halved (rounding up) at each coarser one."""
    sizes = [(height, width)]
    for _ in range(scales - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def noise(arch: TextureNetArch, height: int, width: int, seeds: list[int]) -> list[torch.Tensor]:
    """Uniform noise at every scale, one sample per seed: a sample depends on its own seed alone, never on the
    batch it is drawn in, so a seed gives the same texture bit for bit at any --count."""
    per_sample = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        per_sample.append([torch.rand(1, arch.noise_channels, h, w, generator=g)
                           for h, w in scale_sizes(height, width, arch.scales)])
    return [torch.cat(level) for level in zip(*per_sample)]


@dataclass(frozen=True)
class TextureNetConfig:
    model: str = param("textures", help="Trained texture model: a NAME from `stransfer models` or a .pth path.")


def load_generator(path: Path) -> tuple[TextureGenerator, dict[str, Any]]:
    payload = load_model(path, ENGINE)
    textures = model_styles(payload, path)
    try:
        net = TextureGenerator(TextureNetArch(**payload["arch"]), len(textures))
        net.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise ModelError(f"{path}: texture model does not match its architecture ({e})") from None
    return net.eval().requires_grad_(False), {**payload, "styles": textures}


def save_generator(path: Path, net: TextureGenerator, textures: list[str], images: list[str],
                   **identity: Any) -> Path:
    return save_model(path, ENGINE, net.state_dict(), styles=textures, style_images=images, holds="textures",
                      arch=dataclasses.asdict(net.arch), **identity)


class TextureNet:
    """A trained generator as a texture maker: pick a texture by name, or blend several codes."""

    name: ClassVar[str] = "net"

    def __init__(self, net: TextureGenerator, runtime: Runtime, held: list[str], inputs: EngineInputs,
                 model: str) -> None:
        self.net, self.runtime, self.held = net.to(runtime.device), runtime, held
        self.inputs, self.model = inputs, model

    def prepare(self, styles: list[Any]) -> Styles:
        if any(not isinstance(s, str) for s in styles):
            raise UsageError(f"`method` {self.name} takes the names of the model's textures ({', '.join(self.held)}), "
                             "not images")
        code = style_code(self.held, list(styles), self.inputs.style_weights, self.model)
        return Styles([], {"code": code})

    def synthesize(self, styles: Styles, height: int, width: int, seed: int,
                   on_event: EventCallback = ignore) -> torch.Tensor:
        code = styles.by_size["code"][None] if self.net.textures > 1 else None
        levels = [z.to(self.runtime.device) for z in noise(self.net.arch, height, width, [seed])]
        with self.runtime.autocast():
            return self.net.generate(levels, code).float().clamp(0, 1).cpu()


def build(config: TextureNetConfig, runtime: Runtime, inputs: EngineInputs) -> TextureNet:
    net, payload = load_generator(find_model(config.model))
    return TextureNet(net, runtime, payload["styles"], inputs, config.model)


SPEC = SynthesizerSpec(name="net", config_type=TextureNetConfig, build=build, style_input="names",
                       summary="a trained texture network (one pass, any size; -s picks its textures)")
