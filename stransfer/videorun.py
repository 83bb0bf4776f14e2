"""A clip (or a folder of frames) through one Stylizer, frame by frame, with temporal consistency: feed-forward
outputs blended with the previous output warped by the input's optical flow, Gatys frames started from it with
a temporal loss (Ruder et al. 2016). The engine is loaded and the style prepared once, by the Stylizer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from stransfer import images, temporal, video
from stransfer.config import build, param
from stransfer.engines import Guide
from stransfer.errors import UsageError
from stransfer.events import EventCallback, Step, ignore

if TYPE_CHECKING:
    from stransfer.api import Stylizer


@dataclass(frozen=True)
class VideoConfig:
    """How consecutive frames are tied together; 0 for temporal_weight stylises each frame on its own."""

    # Feed-forward engines: the share of the previous output (warped onto the frame) in each new one, where the
    # flow is reliable (an engine may set its own: EngineSpec.video_defaults). 0.6 keeps the flicker under half the
    # per-frame one at no cost in style (benchmarks/video_flicker.py).
    temporal_weight: float = param(0.6, ge=0.0, le=0.95)
    # Feed-forward engines: the scales, in pixels, at which the blend's local contrast is brought back to the
    # fresh output's (temporal.keep_contrast), coarse then fine; () turns it off. Blending flattens strokes, and
    # two scales win back more of the style than one (benchmarks/video_flicker.py).
    contrast_sigmas: tuple[float, ...] = param((4.0, 1.0), gt=0.0, le=64.0)
    # DIS optical-flow preset (temporal.PRESETS).
    flow: str = param("medium", choices=temporal.PRESETS)
    # Gatys: weight of the temporal loss (mean squared pixel difference from the warped previous output, pixels
    # in [0, 1]) beside content (1) and style (5), both relative errors of order 0.1-1. Per-frame flicker of about
    # 15/255 is a squared difference near 0.004, so at 200 it costs as much as the content term: enough to hold
    # the strokes in place while content and style still move them.
    temporal_loss_weight: float = param(200.0, ge=0.0, le=1e6)
    # Gatys: evaluations for each frame after the first, at full size only, where the first frame runs the whole
    # coarse-to-fine schedule (45,45,100 by default): the warped start is already stylised.
    refine_iterations: int = param(40, ge=1, le=100_000)


def config_for(method: str, temporal_weight: float | None = None) -> VideoConfig:
    """The video settings for an engine: its spec's video_defaults, then `temporal_weight` where given."""
    from stransfer.api import engine_spec

    return build(VideoConfig, None, {"temporal_weight": temporal_weight},
                 defaults=dict(engine_spec(method).video_defaults))


@dataclass(frozen=True)
class VideoResult:
    output: Path
    frames: int
    seconds: float
    audio: str  # "copied", "re-encoded" or "none"


class FrameStylizer:
    """Stylises the frames of one clip in order, each tied to the previous output by the input's motion."""

    def __init__(self, stylizer: Stylizer, config: VideoConfig) -> None:
        self.stylizer, self.config = stylizer, config
        self.tracker = temporal.Tracker(config.flow) if config.temporal_weight > 0 else None
        self.previous: np.ndarray | None = None  # the last output, (H, W, 3) float32

    def __call__(self, rgb: torch.Tensor, on_event: EventCallback = ignore) -> torch.Tensor:
        """(1, 3, H, W) input frame in [0, 1] -> its stylised frame."""
        frame = _to_array(rgb)
        motion = None if self.tracker is None else self.tracker.step(frame)
        if motion is None or self.previous is None or self.previous.shape != frame.shape:
            out = self.stylizer.stylize_tensor(rgb, on_event)
        elif self.stylizer.refines:
            warped = np.clip(temporal.warp(self.previous, motion.backward), 0, 1)
            guide = Guide(_to_tensor(warped), torch.from_numpy(motion.mask)[None, None],
                          self.config.temporal_loss_weight, self.config.refine_iterations)
            out = self.stylizer.stylize_tensor(rgb, on_event, guide=guide)
        else:
            fresh = _to_array(self.stylizer.stylize_tensor(rgb, on_event))
            warped = temporal.warp(self.previous, motion.backward)
            blended = temporal.blend(fresh, warped, motion.mask, self.config.temporal_weight)
            for sigma in self.config.contrast_sigmas:
                blended = temporal.keep_contrast(blended, fresh, sigma)
            out = _to_tensor(np.clip(blended, 0, 1))
        self.previous = _to_array(out)
        return out


def _to_array(rgb: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(rgb.detach()[0].float().permute(1, 2, 0).cpu().numpy())


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def output_size(height: int, width: int, size: int | None, even: bool) -> tuple[int, int]:
    """The frames' size: the input's own, or its long side `size`; even sides for the video encoders."""
    h, w = (height, width) if size is None else images.fit_long_side(height, width, size)
    return video.even_size(h, w) if even else (h, w)


def stylize_clip(stylizer: Stylizer, source: Path, output: Path, config: VideoConfig, size: int | None = None,
                 overwrite: bool = False, on_event: EventCallback = ignore) -> VideoResult:
    """Decode `source`, stylise every frame, encode `output` with the same frame times and frame rate and the
    source's sound; `output` appears only when the whole clip is done."""
    video.check_clip_output(output, overwrite)
    start = time.perf_counter()
    frames = FrameStylizer(stylizer, config)
    with video.ClipReader(source) as reader:
        info = reader.info
        h, w = output_size(info.height, info.width, size, even=True)
        total = info.expected_frames or 1
        count = 0
        with video.clip_writer(output, reader, (h, w), overwrite) as writer:
            for kind, item in reader.packets():
                if kind == "audio":
                    writer.audio(item)
                    continue
                rgb = images.resize(video.frame_to_tensor(item.to_ndarray(format="rgb24")), (h, w))
                writer.write(video.tensor_to_frame(frames(rgb)), item)
                count += 1
                on_event(Step(count, max(total, count), stage="frames"))
        audio = "none" if reader.audio is None else "copied" if writer.audio_copied else "re-encoded"
    return VideoResult(output, count, time.perf_counter() - start, audio)


def stylize_frames(stylizer: Stylizer, folder: Path, output: Path, config: VideoConfig, size: int | None = None,
                   overwrite: bool = False, max_pixels: int = images.DEFAULT_MAX_PIXELS,
                   on_event: EventCallback = ignore) -> VideoResult:
    """A folder of frame_NNNNN.png in, the same names in `output`; nothing lands there unless every frame does."""
    sources = video.frame_files(folder)
    if output.resolve() == folder.resolve():
        raise UsageError(f"{output}: the output frames would replace the input frames; choose another -o")
    video.check_frames_output(output, [p.name for p in sources], overwrite)
    start = time.perf_counter()
    frames = FrameStylizer(stylizer, config)
    with video.frames_writer(output, overwrite) as staging:
        for i, path in enumerate(sources):
            rgb = video.read_frame(path, max_pixels)
            rgb = images.resize(rgb, output_size(*rgb.shape[-2:], size, even=False))
            images.save_image(frames(rgb), staging / path.name)
            on_event(Step(i + 1, len(sources), stage="frames"))
    return VideoResult(output, len(sources), time.perf_counter() - start, "none")
