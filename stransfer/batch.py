"""Batch runs for shell scripts: inputs from files, folders, globs or stdin; outputs mirroring the input tree;
one failed file never stops the others; a stop request ends the run cleanly between files."""

from __future__ import annotations

import errno
import glob
import os
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from stransfer import images
from stransfer.config import param
from stransfer.errors import OutputError, StransferError, UsageError
from stransfer.events import Event, EventCallback, Note, Snapshot, Step, ignore

INPUT_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
DEFAULT_NAME = "{stem}_{style}_{method}.png"
GLOB_CHARS = set("*?[")

if TYPE_CHECKING:
    from stransfer.api import Stylizer


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
            listed = [(Path(line.strip()), Path()) for line in stdin if line.strip()]
            if not listed:
                raise UsageError("- reads input paths from stdin, one a line, but stdin held none")
            found += listed
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


def check_folders_found(args: Sequence[str], sources: list[tuple[Path, Path]], recursive: bool) -> None:
    """A folder given as input that holds no image is a usage error, not a silent no-op."""
    for folder in (Path(a) for a in args if Path(a).is_dir()):
        if not any(source.is_relative_to(folder) for source, _ in sources):
            raise UsageError(f"{folder}: no images found" + ("" if recursive else " (use --recursive for subfolders)"))


def names_one_file(output: Path) -> bool:
    """-o with an image extension (and no folder of that name) is one output file; anything else a folder."""
    return output.suffix.lower() in images.SAVE_FORMATS and not output.is_dir()


NAME_FIELDS = ("stem", "style", "method", "ext")


def _name_error(template: str, why: str) -> UsageError:
    fields = ", ".join("{" + f + "}" for f in NAME_FIELDS)
    return UsageError(f"--name {template!r}: {why} (a template fills only {fields}; write {{{{ or }}}} for a brace)")


def fill_name(template: str, fields: Mapping[str, str]) -> str:
    """The output file name: `template` with each bare {field} replaced. Format specs, conversions, attribute
    access and indexing are refused rather than passed to str.format, which would let a template reach into
    Python objects; so are names that climb out of the output folder."""
    parts = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise _name_error(template, str(e)) from None
    for literal, field, spec, conversion in parsed:
        parts.append(literal)
        if field is None:
            continue
        if field not in fields:
            raise _name_error(template, f"unknown field {{{field}}}" if field else "empty field {}")
        if spec or conversion:
            raise _name_error(template, f"{{{field}}} takes no format spec or conversion")
        parts.append(fields[field])
    filename = "".join(parts)
    path = Path(filename)
    if not filename or path.is_absolute() or ".." in path.parts or filename.endswith(("/", os.sep)):
        raise _name_error(template, f"{filename!r} is not a file name inside the output folder")
    return filename


def plan(sources: list[tuple[Path, Path]], output: Path, name: str, style: str, method: str) -> list[Item]:
    """Each source's output path. Two inputs may not share an output, no output may replace its own input,
    and an input that is another input's output in this run (a rerun into the input folder) is left out:
    stylising last run's results again is never what was meant."""
    if names_one_file(output):
        if len(sources) != 1:
            raise UsageError(f"-o {output} names one file, but the inputs hold {len(sources)} images: "
                             "give -o a folder")
        targets = {sources[0][0]: output}
    else:
        targets = {}
        for source, relative in sources:
            fields = {"stem": source.stem, "style": style, "method": method, "ext": source.suffix.lstrip(".")}
            targets[source] = output / relative / fill_name(name, fields)
    for source, target in targets.items():
        if target.resolve() == source.resolve():
            raise UsageError(f"{source}: the output would replace this input; choose another -o or --name")
    planned = {target.resolve() for target in targets.values()}
    items, taken = [], {}
    for source, target in targets.items():
        if source.resolve() in planned:
            continue
        images.output_format(target)
        if target in taken:
            raise UsageError(f"{taken[target]} and {source} would both write {target}; change --name")
        taken[target] = source
        items.append(Item(source, target))
    return items


def shard(items: list[Item], rank: int, world: int) -> list[Item]:
    """Every world-th item from rank: each output is written by exactly one process."""
    return items[rank::world]


@dataclass(frozen=True)
class BatchOptions:
    """A run's settings beyond the engine's; built by config.build, so flags meet the same range checks."""

    # Long side of the outputs: below 16 px VGG has nothing left to see; 16384 px is already 1 GB of float32
    # pixels per image.
    size: int = param(512, ge=16, le=16384)
    overwrite: bool = False
    skip_existing: bool = False
    max_pixels: int = param(images.DEFAULT_MAX_PIXELS, ge=1)
    batch_size: int = param(1, ge=1, le=256)


@dataclass
class Outcome:
    results: list[Result]
    fatal: Exception | None = None  # the error that ended the run early: later items would fail alike
    not_run: int = 0  # items never started because of it


def _is_fatal(error: Exception) -> bool:
    """Errors that every later item would repeat: stransfer's own fatal kinds, and a full disk however it
    surfaces. Anything else belongs to the one item that raised it."""
    if isinstance(error, StransferError):
        return error.fatal
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def describe_failure(item: Item, error: Exception) -> str:
    """One line naming the file: stransfer's errors already say what went wrong with which file; anything
    else (a torch error from an odd shape, say) is named by its type and prefixed with the input."""
    text = str(error) if isinstance(error, StransferError) else f"failed ({type(error).__name__}: {error})"
    return text if str(item.source) in text or str(item.output) in text else f"{item.source}: {text}"


@dataclass
class _Loaded:
    item: Item
    picture: images.Picture
    rgb: torch.Tensor  # resized to the run's size
    load_s: float


class _Run:
    """One batch run's state: results so far, the group of loaded images waiting for a pass, and the error
    that ends the run early, if any."""

    def __init__(self, stylizer: Stylizer, total: int, options: BatchOptions, on_result: Callable[[Result], None],
                 on_event: EventCallback) -> None:
        self.stylizer, self.total, self.options = stylizer, total, options
        self.on_result, self.on_event = on_result, on_event
        self.results: list[Result] = []
        self.pending: list[_Loaded] = []
        self.fatal: Exception | None = None

    def report(self, result: Result) -> None:
        self.results.append(result)
        self.on_result(result)
        self.on_event(Step(len(self.results), self.total, stage="files"))

    def fail(self, group: list[Item], error: Exception) -> None:
        for item in group:
            self.report(Result(item.source, item.output, "failed", error=describe_failure(item, error)))
        if _is_fatal(error):
            self.fatal = error

    def load(self, item: Item) -> _Loaded | None:
        start = time.perf_counter()
        try:
            images.check_writable(item.output, self.options.overwrite)
            picture = images.load_image(item.source, self.options.max_pixels)
            rgb = images.resize_long_side(picture.rgb, self.options.size)
        except Exception as e:  # noqa: BLE001 - isolation by design, see run()
            self.fail([item], e)
            return None
        for message in picture.notes:
            self.on_event(Note(f"{item.source}: {message}"))
        return _Loaded(item, picture, rgb, time.perf_counter() - start)

    def snapshots_beside(self, output: Path) -> EventCallback:
        """--save-every: intermediate images beside the output (engines that iterate run one image at a time)."""

        def on_event(event: Event) -> None:
            if not isinstance(event, Snapshot):
                return self.on_event(event)
            path = output.with_name(f"{output.stem}_{event.step:04d}{output.suffix}")
            try:
                images.save_image(event.image, path, overwrite=self.options.overwrite)
            except OutputError as e:
                self.on_event(Note(f"snapshot not saved: {e}"))

        return on_event

    def flush(self) -> None:
        """Stylise the pending group in one pass and save each output."""
        group, self.pending = self.pending, []
        if not group:
            return
        start = time.perf_counter()
        try:
            out = self.stylizer.stylize_tensor(torch.cat([g.rgb for g in group]),
                                               self.snapshots_beside(group[0].item.output))
        except Exception as e:  # noqa: BLE001 - isolation by design, see run()
            return self.fail([g.item for g in group], e)
        share = (time.perf_counter() - start) / len(group)
        for i, g in enumerate(group):
            if self.fatal:
                break
            try:
                images.save_image(out[i: i + 1], g.item.output, alpha=g.picture.alpha,
                                  overwrite=self.options.overwrite)
            except Exception as e:  # noqa: BLE001 - isolation by design, see run()
                self.fail([g.item], e)
                continue
            self.report(Result(g.item.source, g.item.output, "written", round(g.load_s + share, 3)))


def run(stylizer: Stylizer, items: list[Item], options: BatchOptions, on_result: Callable[[Result], None],
        on_event: EventCallback = ignore, stop: threading.Event | None = None) -> Outcome:
    """Stylise every item; report each result as it happens. Items of equal size are stacked up to
    `batch_size` where the stylizer allows it; a set `stop` ends the run after the current group.

    Isolation is by design, not by a list of exception types: whatever one item raises (Exception, so never
    KeyboardInterrupt or SystemExit) becomes that item's failure, unless it is fatal (see _is_fatal), which
    ends the run after reporting it."""
    state = _Run(stylizer, len(items), options, on_result, on_event)
    batch_size = options.batch_size if stylizer.batches else 1
    for item in items:
        if (stop is not None and stop.is_set()) or state.fatal:
            break
        if options.skip_existing and item.output.exists():
            state.report(Result(item.source, item.output, "skipped"))
            continue
        loaded = state.load(item)
        if loaded is None:
            continue
        if state.pending and state.pending[0].rgb.shape != loaded.rgb.shape:
            state.flush()
        state.pending.append(loaded)
        if len(state.pending) >= batch_size:
            state.flush()
    if not state.fatal:
        state.flush()
    return Outcome(state.results, state.fatal, len(items) - len(state.results))


def summary(counts: Mapping[str, int], signal_name: str | None = None, outcome: Outcome | None = None) -> str:
    """The line that ends a batch: what was written, skipped and failed, and why it ended early if it did."""
    line = f"{counts['written']} written, {counts['skipped']} skipped, {counts['failed']} failed"
    if signal_name:
        return line + f", stopped early by {signal_name}"
    if outcome is not None and outcome.fatal is not None:
        return line + f", stopped early: {outcome.not_run} not run, as they would fail the same way"
    return line
