"""The engine protocols and registries: stylize's engines (ENGINES) and texture makers (SYNTHESIZERS); the CLI's
--method choices and the registry-wide tests come from them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import torch
import torch.nn.functional as F

from stransfer.device import Runtime
from stransfer.errors import UsageError
from stransfer.events import EventCallback, ignore


@dataclass(frozen=True)
class EngineInputs:
    """How a run combines its style images, and where the engine's weights come from; given once, at build."""

    style_weights: list[float] | None = None  # blend of several styles, summing to 1; None = equal
    # Style image long side relative to the output's; None: the engine's own rule (a texture's: the style at the
    # texture's size, never enlarged).
    style_scale: float | None = 1.0
    mask: torch.Tensor | None = None  # (1, 1, H, W) in [0, 1]: white = first style, black = second/content
    vgg_weights: Path | None = None  # None: resolved by stransfer.weights (env, cache, fetch)
    on_event: EventCallback = ignore  # downloads while the engine loads


@dataclass
class Styles:
    """Style images prepared for one engine. What an output size needs of them (loss targets, feature
    statistics) is computed on first use and kept here, not in the engine, so one engine serves any number
    of style sets, and a batch of equal-size images computes it once."""

    images: list[torch.Tensor]  # full-resolution RGB (1, 3, H, W) in [0, 1]
    by_size: dict[Any, Any] = field(default_factory=dict)

    def at(self, size: Any, compute: Callable[[], Any]) -> Any:
        if size not in self.by_size:
            self.by_size[size] = compute()
        return self.by_size[size]


def style_set(method: str, styles: list[torch.Tensor], inputs: EngineInputs) -> Styles:
    """Styles for an engine that takes style images, checked against how the run combines them."""
    if not styles:
        raise UsageError(f"`method` {method} needs a style image: `style` FILE")
    if inputs.style_weights is not None and len(inputs.style_weights) != len(styles):
        raise UsageError(f"`style_blend` has {len(inputs.style_weights)} weights for {len(styles)} style images")
    if inputs.mask is not None and len(styles) not in (1, 2):
        raise UsageError(f"`mask` takes one or two styles (got {len(styles)})")
    return Styles(list(styles))


@dataclass(frozen=True)
class Guide:
    """A video frame after the first, for an engine that optimises its output (Ruder et al. 2016): start from the
    previous output warped onto this frame, and keep the pixels the flow trusts near it."""

    start: torch.Tensor  # (1, 3, H, W) in [0, 1]: the previous output moved onto this frame
    mask: torch.Tensor  # (1, 1, H, W) in [0, 1]: 1 where `start` can be trusted (not occluded)
    weight: float  # weight of the temporal loss, beside the engine's content and style weights
    evaluations: int  # function evaluations, at the output's size only: the start is already stylised


class Engine(Protocol):
    name: ClassVar[str]

    def prepare(self, styles: list[Any]) -> Styles:
        """The style images this engine will match; for an engine whose model holds its styles (style_input
        "names"), the names of the styles to use (it refuses images)."""
        ...

    def stylize(self, content: torch.Tensor, styles: Styles, on_event: EventCallback = ignore) -> torch.Tensor:
        """RGB (1, 3, H, W) in [0, 1] -> stylised RGB of the same size, on the CPU."""
        ...


class RefiningEngine(Engine, Protocol):
    """An engine that optimises its output can also continue from a previous video frame's (EngineSpec.refines)."""

    def refine(self, content: torch.Tensor, styles: Styles, guide: Guide,
               on_event: EventCallback = ignore) -> torch.Tensor: ...


# What a user gives an engine as its style: style images, the names of styles its model holds, or nothing; "either":
# any mix of style images and names of styles its model holds (MSG-Net), each path to an existing file an image.
StyleInput = Literal["images", "names", "none", "either"]


@dataclass(frozen=True)
class EngineSpec:
    """An engine as the API, the CLI, batches and video see it."""

    name: str
    config_type: type
    build: Callable[[Any, Runtime, EngineInputs], Engine]
    style_input: StyleInput
    batches: bool = False  # stylises a stack of equal-size images in one pass
    refines: bool = False  # its engine is a RefiningEngine
    # Takes --mask though it takes no style images: its model's styles combine by region (StyleBank's banks).
    masks: bool = False
    # VideoConfig defaults where this engine's measured best differs from them (stransfer/videorun.py).
    video_defaults: Mapping[str, float] = field(default_factory=dict)


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 0) -> torch.Tensor:
    """Pad bottom/right so each side is a multiple of `multiple` (the network's total stride) and at least
    `minimum` (what its reflection padding needs); the caller crops the output back."""
    h, w = x.shape[-2:]
    th = max(h + (-h) % multiple, minimum + (-minimum) % multiple)
    tw = max(w + (-w) % multiple, minimum + (-minimum) % multiple)
    if (th, tw) == (h, w):
        return x
    mode = "reflect" if th - h < h and tw - w < w else "replicate"
    return F.pad(x, (0, tw - w, 0, th - h), mode=mode)


class Synthesizer(Protocol):
    """A texture maker: no photo, only its styles (images, or the names of textures its model holds) and a seed."""

    name: ClassVar[str]

    def prepare(self, styles: list[Any]) -> Styles: ...

    def synthesize(self, styles: Styles, height: int, width: int, seed: int,
                   on_event: EventCallback = ignore) -> torch.Tensor:
        """A (1, 3, height, width) texture in [0, 1] on the CPU, the same for the same seed."""
        ...


@dataclass(frozen=True)
class SynthesizerSpec:
    """A texture maker as the API and `stransfer texture -m NAME` see it."""

    name: str
    config_type: type  # its settings; every field not in `fixed` becomes a flag of `stransfer texture`
    build: Callable[[Any, Runtime, EngineInputs], Synthesizer]
    style_input: StyleInput
    summary: str  # one line for the help of -m
    fixed: tuple[str, ...] = ()  # settings a texture pins (no flag): e.g. a content weight, with no content


def _registry() -> dict[str, EngineSpec]:
    from stransfer.engines import adain, gatys, johnson, mgan, msgnet, stylebank, swap

    specs = [gatys.SPEC, johnson.SPEC, adain.SPEC, swap.SPEC, mgan.SPEC, msgnet.SPEC, stylebank.SPEC]
    return {spec.name: spec for spec in specs}


def _synthesizers() -> dict[str, SynthesizerSpec]:
    from stransfer.engines import gatys, texturenet

    return {spec.name: spec for spec in (gatys.TEXTURE_SPEC, texturenet.SPEC)}


ENGINES: dict[str, EngineSpec] = _registry()
SYNTHESIZERS: dict[str, SynthesizerSpec] = _synthesizers()
