"""Gatys working set per output pixel, per style loss: what `--tile auto` budgets with (engines/gatys.py).

    python benchmarks/gatys_memory.py [--losses 'gram;histogram;mrf'] [--sizes 384,768] [--evaluations 3]

Runs the real `stransfer stylize -m gatys` single-scale, untiled, in a fresh process per loss and size, and
prints each peak RSS (from the kernel) and the bytes each added output pixel cost between the two sizes. With a
few evaluations this is the network pass and the loss; L-BFGS's history (50 pairs of image-sized vectors) fills
only after 50, so run `--evaluations 60` to see it. About 6 minutes on 2 AVX2 cores with the defaults.

The budget it set (engines/gatys.py's BYTES_PER_PIXEL, fp32, 5,700): the Gram evaluation 3,600 bytes per pixel
(2,800 with glibc's own malloc settings, which stransfer trades for faster evaluations: benchmarks/allocator.py),
plus 2,100 for L-BFGS's history and buffers, read from a 1024 px texture's full run. That history is why the
budget must count it: a budget of 1,800 (a bf16 figure without it) once let such a texture run untiled to a
6.97 GB peak.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
from pathlib import Path

import torch

from stransfer import images
from timing import peak_rss

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LOSSES = "gram;meanstd;mmd-poly;histogram;mrf;gram:1,histogram:1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", default=LOSSES, help=f"style-loss specs separated by ; (default {LOSSES})")
    parser.add_argument("--sizes", default="384,768", help="two output sizes (long side)")
    parser.add_argument("--evaluations", type=int, default=3)
    args = parser.parse_args()
    small, large = (int(s) for s in args.sizes.split(","))
    photo = EXAMPLES / "tubingen.jpg"
    height, width = images.load_image(photo).rgb.shape[-2:]

    def pixels(side: int) -> int:
        return math.prod(images.fit_long_side(height, width, side))

    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# Gatys peak RSS per style loss, {args.evaluations} evaluations, single scale, untiled: {machine}, "
          f"torch {torch.__version__}\n")
    print(f"| style loss | {small} px GB | {large} px GB | bytes per added pixel |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.losses.split(";"):
            peaks = []
            for side in (small, large):
                cmd = ["stylize", str(photo), "-s", str(EXAMPLES / "starry_night.jpg"), "-m", "gatys", "--size",
                       str(side), "--scales", "1", "--iterations", str(args.evaluations), "--tile", "off",
                       "--style-loss", spec, "-o", str(Path(tmp) / "out.png")]
                peaks.append(peak_rss(cmd, dict(os.environ))[1])
            per_pixel = (peaks[1] - peaks[0]) / (pixels(large) - pixels(small))
            print(f"| {spec} | {peaks[0] / 1e9:.2f} | {peaks[1] / 1e9:.2f} | {per_pixel:.0f} |", flush=True)


if __name__ == "__main__":
    main()
