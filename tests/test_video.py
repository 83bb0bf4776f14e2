"""Video: clips in and out (PyAV), frame folders, optical flow, warping, occlusion masks, the temporal blend, and
Gatys frames continued from the previous one. Every clip is made here: a few frames at 64 x 48."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from stransfer import api, temporal, video, videorun
from stransfer.errors import InputError, UsageError
from stransfer.events import Step

from conftest import cli, gradient_image, one_error_line

W, H, FPS = 64, 48, 10


def panning_frames(count: int = 6, step: int = 2) -> list[np.ndarray]:
    """A structured picture seen through a window that moves `step` pixels right each frame."""
    big = np.asarray(gradient_image(W + count * step, H, seed=3))
    return [np.ascontiguousarray(big[:, i * step: i * step + W]) for i in range(count)]


@pytest.fixture
def clip(tmp_path: Path):
    def make(name: str = "clip.mp4", count: int = 6, tone: bool = True) -> Path:
        path = tmp_path / name
        video.encode_clip(path, panning_frames(count), FPS, tone_hz=440.0 if tone else None)
        return path

    return make


def johnson_args(tiny_johnson: Path) -> list[str]:
    return ["-m", "johnson", "--model", "tiny", "--device", "cpu"]


def clip_facts(path: Path) -> tuple[int, tuple[int, int], Fraction, bool]:
    with video.ClipReader(path) as reader:
        count = sum(1 for kind, _ in reader.packets() if kind == "video")
        return count, (reader.info.width, reader.info.height), reader.info.fps, reader.info.has_audio


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("suffix, tone", [(".mp4", True), (".mkv", False), (".webm", True)])
def test_round_trip_keeps_frame_count_size_rate_and_sound(capsys, tmp_path, clip, tiny_johnson, suffix, tone):
    source = clip("in" + suffix, tone=tone)
    out = tmp_path / ("out" + suffix)
    code, stdout, err = cli(capsys, "stylize", source, *johnson_args(tiny_johnson), "-o", out)
    assert code == 0, err
    assert stdout.strip() == str(out) and "6 frames" in err
    assert clip_facts(out) == clip_facts(source) == (6, (W, H), Fraction(FPS), tone)
    assert leftovers(tmp_path) == []


def test_mp4_sound_is_copied_and_reencoded_for_webm(tmp_path, clip, tiny_johnson):
    stylizer = api.Stylizer("johnson", model="tiny", device="cpu")
    source = clip()
    same = videorun.stylize_clip(stylizer, source, tmp_path / "same.mp4", videorun.VideoConfig())
    other = videorun.stylize_clip(stylizer, source, tmp_path / "other.webm", videorun.VideoConfig())
    assert (same.audio, other.audio) == ("copied", "re-encoded")
    assert clip_facts(tmp_path / "other.webm")[3]


def test_size_sets_the_long_side_with_even_sides(tmp_path, clip, tiny_johnson):
    stylizer = api.Stylizer("johnson", model="tiny", device="cpu")
    videorun.stylize_clip(stylizer, clip(), tmp_path / "small.mp4", videorun.VideoConfig(), size=42)
    assert clip_facts(tmp_path / "small.mp4")[1] == (42, 32)  # 42 x 31.5 -> 32: 4:2:0 needs even sides


@pytest.mark.parametrize("suffix, words", [(".mp4", "cannot open video"), (".mkv", "ends early")])
def test_a_truncated_clip_fails_in_one_line_and_leaves_no_output(capsys, tmp_path, clip, tiny_johnson, suffix,
                                                                  words):
    source = clip("whole" + suffix, count=12, tone=False)
    cut = tmp_path / ("cut" + suffix)
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    out = tmp_path / "out.mp4"
    code, _, err = cli(capsys, "stylize", cut, *johnson_args(tiny_johnson), "-o", out)
    assert code == 1
    line = one_error_line(err)
    assert str(cut) in line and words in line
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("content, words", [(b"", "cannot open video"), (b"not a video at all" * 40,
                                                                        "cannot open video"), (None, "no such file")])
def test_a_missing_or_undecodable_clip_gets_one_line(capsys, tmp_path, tiny_johnson, content, words):
    source = tmp_path / "bad.mp4"
    if content is not None:
        source.write_bytes(content)
    code, _, err = cli(capsys, "stylize", source, *johnson_args(tiny_johnson), "-o", tmp_path / "out.mp4")
    assert code == 1 and words in one_error_line(err)
    assert not (tmp_path / "out.mp4").exists()


def test_an_existing_output_is_kept_without_overwrite(capsys, tmp_path, clip, tiny_johnson):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"mine")
    code, _, err = cli(capsys, "stylize", clip(), *johnson_args(tiny_johnson), "-o", out)
    assert code == 1 and "already exists" in one_error_line(err) and out.read_bytes() == b"mine"
    code, _, _ = cli(capsys, "stylize", clip(), *johnson_args(tiny_johnson), "-o", out, "--overwrite")
    assert code == 0 and clip_facts(out)[0] == 6


@pytest.mark.parametrize("args, words", [
    (["{clip}", "{image}"], "only input"),
    (["{image}", "--temporal-weight", "0.5"], "--temporal-weight applies"),
    (["{clip}", "--batch-size", "2"], "--batch-size does not apply"),
    (["{clip}", "--temporal-weight", "1.5"], "'temporal_weight' must be <= 0.95"),
    (["{clip}", "-o", "{tmp}/out.png"], "a video output needs one of the extensions"),
])
def test_video_usage_errors(capsys, tmp_path, clip, make_image, tiny_johnson, args, words):
    values = {"clip": clip(), "image": make_image("a.png"), "tmp": tmp_path}
    code, _, err = cli(capsys, "stylize", *[a.format(**values) for a in args], *johnson_args(tiny_johnson))
    assert code == 2 and words in one_error_line(err)


def test_without_the_video_extra_a_clip_gets_the_install_line(capsys, monkeypatch, tmp_path, clip, tiny_johnson):
    source = clip()
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    code, _, err = cli(capsys, "stylize", source, *johnson_args(tiny_johnson), "-o", tmp_path / "out.mp4")
    assert code == 2 and "pip install 'stransfer[video]'" in one_error_line(err)


def write_frames(folder: Path, count: int = 4) -> list[Path]:
    folder.mkdir()
    from PIL import Image

    paths = [folder / f"frame_{i + 1:05d}.png" for i in range(count)]
    for path, rgb in zip(paths, panning_frames(count)):
        Image.fromarray(rgb).save(path)
    (folder / "notes.txt").write_text("not a frame")
    return paths


def test_a_folder_of_frames_in_and_out(capsys, tmp_path, tiny_johnson):
    from PIL import Image

    frames = write_frames(tmp_path / "frames")
    out = tmp_path / "styled"
    code, stdout, err = cli(capsys, "stylize", tmp_path / "frames", "--frames", *johnson_args(tiny_johnson),
                            "-o", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in frames]
    assert all(Image.open(out / p.name).size == (W, H) for p in frames)
    code, _, err = cli(capsys, "stylize", tmp_path / "frames", "--frames", *johnson_args(tiny_johnson), "-o", out)
    assert code == 1 and "already exists" in one_error_line(err)
    assert leftovers(tmp_path) == []


def test_frames_needs_a_folder_with_frames(capsys, tmp_path, tiny_johnson):
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "stylize", tmp_path / "empty", "--frames", *johnson_args(tiny_johnson),
                       "-o", tmp_path / "out")
    assert code == 2 and "no frame_NNNNN.png files" in one_error_line(err)


def frame_tensors(count: int = 4) -> list[torch.Tensor]:
    return [video.frame_to_tensor(f) for f in panning_frames(count)]


def test_temporal_weight_zero_is_per_frame_stylisation(tiny_johnson):
    stylizer = api.Stylizer("johnson", model="tiny", device="cpu")
    per_frame = [stylizer.stylize_tensor(f) for f in frame_tensors()]
    still = videorun.FrameStylizer(stylizer, videorun.VideoConfig(temporal_weight=0.0))
    assert all(torch.equal(still(f), p) for f, p in zip(frame_tensors(), per_frame))
    blended = videorun.FrameStylizer(stylizer, videorun.VideoConfig(temporal_weight=0.6))
    outs = [blended(f) for f in frame_tensors()]
    assert torch.equal(outs[0], per_frame[0])  # nothing before the first frame to blend with
    assert not torch.equal(outs[2], per_frame[2])


def test_each_engine_blends_at_its_own_measured_weight_unless_told():
    assert videorun.config_for("johnson").temporal_weight == 0.5
    assert videorun.config_for("adain").temporal_weight == videorun.VideoConfig().temporal_weight == 0.6
    assert videorun.config_for("johnson", 0.2).temporal_weight == 0.2
    assert videorun.config_for("adain", 0.0).temporal_weight == 0.0


def test_gatys_frames_after_the_first_start_from_the_previous_output(random_weights_file):
    stylizer = api.Stylizer("gatys", torch.rand(1, 3, 40, 40), device="cpu", vgg_weights=random_weights_file,
                            scales="1", iterations="3", seed=0)
    assert stylizer.refines
    frames = videorun.FrameStylizer(stylizer, videorun.VideoConfig(refine_iterations=2, temporal_loss_weight=50))
    inputs = frame_tensors(3)
    first_steps: list[Step] = []
    frames(inputs[0], first_steps.append)
    second_steps: list[Step] = []
    frames(inputs[1], second_steps.append)
    # Frame 1 starts from its content (content loss 0 at the first evaluation); frame 2 from the previous output
    # warped onto it: stylised already (content loss above 0) and exactly where the temporal loss wants it.
    assert first_steps[0].losses["content"] == 0 and "temporal" not in first_steps[0].losses
    assert second_steps[0].losses["content"] > 0 and second_steps[0].losses["temporal"] == 0
    assert len(second_steps) == 2 and "previous frame" in second_steps[0].stage


def test_a_guide_for_an_engine_that_does_not_refine_is_a_usage_error(tiny_johnson):
    from stransfer.engines import Guide

    stylizer = api.Stylizer("johnson", model="tiny", device="cpu")
    frame = frame_tensors(1)[0]
    with pytest.raises(UsageError, match="does not continue"):
        stylizer.stylize_tensor(frame, guide=Guide(frame, torch.ones(1, 1, H, W), 1.0, 2))


# The pure pieces, on tiny arrays.


def shifted(image: np.ndarray, dx: int) -> np.ndarray:
    """image moved dx pixels right (the left columns repeat the edge)."""
    out = np.roll(image, dx, axis=1)
    out[:, :dx] = image[:, :1]
    return out


def test_warp_by_a_known_integer_shift():
    previous = np.asarray(gradient_image(W, H), dtype=np.float32) / 255
    current = shifted(previous, 2)
    backward = np.zeros((H, W, 2), np.float32)
    backward[..., 0] = -2  # each pixel of the current frame was 2 px to the left in the previous one
    warped = temporal.warp(previous, backward)
    np.testing.assert_allclose(warped[:, 2:], current[:, 2:], atol=1e-5)
    assert not np.allclose(previous[:, 2:], current[:, 2:], atol=1e-2)


def test_mask_is_zero_where_flows_disagree_or_leave_the_frame():
    backward = np.zeros((H, W, 2), np.float32)
    backward[..., 0] = -2
    forward = -backward
    mask = temporal.reliable(backward, forward)
    assert mask[:, 2:].min() == 1 and mask[:, :2].max() == 0  # the left columns came from outside the frame
    forward[10:20, 30:40] = (-5, 3)  # there the way back does not lead home: an occlusion
    mask = temporal.reliable(backward, forward)
    assert mask[12:18, 34:40].max() == 0 and mask[30:, 2:].min() == 1


def test_flow_finds_a_pan():
    previous = np.asarray(gradient_image(96, 64, seed=1))
    current = shifted(previous, 3)
    backward = temporal.FlowEstimator("medium")(temporal.grey(current), temporal.grey(previous))
    inner = backward[8:-8, 12:-8]
    assert abs(np.median(inner[..., 0]) + 3) < 0.3 and abs(np.median(inner[..., 1])) < 0.3


def test_blend_weights_the_previous_output_only_where_trusted():
    fresh = np.zeros((4, 4, 3), np.float32)
    previous = np.ones((4, 4, 3), np.float32)
    mask = np.zeros((4, 4), np.float32)
    mask[:, 2:] = 1
    out = temporal.blend(fresh, previous, mask, 0.6)
    np.testing.assert_allclose(out[:, :2], 0)
    np.testing.assert_allclose(out[:, 2:], 0.6)
    np.testing.assert_array_equal(temporal.blend(fresh, previous, mask, 0.0), fresh)


def test_keep_contrast_restores_what_averaging_flattened():
    rng = np.random.default_rng(0)
    fresh = rng.random((32, 32, 3)).astype(np.float32)
    other = rng.random((32, 32, 3)).astype(np.float32)
    blended = 0.5 * fresh + 0.5 * other  # two uncorrelated textures: about 0.7 of the contrast
    restored = temporal.keep_contrast(blended, fresh, sigma=2.0)
    assert blended.std() < 0.8 * fresh.std() and abs(restored.std() - fresh.std()) < 0.15 * fresh.std()
    flat = np.full((16, 16, 3), 0.3, np.float32)
    np.testing.assert_allclose(temporal.keep_contrast(flat, flat, 2.0), flat, atol=1e-6)
    np.testing.assert_array_equal(temporal.keep_contrast(blended, fresh, 0.0), blended)


def test_flicker_is_what_motion_does_not_explain():
    previous = np.asarray(gradient_image(W, H), dtype=np.float32) / 255
    backward = np.zeros((H, W, 2), np.float32)
    backward[..., 0] = -2
    mask = temporal.reliable(backward, -backward)
    moved = temporal.warp(previous, backward)
    assert temporal.flicker(previous, moved, backward, mask) < 1e-3
    brighter = np.clip(moved + 10 / 255, 0, 1)
    assert temporal.flicker(previous, brighter, backward, mask) == pytest.approx(10, abs=1.5)


def test_reader_names_a_file_that_is_not_a_video(tmp_path):
    path = tmp_path / "x.mov"
    path.write_text("hello")
    with pytest.raises(InputError, match="x.mov: cannot open video"):
        video.ClipReader(path)
