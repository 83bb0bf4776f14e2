"""The engine protocol and registry: the CLI's --method choices and the engine tests both come from ENGINES."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F

from stransfer.device import Runtime
from stransfer.events import EventCallback, ignore


@dataclass
class EngineInputs:
    """What a run hands an engine once, before it stylises any number of content images."""

    styles: list[torch.Tensor] = field(default_factory=list)  # full-resolution RGB (1, 3, H, W) in [0, 1]
    style_names: list[str] = field(default_factory=list)  # for output names, e.g. the files' stems
    style_weights: list[float] | None = None  # blend of several styles, summing to 1; None = equal
    style_scale: float = 1.0  # style image long side relative to the output's
    mask: torch.Tensor | None = None  # (1, 1, H, W) in [0, 1]: white = first style, black = second/content
    vgg_weights: Path | None = None  # None: resolved by stransfer.weights (env, cache, fetch)
    on_event: EventCallback = ignore


class Engine(Protocol):
    name: ClassVar[str]
    style_name: str  # what the outputs are named after: the style file(s) or the model's style

    def stylize(self, content: torch.Tensor, on_event: EventCallback = ignore,
                styles: list[torch.Tensor] | None = None) -> torch.Tensor:
        """RGB (1, 3, H, W) in [0, 1] -> stylised RGB of the same size, on the CPU. `styles` replaces the
        engine's style images for this call (engines with a style baked in refuse it)."""
        ...


@dataclass(frozen=True)
class EngineSpec:
    name: str
    config_type: type
    build: Callable[[Any, Runtime, EngineInputs], Engine]
    needs_style: bool
    summary: str
    batches: bool = False  # stylises a stack of equal-size images in one pass


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


def _registry() -> dict[str, EngineSpec]:
    from stransfer.engines import adain, gatys, johnson

    specs = [gatys.SPEC, johnson.SPEC, adain.SPEC]
    return {spec.name: spec for spec in specs}


ENGINES: dict[str, EngineSpec] = _registry()
