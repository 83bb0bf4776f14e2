"""The flag vocabulary the commands share: choices as Enums, and options defined once."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from stransfer.device import DEVICE_NAMES, PRECISIONS
from stransfer.engines import ENGINES
from stransfer.errors import UsageError

EXIT_CODES = (
    "Exit codes: 0 every output written; 1 some input failed (the others were still written) or the run "
    "could not finish (e.g. weights unavailable); 2 usage error (bad flag, config, style or model)."
)
EXAMPLES_HEAD = "Examples:"


def epilog(examples: Sequence[str], exit_codes: bool = True) -> str:
    """A command's epilog: its exit codes (where it has them), then its example command lines, one a line under
    EXAMPLES_HEAD (docs/cli.md shows them as a code block: split_epilog)."""
    lines = "\n".join(f"  {example}" for example in examples)
    return "\n\n".join([*([EXIT_CODES] if exit_codes else []), f"{EXAMPLES_HEAD}\n{lines}"])


def split_epilog(text: str | None) -> tuple[str, list[str]]:
    """An epilog as (its text before the examples, the example command lines)."""
    head, _, tail = (text or "").partition(EXAMPLES_HEAD)
    return head.strip(), [line.strip() for line in tail.splitlines() if line.strip()]


def choices(name: str, values: Any) -> type[enum.Enum]:
    return enum.Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


Method = choices("Method", ENGINES)
Device = choices("Device", DEVICE_NAMES)
Precision = choices("Precision", PRECISIONS)

DeviceOpt = Annotated[Device, typer.Option(help="Where to compute.", rich_help_panel="Runtime")]
PrecisionOpt = Annotated[Precision, typer.Option(
    help="bf16 = autocast for the network passes; auto = bf16 where the hardware runs it natively.",
    rich_help_panel="Runtime")]
ThreadsOpt = Annotated[int | None, typer.Option(help="CPU threads (default: torch's choice).",
                                                rich_help_panel="Runtime")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v", help="Say which device, precision and threads the run uses, and why, and which weight "
    "sources failed before one answered.",
    rich_help_panel="Runtime")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed for reproducible results.", rich_help_panel="Runtime")]
VggWeightsOpt = Annotated[Path | None, typer.Option(
    "--vgg-weights", help="Backbone state dict to use instead of the cache ($STRANSFER_VGG_WEIGHTS).",
    rich_help_panel="Runtime")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="TOML file of engine settings (see configs/); flags override it.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
MaxPixelsOpt = Annotated[int, typer.Option(help="Refuse images larger than this (decompression-bomb guard).")]
StyleBlendOpt = Annotated[str | None, typer.Option(
    help="Weights of several styles, e.g. 0.7,0.3 (normalised; default equal).", rich_help_panel="Style")]


def given(config_type: type, command: str, **flags: Any) -> dict[str, Any]:
    """Flags given on the command line (None = not given), enums reduced to their values; a flag that
    belongs to another engine or task is a usage error rather than silently ignored."""
    values = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in flags.items() if v is not None}
    known = {f.name for f in dataclasses.fields(config_type)}
    for key in values:
        if key not in known:
            raise UsageError(f"--{key.replace('_', '-')} does not apply to {command}")
    return values


def numbers(flag: str, text: str | None) -> list[float] | None:
    """"0.7,0.3" -> [0.7, 0.3]."""
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag} must be numbers separated by commas (got {text!r})") from None
