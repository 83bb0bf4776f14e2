"""MGAN against the other ways to the same style: the reference metric, the method's own metric, and 1024 px speed.

    python benchmarks/mgan.py --model mgan_the_scream [--johnson the_scream] [--held-out-photos 8 | --photos DIR]
                              [--size 512] [--gatys-photos N] [--save DIR] [--speed-size 1024] [--repeats 3]
    python benchmarks/mgan.py --train-layouts [--threads 1]     # seconds per training step, by memory layout

On the same photos (default 8 held-out photos of ../shared/data/content, which no model trains on), each of: the
MGAN model; a Johnson model of the same style (--johnson, if given); Gatys with `--style-loss mrf` (the CNNMRF
optimisation MGAN amortises; --gatys-photos 0 leaves it out, it takes minutes a photo). For each output:
- the reference metric of ../shared/FACTS.md: style ratio and content distance, and the plain colour transfer's
  ratio, which a model must beat ("vs colour" below 1);
- the patch distance: for every 3x3 patch of the output's relu3_1 features, 1 minus its normalised
  cross-correlation with the style patch that matches it best (the matching of the mrf loss,
  losses.nearest_patches), averaged; the style at the output's scale, as in the reference metric. Lower = the
  output is made of the style's local structures.
Then the speed: a --speed-size px photo through the MGAN model and through AdaIN (adain_vgg16, the same style) in
this one process, after a warm-up call each, and their ratio.

--train-layouts times a real training step (the shipped defaults: two 384 px crops of ../shared/data/content, The
Scream) with the generator and critic in the contiguous layout, which the trainer uses, and in channels-last, the
other trainers' layout. Measured with --threads 1 on a 2-core AMD EPYC (AVX2 only) that was also running another
training: 27.3 s a step contiguous, 48.4 s channels-last (the generator's weight gradients, 2-3x slower per
convolution in channels-last there).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from stransfer import color, images, losses, metrics, weights
from stransfer.backbone import VGGFeatures
from stransfer.device import make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.train.loop import place, place_loss_network
from stransfer.train.mgan import MganTask, MganTrainConfig
from quality import CONTENT, default_photos, held_out_photos, style_image
from timing import ms_per_call

PATCH_LAYER = "relu3_1"


@torch.no_grad()
def patch_distance(net: VGGFeatures, output: torch.Tensor, style: torch.Tensor) -> float:
    """Mean over the output's 3x3 relu3_1 patches of 1 - NCC with their best-matching style patch (every style
    patch a candidate), the style resized so its long side is the output's."""
    h, w = output.shape[-2:]
    style = images.resize(style, images.fit_long_side(style.shape[-2], style.shape[-1], max(h, w)))
    out_f = net(output.float(), (PATCH_LAYER,))[PATCH_LAYER]
    patches = losses.style_patches(net(style.float(), (PATCH_LAYER,))[PATCH_LAYER])
    index = losses.nearest_patches(out_f, patches)  # (1, H-2, W-2)
    own = torch.nn.functional.unfold(out_f.float(), losses.MRF_PATCH)[0].T  # (L, C*9)
    matched = patches.flatten(1)[index.flatten()]
    ncc = torch.nn.functional.cosine_similarity(own, matched, dim=1, eps=1e-8)
    return float((1 - ncc).mean())


def build(method: str, runtime, **settings):
    spec = ENGINES[method]
    return spec.build(spec.config_type(**settings), runtime, EngineInputs())


def score_rows(name: str, engine, styles, photos: list[Path], style: torch.Tensor, size: int, net: VGGFeatures,
               save: Path | None) -> list[tuple[float, ...]]:
    rows = []
    for photo in photos:
        full = images.load_image(photo).rgb
        content = images.resize_long_side(full, size)
        start = time.perf_counter()
        out = engine.stylize(content, styles)
        seconds = time.perf_counter() - start
        if save:
            images.save_image(out, save / f"{photo.stem}_{name}.png", overwrite=True)
        s = metrics.score(net, out, full, style)
        baseline = metrics.score(net, color.match_color(content, style), full, style).style_ratio
        rows.append((s.style_ratio, s.content, baseline, s.style_ratio / baseline, patch_distance(net, out, style),
                     seconds))
        r = rows[-1]
        print(f"| {name} | {photo.stem} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.2f} | {r[4]:.4f} | "
              f"{r[5]:.1f} |", flush=True)
    return rows


def summary(name: str, rows: list[tuple[float, ...]]) -> None:
    mean = [sum(r[i] for r in rows) / len(rows) for i in range(6)]
    print(f"| **{name} mean** | {len(rows)} photos | {mean[0]:.3f} | {mean[1]:.3f} | {mean[2]:.3f} | {mean[3]:.2f} | "
          f"{mean[4]:.4f} | {mean[5]:.1f} |")
    print(f"| **{name} worst** | | {max(r[0] for r in rows):.3f} | {max(r[1] for r in rows):.3f} | | "
          f"{max(r[3] for r in rows):.2f} | {max(r[4] for r in rows):.4f} | |", flush=True)


def speed(args: argparse.Namespace, runtime, mgan, style: torch.Tensor, photo: Path) -> None:
    content = images.resize_long_side(images.load_image(photo).rgb, args.speed_size)
    adain = build("adain", runtime, model="adain_vgg16")
    adain_styles = adain.prepare([style])
    # The warm-up call of each also computes AdaIN's style statistics at this size, once, as a batch would.
    mgan_ms = ms_per_call(lambda: mgan.stylize(content, mgan.prepare([])), runtime.device, args.repeats)
    adain_ms = ms_per_call(lambda: adain.stylize(content, adain_styles), runtime.device, args.repeats)
    h, w = content.shape[-2:]
    print(f"\nspeed, {w}x{h} px, {runtime.device} {runtime.precision}, {torch.get_num_threads()} threads: "
          f"mgan {mgan_ms:.0f} ms, adain {adain_ms:.0f} ms, ratio {mgan_ms / adain_ms:.2f}")


def train_layouts(runtime) -> None:
    """Seconds per training step (generator and critic) in each memory layout, after a warm-up step."""
    vgg = VGGFeatures("vgg16", deepest="relu4_1")
    vgg.load_weights(weights.resolve("vgg16")[0])
    vgg = place_loss_network(vgg, runtime)
    files, style = sorted(CONTENT.glob("*.jpg"))[:40], style_image("the_scream.jpg")
    for layout in (torch.contiguous_format, torch.channels_last):
        task = MganTask(MganTrainConfig(), runtime, vgg, images.load_image(style).rgb, style, files, files[:1])
        task.memory_format = layout
        place(task.model, runtime, layout)
        place(task.critic, runtime, layout)

        def step(i: int) -> None:
            batch = task.batch(i)
            task.loss(batch, task.model)[0].backward()
            task.critic_loss(batch, task.model, task.critic)[0].backward()

        step(0)
        start = time.perf_counter()
        step(1)
        step(2)
        print(f"{layout}: {(time.perf_counter() - start) / 2:.1f} s a step, {torch.get_num_threads()} threads",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the MGAN model (NAME or .pth)")
    parser.add_argument("--train-layouts", action="store_true", help="time a training step in each layout instead")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--johnson", help="a Johnson model of the same style, e.g. the_scream")
    parser.add_argument("--photos", type=Path, help="folder of content photos never trained on")
    parser.add_argument("--held-out-photos", type=int, default=8, metavar="N")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--gatys-photos", type=int, default=8, help="how many of the photos Gatys mrf runs on")
    parser.add_argument("--speed-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--save", type=Path, metavar="DIR", help="also write each output there")
    args = parser.parse_args()

    runtime = make_runtime(args.device, args.precision, args.threads, seed=0)
    if args.train_layouts:
        train_layouts(runtime)
        return
    if not args.model:
        parser.error("--model is needed (or --train-layouts)")
    net = metrics.metric_backbone(weights.resolve("vgg16")[0])
    payload = weights.load_model(weights.find_model(args.model), "mgan")
    style_path = style_image(payload["style_image"])
    style = images.load_image(style_path).rgb
    photos = (sorted(args.photos.glob("*.jpg")) if args.photos else
              held_out_photos(args.held_out_photos) if args.held_out_photos else default_photos())
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    print(f"# mgan: {args.model} ({style_path.name}), {args.size} px, {runtime.device} {runtime.precision}, "
          f"{platform.machine()}, torch {torch.__version__}")
    print("| method | content | style ratio | content distance | colour ratio | vs colour | patch distance | "
          "seconds |")
    print("|---|---|---|---|---|---|---|---|")
    mgan = build("mgan", runtime, model=args.model)
    results = {"mgan": score_rows("mgan", mgan, mgan.prepare([]), photos, style, args.size, net, args.save)}
    if args.johnson:
        johnson = build("johnson", runtime, model=args.johnson)
        results["johnson"] = score_rows("johnson", johnson, johnson.prepare([]), photos, style, args.size, net,
                                        args.save)
    if args.gatys_photos:
        gatys = build("gatys", runtime, style_loss="mrf")
        results["gatys mrf"] = score_rows("gatys-mrf", gatys, gatys.prepare([style]), photos[:args.gatys_photos],
                                          style, args.size, net, args.save)
    for name, rows in results.items():
        summary(name, rows)
    speed(args, runtime, mgan, style, photos[0])


if __name__ == "__main__":
    main()
