"""Batch runs for shell scripts: inputs from files, folders, globs or stdin; outputs mirroring the input tree;
one failed file never stops the others; a stop request ends the run cleanly between files."""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from stransfer import images, pipeline
from stransfer.engines import Engine
from stransfer.errors import InputError, OutputError, UsageError
from stransfer.events import Event, EventCallback, Note, Snapshot, Step, ignore

INPUT_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
DEFAULT_NAME = "{stem}_{style}_{method}.png"
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Item:
    source: Path
    output: Path


@dataclass(frozen=True)
class Result:
    source: Path
    output: Path
    status: str  # "written", "skipped" or "failed"
    seconds: float = 0.0
    error: str = ""


def _walk(folder: Path, recursive: bool) -> Iterable[Path]:
    """Image files under `folder`, sorted; with `recursive`, symbolic links are followed but each real folder is
    visited once, so a link loop ends instead of recursing forever."""
    if not recursive:
        yield from sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
        return
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in INPUT_SUFFIXES:
                yield Path(root) / name


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: outputs mirror the tree below it."""
    parts = []
    for part in Path(pattern).parts:
        if GLOB_CHARS & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def collect(args: Sequence[str], recursive: bool = False, stdin: Iterable[str] = ()) -> list[tuple[Path, Path]]:
    """(source, folder relative to the output root) for each input. "-" reads one path a line from stdin.
    A path that does not exist is kept: it fails in the run, with its own error line, like any bad file."""
    found: list[tuple[Path, Path]] = []
    for arg in args:
        if arg == "-":
            found += [(Path(line.strip()), Path()) for line in stdin if line.strip()]
        elif GLOB_CHARS & set(arg) and not Path(arg).exists():
            base = _glob_base(arg)
            matches = sorted(Path(p) for p in glob.glob(arg, recursive=recursive) if Path(p).is_file())
            if not matches:
                raise UsageError(f"no file matches {arg}")
            found += [(p, p.parent.relative_to(base) if p.is_relative_to(base) else Path()) for p in matches]
        elif Path(arg).is_dir():
            folder = Path(arg)
            found += [(p, p.parent.relative_to(folder)) for p in _walk(folder, recursive)]
        else:
            found.append((Path(arg), Path()))
    unique: dict[Path, Path] = {}
    for source, relative in found:
        unique.setdefault(source, relative)
    return list(unique.items())


def plan(sources: list[tuple[Path, Path]], output: Path, name: str, style: str, method: str) -> list[Item]:
    """Each source's output path; two inputs may not share one output (the template must tell them apart)."""
    items, taken = [], {}
    for source, relative in sources:
        try:
            filename = name.format(stem=source.stem, style=style, method=method, ext=source.suffix.lstrip("."))
        except (KeyError, IndexError, ValueError) as e:
            raise UsageError(f"--name {name!r}: unknown field {e} (use {{stem}}, {{style}}, {{method}}, {{ext}})")
        target = output / relative / filename
        images.output_format(target)
        if target in taken:
            raise UsageError(f"{taken[target]} and {source} would both write {target}; change --name")
        taken[target] = source
        items.append(Item(source, target))
    return items


def shard(items: list[Item], rank: int, world: int) -> list[Item]:
    """Every world-th item from rank: each output is written by exactly one process."""
    return items[rank::world]


@dataclass
class BatchOptions:
    size: int
    overwrite: bool = False
    skip_existing: bool = False
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    preserve_color: str = "none"
    batch_size: int = 1


def run(engine: Engine, items: list[Item], options: BatchOptions, styles: list[torch.Tensor],
        on_result: Callable[[Result], None], on_event: EventCallback = ignore,
        stop: threading.Event | None = None) -> list[Result]:
    """Stylise every item; report each result as it happens. Items of equal size are stacked up to
    `batch_size` (feed-forward engines); a set `stop` ends the run after the current group."""
    results: list[Result] = []

    def report(result: Result) -> None:
        results.append(result)
        on_result(result)
        on_event(Step(len(results), len(items), stage="files"))

    pending: list[tuple[Item, images.Picture, torch.Tensor, float]] = []

    def flush() -> None:
        if not pending:
            return
        start = time.perf_counter()
        first = pending[0][0].output

        def with_snapshots(event: Event) -> None:
            # --save-every: intermediate images beside the output (engines that iterate run one image at a time).
            if isinstance(event, Snapshot):
                path = first.with_name(f"{first.stem}_{event.step:04d}{first.suffix}")
                try:
                    images.save_image(event.image, path, overwrite=options.overwrite)
                except OutputError as e:
                    on_event(Note(f"snapshot not saved: {e}"))
            else:
                on_event(event)

        try:
            batch = torch.cat([rgb for _, _, rgb, _ in pending])
            out = pipeline.stylize(engine, batch, options.preserve_color, styles, with_snapshots)
        except (InputError, OutputError) as e:
            for item, _, _, _ in pending:
                report(Result(item.source, item.output, "failed", error=str(e)))
            pending.clear()
            return
        share = (time.perf_counter() - start) / len(pending)
        for i, (item, picture, _, load_s) in enumerate(pending):
            try:
                images.save_image(out[i: i + 1], item.output, alpha=picture.alpha, overwrite=options.overwrite)
                report(Result(item.source, item.output, "written", round(load_s + share, 3)))
            except OutputError as e:
                report(Result(item.source, item.output, "failed", error=str(e)))
        pending.clear()

    for item in items:
        if stop is not None and stop.is_set():
            break
        if options.skip_existing and item.output.exists():
            report(Result(item.source, item.output, "skipped"))
            continue
        start = time.perf_counter()
        try:
            images.check_writable(item.output, options.overwrite)
            picture = images.load_image(item.source, options.max_pixels)
        except (InputError, OutputError) as e:
            report(Result(item.source, item.output, "failed", error=str(e)))
            continue
        for message in picture.notes:
            on_event(Note(f"{item.source}: {message}"))
        rgb = images.resize_long_side(picture.rgb, options.size)
        if pending and pending[0][2].shape != rgb.shape:
            flush()
        pending.append((item, picture, rgb, time.perf_counter() - start))
        if len(pending) >= options.batch_size:
            flush()
    flush()
    return results
