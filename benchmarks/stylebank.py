"""A StyleBank model against issue 44's bars: each style's quality, the bank blends, the auto-encoder's PSNR, the
speed against the Johnson network, and a bank added with --add-style leaving the old styles as they were.

    python benchmarks/stylebank.py quality --model stylebank [--held-out-photos 8] [--size 512] [--save DIR]
    python benchmarks/stylebank.py blend --model stylebank [--held-out-photos 8] [--size 512]
    python benchmarks/stylebank.py psnr --model stylebank [--held-out-photos 16] [--size 512]
    python benchmarks/stylebank.py speed --model stylebank [--johnson multistyle] [--size 1024] [--repeats 3]
    python benchmarks/stylebank.py unchanged --before stylebank --after stylebank9.pth
    python benchmarks/stylebank.py step [--styles 8] [--threads 1] [--repeats 3]

quality: for every style of the model and each photo (the samples' photos, or --held-out-photos N of the training
folder's held-out ones: no model trains on either), the reference metric (FACTS.md): style ratio, content
distance, and the plain colour transfer's ratio on the same pair; per style the means and the number of photos on
which the model beats the colour transfer. Issue 44 asks: every style's mean ratio <= 0.5 (0.55 for a style added
with --add-style), mean content <= 0.85, and the colour transfer beaten on every photo.

blend: for neighbouring styles (A, B) of the model, the 50/50 bank blend's style distance to each artwork beside
the other single style's: d(blend, A) < d(B's output, A) and d(blend, B) < d(A's output, B).

psnr: the auto-encoder branch (encoder and decoder, no bank) on held-out photos; the issue asks 25 dB or more.

speed: ms for one image of --size px through each engine as `stransfer stylize` runs it (tile auto), StyleBank and
Johnson alternating in the same run so both see the same machine; the issue asks at most 1.5x Johnson's time.

unchanged: every tensor the --before model holds is bit for bit the same in the --after one, and each of its styles
stylises the photos to the very same pixels.

step: seconds per training step of each kind, as `stransfer train stylebank` takes them with the default settings
(384 px crops of the training photos, batch 4, the real VGG16 loss network, --styles synthetic style images): a
stylising step, an auto-encoder step, their mean over the (T+1) schedule, and an --add-style step. Wall time, and
the process's CPU time beside it (on a machine shared with other work, CPU time / threads is what an idle machine's
wall time would be).

Quality: about a minute per style at 512 px on 2 AVX2-only cores (8 photos); speed: about a minute.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch

from quality import CONTENT, default_photos, held_out_photos, style_image
from stransfer import color, images, metrics, weights
from stransfer.backbone import VGGFeatures
from stransfer.device import make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.engines.stylebank import load_network
from stransfer.train.data import list_images, split
from stransfer.train.loop import place, place_loss_network
from stransfer.train.stylebank import StyleBankTask, StyleBankTrainConfig, autoencoder_step
from timing import cpu_name

# Issue 44's bars (512 px, photos never trained on).
MAX_RATIO, MAX_ADDED_RATIO, MAX_CONTENT, MIN_PSNR, MAX_SLOWDOWN = 0.5, 0.55, 0.85, 25.0, 1.5


def photos(args: argparse.Namespace) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, photo at full size for the metric, photo at the output size), each photo loaded once."""
    paths = held_out_photos(args.held_out_photos) if args.held_out_photos else default_photos()
    return [(p.stem, full, images.resize_long_side(full, args.size))
            for p, full in ((p, images.load_image(p).rgb) for p in paths)]


def stylebank(model: str, runtime, **inputs):
    spec = ENGINES["stylebank"]
    return spec.build(spec.config_type(model=model), runtime, EngineInputs(**inputs))


def artworks(model: str) -> dict[str, torch.Tensor]:
    """Each style of the model and its artwork, found by the image's file name (quality.style_image)."""
    _, payload = load_network(weights.find_model(model))
    return {name: images.load_image(style_image(file)).rgb
            for name, file in zip(payload["styles"], payload["style_images"])}


def quality(args: argparse.Namespace, runtime, metric_net) -> None:
    engine, arts, pictures = stylebank(args.model, runtime), artworks(args.model), photos(args)
    print(f"# stylebank quality: {args.model}, {len(pictures)} photos, {args.size} px, {runtime.device} "
          f"{runtime.precision}; ratio = style ratio, colour = the plain colour transfer's ratio; bars: ratio <= "
          f"{MAX_RATIO} ({MAX_ADDED_RATIO} for an added style), content <= {MAX_CONTENT}, every photo beating colour")
    print("| style | ratio (mean) | ratio (worst) | content (mean) | colour (mean) | photos beating colour |")
    print("|---|---|---|---|---|---|")
    for name, art in arts.items():
        rows = []
        for photo, full, small in pictures:
            out = engine.stylize(small, engine.prepare([name]))
            if args.save:
                images.save_image(out, args.save / f"{photo}_{name}_stylebank.png", overwrite=True)
            s = metrics.score(metric_net, out, full, art)
            base = metrics.score(metric_net, color.match_color(small, art), full, art)
            rows.append((s.style_ratio, s.content, base.style_ratio))
        mean = [sum(r[i] for r in rows) / len(rows) for i in range(3)]
        beats = sum(r[0] < r[2] for r in rows)
        print(f"| {name} | {mean[0]:.3f} | {max(r[0] for r in rows):.3f} | {mean[1]:.3f} | {mean[2]:.3f} | "
              f"{beats} of {len(rows)} |", flush=True)


def blend(args: argparse.Namespace, runtime, metric_net) -> None:
    single = stylebank(args.model, runtime)
    mixed = stylebank(args.model, runtime, style_weights=[0.5, 0.5])
    arts, pictures = artworks(args.model), photos(args)
    names = list(arts)
    print(f"# stylebank blend: {args.model}, {len(pictures)} photos, {args.size} px; d = style distance")
    print("| A | B | d(blend, A) | d(B, A) | d(blend, B) | d(A, B) | photos where both hold |")
    print("|---|---|---|---|---|---|---|")
    for a, b in zip(names[::2], names[1::2]):
        rows = []
        for _, full, small in pictures:
            out_a, out_b = (single.stylize(small, single.prepare([n])) for n in (a, b))
            out_ab = mixed.stylize(small, mixed.prepare([a, b]))

            def d(out: torch.Tensor, art: str) -> float:
                return metrics.score(metric_net, out, full, arts[art]).style

            rows.append((d(out_ab, a), d(out_b, a), d(out_ab, b), d(out_a, b)))
        means = [sum(r[i] for r in rows) / len(rows) for i in range(4)]
        held = sum(r[0] < r[1] and r[2] < r[3] for r in rows)
        print(f"| {a} | {b} | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | {means[3]:.3f} | "
              f"{held} of {len(rows)} |", flush=True)


def psnr(args: argparse.Namespace, runtime) -> None:
    net, _ = load_network(weights.find_model(args.model))
    net = net.to(runtime.device)
    print(f"# stylebank auto-encoder: {args.model}, {args.size} px (bar: {MIN_PSNR:.0f} dB)")
    print("| photo | PSNR (dB) |")
    print("|---|---|")
    values = []
    for name, _, small in photos(args):
        with runtime.autocast():
            out = net(small.to(runtime.device)).float().clamp(0, 1).cpu()
        values.append(-10 * math.log10(max((out - small).pow(2).mean().item(), 1e-10)))
        print(f"| {name} | {values[-1]:.2f} |", flush=True)
    print(f"| **mean** | {sum(values) / len(values):.2f} |\n| **worst** | {min(values):.2f} |")


def speed(args: argparse.Namespace, runtime) -> None:
    bank = stylebank(args.model, runtime)
    johnson_spec = ENGINES["johnson"]
    johnson = johnson_spec.build(johnson_spec.config_type(model=args.johnson), runtime, EngineInputs())
    _, payload = load_network(weights.find_model(args.model))
    johnson_styles = weights.load_model(weights.find_model(args.johnson), "johnson").get("styles") or []
    runs = {"stylebank": (bank, bank.prepare(payload["styles"][:1])),
            "johnson": (johnson, johnson.prepare(johnson_styles[:1] if len(johnson_styles) > 1 else []))}
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for engine, choice in runs.values():
        engine.stylize(x, choice)  # warm-up
    for _ in range(args.repeats):  # alternating, so both see the same load
        for name, (engine, choice) in runs.items():
            start = time.perf_counter()
            engine.stylize(x, choice)
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    print(f"# stylebank speed: {args.size} px, {cpu_name()} ({platform.machine()}), {torch.get_num_threads()} "
          f"threads, {runtime.precision}; best of {args.repeats} (bar: {MAX_SLOWDOWN}x johnson)")
    print("| engine | model | s per image | vs johnson |")
    print("|---|---|---|---|")
    for name, model in (("stylebank", args.model), ("johnson", args.johnson)):
        print(f"| {name} | {model} | {best[name]:.2f} | {best[name] / best['johnson']:.2f}x |")


def unchanged(args: argparse.Namespace, runtime) -> None:
    before, old = load_network(weights.find_model(args.before))
    after, new = load_network(weights.find_model(args.after))
    ours, theirs = before.state_dict(), after.state_dict()
    tensors = sum(torch.equal(theirs[k], v) for k, v in ours.items() if k in theirs)
    print(f"# stylebank --add-style: {args.after} beside {args.before}")
    print(f"tensors of {args.before} unchanged in {args.after}: {tensors} of {len(ours)}; added styles: "
          f"{', '.join(new['styles'][len(old['styles']):]) or 'none'}")
    engines, pictures = (stylebank(args.before, runtime), stylebank(args.after, runtime)), photos(args)
    for name in old["styles"]:
        same = sum(torch.equal(*(e.stylize(small, e.prepare([name])) for e in engines)) for _, _, small in pictures)
        print(f"{name}: {same} of {len(pictures)} photos the same bit for bit", flush=True)


def _timed(task: StyleBankTask, model: torch.nn.Module, step: int) -> tuple[float, float]:
    """Wall and CPU seconds of one optimiser step of the task, as the training loop takes it."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.enable_grad():
        batch = task.batch(step)
        optimizer.zero_grad(set_to_none=True)
        task.loss(batch, model)[0].backward()
        optimizer.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def step_seconds(cfg: StyleBankTrainConfig, runtime, backbone: torch.nn.Module, styles: int, files: list[Path],
                 repeats: int) -> dict[str, tuple[float, float]]:
    """Mean (wall, CPU) seconds of each kind of training step: stylising, auto-encoder, --add-style (one new bank
    beside `styles` frozen ones), and the mean over the (T+1) schedule."""
    images = [torch.rand(1, 3, 320, 400, generator=torch.Generator().manual_seed(i)) for i in range(styles)]
    paths = [Path(f"style{i}.jpg") for i in range(styles)]
    names = [f"old{i}" for i in range(styles)]
    tasks = {"full": StyleBankTask(cfg, runtime, backbone, images, paths, files, []),
             "add": StyleBankTask(cfg, runtime, backbone, images[:1], paths[:1], files, [],
                                  frozen=(names, [f"{n}.jpg" for n in names]))}
    models = {name: place(task.model, runtime).train() for name, task in tasks.items()}
    period = cfg.stylize_steps + 1
    _timed(tasks["full"], models["full"], 0)  # warm-up
    rows: dict[str, list[tuple[float, float]]] = {"stylising": [], "auto-encoder": [], "--add-style": []}
    for repeat in range(repeats):
        for number in range(period * (repeat + 1), period * (repeat + 2)):
            kind = "auto-encoder" if autoencoder_step(number, cfg.stylize_steps) else "stylising"
            rows[kind].append(_timed(tasks["full"], models["full"], number))
        rows["--add-style"].append(_timed(tasks["add"], models["add"], repeat))
    mean = {kind: (sum(t[0] for t in times) / len(times), sum(t[1] for t in times) / len(times))
            for kind, times in rows.items()}
    mean["mean over the schedule"] = tuple(  # type: ignore[assignment]
        (cfg.stylize_steps * a + b) / period for a, b in zip(mean["stylising"], mean["auto-encoder"]))
    return mean


def step(args: argparse.Namespace, runtime) -> None:
    cfg = StyleBankTrainConfig()
    backbone = VGGFeatures(cfg.backbone, deepest="relu4_3")
    backbone.load_weights(weights.resolve(cfg.backbone)[0])
    files = split(list_images(CONTENT))[0] if CONTENT.is_dir() else default_photos()
    seconds = step_seconds(cfg, runtime, place_loss_network(backbone, runtime), args.styles, files, args.repeats)
    print(f"# stylebank training step: {cpu_name()} ({platform.machine()}), {torch.get_num_threads()} threads, "
          f"{runtime.precision}; batch {cfg.batch_size} of {cfg.image_size} px, {args.styles} styles, T = "
          f"{cfg.stylize_steps}; means of {args.repeats} schedules")
    print("| step | wall s | CPU s |")
    print("|---|---|---|")
    for kind, (wall, cpu) in seconds.items():
        print(f"| {kind} | {wall:.2f} | {cpu:.2f} |")


CHECKS = {"quality": quality, "blend": blend, "psnr": psnr, "speed": speed, "unchanged": unchanged, "step": step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=list(CHECKS))
    parser.add_argument("--model", default="stylebank")
    parser.add_argument("--johnson", default="multistyle", help="speed: the Johnson model to time against")
    parser.add_argument("--before", help="unchanged: the model the styles were added to")
    parser.add_argument("--after", help="unchanged: the model with the added styles")
    parser.add_argument("--held-out-photos", type=int, metavar="N",
                        help="N held-out photos of ../shared/data/content instead of the samples")
    parser.add_argument("--size", type=int, help="output long side (512; speed: 1024)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--styles", type=int, default=8, help="step: styles of the model trained")
    parser.add_argument("--threads", type=int, help="torch threads (default: the runtime's)")
    parser.add_argument("--save", type=Path, metavar="DIR", help="quality: also write each output there")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    args.size = args.size or (1024 if args.check == "speed" else 512)
    if args.check == "unchanged" and not (args.before and args.after):
        parser.error("unchanged needs --before MODEL --after MODEL")
    runtime = make_runtime(args.device, args.precision, args.threads, seed=0)
    if args.check in ("quality", "blend"):
        metric_net = metrics.metric_backbone(weights.resolve("vgg16")[0])
        CHECKS[args.check](args, runtime, metric_net)
    else:
        CHECKS[args.check](args, runtime)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
