"""Flicker of stylised video, per frame against temporally blended, on a clip this script makes.

    python benchmarks/video_flicker.py johnson --model starry_night [--seconds 5] [--height 480] [--weights 0.6]
    python benchmarks/video_flicker.py adain -s examples/starry_night.jpg [--seconds 2]
    python benchmarks/video_flicker.py gatys -s examples/starry_night.jpg --seconds 1 --height 128

The clip: a slow pan and zoom across a photo (examples/tubingen.jpg), 16:9 at --height, 30 frames/s, with a
sine tone as its sound track, encoded as mp4. It goes through `stransfer.videorun.stylize_clip` (what
`stransfer stylize clip.mp4` runs) once per frame on its own (temporal weight 0) and once per --weights value.

For each run: flicker = mean absolute difference (0-255) between each stylised frame and the previous stylised
frame warped by the INPUT's optical flow, on the pixels the flow trusts (no occlusion); its ratio to the
per-frame flicker; the reference-metric style ratio (stransfer.metrics, FACTS.md) of every --every-th frame,
averaged; seconds per frame against one frame stylised as a single image; and whether the output kept the
input's frame count, rate, duration and sound.

Run time with the defaults (150 frames, two runs) on 2 AVX2-only cores, from the README's table of seconds per
frame (2-core AMD EPYC, fp32): about 7 minutes for johnson (1 thread), about 15 for adain with --threads 2.
gatys is not timed: it optimises every frame, which is why its example above keeps the clip to 1 s at 128 px.

The video defaults (stransfer/videorun.py's VideoConfig, temporal.py's warp) were set from runs of this script:
- temporal_weight 0.6: adain x starry_night, the 5 s 480p clip, flicker x0.42 of per-frame and style ratio
  0.003 better (the bar: at most half the flicker, at most 0.05 more style ratio).
- contrast_sigmas (4, 1): johnson, the clip's first 40 frames, at 0.6: (2,) with bicubic warps -> style ratio
  +0.079, (4, 1) -> +0.053, and +0.047 with Lanczos warps; on the 1 s clip (faster motion), no contrast kept at
  all -> +0.096.
- Lanczos warps: on the johnson clip bilinear cost 0.02 more style ratio than bicubic, and bicubic 0.006 more
  than Lanczos.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stransfer import api, images, metrics, temporal, video, videorun, weights
from stransfer.backbone import VGGFeatures

REPO = Path(__file__).resolve().parents[1]
FPS = 30


def pan_and_zoom(photo: Path, seconds: float, height: int) -> list[np.ndarray]:
    """Frames of a 16:9 window gliding left to right across the photo while zooming in by 15%."""
    im = Image.open(photo).convert("RGB")
    width = round(height * 16 / 9 / 2) * 2
    count = round(seconds * FPS)
    frames = []
    for i in range(count):
        t = i / max(count - 1, 1)
        win_w = im.width * 0.8 / (1 + 0.15 * t)
        win_h = win_w * 9 / 16
        x0 = (im.width - win_w) * (0.1 + 0.8 * t)
        y0 = (im.height - win_h) * 0.5
        box = (x0, y0, x0 + win_w, y0 + win_h)
        frames.append(np.asarray(im.transform((width, height), Image.Transform.EXTENT, box,
                                              Image.Resampling.BICUBIC)))
    return frames


def decoded(path: Path) -> list[np.ndarray]:
    with video.ClipReader(path) as reader:
        return [item.to_ndarray(format="rgb24") for kind, item in reader.packets() if kind == "video"]


def flicker_of(inputs: list[np.ndarray], outputs: list[np.ndarray], tracker_preset: str) -> float:
    """Mean over frame pairs of temporal.flicker, with the motion of the input frames."""
    tracker = temporal.Tracker(tracker_preset)
    values = []
    for frame, (prev, cur) in zip(inputs[1:], zip(outputs, outputs[1:])):
        if tracker.previous is None:
            tracker.step(inputs[0])
        motion = tracker.step(frame)
        assert motion is not None
        values.append(temporal.flicker(prev.astype(np.float32) / 255, cur.astype(np.float32) / 255,
                                       motion.backward, motion.mask))
    return float(np.mean(values))


def style_ratio(net: VGGFeatures, inputs: list[np.ndarray], outputs: list[np.ndarray], style: torch.Tensor,
                every: int) -> float:
    ratios = [metrics.score(net, video.frame_to_tensor(o), video.frame_to_tensor(i), style).style_ratio
              for i, o in list(zip(inputs, outputs))[::every]]
    return float(np.mean(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=["johnson", "adain", "swap", "gatys"])
    parser.add_argument("--model", help="johnson: a model name (default starry_night)")
    parser.add_argument("-s", "--style", type=Path, default=REPO / "examples" / "starry_night.jpg",
                        help="style image (johnson: only for the style metric)")
    parser.add_argument("--photo", type=Path, default=REPO / "examples" / "tubingen.jpg")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--weights", help="temporal weights to compare with per-frame (0), comma-separated "
                        "(default: the engine's own, videorun.config_for)")
    parser.add_argument("--every", type=int, default=15, help="style metric on every N-th frame")
    parser.add_argument("--iterations", help="gatys: evaluations per scale for the first / per-frame runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    options = {"model": args.model or "starry_night"} if args.method == "johnson" else {}
    if args.iterations:
        options["iterations"] = args.iterations
    stylizer = api.Stylizer(args.method, None if args.method == "johnson" else args.style, device=args.device,
                            threads=args.threads, seed=0, **options)
    style = images.load_image(args.style).rgb
    net = VGGFeatures("vgg16", deepest="relu4_3")
    net.load_weights(weights.resolve("vgg16")[0])

    frames = pan_and_zoom(args.photo, args.seconds, args.height)
    work = Path(tempfile.mkdtemp(prefix="video_flicker."))
    source = work / "clip.mp4"
    video.encode_clip(source, frames, FPS, tone_hz=440.0)
    inputs = decoded(source)
    with video.ClipReader(source) as r:
        info_in = r.info

    one = video.frame_to_tensor(inputs[len(inputs) // 2])
    stylizer.stylize_tensor(one)  # warm-up
    start = time.perf_counter()
    stylizer.stylize_tensor(one)
    single = time.perf_counter() - start

    print(f"# video flicker: {args.method} {args.model or args.style.stem}, {info_in.width}x{info_in.height}, "
          f"{len(inputs)} frames at {info_in.fps} fps ({info_in.duration:.2f} s), {args.threads} thread(s), "
          f"{stylizer.runtime.device}")
    print(f"single image: {single:.3f} s")
    print("| temporal weight | flicker | vs per-frame | style ratio | s/frame | vs single | frames | fps | "
          "duration | audio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = None
    weights_to_try = args.weights or str(videorun.config_for(args.method).temporal_weight)
    for weight in [0.0] + [float(w) for w in weights_to_try.split(",") if float(w) > 0]:
        out = work / f"out_{weight}.mp4"
        cfg = videorun.config_for(args.method, weight)
        result = videorun.stylize_clip(stylizer, source, out, cfg)
        outputs = decoded(out)
        with video.ClipReader(out) as r:
            info = r.info
        f = flicker_of(inputs, outputs, cfg.flow)
        base = base or f
        ratio = style_ratio(net, inputs, outputs, style, args.every)
        per_frame = result.seconds / result.frames
        print(f"| {weight:g} | {f:.2f} | {f / base:.2f} | {ratio:.4f} | {per_frame:.3f} | {per_frame / single:.2f} "
              f"| {len(outputs)}/{len(inputs)} | {info.fps == info_in.fps} ({Fraction(info.fps)}) | "
              f"{info.duration:.2f} s | {result.audio} |", flush=True)


if __name__ == "__main__":
    main()
