"""Blends of a multi-style Johnson model: does a 50/50 blend of two styles sit between them?

    python benchmarks/multistyle_blend.py --model MULTI [--held-out-photos 8] [--size 512]

For neighbouring styles (A, B) of the model (its 1st and 2nd, 3rd and 4th, ...) and each photo, the style
distance (reference metric) of the 50/50 blend's output to each artwork beside the distance of the other single
style's output to it. Issue 18 asks that the blend be nearer each artwork than the other style is:
d(blend, A) < d(B's output, A) and d(blend, B) < d(A's output, B). Prints a row per pair with the means over the
photos and the number of photos on which both hold.

About 4.5 minutes for 4 pairs x 8 photos at 512 px on 2 Intel Xeon cores with AMX (bf16).
"""

from __future__ import annotations

import argparse

import torch

from quality import default_photos, held_out_photos, style_image
from stransfer import images, metrics, weights
from stransfer.device import make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.engines.johnson import model_styles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--held-out-photos", type=int, metavar="N",
                        help="N held-out photos of ../shared/data/content instead of the samples")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    runtime = make_runtime(args.device, args.precision, seed=0)
    metric_net = metrics.metric_backbone(weights.resolve("vgg16")[0])
    path = weights.find_model(args.model)
    payload = weights.load_model(path, "johnson")
    names, files = model_styles(payload, path), payload.get("style_images") or []
    if len(names) < 2:
        parser.error(f"--model {args.model} holds one style: nothing to blend")
    spec = ENGINES["johnson"]
    single = spec.build(spec.config_type(model=args.model), runtime, EngineInputs())
    blend = spec.build(spec.config_type(model=args.model), runtime, EngineInputs(style_weights=[0.5, 0.5]))
    artworks = {n: images.load_image(style_image(f)).rgb for n, f in zip(names, files)}
    paths = held_out_photos(args.held_out_photos) if args.held_out_photos else default_photos()
    # Each photo loaded once, at full size (the metric's content) and at the output size.
    photos = [(full, images.resize_long_side(full, args.size)) for full in (images.load_image(p).rgb for p in paths)]

    print(f"# multistyle blend: {args.model}, {len(photos)} photos, {args.size} px, {runtime.device}, "
          f"{runtime.precision}; d = style distance to the artwork")
    print("| A | B | d(blend, A) | d(B, A) | d(blend, B) | d(A, B) | photos where both hold |")
    print("|---|---|---|---|---|---|---|")
    for a, b in zip(names[::2], names[1::2]):
        rows = []
        for content, small in photos:
            out_a, out_b = (single.stylize(small, single.prepare([n])) for n in (a, b))
            out_ab = blend.stylize(small, blend.prepare([a, b]))

            def d(out: torch.Tensor, art: str) -> float:
                return metrics.score(metric_net, out, content, artworks[art]).style

            rows.append((d(out_ab, a), d(out_b, a), d(out_ab, b), d(out_a, b)))
        means = [sum(r[i] for r in rows) / len(rows) for i in range(4)]
        held = sum(r[0] < r[1] and r[2] < r[3] for r in rows)
        print(f"| {a} | {b} | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | {means[3]:.3f} | "
              f"{held} of {len(rows)} |", flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
