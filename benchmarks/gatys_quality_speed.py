"""Gatys at 512 px: wall time and reference-metric distances for the single-scale fp32 baseline, the default
(multi-scale) configuration, and the default in bf16, as one Markdown table.

    python benchmarks/gatys_quality_speed.py [--content C] [--style S] [--size 512] [--device auto]
        [--precision auto|fp32] [--skip-baseline] [--extra SCALES:ITERATIONS[:PLATEAU]]

The baseline is plain single-scale L-BFGS, 300 evaluations, fp32. Distances are the reference metric of
FACTS.md (stransfer/metrics.py): lower style = closer to the style, lower content = closer to the photo. About
13 minutes on 2 AVX2-only cores, 9 of them the baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from collections import Counter
from pathlib import Path

import torch

from stransfer import images, metrics, weights
from stransfer.backbone import VGGFeatures
from stransfer.device import make_runtime, native_bf16
from stransfer.engines.gatys import Gatys, GatysConfig
from stransfer.events import Step

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def parse_schedule(text: str) -> dict:
    """"0.25,0.5,1:150,80,40" -> scales and iterations, for trying other schedules; a third part sets the
    plateau ("0.25,0.5,1:150,80,40:0.01")."""
    scales, iterations, *plateau = text.split(":")
    return {"scales": tuple(float(s) for s in scales.split(",")),
            "iterations": tuple(int(i) for i in iterations.split(",")),
            **({"plateau": float(plateau[0])} if plateau else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", type=Path, default=EXAMPLES / "tubingen.jpg")
    parser.add_argument("--style", type=Path, default=EXAMPLES / "starry_night.jpg")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--baseline-iterations", type=int, default=300)
    parser.add_argument("--extra", action="append", default=[],
                        help="another schedule to try, SCALES:ITERATIONS[:PLATEAU], e.g. 0.5,1:100,50 (repeatable)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--precision", choices=["auto", "fp32"], default="auto",
                        help="auto: fp32, and bf16 too where it is native; fp32: fp32 only (what AVX2 machines run)")
    args = parser.parse_args()

    state = weights.resolve("vgg16")[0]
    metric_net = VGGFeatures("vgg16", deepest="relu4_3")
    metric_net.load_weights(state)
    content_full = images.load_image(args.content).rgb
    style = images.load_image(args.style).rgb
    content = images.resize_long_side(content_full, args.size)

    default = GatysConfig()
    device = make_runtime(args.device).device
    # Emulated bf16 (CPUs without AVX-512 BF16 or AMX) runs about 400x slower than fp32: timed only where native.
    precisions = ["fp32", "bf16"] if native_bf16(device) and args.precision == "auto" else ["fp32"]
    runs = [] if args.skip_baseline else [
        ("single-scale fp32 (baseline)", dataclasses.replace(default, scales=(1.0,), plateau=0.0,
                                                               iterations=(args.baseline_iterations,)), "fp32")]
    runs += [(f"default multi-scale {p}", default, p) for p in precisions]
    runs += [(f"{text} {p}", dataclasses.replace(default, **parse_schedule(text)), p)
             for p in precisions for text in args.extra]

    print(f"# gatys quality and speed: {args.content.name} x {args.style.name}, {args.size} px, device {device}, "
          f"{torch.get_num_threads()} threads, {platform.machine()}, torch {torch.__version__}")
    own = None
    rows = []
    for label, cfg, precision in runs:
        runtime = make_runtime(args.device, precision, seed=0)
        backbone = VGGFeatures("vgg16", deepest="relu4_3")
        backbone.load_weights(state)
        engine = Gatys(cfg, runtime, backbone.to(runtime.device))
        used: Counter[str] = Counter()  # evaluations per scale: fewer than asked where the loss plateaus
        start = time.perf_counter()
        out = engine.stylize(content, engine.prepare([style]),
                             lambda e: used.update([e.stage.split()[1]]) if isinstance(e, Step) else None)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        s = metrics.score(metric_net, out, content_full, style)
        own = s.content_own_style
        schedule = " + ".join(f"{n}@{px}" for px, n in used.items())
        rows.append((label, schedule, seconds, s.style, s.content))
        print(f"  {label}: {seconds:.1f} s, style {s.style:.4f}, content {s.content:.4f}", flush=True)

    base = rows[0][2] if not args.skip_baseline else None
    print(f"\ncontent's own style distance: {own:.4f}\n")
    print("| configuration | evaluations@px | wall s | vs baseline | style distance | content distance |")
    print("|---|---|---|---|---|---|")
    for label, schedule, seconds, style_d, content_d in rows:
        ratio = f"{seconds / base:.2f}x" if base else "-"
        print(f"| {label} | {schedule} | {seconds:.1f} | {ratio} | {style_d:.4f} | {content_d:.4f} |")


if __name__ == "__main__":
    main()
