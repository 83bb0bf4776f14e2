"""Gatys per style loss: wall time, peak memory and the reference metric, as one Markdown table.

    python benchmarks/style_losses.py [--size 512] [--losses 'gram;mrf;gram:1,histogram:1']
                                      [--pair PHOTO:STYLE ...] [--keep DIR] [--sheet FILE]

Each run is the real `stransfer stylize -m gatys --style-loss X` in a fresh process (start-up and weight
loading included), its peak RSS read from the kernel. Distances are the reference metric of FACTS.md: style
ratio = the output's style distance over the photo's own (lower = more of the style), content = distance to
the photo at relu3_3 (lower = more of the photo). With several pairs a mean row follows each loss.

About 35 minutes with the defaults on 2 AVX2-only cores: the README's table of this script's rows (2-core AMD
EPYC, fp32) adds up to 2049 s of runs, from 213 s (meanstd) to 502 s (gram:1,histogram:1).

Two mrf settings in stransfer/losses.py were set from its runs (tubingen x starry_night, default schedule):
- MRF_SCALE 0.4: at the full weight mrf's output kept far less of the photo than Gram's (content distance 0.71
  against 0.35 at 512 px); at 0.4, style ratio 0.47 and content 0.30 at 512 px, 0.44 / 0.38 at 256 px (Gram:
  0.39); at 0.5, 0.38 / 0.53.
- MRF_PATCH_BUDGET: a 256 px style keeps every patch at relu3_1 and relu4_1, a 512 px style every 2nd at relu3_1
  (2.5k instead of 10k) and all at relu4_1. With patches every 2 pixels at every size, a 256 px style had 160
  candidates at relu4_1, and at 256 px the output scored style ratio 0.50 at content 0.37, where all patches
  give 0.44 at 0.38.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from stransfer import gallery, images, metrics, weights
from timing import peak_rss

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LOSSES = "gram;meanstd;mmd-poly;histogram;mrf;gram:1,histogram:1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--losses", default=LOSSES, help=f"style-loss specs separated by ; (default {LOSSES})")
    parser.add_argument("--pair", action="append", metavar="PHOTO:STYLE",
                        help="a photo and an artwork (repeatable; default the Tübingen photo and Starry Night)")
    parser.add_argument("--flags", default="", help="more stylize flags for every run, e.g. '--iterations 20,30'")
    parser.add_argument("--keep", type=Path, help="folder to keep the outputs in, to look at")
    parser.add_argument("--sheet", type=Path, help="also draw the outputs as a contact sheet (JPEG/PNG)")
    args = parser.parse_args()
    pairs = [tuple(Path(p) for p in pair.split(":")) for pair in args.pair] if args.pair \
        else [(EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg")]
    scorer = metrics.metric_backbone(weights.resolve("vgg16")[0])

    print(f"# Gatys per style loss, {args.size} px: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, flags '{args.flags}'\n")
    print("| style loss | photo x style | s | peak RSS GB | style ratio | content |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.keep or Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        specs = args.losses.split(";")
        first_pair_cells: list[gallery.Cell] = []
        for spec in specs:
            rows = []
            for column, (photo, style) in enumerate(pairs):
                out = keep / f"{spec.replace(':', '').replace(',', '+')}_{photo.stem}_{style.stem}.png"
                cmd = ["stylize", str(photo), "-s", str(style), "-o", str(out), "-m", "gatys", "--size",
                       str(args.size), "--style-loss", spec, *args.flags.split()]
                seconds, rss = peak_rss(cmd, dict(os.environ))
                result = images.load_image(out).rgb
                scores = metrics.score(scorer, result, images.load_image(photo).rgb, images.load_image(style).rgb)
                rows.append((seconds, rss / 1e9, scores.style_ratio, scores.content))
                if column == 0:
                    first_pair_cells.append(gallery.Cell(result, f"{spec} · "
                                                         f"{scores.style_ratio:.2f} / {scores.content:.2f}"))
                print(f"| {spec} | {photo.stem} x {style.stem} | {seconds:.0f} | {rss / 1e9:.2f} | "
                      f"{scores.style_ratio:.3f} | {scores.content:.3f} |", flush=True)
            if len(rows) > 1:
                mean = [statistics.fmean(values) for values in zip(*rows)]
                print(f"| **{spec}** | mean of {len(rows)} | {mean[0]:.0f} | {max(r[1] for r in rows):.2f} (max) | "
                      f"{mean[2]:.3f} | {mean[3]:.3f} |", flush=True)
        if args.sheet:
            photo, style = pairs[0]  # one row: the first pair's photo, its style, an output per loss
            gallery.sheet([(photo.stem, images.load_image(photo).rgb)], [(style.stem, images.load_image(style).rgb)],
                          [[first_pair_cells]], title=f"Gatys per style loss, {args.size} px: style ratio / "
                          "content distance, lower = closer").save(args.sheet, quality=90)


if __name__ == "__main__":
    main()
