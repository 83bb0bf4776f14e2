"""Quality of the engines on photos and styles they never trained on, with the reference metric.

    python benchmarks/quality.py johnson --model starry_night [--photos DIR | --held-out-photos 8] [--size 512]
    python benchmarks/quality.py johnson --model MULTI --style-name udnie    # one style of a multi-style model
    python benchmarks/quality.py adain --model adain_vgg16 --styles DIR [--alpha 1.0]
    python benchmarks/quality.py swap --model adain_vgg16 --styles DIR [--patch-size 3] [--stride 1]

For each content photo (default: the photos of ../shared/data/samples where present, else examples/;
--held-out-photos N: N of the training folder's held-out photos, which no model trains on) prints the style
distance, the photo's own style distance, their ratio, and the content distance; then the means and the worst.
A johnson model is scored against the style image it was trained on (examples/, ../shared/data/samples/ or
../shared/data/style/, or --style).

Beside each output, the baseline a fast model must beat: the photo recoloured to the artwork's RGB mean and
covariance (FACTS.md), which has the palette and no texture. "vs colour" is the output's ratio over the
baseline's: at 1 the model is no more than a colour filter.

About a minute per run (8 photos or pairs at 512 px) on 2 AVX2-only cores.

Two defaults were set from runs of this script (held-out pairs, 512 px, the shipped decoder):
- the content skips' weight (1 - alpha)^2 (engines/onepass.py's skip_weight): with 1 - alpha, alpha 0.5 kept
  content distance 0.16 on the way from 0.02 (alpha 0) to 0.77 (alpha 1) and still looked like the photo;
  squared, 0.43.
- swap's alpha 0.7 (engines/swap.py): at 0.8 (the photo's shallow features weigh 0.04 in the skips) content
  1.17 on 8 held-out pairs; at 0.7 (weight 0.09), matching in the style's statistics, style ratio 0.41 and
  content 0.87 on those pairs, 0.57 and 0.91 on 8 held-out training photos. Matching in the style's statistics
  rather than the photo's (swap_features) took the ratio from 0.66 to 0.57 at content 0.83 -> 0.91, a better
  trade than alpha gives (0.8: 0.54 at content 1.23). weights/records/adain_vgg16.json holds the full runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from stransfer import color, images, metrics, weights
from stransfer.backbone import VGGFeatures
from stransfer.device import make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.train.data import is_held_out

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "data" / "samples"
CONTENT = REPO.parent / "shared" / "data" / "content"
ARTWORKS = REPO.parent / "shared" / "data" / "style"
# Photos among the samples (the rest are artworks); none of them is in the training folder content/.
SAMPLE_PHOTOS = ("tubingen", "chicago", "golden_gate", "cornell", "newyork", "sailboat", "flowers", "amber")


def default_photos() -> list[Path]:
    found = [SAMPLES / f"{name}.jpg" for name in SAMPLE_PHOTOS if (SAMPLES / f"{name}.jpg").exists()]
    return found or [REPO / "examples" / "tubingen.jpg"]


def held_out_photos(count: int) -> list[Path]:
    """`count` held-out photos of the training folder, spread evenly over its (mixed-kind) listing."""
    held = [p for p in sorted(CONTENT.glob("*.jpg")) if is_held_out(p)]
    return held[:: max(1, len(held) // count)][:count]


def style_image(name: str) -> Path:
    """A Johnson style's image by file name. Styles whose image may not ship (examples/SOURCES.md) are found
    among the samples or the training artworks."""
    found = [p for p in (REPO / "examples" / name, SAMPLES / name, ARTWORKS / name) if p.exists()]
    return found[0] if found else REPO / "examples" / name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=["johnson", "adain", "swap"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--style", type=Path, help="johnson: the style image (default examples/<style>.jpg)")
    parser.add_argument("--style-name", help="johnson: the style of a model holding several (-s NAME)")
    parser.add_argument("--styles", type=Path, help="adain: a folder of style images never trained on")
    parser.add_argument("--held-out", action="store_true",
                        help="adain: take only the held-out files of --styles (training never sees them)")
    parser.add_argument("--photos", type=Path, help="folder of content photos never trained on")
    parser.add_argument("--held-out-photos", type=int, metavar="N",
                        help="N held-out photos of ../shared/data/content instead of the samples")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--patch-size", type=int, default=3, help="swap: patch side in relu4_1 cells")
    parser.add_argument("--stride", type=int, default=1, help="swap: step between patches")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--save", type=Path, metavar="DIR", help="also write each output there, to look at")
    parser.add_argument("--pairs", type=int, default=8, help="adain: number of (photo, style) pairs")
    args = parser.parse_args()

    runtime = make_runtime(args.device, args.precision, seed=0)
    metric_net = VGGFeatures("vgg16", deepest="relu4_3")
    metric_net.load_weights(weights.resolve("vgg16")[0])
    photos = (sorted(args.photos.glob("*.jpg")) if args.photos else
              held_out_photos(args.held_out_photos) if args.held_out_photos else default_photos())
    spec = ENGINES[args.method]

    if args.method == "johnson":
        payload = weights.load_model(weights.find_model(args.model), "johnson")
        held = payload.get("styles") or [payload["style"]]
        style_images = payload.get("style_images") or [payload.get("style_image", f"{payload['style']}.jpg")]
        if args.style_name not in (None, *held):
            parser.error(f"--style-name: {args.model} holds {', '.join(held)}")
        style_path = args.style or style_image(style_images[held.index(args.style_name or held[0])])
        pairs = [(p, style_path) for p in photos]
    else:
        if args.styles is None:
            parser.error(f"{args.method} needs --styles DIR (artworks it never trained on)")
        styles = sorted(args.styles.glob("*.jpg"))
        if args.held_out:
            styles = [p for p in styles if is_held_out(p)]
        pairs = [(photos[i % len(photos)], styles[i % len(styles)]) for i in range(args.pairs)]
    options = ({"alpha": args.alpha} if args.method == "adain" else
               {"alpha": args.alpha, "patch_size": args.patch_size, "stride": args.stride} if args.method == "swap"
               else {})
    engine = spec.build(spec.config_type(model=args.model, **options), runtime, EngineInputs())

    swap = f", patch {args.patch_size}, stride {args.stride}" if args.method == "swap" else ""
    print(f"# quality: {args.method} {args.model}{swap}, {args.size} px, {runtime.device}, {runtime.precision}")
    print("| content | style | style distance | content's own | ratio | content distance | colour ratio | "
          "vs colour | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    totals = []
    for photo, style_path in pairs:
        content_full = images.load_image(photo).rgb
        style = images.load_image(style_path).rgb
        content = images.resize_long_side(content_full, args.size)
        start = time.perf_counter()
        picked = [style] if spec.style_input == "images" else [args.style_name] if args.style_name else []
        out = engine.stylize(content, engine.prepare(picked))
        seconds = time.perf_counter() - start
        if args.save:
            images.save_image(out, args.save / f"{photo.stem}_{style_path.stem}_{args.method}.png", overwrite=True)
        s = metrics.score(metric_net, out, content_full, style)
        baseline = metrics.score(metric_net, color.match_color(content, style), content_full, style)
        versus = s.style_ratio / baseline.style_ratio
        totals.append((s.style, s.content_own_style, s.style_ratio, s.content, baseline.style_ratio, versus))
        print(f"| {photo.stem} | {style_path.stem} | {s.style:.3f} | {s.content_own_style:.3f} | "
              f"{s.style_ratio:.3f} | {s.content:.3f} | {baseline.style_ratio:.3f} | {versus:.2f} | {seconds:.2f} |",
              flush=True)
    means = [sum(t[i] for t in totals) / len(totals) for i in range(6)]
    worst = [max(t[i] for t in totals) for i in range(6)]
    print(f"| **mean** | | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | {means[3]:.3f} | {means[4]:.3f} | "
          f"{means[5]:.2f} | |")
    print(f"| **worst** | | | | {worst[2]:.3f} | {worst[3]:.3f} | | {worst[5]:.2f} | |")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
