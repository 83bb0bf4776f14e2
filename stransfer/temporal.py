"""Temporal consistency for video: optical flow between input frames (OpenCV's DIS, Kroeger et al. 2016),
warping, occlusion masks from forward/backward disagreement (Sundaram et al. 2010, as used by Ruder et al.
2016), the blend of a new output with the previous one warped, and the flicker measure.

Images here are numpy arrays (H, W, C) float32 in [0, 1]; flows (H, W, 2) float32 in pixels, (dx, dy), with the
convention of OpenCV: flow(a, b)[y, x] is where the pixel (x, y) of `a` is found in `b`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from stransfer.errors import UsageError

# DIS presets: ultrafast is noticeably noisier on slow pans; medium costs a small share of any engine's time per
# frame.
PRESETS = ("ultrafast", "fast", "medium")


INSTALL_HINT = "video needs: pip install 'stransfer[video]'"


def opencv() -> ModuleType:
    """OpenCV, or a usage error saying how to install it (part of the optional `video` extra)."""
    try:
        import cv2
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return cv2


def grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] or uint8 -> (H, W) uint8, what DIS reads."""
    arr = rgb if rgb.dtype == np.uint8 else (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    return (arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114 + 0.5).astype(np.uint8)


class FlowEstimator:
    """Dense optical flow with one DIS instance (its buffers are reused frame after frame)."""

    def __init__(self, preset: str = "medium") -> None:
        cv2 = opencv()
        if preset not in PRESETS:
            raise UsageError(f"flow preset must be one of {', '.join(PRESETS)} (got {preset!r})")
        codes = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                 "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        self.dis = cv2.DISOpticalFlow_create(codes[preset])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from grey frame `a` to grey frame `b`: a[y, x] ~ b[(x, y) + flow[y, x]]."""
        return self.dis.calc(a, b, None)


@functools.lru_cache(maxsize=4)
def _pixels(h: int, w: int) -> np.ndarray:
    """Each pixel's (y, x), built once per frame size (it is read-only)."""
    grid = np.mgrid[0:h, 0:w].astype(np.float32)
    grid.flags.writeable = False
    return grid


def _grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = _pixels(*flow.shape[:2])
    return xs + flow[..., 0], ys + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` sampled at (x, y) + flow[y, x], edges repeated: with flow = flow(cur, prev), the previous frame moved
    onto the current one. Lanczos (8x8): a blended output is warped again every frame, so an interpolation's blur
    compounds, and the sharpest interpolation loses the least style (benchmarks/video_flicker.py)."""
    cv2 = opencv()
    map_x, map_y = _grid(flow)
    out = cv2.remap(np.ascontiguousarray(image, dtype=np.float32), map_x, map_y, cv2.INTER_LANCZOS4,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(image.shape)


def reliable(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(H, W) float32, 1 where the current frame's pixel is seen in the previous frame too, 0 where it is
    occluded or came in from outside the frame. backward = flow(cur, prev), forward = flow(prev, cur): following
    one and then the other must come back to the start (|b + f|^2 <= 0.01 (|b|^2 + |f|^2) + 0.5)."""
    h, w = backward.shape[:2]
    map_x, map_y = _grid(backward)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    f = warp(forward, backward)
    round_trip = ((backward + f) ** 2).sum(axis=2)
    tolerance = 0.01 * ((backward ** 2).sum(axis=2) + (f ** 2).sum(axis=2)) + 0.5
    return (inside & (round_trip <= tolerance)).astype(np.float32)


def blend(stylised: np.ndarray, previous_warped: np.ndarray, mask: np.ndarray, weight: float) -> np.ndarray:
    """The new output: `weight` of the previous output (warped onto this frame) where the mask trusts it, the
    fresh stylisation elsewhere. Applied frame after frame this is a running average along the motion, so a
    stroke that flickers from frame to frame settles while occluded and new regions are stylised afresh."""
    m = (weight * mask)[..., None].astype(np.float32)
    return stylised + m * (previous_warped - stylised)


def keep_contrast(blended: np.ndarray, fresh: np.ndarray, sigma: float, max_gain: float = 3.0) -> np.ndarray:
    """Averaging two stroke patterns that do not line up exactly flattens them: the blend has less local contrast
    than either, and its style drifts toward the photo's. Each channel's deviation from its local mean (a Gaussian
    of `sigma` pixels) is scaled back up by the ratio of local standard deviations, fresh over blended, between 1
    and `max_gain`: Heitz and Neyret's (2018) variance-preserving blending, with the variance measured locally,
    since how much two frames' strokes agree varies across the picture. The gain is a local statistic, so it
    changes slowly from frame to frame and brings little flicker back. sigma 0 = off."""
    if sigma <= 0:
        return blended
    cv2 = opencv()

    def local_mean(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (0, 0), sigma).reshape(x.shape)

    mean_b, mean_f = local_mean(blended), local_mean(fresh)
    var_b, var_f = local_mean((blended - mean_b) ** 2), local_mean((fresh - mean_f) ** 2)
    gain = np.clip(np.sqrt((var_f + 1e-6) / (var_b + 1e-6)), 1.0, max_gain)
    return mean_b + (blended - mean_b) * gain


def flicker(previous: np.ndarray, current: np.ndarray, backward: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference (0-255 scale) between `current` and `previous` warped onto it by the input's
    flow, on the pixels `mask` trusts: what changes between frames that motion does not explain."""
    diff = np.abs(current - warp(previous, backward)).mean(axis=2)
    return float((diff * mask).sum() / max(mask.sum(), 1.0) * 255.0)


@dataclass
class Motion:
    """How the current frame relates to the previous one."""

    backward: np.ndarray  # flow(cur, prev)
    mask: np.ndarray  # reliable(backward, forward)


class Tracker:
    """Follows the input frames: the motion from each frame to the one before it."""

    def __init__(self, preset: str = "medium") -> None:
        self.flow = FlowEstimator(preset)
        self.previous: np.ndarray | None = None

    def step(self, frame: np.ndarray) -> Motion | None:
        """Take the next input frame (H, W, 3); its motion from the previous one (None for the first)."""
        current = grey(frame)
        previous, self.previous = self.previous, current
        if previous is None or previous.shape != current.shape:
            return None
        backward = self.flow(current, previous)
        return Motion(backward, reliable(backward, self.flow(previous, current)))
