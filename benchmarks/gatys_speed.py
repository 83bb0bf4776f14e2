"""Seconds per Gatys iteration (one forward + backward through VGG16 to relu4_3) at 256 and 512 px, fp32 and bf16,
against the bare network: the same forward + backward with no loss (a gradient of ones at relu4_3), fp32.

    python benchmarks/gatys_speed.py [--iterations 10] [--device auto] [--threads N]

Uses the real VGG16 weights (fetched into the cache on first use) and examples/ images. About a minute on 2
AVX2-only cores.

The gap between the two is the losses' cost, which two choices in stransfer/losses.py cut: the Gram product's
own backward (one product where autograd takes two: a 512 px evaluation on 1 thread 5.9 s, not 6.7 s), and the
Gram product in bf16 under autocast (12% of an evaluation at 512 px, final distances unchanged).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import torch

from stransfer import images, weights, winograd
from stransfer.backbone import VGGFeatures
from stransfer.device import make_runtime, native_bf16
from stransfer.engines.gatys import Gatys, GatysConfig
from timing import ms_per_call

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def photo(size: int) -> torch.Tensor:
    """The Tübingen photo with its long side at `size` (384 x 512 at 512)."""
    return images.resize_long_side(images.load_image(EXAMPLES / "tubingen.jpg").rgb, size)


def seconds_per_iteration(size: int, precision: str, iterations: int, device: str, backbone: VGGFeatures) -> float:
    runtime = make_runtime(device, precision, seed=0)
    content = photo(size)
    style = images.load_image(EXAMPLES / "starry_night.jpg").rgb
    single_scale = dataclasses.replace(GatysConfig(), scales=(1.0,), iterations=(2,))
    engine = Gatys(single_scale, runtime, backbone.to(runtime.device))
    styles = engine.prepare([style])
    engine.stylize(content, styles)  # warm-up: style targets, allocator, oneDNN kernel selection
    engine.config = dataclasses.replace(single_scale, iterations=(iterations,))
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    engine.stylize(content, styles)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iterations


def bare_network_seconds(size: int, iterations: int, device: str, backbone: VGGFeatures) -> float:
    """Forward + backward to the pixels through the engine's network in its layout and with its convolutions
    (stransfer.winograd where the engine takes them), nothing else: the floor an evaluation's losses, Grams and
    optimiser add to."""
    runtime = make_runtime(device, "fp32", seed=0)
    net = winograd.adopt(backbone.to(runtime.device, memory_format=torch.channels_last), runtime)
    x = photo(size).to(runtime.device).requires_grad_(True)  # the iterations' own shape and pixels

    def once() -> None:
        out = net(x.contiguous(memory_format=torch.channels_last), ["relu4_3"])["relu4_3"]
        out.backward(torch.ones_like(out))  # a gradient in the features' layout, as the losses give

    return ms_per_call(once, runtime.device, iterations) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    backbone = VGGFeatures("vgg16", deepest="relu4_3")
    backbone.load_weights(weights.resolve("vgg16")[0])
    device = make_runtime(args.device).device
    print(f"# gatys speed: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"device {device}, {torch.get_num_threads()} threads, {args.iterations} iterations each")
    print("| size (long side) | fp32 s/iter | bare network fp32 s | iter / bare | bf16 s/iter | bf16 speed-up |")
    print("|---|---|---|---|---|---|")
    for size in (256, 512):
        fp32 = seconds_per_iteration(size, "fp32", args.iterations, args.device, backbone)
        bare = bare_network_seconds(size, args.iterations, args.device, backbone)
        row = f"| {size} | {fp32:.3f} | {bare:.3f} | {fp32 / bare:.2f}x"
        if native_bf16(device):  # emulated bf16 would take minutes per iteration
            bf16 = seconds_per_iteration(size, "bf16", args.iterations, args.device, backbone)
            print(f"{row} | {bf16:.3f} | {fp32 / bf16:.2f}x |", flush=True)
        else:
            print(f"{row} | n/a | n/a |", flush=True)


if __name__ == "__main__":
    main()
