"""An MSG-Net model against issue 44's bars, with the reference metric (stransfer/metrics.py), on photos it never
trained on.

    python benchmarks/msgnet.py --model msgnet [--photos 8] [--size 512] [--unseen 8] [--only trained,speed]

Sections (--only picks some; all by default):
- trained: each trained style, picked by name, on each photo: style ratio and content distance, the plain colour
  transfer's ratio on the same pair (FACTS.md's baseline: a model must beat it on every photo), and whether the
  output is nearer (style distance) its own artwork than every other trained artwork, on every photo.
- unseen: held-out artworks of ../shared/data/style (train/data.py's split: neither this model nor AdaIN's trained
  on them; texture photographs left out), given as images, against AdaIN (--adain-model) on the same (photo,
  artwork) pairs: ratio and content distance of each, and their means.
- strokes: stroke size against the style image's size. Each trained style at style_size S and S/2 on each photo;
  the stroke scale of an output is measured as the spectral centroid of its luminance (mean spatial frequency in
  cycles per pixel of the Hann-windowed power spectrum, the constant term left out): finer strokes put more
  energy at high frequencies and raise it. The photo is the same in both, so the change comes from the strokes.
  "finer" is centroid(S/2) / centroid(S): above 1 means the half-size style gave finer strokes.
- speed: a 1024 px stylisation (the first photo, long side 1024) against the Johnson network (--johnson-model, a
  style of the multi-style model by default), interleaved, the median of --repeats ratios; both one image, no
  tiles, the precision stransfer picks on this machine.
- memory: peak RSS of `stransfer stylize -m msgnet --tile off` at 1024x768 less that at 256x192, per added pixel:
  the working set per pixel (stransfer/engines/msgnet.py's BYTES_PER_PIXEL).

Photos: the sample photos of ../shared/data/samples (never in the training folder), or --held-out-photos N of the
training folder's held-out split. About 15 minutes for everything on 2 busy AVX2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from stransfer import color, images, metrics, weights
from stransfer.device import make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.train.data import is_held_out
from quality import ARTWORKS, default_photos, held_out_photos, style_image
from timing import peak_rss

SECTIONS = ("trained", "unseen", "strokes", "speed", "memory")


def engine(method: str, runtime, **settings):
    spec = ENGINES[method]
    return spec.build(spec.config_type(**settings), runtime, EngineInputs())


def stylize(eng, content: torch.Tensor, style) -> torch.Tensor:
    return eng.stylize(content, eng.prepare([style]))


def spectral_centroid(image: torch.Tensor) -> float:
    """Mean spatial frequency (cycles per pixel) of an image's luminance power spectrum, Hann-windowed, DC left out."""
    gray = images.luminance(image.float())[0, 0]
    gray = gray - gray.mean()
    h, w = gray.shape
    window = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None, :]
    power = torch.fft.rfft2(gray * window).abs().pow(2)
    fy = torch.fft.fftfreq(h)[:, None].abs()
    fx = torch.fft.rfftfreq(w)[None, :]
    radius = (fx.pow(2) + fy.pow(2)).sqrt()
    power[0, 0] = 0
    return float((radius * power).sum() / power.sum())


def trained(args, runtime, net, photos: list[torch.Tensor], names: list[str], artworks: list[torch.Tensor]) -> None:
    eng = engine("msgnet", runtime, model=args.model, style_size=args.style_size)
    print(f"\n## trained styles by name, {args.size} px, style_size {args.style_size}: ratio, content, colour "
          "transfer's ratio; nearest artwork")
    print("| style | mean ratio | worst ratio | mean content | worst content | photos under colour | "
          "nearest own artwork | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for s, name in enumerate(names):
        rows, own, seconds = [], 0, 0.0
        for photo in photos:
            start = time.perf_counter()
            out = stylize(eng, photo, name)
            seconds += time.perf_counter() - start
            score = metrics.score(net, out, photo, artworks[s])
            base = metrics.score(net, color.match_color(photo, artworks[s]), photo, artworks[s])
            distances = [metrics.score(net, out, photo, art).style for art in artworks]
            own += min(range(len(artworks)), key=distances.__getitem__) == s
            rows.append((score.style_ratio, score.content, score.style_ratio < base.style_ratio))
        ratios, contents = [r[0] for r in rows], [r[1] for r in rows]
        print(f"| {name} | {statistics.mean(ratios):.3f} | {max(ratios):.3f} | {statistics.mean(contents):.3f} | "
              f"{max(contents):.3f} | {sum(r[2] for r in rows)}/{len(rows)} | {own}/{len(photos)} | "
              f"{seconds / len(photos):.2f} |", flush=True)


def unseen(args, runtime, net, photos: list[torch.Tensor], names: list[str]) -> None:
    # Held-out artworks (AdaIN's training never saw them either), not the texture photographs (dtd_), and none
    # this model trained on.
    pool = [p for p in sorted(ARTWORKS.glob("*.jpg"))
            if is_held_out(p) and not p.name.startswith("dtd_") and p.stem not in set(names)]
    picks = pool[:: max(1, len(pool) // args.unseen)][: args.unseen]
    msg = engine("msgnet", runtime, model=args.model, style_size=args.style_size)
    adain = engine("adain", runtime, model=args.adain_model)
    print(f"\n## unseen artworks as images, {args.size} px: MSG-Net against AdaIN on the same pairs")
    print("| photo | artwork | msgnet ratio | msgnet content | adain ratio | adain content |")
    print("|---|---|---|---|---|---|")
    totals = []
    for i, path in enumerate(picks):
        photo, art = photos[i % len(photos)], images.load_image(path).rgb
        a = metrics.score(net, stylize(msg, photo, art), photo, art)
        b = metrics.score(net, stylize(adain, photo, art), photo, art)
        totals.append((a.style_ratio, a.content, b.style_ratio, b.content))
        print(f"| {i % len(photos)} | {path.stem} | {a.style_ratio:.3f} | {a.content:.3f} | {b.style_ratio:.3f} | "
              f"{b.content:.3f} |", flush=True)
    means = [statistics.mean(t[k] for t in totals) for k in range(4)]
    print(f"| **mean** | | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | {means[3]:.3f} |")


def strokes(args, runtime, photos: list[torch.Tensor], names: list[str]) -> None:
    full, half = args.style_size, args.style_size // 2
    engines = {size: engine("msgnet", runtime, model=args.model, style_size=size) for size in (full, half)}
    print(f"\n## stroke size against style size, {args.size} px: spectral centroid (cycles/px) of the luminance")
    print(f"| style | centroid at {full} | centroid at {half} | finer ({half} over {full}) | photos finer |")
    print("|---|---|---|---|---|")
    for name in names:
        pairs = [(spectral_centroid(stylize(engines[full], p, name)), spectral_centroid(stylize(engines[half], p,
                                                                                                name)))
                 for p in photos]
        big, small = statistics.mean(a for a, _ in pairs), statistics.mean(b for _, b in pairs)
        print(f"| {name} | {big:.4f} | {small:.4f} | {small / big:.3f} | "
              f"{sum(b > a for a, b in pairs)}/{len(pairs)} |", flush=True)


def speed(args, runtime, photo: torch.Tensor, names: list[str]) -> None:
    content = images.resize_long_side(photo, 1024)
    msg = engine("msgnet", runtime, model=args.model, style_size=args.style_size, tile="off")
    johnson = engine("johnson", runtime, model=args.johnson_model, tile="off")
    msg_styles, johnson_styles = msg.prepare([names[0]]), johnson.prepare([args.johnson_style] if
                                                                           args.johnson_style else [])

    def seconds(eng, styles) -> float:
        start = time.perf_counter()
        eng.stylize(content, styles)
        return time.perf_counter() - start

    seconds(msg, msg_styles), seconds(johnson, johnson_styles)  # warm-up
    ratios, times = [], []
    for _ in range(args.repeats):
        j1, m, j2 = seconds(johnson, johnson_styles), seconds(msg, msg_styles), seconds(johnson, johnson_styles)
        ratios.append(m / ((j1 + j2) / 2))
        times.append((m, (j1 + j2) / 2))
    print(f"\n## speed at {content.shape[-1]}x{content.shape[-2]}, {runtime.device} {runtime.precision}, "
          f"{torch.get_num_threads()} threads")
    print("| msgnet s | johnson s | ratio (median of rounds) | rounds |")
    print("|---|---|---|---|")
    print(f"| {statistics.median(t[0] for t in times):.2f} | {statistics.median(t[1] for t in times):.2f} | "
          f"{statistics.median(ratios):.2f} | {', '.join(f'{r:.2f}' for r in ratios)} |")


def memory(args, photo_path: Path, style: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rss = {}
    with tempfile.TemporaryDirectory() as tmp:
        for long_side in (256, 1024):
            out = Path(tmp) / f"out{long_side}.png"
            rss[long_side] = peak_rss(["stylize", str(photo_path), "-m", "msgnet", "--model", args.model, "-s", style,
                                       "--size", str(long_side), "--tile", "off", "-o", str(out)], env)[1]
    h, w = images.fit_long_side(*images.load_image(photo_path).rgb.shape[-2:], 1024)
    small = images.fit_long_side(h, w, 256)
    per_pixel = (rss[1024] - rss[256]) / (h * w - small[0] * small[1])
    print(f"\n## memory: peak RSS {rss[256] / 2**20:.0f} MB at 256 px, {rss[1024] / 2**20:.0f} MB at 1024 px "
          f"({w}x{h}): {per_pixel:.0f} B per added pixel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="msgnet")
    parser.add_argument("--photos", type=int, default=8, help="how many sample photos")
    parser.add_argument("--held-out-photos", type=int, metavar="N", help="N held-out training photos instead")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--style-size", type=int, default=512)
    parser.add_argument("--unseen", type=int, default=8, help="unseen artworks (one pair each)")
    parser.add_argument("--adain-model", default="adain_vgg16")
    parser.add_argument("--johnson-model", default="multistyle")
    parser.add_argument("--johnson-style", default="udnie", help="style of --johnson-model (empty: its only one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"some of {', '.join(SECTIONS)}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    if set(sections) - set(SECTIONS):
        parser.error(f"--only: unknown section(s) {sorted(set(sections) - set(SECTIONS))}")

    payload = weights.load_model(weights.find_model(args.model), "msgnet")
    names, files = payload["styles"], payload["style_images"]
    paths = held_out_photos(args.held_out_photos) if args.held_out_photos else default_photos()[: args.photos]
    if "memory" in sections:
        # First: a forked child's peak RSS counts this process's own pages, so nothing large may be loaded yet.
        memory(args, paths[0], names[0])
    runtime = make_runtime(args.device, args.precision, seed=0)
    photos = [images.resize_long_side(images.load_image(p).rgb, args.size) for p in paths]
    net = metrics.metric_backbone(weights.resolve("vgg16")[0])
    print(f"# msgnet {args.model}: {len(names)} styles, {len(photos)} photos, {runtime.device} {runtime.precision}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    if "trained" in sections:
        artworks = [images.load_image(style_image(f)).rgb for f in files]
        trained(args, runtime, net, photos, names, artworks)
    if "unseen" in sections:
        unseen(args, runtime, net, photos, names)
    if "strokes" in sections:
        strokes(args, runtime, photos, names)
    if "speed" in sections:
        speed(args, runtime, images.load_image(paths[0]).rgb, names)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
