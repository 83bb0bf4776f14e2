"""The Rich consoles, progress rendering of library events, and one-line error reporting."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from stransfer.events import Download, Event, Note, SourceFailed, Step

if TYPE_CHECKING:
    from stransfer.batch import Result

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


# Settings whose flag is not --name-with-dashes.
SHORT_FLAGS = {"style": "-s", "method": "-m", "output": "-o"}


def as_flags(message: str) -> str:
    """The library's message with each setting it names (`style_blend`) written as the flag that sets it."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: SHORT_FLAGS.get(m[1], "--" + m[1].replace("_", "-")), message)


def error_line(e: BaseException) -> str:
    """An error as the command line says it: a bad value given as an argument is prefixed by its flag."""
    key = getattr(e, "key", None)
    return as_flags(f"`{key}`: {e}" if key else str(e))


def error(message: str) -> None:
    """One line on stderr; soft_wrap keeps it one line whatever the terminal's width, and the message's own line
    breaks (torch's state-dict errors have several) become spaces."""
    stderr.print(f"[bold red]error:[/] {escape(' '.join(as_flags(message).split()))}")


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {escape(message)}")


def note(message: str) -> None:
    stderr.print(f"[dim]note:[/] {escape(message)}")


def _format_losses(losses: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in losses.items())


class RateColumn(ProgressColumn):
    """Steps (or files) per second, once rich has seen enough updates to tell."""

    def render(self, task: Task) -> Text:
        if task.speed is None or task.fields.get("count", "").endswith("MB"):
            return Text("")
        return Text(f"{task.speed:.2f}/s", style="dim")


class ProgressRenderer:
    """Turns library events into a Rich progress display on stderr (hidden when stderr is not a terminal).

    A finished download leaves one line saying what came and its size; a source that failed before another
    answered is said only when `verbose` (when every source fails, the error names each one anyway)."""

    def __init__(self, console: Console = stderr, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[info]}"),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressRenderer:
        self.progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    def _task(self, key: str, description: str, total: float | None) -> TaskID:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total, count="", info="")
        return self.tasks[key]

    def __call__(self, event: Event) -> None:
        if isinstance(event, Download):
            task = self._task("download:" + event.label, event.label, event.total or None)
            mb = f"{event.done / 1e6:.1f}/{event.total / 1e6:.1f} MB" if event.total else f"{event.done / 1e6:.1f} MB"
            self.progress.update(task, completed=event.done, total=event.total or None, count=mb)
            if event.total and event.done == event.total:
                self.progress.remove_task(self.tasks.pop("download:" + event.label))
                self.console.print(f"[dim]note:[/] downloaded {escape(event.label)}: {event.total / 1e6:.1f} MB")
        elif isinstance(event, Step):
            key = "step:" + event.stage
            task = self._task(key, event.stage or "optimising", event.total)
            self.progress.update(task, completed=event.step, total=event.total,
                                 count=f"{event.step}/{event.total}", info=_format_losses(event.losses))
        elif isinstance(event, SourceFailed) and self.verbose:
            self.console.print(f"[yellow]source failed:[/] {escape(event.label)}: {escape(event.reason)}")
        elif isinstance(event, Note):
            self.console.print(f"[dim]note:[/] {escape(event.message)}")


def result_printer(as_json: bool) -> Callable[[Result], None]:
    """How a batch reports each file: its output path (or one JSON line) on stdout, a failure on stderr."""

    def show(result: Result) -> None:
        if as_json:
            stdout.print_json(data={"input": str(result.source), "output": str(result.output),
                                    "status": result.status, "seconds": result.seconds,
                                    "error": as_flags(result.error) if result.error else None}, indent=None)
        elif result.status == "written":
            stdout.print(str(result.output))
        if result.status == "failed":
            error(result.error)

    return show
