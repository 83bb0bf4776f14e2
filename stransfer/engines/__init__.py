"""The engine protocol and registry: the CLI's --method choices and the engine tests both come from ENGINES."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from stransfer.device import Runtime
from stransfer.events import EventCallback, ignore


@dataclass
class EngineInputs:
    """What a run hands an engine once, before it stylises any number of content images."""

    styles: list[torch.Tensor] = field(default_factory=list)  # full-resolution RGB (1, 3, H, W) in [0, 1]
    vgg_weights: Path | None = None  # None: resolved by stransfer.weights (env, cache, fetch)
    on_event: EventCallback = ignore


class Engine(Protocol):
    name: ClassVar[str]

    def stylize(self, content: torch.Tensor, on_event: EventCallback = ignore) -> torch.Tensor:
        """RGB (1, 3, H, W) in [0, 1] -> stylised RGB of the same size, on the CPU."""
        ...


@dataclass(frozen=True)
class EngineSpec:
    name: str
    config_type: type
    build: Callable[[Any, Runtime, EngineInputs], Engine]
    needs_style: bool
    summary: str


def _registry() -> dict[str, EngineSpec]:
    from stransfer.engines import gatys

    specs = [gatys.SPEC]
    return {spec.name: spec for spec in specs}


ENGINES: dict[str, EngineSpec] = _registry()
