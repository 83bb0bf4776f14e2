"""`stransfer stylize clip.mp4` and `stylize --frames FOLDER`: the video flags, and the run handed to
stransfer.videorun."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from stransfer import api, batch, console, distributed, signals, video, videorun
from stransfer.device import Runtime
from stransfer.engines import ENGINES
from stransfer.errors import UsageError

VIDEO = "Video"
Frames = Annotated[bool, typer.Option(
    "--frames", help="CONTENT is one folder of frame_00001.png, frame_00002.png, ... stylised as a clip into the "
    "-o folder under the same names.", rich_help_panel=VIDEO)]
TemporalWeight = Annotated[float | None, typer.Option(
    help="Share of the previous output (warped by the motion) in each frame; 0 = each frame on its own "
    f"(default {videorun.VideoConfig.temporal_weight}, or the engine's own: "
    + ", ".join(f"{name} {spec.video_defaults['temporal_weight']}" for name, spec in ENGINES.items()
                if "temporal_weight" in spec.video_defaults) + ").", show_default=False, rich_help_panel=VIDEO)]


def is_clip(content: list[str]) -> bool:
    """Whether the inputs name a video file (by extension); a video among other inputs is a usage error."""
    clips = [c for c in content if video.is_video(c)]
    if clips and len(content) > 1:
        raise UsageError(f"a video is stylised on its own: give {clips[0]} as the only input")
    return bool(clips)


def check_flags(*, recursive: bool = False, batch_size: int = 1, name: str = batch.DEFAULT_NAME,
                temporal_weight: float | None = None) -> None:
    """Flags of image batches given with a video, or a video flag given with images: usage errors."""
    wrong = [flag for flag, given in (("--recursive", recursive), ("--batch-size", batch_size != 1),
                                      ("--name", name != batch.DEFAULT_NAME)) if given]
    if wrong:
        raise UsageError(f"{wrong[0]} does not apply to a video or a folder of frames")
    if temporal_weight is not None:
        raise UsageError("--temporal-weight applies to a video or to --frames")


def _target(source: Path, output: Path, frames: bool, label: str, method: str) -> Path:
    """A clip's output: -o itself when it names a video file (or, with --frames, a folder), else a file in the
    -o folder named like an image output, with the clip's extension."""
    if frames or video.is_video(output):
        return output
    if output.suffix and not output.is_dir():
        raise UsageError(f"-o {output}: a video output needs one of the extensions "
                         f"{', '.join(sorted(video.VIDEO_SUFFIXES))}")
    return output / f"{source.stem}_{label}_{method}{source.suffix.lower()}"


def run(content: list[str], output: Path, frames: bool, method: str, style: list[Path] | None,
        make: dict[str, Any], new_runtime: Callable[[distributed.World], Runtime], label: str,
        options: batch.BatchOptions, size: int | None, temporal_weight: float | None, dry_run: bool,
        as_json: bool) -> int:
    """Stylise one clip (or folder of frames); print the output, or a JSON line; return the exit code."""
    if frames and len(content) != 1:
        raise UsageError("--frames takes one folder of frames")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("a video runs in one process (its frames depend on each other): run it without torchrun")
    source = Path(content[0])
    target = _target(source, output, frames, label, method)
    config = videorun.config_for(method, temporal_weight)
    if dry_run or (options.skip_existing and target.exists()):
        state = "skip (exists)" if options.skip_existing and target.exists() else "write"
        console.stdout.print(f"{source} -> {target}: {state}")
        return 0
    video.require()
    stop = threading.Event()
    with console.ProgressRenderer() as render, signals.stop_on_signals(stop) as received:
        stylizer = api.Stylizer(method, style, runtime=new_runtime(distributed.World()), on_event=render, **make)
        if frames:
            result = videorun.stylize_frames(stylizer, source, target, config, size, options.overwrite,
                                             options.max_pixels, render)
        else:
            result = videorun.stylize_clip(stylizer, source, target, config, size, options.overwrite, render)
    if as_json:
        console.stdout.print_json(data={"input": str(source), "output": str(result.output), "status": "written",
                                        "seconds": round(result.seconds, 3), "frames": result.frames,
                                        "audio": result.audio, "error": None}, indent=None)
    else:
        console.stdout.print(str(result.output))
    fps = result.frames / max(result.seconds, 1e-9)
    console.note(f"{result.frames} frames in {result.seconds:.1f} s ({fps:.2f} frames/s), audio {result.audio}")
    return signals.exit_code(received[0]) if received else 0
