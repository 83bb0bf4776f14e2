"""StyleBank: Chen, Yuan, Liao, Yu & Hua (CVPR 2017), "StyleBank: An Explicit Representation for Neural Image
Style Transfer". One encoder and one decoder shared by every style, and per style a bank of convolution filters
applied to the encoder's features; the encoder and decoder alone are an auto-encoder that gives the photo back.
Banks fuse linearly (--style-blend) and by region (--mask)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
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
from stransfer.images import resize
from stransfer.weights import find_model, load_model, save_model

ENGINE = "stylebank"
STRIDE = 4  # two stride-2 layers: the feature map is a quarter of the image's side
MIN_SIDE = 16  # the 9x9 layers' reflection padding needs 5 px; the banks', at a quarter of it, 2


@dataclass(frozen=True)
class StyleBankArch:
    # The paper's encoder is 32, 64, 128 channels; 16 (64 features at a quarter of the side) keeps a 1024 px image
    # within the Johnson network's time on a CPU, where every channel of a full-size layer costs.
    width: int = 16
    # The paper's bank is one 3x3 convolution; a second, with a norm and ReLU between, lets a style reshape the
    # features rather than only mix them linearly, at little cost (it runs at a sixteenth of the pixels).
    bank_layers: int = 2


def _layer(cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = False,
           relu: bool = True) -> nn.Sequential:
    """Reflection padding (no dark borders), convolution, optional instance norm, ReLU unless it is the output."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
    if norm:
        layers.append(tiling.WholePictureNorm(cout))
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling then a convolution, where the paper has a fractionally strided one: no
    checkerboard."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _layer(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class StyleBankNet(nn.Module):
    """Encoder (9x9, then two stride-2 3x3 layers), one bank per style (3x3 layers on the features), decoder
    mirroring the encoder; ReLU after every layer but the output.

    Only the banks have instance norm, where the paper has it in every layer: a norm on the auto-encoder's path
    discards each image's channel means and spreads, so the photo's overall colour and contrast could not come
    back and the reconstruction would stay far from the photo. In a bank it does what a style needs: it replaces
    the photo's statistics with the style's."""

    def __init__(self, arch: StyleBankArch = StyleBankArch(), styles: int = 1) -> None:
        super().__init__()
        w = arch.width
        self.arch = arch
        self.encoder = nn.Sequential(_layer(3, w, 9), _layer(w, 2 * w, 3, 2), _layer(2 * w, 4 * w, 3, 2))
        self.banks = nn.ModuleList(self.new_bank() for _ in range(styles))
        self.decoder = nn.Sequential(Upsample(4 * w, 2 * w), Upsample(2 * w, w), _layer(w, 3, 9, relu=False))

    def new_bank(self) -> nn.Sequential:
        channels = 4 * self.arch.width
        return nn.Sequential(*[_layer(channels, channels, 3, norm=True) for _ in range(self.arch.bank_layers)])

    @property
    def styles(self) -> int:
        return len(self.banks)

    def each(self, features: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
        """Item i of a batch of features through bank ids[i] (a training batch holds several styles): one pass per
        style over its items."""
        order, parts = [], []
        for s in sorted(set(ids)):
            items = [i for i, x in enumerate(ids) if x == s]
            order += items
            parts.append(self.banks[s](features[items]))
        return torch.cat(parts)[torch.tensor(order).argsort().to(features.device)]

    def blend(self, features: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Linear fusion: the banks' outputs weighted by `code` (N,), banks of weight 0 not run at all."""
        out: torch.Tensor | None = None
        for s, weight in enumerate(code.tolist()):
            if weight != 0:
                part = self.banks[s](features) * weight
                out = part if out is None else out + part
        if out is None:
            raise ValueError("style weights are all 0")
        return out

    def regions(self, features: torch.Tensor, mask: torch.Tensor, first: int, second: int | None) -> torch.Tensor:
        """Region fusion: bank `first` where the mask (B, 1, H, W at the padded image's size) is white, bank
        `second` where it is black, or, with no second, the encoder's own features (the photo, through the
        auto-encoder). Outputs are combined, not inputs masked as in the paper, so no bank sees a cut-out edge."""
        # Each cell takes the mean of the mask over its pixels: a white (black) mask is exactly 1 (0) everywhere.
        m = F.interpolate(mask.to(features), size=features.shape[-2:], mode="area")
        other = features if second is None else self.banks[second](features)
        return m * self.banks[first](features) + (1 - m) * other

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None,
                ids: Sequence[int] | None = None) -> torch.Tensor:
        """RGB of any size -> the output of the same size: the banks blended by `code` (N,), each item through
        its own bank `ids[i]` (training), or, given neither, the auto-encoder alone."""
        h, w = x.shape[-2:]
        features = self.encoder(pad_to_multiple(x, STRIDE, minimum=MIN_SIDE))
        if ids is not None:
            features = self.each(features, ids)
        elif code is not None:
            features = self.blend(features, code)
        return self.decoder(features)[..., :h, :w]


def load_network(path: Path) -> tuple[StyleBankNet, dict[str, Any]]:
    payload = load_model(path, ENGINE)
    styles = model_styles(payload, path)
    try:
        net = StyleBankNet(StyleBankArch(**payload["arch"]), len(styles))
        net.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise ModelError(f"{path}: stylebank model does not match its architecture ({e})") from None
    return net.eval().requires_grad_(False), {**payload, "styles": styles}


def save_network(path: Path, net: StyleBankNet, styles: list[str], style_images: list[str],
                 **identity: Any) -> Path:
    """A model file of `net` and the names of its banks' styles, in bank order."""
    if len(styles) == 1:  # what `stransfer models` shows for a one-style model
        identity = {**identity, "style": styles[0], "style_image": style_images[0]}
    return save_model(path, ENGINE, net.state_dict(), styles=styles, style_images=style_images,
                      arch=dataclasses.asdict(net.arch), **identity)


@dataclass(frozen=True)
class StyleBankConfig(tiling.TileConfig):
    model: str = param("stylebank", help="Trained StyleBank model: a NAME from `stransfer models` or a .pth path.")


# Working set of one inference pass per pixel, for tiling's budget: peak RSS at 1024x768 less that at 256x192, per
# added pixel, fp32, width 16, one bank or a blend of two, is under 600 B; the margin covers a mask's channel.
BYTES_PER_PIXEL = 650


@dataclass
class BankChoice(Styles):
    """StyleBank's styles: banks picked by name, with their blend weights, or the two banks of a mask's regions."""

    code: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    picked: list[int] = field(default_factory=list)


class StyleBank:
    name: ClassVar[str] = ENGINE

    def __init__(self, net: StyleBankNet, runtime: Runtime, held: list[str], inputs: EngineInputs,
                 model: str = "model", tile: str = "auto", tile_overlap: int = tiling.DEFAULT_OVERLAP) -> None:
        self.net, self.runtime, self.held = net.to(runtime.device), runtime, held
        self.inputs, self.model = inputs, model
        self.tile, self.tile_overlap = tile, tile_overlap
        self.norms = [m for m in self.net.modules() if isinstance(m, tiling.WholePictureNorm)]

    def prepare(self, styles: list[Any]) -> BankChoice:
        """The banks of the styles named (none: the one style of a one-style model), blended by the run's
        --style-blend weights; with a mask, the first style is its white region and the second its black one
        (the photo itself when there is no second)."""
        if any(not isinstance(s, str) for s in styles):
            raise UsageError(f"`method` {self.name} applies a trained model (`model` NAME); it takes no style image "
                             "(a model holding several styles picks them by name: `style` NAME)")
        code = style_code(self.held, list(styles), self.inputs.style_weights, self.model)
        picked = [self.held.index(s) for s in styles] if styles else [0]
        if self.inputs.mask is not None:
            if len(picked) > 2:
                raise UsageError(f"`mask` takes one or two styles (got {len(picked)})")
            if self.inputs.style_weights is not None:
                raise UsageError("`mask` gives each region one style: no `style_blend` with it")
        return BankChoice([], code=code, picked=picked)

    def _transfer(self, image: torch.Tensor, choice: BankChoice, mask: torch.Tensor | None) -> torch.Tensor:
        """One pass over an image (or a tile) and its mask, both padded to the network's stride."""
        with self.runtime.autocast():
            features = self.net.encoder(image.to(self.runtime.device))
            if mask is None:
                features = self.net.blend(features, choice.code)
            else:
                second = choice.picked[1] if len(choice.picked) > 1 else None
                features = self.net.regions(features, mask.to(self.runtime.device), choice.picked[0], second)
            return self.net.decoder(features).float().clamp(0, 1).cpu()

    def _run(self, piece: torch.Tensor, choice: BankChoice) -> torch.Tensor:
        """A piece of RGB, with the mask as a 4th channel when there is one, stylised at its own size."""
        h, w = piece.shape[-2:]
        padded = pad_to_multiple(piece, STRIDE, minimum=MIN_SIDE)
        mask = padded[:, 3:] if piece.shape[1] > 3 else None
        return self._transfer(padded[:, :3], choice, mask)[..., :h, :w]

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, styles: Styles, on_event: EventCallback = ignore) -> torch.Tensor:
        choice = styles if isinstance(styles, BankChoice) else self.prepare([])
        h, w = content.shape[-2:]
        joined = content
        if self.inputs.mask is not None:
            mask = resize(self.inputs.mask, (h, w)).expand(content.shape[0], -1, -1, -1)
            joined = torch.cat([content, mask], dim=1)  # the mask rides with the image through padding and tiles
        run = functools.partial(self._run, choice=choice)
        tile = tiling.choose_tile(self.tile, h, w, BYTES_PER_PIXEL, multiple=STRIDE)
        if not tile:
            return run(joined)
        return tiling.apply_normalised_as_whole(joined, tile, self.tile_overlap, run, self.norms, BYTES_PER_PIXEL,
                                                STRIDE)


def build(config: StyleBankConfig, runtime: Runtime, inputs: EngineInputs) -> StyleBank:
    overlap = tiling.overlap(config.tile, config.tile_overlap)
    net, payload = load_network(find_model(config.model))
    return StyleBank(net, runtime, payload["styles"], inputs, config.model, config.tile, overlap)


SPEC = EngineSpec(name=ENGINE, config_type=StyleBankConfig, build=build, style_input="names", batches=True,
                  masks=True)
