"""Clips in and out: decode a video's frames (PyAV), encode stylised frames with the input's timing and its audio
copied through, or read and write a folder of frame_%05d.png files. Outputs are written beside their final name
and renamed on success, so a failed run never leaves a partial clip or folder."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from stransfer import images, temporal
from stransfer.errors import InputError, OutputError, UsageError, write_error
from stransfer.fileio import file_problem, new_file_mode, publish
from stransfer.temporal import INSTALL_HINT

# Output extension -> FFmpeg muxer, video encoder and the audio encoder used when the input's audio codec does
# not fit the container. .m4v is named explicitly: left to guessing, FFmpeg would pick its raw MPEG-4 muxer.
CONTAINERS = {
    ".mp4": ("mp4", "libx264", "aac"), ".m4v": ("mp4", "libx264", "aac"), ".mov": ("mov", "libx264", "aac"),
    ".mkv": ("matroska", "libx264", "aac"), ".avi": ("avi", "libx264", "libmp3lame"),
    ".webm": ("webm", "libvpx-vp9", "libopus"),
}
VIDEO_SUFFIXES = frozenset(CONTAINERS)
FRAME_NAME = re.compile(r"frame_(\d+)\.png", re.IGNORECASE)
# x264's constant quality: 18 is "visually lossless" to most eyes; the stylised strokes are the content here.
X264_OPTIONS = {"crf": "18", "preset": "medium"}


def is_video(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av() -> ModuleType:
    """PyAV, or a usage error saying how to install it (it is the optional `video` extra)."""
    try:
        import av
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return av


def require() -> None:
    """Both optional video packages importable (PyAV, OpenCV), or one usage error saying how to install them."""
    _av()
    temporal.opencv()


def frame_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_frame(rgb: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    arr = rgb.detach()[0].float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0)
    return np.ascontiguousarray(arr.cpu().numpy())


def even_size(height: int, width: int) -> tuple[int, int]:
    """The encoders' 4:2:0 chroma needs even sides: an odd side loses its last pixel row or column."""
    return max(2, height - height % 2), max(2, width - width % 2)


@dataclass(frozen=True)
class ClipInfo:
    """What a clip's output must keep: frame count, rate and size, and whether there is sound."""

    width: int
    height: int
    fps: Fraction
    frames: int  # declared by the container; 0 when it does not say
    duration: float  # seconds; 0 when unknown
    has_audio: bool

    @property
    def expected_frames(self) -> int:
        """The declared frame count, else one estimated from duration and rate (0 when neither is known)."""
        return self.frames or round(self.duration * self.fps)


def _open_failure(path: Path, e: Exception) -> InputError:
    reason = getattr(e, "strerror", None) or str(e)
    return InputError(f"{path}: cannot open video ({reason})")


class ClipReader:
    """A video file's frames in order, as RGB uint8 arrays, with the audio packets between them."""

    def __init__(self, path: Path) -> None:
        av = _av()
        problem = file_problem(path)
        if problem:
            raise InputError(f"{path}: {problem}")
        self.path = path
        try:
            self.container = av.open(str(path))
        except (av.FFmpegError, OSError, ValueError) as e:
            raise _open_failure(path, e) from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{path}: no video stream")
        self.video = self.container.streams.video[0]
        self.video.thread_type = "AUTO"
        self.audio = self.container.streams.audio[0] if self.container.streams.audio else None
        self.info = self._info()

    def _info(self) -> ClipInfo:
        v = self.video
        fps = v.average_rate or v.guessed_rate or Fraction(25)
        return ClipInfo(v.codec_context.width, v.codec_context.height, Fraction(fps), v.frames or 0,
                        self._video_seconds(), self.audio is not None)

    def _video_seconds(self) -> float:
        """The video stream's own length: its header's, Matroska's DURATION tag, or (with no sound track that
        could be longer) the container's; 0 when none says."""
        v = self.video
        if v.duration is not None and v.time_base is not None:
            return float(v.duration * v.time_base)
        tag = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", v.metadata.get("DURATION", ""))
        if tag:
            return int(tag[1]) * 3600 + int(tag[2]) * 60 + float(tag[3])
        if self.audio is None and self.container.duration:
            return self.container.duration / 1e6
        return 0.0

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> ClipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def packets(self) -> Iterator[tuple[str, Any]]:
        """("video", av.VideoFrame) and ("audio", av.Packet) in file order; a decoding failure or a file that
        ends before its declared frame count is an InputError naming the frame."""
        av = _av()
        streams = [s for s in (self.video, self.audio) if s is not None]
        count = 0
        try:
            for packet in self.container.demux(streams):
                if packet.stream.type == "audio":
                    if packet.dts is not None:
                        yield "audio", packet
                    continue
                for frame in packet.decode():
                    count += 1
                    yield "video", frame
        except (av.FFmpegError, OSError, ValueError, EOFError) as e:
            raise InputError(f"{self.path}: cannot decode frame {count + 1} "
                             f"({getattr(e, 'strerror', None) or e})") from None
        self._check_complete(count)

    def _check_complete(self, count: int) -> None:
        info = self.info
        expected = info.expected_frames
        # A declared count is exact; one estimated from the duration may be off by a frame.
        slack = 0 if info.frames else 1
        if count == 0 or count < expected - slack:
            raise InputError(f"{self.path}: the video ends early: {count} of {expected} frames decoded "
                             "(truncated or damaged file)")


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    """A finished file to its place; without overwrite an existing one (even one that appeared meanwhile) stays."""
    try:
        publish(tmp, path, replace=overwrite)
    except FileExistsError:
        raise OutputError(f"{path}: already exists (pass --overwrite to replace it)") from None


@contextlib.contextmanager
def _temporary_beside(path: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary path in `path`'s folder that becomes `path` on clean exit and vanishes on any error;
    with overwrite False an existing `path` (even one that appeared meanwhile) is never replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, new_file_mode())
    try:
        yield tmp
        _move_into_place(tmp, path, overwrite)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def check_clip_output(path: Path, overwrite: bool) -> None:
    """Fail before any frame is stylised when `path` could not be written."""
    if path.suffix.lower() not in CONTAINERS:
        raise UsageError(f"{path}: a video output needs one of the extensions {', '.join(sorted(CONTAINERS))}")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass --overwrite to replace it)")


class ClipWriter:
    """Encodes RGB frames at the input's frame times, and the input's audio: its packets copied unchanged when
    the output container takes that codec, else re-encoded."""

    def __init__(self, path: Path, reader: ClipReader, size: tuple[int, int]) -> None:
        av = _av()
        fmt, video_codec, audio_codec = CONTAINERS[path.suffix.lower()]
        self.container = av.open(str(path), "w", format=fmt)
        self.stream = self.container.add_stream(video_codec, rate=reader.info.fps)
        self.stream.height, self.stream.width = size
        self.stream.pix_fmt = "yuv420p"
        if video_codec == "libx264":
            self.stream.options = dict(X264_OPTIONS)
        # The input's own time base, so every frame keeps its exact time (variable frame rates included); AVI
        # counts frames rather than timing them, so there the time base is one frame.
        time_base = Fraction(1) / reader.info.fps if fmt == "avi" else reader.video.time_base
        self.stream.time_base = self.stream.codec_context.time_base = time_base
        self.audio_in, self.audio_out, self.audio_copied = reader.audio, None, False
        if reader.audio is not None:
            self.audio_copied = reader.audio.codec_context.codec.canonical_name in self.container.supported_codecs
            if self.audio_copied:
                self.audio_out = self.container.add_stream_from_template(reader.audio)
            else:
                self.audio_out = self.container.add_stream(audio_codec, rate=reader.audio.codec_context.sample_rate)
        self._av = av

    def write(self, rgb: np.ndarray, like: Any) -> None:
        """One frame, at the time of `like` (the decoded input frame it replaces)."""
        frame = self._av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = like.pts, like.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def audio(self, packet: Any) -> None:
        assert self.audio_out is not None
        if self.audio_copied:
            packet.stream = self.audio_out
            self.container.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # the encoder counts samples itself
            for out in self.audio_out.encode(frame):
                self.container.mux(out)

    def finish(self) -> None:
        for stream in (self.stream, None if self.audio_copied else self.audio_out):
            if stream is not None:
                for packet in stream.encode(None):
                    self.container.mux(packet)
        self.container.close()

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()


@contextlib.contextmanager
def clip_writer(path: Path, reader: ClipReader, size: tuple[int, int], overwrite: bool) -> Iterator[ClipWriter]:
    """A ClipWriter whose file appears at `path` only when the block ends cleanly."""
    av = _av()
    with _temporary_beside(path, overwrite) as tmp:
        writer = ClipWriter(tmp, reader, size)
        try:
            yield writer
            writer.finish()
        except av.FFmpegError as e:
            writer.abandon()
            raise write_error(path, e, "encode") from None
        except BaseException:
            writer.abandon()
            raise


# A folder of frames, for people who cut and join clips with their own tools (ffmpeg -i clip.mp4 frame_%05d.png).


def frame_files(folder: Path) -> list[Path]:
    """The folder's frame_NNNNN.png files in frame-number order; a folder without any is a usage error."""
    if not folder.is_dir():
        raise UsageError(f"{folder}: --frames takes a folder of frame_00001.png, frame_00002.png, ...")
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := FRAME_NAME.fullmatch(p.name)) and p.is_file()]
    if not found:
        raise UsageError(f"{folder}: no frame_NNNNN.png files found")
    return [p for _, p in sorted(found)]


def check_frames_output(folder: Path, names: list[str], overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: with --frames, -o must be a folder")
    taken = [n for n in names if (folder / n).exists()]
    if taken and not overwrite:
        raise OutputError(f"{folder / taken[0]}: already exists (pass --overwrite to replace it)")


@contextlib.contextmanager
def frames_writer(folder: Path, overwrite: bool) -> Iterator[Path]:
    """A hidden folder beside `folder` to write frames into; its files move into `folder` only when the block
    ends cleanly, so a failed run adds no frame at all."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        yield staging
        folder.mkdir(exist_ok=True)
        for path in sorted(staging.iterdir()):
            _move_into_place(path, folder / path.name, overwrite)
    except OSError as e:
        raise write_error(folder, e) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_frame(path: Path, max_pixels: int) -> torch.Tensor:
    return images.load_image(path, max_pixels).rgb


def encode_clip(path: Path, frames: Iterator[np.ndarray] | list[np.ndarray], fps: int,
                tone_hz: float | None = None, sample_rate: int = 48000) -> None:
    """Write RGB uint8 frames as a clip at `fps` (with a sine tone as its sound track when `tone_hz` is
    given): how the tests and the flicker benchmark make the clips they stylise."""
    av = _av()
    fmt, video_codec, audio_codec = CONTAINERS[path.suffix.lower()]
    frames = list(frames)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(video_codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        audio = None if tone_hz is None else container.add_stream(audio_codec, rate=sample_rate)
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        if audio is not None:
            t = np.arange(round(len(frames) / fps * sample_rate)) / sample_rate
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)[None, :]
            chunk = audio.codec_context.frame_size or 1024
            for start in range(0, wave.shape[1], chunk):
                piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + chunk]), format="fltp",
                                                   layout="mono")
                piece.sample_rate = sample_rate
                for packet in audio.encode(piece):
                    container.mux(packet)
        for s in (stream, audio):
            if s is not None:
                for packet in s.encode(None):
                    container.mux(packet)
