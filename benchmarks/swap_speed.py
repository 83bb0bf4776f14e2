"""Style-swap beside AdaIN: seconds per image with the style prepared once, on the same machine and precision.

    python benchmarks/swap_speed.py [--sizes 1024] [--strides 1,2] [--repeats 1] [--device auto]

Uses the real VGG16 encoder and the shipped decoder on a photo and an artwork from ../shared/data (random
pictures where that is absent; the cost does not depend on the pictures). The issue's bar: a 1024 px swap in at
most twice AdaIN's time. About a minute on 2 AVX2-only cores.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from stransfer import images
from stransfer.device import make_runtime
from stransfer.engines import ENGINES, EngineInputs
from timing import ms_per_call

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def picture(folder: str, size: int) -> torch.Tensor:
    found = sorted((SHARED / folder).glob("*.jpg"))
    rgb = images.load_image(found[0]).rgb if found else torch.rand(1, 3, size, size)
    return images.resize_long_side(rgb, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024")
    parser.add_argument("--strides", default="1,2", help="swap strides to time (patch size 3)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    runtime = make_runtime(args.device)
    print(f"# swap vs adain: device {runtime.device}, {runtime.precision}, {torch.get_num_threads()} threads, "
          f"{platform.machine()}, torch {torch.__version__}")
    print("| size | engine | s/image (style prepared) | vs adain |")
    print("|---|---|---|---|")
    setups = [("adain", {})] + [("swap", {"stride": int(s)}) for s in args.strides.split(",")]
    for size in (int(s) for s in args.sizes.split(",")):
        content, style = picture("content", size), picture("style", size)
        adain_s = None
        for method, options in setups:
            spec = ENGINES[method]
            engine = spec.build(spec.config_type(**options), runtime, EngineInputs())
            styles = engine.prepare([style])
            seconds = ms_per_call(lambda: engine.stylize(content, styles), runtime.device, args.repeats) / 1000
            adain_s = adain_s or seconds
            label = method + (f" (patch 3, stride {options['stride']})" if options else "")
            print(f"| {max(content.shape[-2:])} | {label} | {seconds:.2f} | {seconds / adain_s:.2f}x |", flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
