"""How sharp a reconstruction must be for a given content distance: the reference metric's relu3_3 content
distance of each photo after shrinking it by 2, 4 and 8 and scaling it back up.

    python benchmarks/blur_floor.py [--photos DIR] [--size 512]

A yardstick for AdaIN at alpha 0, where the decoder must rebuild the photo from relu4_1 features (1/8 of its
resolution): a reconstruction scoring x is about as sharp as the blur that scores x here. About 1.5 minutes
on 2 AVX2-only cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from stransfer import images, metrics, weights
from quality import default_photos

FACTORS = (2, 4, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, help="folder of photos (default: the sample photos)")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    net = metrics.metric_backbone(weights.resolve("vgg16")[0])
    photos = sorted(args.photos.glob("*.jpg")) if args.photos else default_photos()
    print(f"# content distance of a photo shrunk by a factor and scaled back (bilinear), {args.size} px")
    print("| photo | " + " | ".join(f"x{f}" for f in FACTORS) + " |")
    print("|---|" + "---|" * len(FACTORS))
    rows = []
    for photo in photos:
        content = images.resize_long_side(images.load_image(photo).rgb, args.size)
        row = []
        for factor in FACTORS:
            small = F.interpolate(content, scale_factor=1 / factor, mode="area")
            blurred = F.interpolate(small, size=content.shape[-2:], mode="bilinear", align_corners=False)
            row.append(metrics.score(net, blurred, content, content).content)
        rows.append(row)
        print(f"| {photo.stem} | " + " | ".join(f"{d:.3f}" for d in row) + " |", flush=True)
    means = [sum(r[i] for r in rows) / len(rows) for i in range(len(FACTORS))]
    print("| **mean** | " + " | ".join(f"{d:.3f}" for d in means) + " |")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
