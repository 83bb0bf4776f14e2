"""`stransfer texture`: wall time, peak memory, style distance, and the flaws a texture can show, as numbers.

    python benchmarks/texture.py [--size 1024] [--style-side 512] [--style S] [--flags '--config F'] [--keep OUT]

Runs the real command in a fresh process (start-up included; peak RSS from the kernel) from the style resized
to --style-side px, then measures the texture:
- style: its reference-metric style distance to the style image (FACTS.md) over that of a noise image of the
  same size; the issue's bar is at most 0.1.
- frame: grey level of the outer 8 px and of the next 8 px against the middle half (a dark or light frame).
  Before the margin of engines/gatys.py's texture_canvas, a 1024 px Starry Night texture's outer 8 px were 9%
  darker than its middle, with the painting's village along its bottom edge.
- seam: the strongest straight line more than 32 px inside: the mean |difference| between two neighbouring
  columns (or rows) over the median of those means. Noise scores 1.06; a 512 px texture pasted 2x2 scores 2.75
  at its seam; textures and paintings 1.3-1.6.
- copies: for every 64 px block, the best normalised cross-correlation with any place in the texture that does
  not overlap it (median and max). A copied block scores 1.0; Starry Night's own blocks 0.44 median, 0.75 max.
The same measures are printed for the style image, as the reference. Takes the texture's run time plus a minute:
at 1024 px with the defaults about an hour on 2 AVX2 cores (3,887 s untiled, before --tile auto tiled it).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from stransfer import images, metrics, weights
from timing import peak_rss

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BLOCK = 64
INSIDE = 32


def frame(g: torch.Tensor) -> tuple[float, float]:
    """Mean grey of the outer 8 px and of the next 8 px, each relative to the middle half (0 = the same)."""
    h, w = g.shape[-2:]
    middle = g[..., h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean()

    def ring(outer: int, inner: int) -> torch.Tensor:
        keep = torch.zeros(h, w, dtype=torch.bool)
        keep[outer:h - outer, outer:w - outer] = True
        keep[inner:h - inner, inner:w - inner] = False
        return g[0, 0][keep].mean()

    return (ring(0, 8) / middle - 1).item(), (ring(8, 16) / middle - 1).item()


def strongest_line(g: torch.Tensor) -> tuple[float, str]:
    """The largest mean |neighbour difference| of a column or row more than INSIDE px from the edges, over the
    median of them, and where it is."""
    cols = (g[..., :, 1:] - g[..., :, :-1]).abs().mean(dim=(0, 1, 2))[INSIDE:-INSIDE]
    rows = (g[..., 1:, :] - g[..., :-1, :]).abs().mean(dim=(0, 1, 3))[INSIDE:-INSIDE]
    c, r = (cols.max() / cols.median()).item(), (rows.max() / rows.median()).item()
    return (c, f"x={cols.argmax().item() + INSIDE}") if c >= r else (r, f"y={rows.argmax().item() + INSIDE}")


def block_copies(g: torch.Tensor) -> tuple[float, float]:
    """(median, max) over BLOCK px blocks of each one's best normalised cross-correlation elsewhere."""
    h, w = g.shape[-2:]
    n = BLOCK * BLOCK
    box = torch.ones(1, 1, BLOCK, BLOCK)
    sums, squares = F.conv2d(g, box), F.conv2d(g * g, box)
    spread = (squares - sums * sums / n).clamp_min(1e-8).sqrt()[0]
    places = [(y, x) for y in range(0, h - BLOCK + 1, BLOCK) for x in range(0, w - BLOCK + 1, BLOCK)]
    best = []
    for start in range(0, len(places), 16):
        chunk = places[start:start + 16]
        blocks = torch.cat([g[..., y:y + BLOCK, x:x + BLOCK] for y, x in chunk])
        blocks = blocks - blocks.mean(dim=(2, 3), keepdim=True)
        norms = blocks.pow(2).sum(dim=(1, 2, 3)).sqrt().clamp_min(1e-8)
        ncc = F.conv2d(g, blocks)[0] / (spread * norms[:, None, None])
        for k, (y, x) in enumerate(chunk):
            ncc[k, max(0, y - BLOCK + 1):y + BLOCK, max(0, x - BLOCK + 1):x + BLOCK] = -1  # itself, overlapping
            best.append(ncc[k].max().item())
    ranked = torch.tensor(best)
    return ranked.median().item(), ranked.max().item()


def describe(name: str, image: torch.Tensor) -> str:
    g = images.luminance(image)
    outer, next_ = frame(g)
    line, where = strongest_line(g)
    median, most = block_copies(g)
    return (f"| {name} | {outer:+.1%} / {next_:+.1%} | {line:.2f} ({where}) | {median:.2f} / {most:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--style", type=Path, default=EXAMPLES / "starry_night.jpg")
    parser.add_argument("--style-side", type=int, default=512, help="the style's long side for the run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flags", default="", help="more texture flags, e.g. '--config short.toml'")
    parser.add_argument("--keep", type=Path, help="where to keep the texture, to look at")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        style = images.load_image(args.style).rgb
        style = images.resize_long_side(style, args.style_side)
        style_file = Path(tmp) / "style.png"
        images.to_pil(style).save(style_file)
        out = args.keep or Path(tmp) / "texture.png"
        cmd = ["texture", "-s", str(style_file), "--size", str(args.size), "--seed", str(args.seed), "-o", str(out),
               *args.flags.split()]
        seconds, rss = peak_rss(cmd, dict(os.environ))
        texture = images.load_image(out).rgb

    scorer = metrics.metric_backbone(weights.resolve("vgg16")[0])
    noise = torch.rand(texture.shape, generator=torch.Generator().manual_seed(0))
    own = metrics.score(scorer, texture, texture, style).style
    ratio = own / metrics.score(scorer, noise, noise, style).style
    print(f"# stransfer texture, {args.size} px from {args.style.name} at {args.style_side} px, seed {args.seed}, "
          f"flags '{args.flags}': {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}\n")
    print(f"{seconds:.0f} s, peak RSS {rss / 1e9:.2f} GB, style distance {own:.4f} = {ratio:.4f} of noise's\n")
    print("| image | frame: outer 8 px / next 8 px | strongest inner line | block copies: median / max NCC |")
    print("|---|---|---|---|")
    print(describe("texture", texture))
    print(describe("style (reference)", style))


if __name__ == "__main__":
    main()
