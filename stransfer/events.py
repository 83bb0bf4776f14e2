"""Progress leaves the library as these small events, handed to a callback; only the CLI renders them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Note:
    """Something the user should hear about that is not an error."""

    message: str


@dataclass(frozen=True)
class Download:
    """Bytes received so far from one source (total is 0 when the server does not say)."""

    label: str
    done: int
    total: int


@dataclass(frozen=True)
class SourceFailed:
    label: str
    reason: str


@dataclass(frozen=True)
class Step:
    """One optimisation step (a Gatys function evaluation, a training step) and its losses."""

    step: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    stage: str = ""


@dataclass(frozen=True)
class Snapshot:
    """An intermediate image, for --save-every."""

    step: int
    image: torch.Tensor


Event = Note | Download | SourceFailed | Step | Snapshot
EventCallback = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default callback: a library call with nobody listening."""
