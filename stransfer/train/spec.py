"""One entry of the training registry: what a trainer takes from the user, and how its task is made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stransfer.backbone import VGGFeatures
from stransfer.device import Runtime
from stransfer.train.loop import Task


@dataclass(frozen=True)
class TrainInput:
    """A path a trainer takes: "files" (one or more existing files), "folder" (an existing folder) or "out" (the
    model file to write, which must not exist yet)."""

    kind: Literal["files", "folder", "out"]
    help: str
    short: str | None = None  # a one-letter flag beside the long one, e.g. "-s"
    example: str | None = None  # the value the command's help example gives it (default: one per kind)


@dataclass(frozen=True)
class TaskContext:
    """What a trainer's task is built from: the run's settings, its loss network and its checked inputs."""

    cfg: Any
    runtime: Runtime
    backbone: VGGFeatures  # frozen, loaded, placed; up to the deepest of the trainer's loss_layers
    inputs: dict[str, list[Path]]
    init: dict[str, Any] | None  # the --init model the run started from (read_init), if any
    add_style: bool  # the style inputs are new styles for the --init model
    rank: int


def _out_stem(paths: dict[str, list[Path]]) -> str:
    return paths["out"][0].stem


def _no_check(cfg: Any, paths: dict[str, list[Path]], init: dict[str, Any] | None, add_style: bool) -> None:
    return None


def _nothing(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class TrainerSpec:
    """A training task as the loop, the run folder and the CLI (`stransfer train NAME`) see it."""

    name: str
    summary: str  # one sentence: the command's help
    config_type: type  # a frozen TrainConfig subclass; every field becomes a flag (its help in metadata)
    inputs: dict[str, TrainInput]
    loss_layers: Callable[[Any], tuple[str, ...]]  # the backbone taps the task's losses read, from its config
    make_task: Callable[[TaskContext], Task]
    model_engine: str  # the engine whose model files this trainer writes and starts from (--init)
    run_name: Callable[[dict[str, list[Path]]], str] = _out_stem  # default run folder: runs/<name>-<run_name>
    check: Callable[[Any, dict[str, list[Path]], dict[str, Any] | None, bool], None] = _no_check
    describe_init: Callable[[dict[str, Any], Path], dict[str, Any]] = _nothing  # more of the --init model to keep
    grows: tuple[str, ...] = ()  # architecture keys a run from --init may raise (the task's load_init adapts)
    adds_styles_to: str | None = None  # the input that `--add-style` fills, for a trainer that can add styles
