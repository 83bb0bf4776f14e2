"""A texture network model against issue 43's bars: quality, diversity, selection, blends, speed and memory.

    python benchmarks/texture_nets.py --model textures [--size 512] [--slow [--slow-dir DIR]] [--speed] [--memory 2048]
    python benchmarks/texture_nets.py --model A.pth --compare B.pth      # e.g. diversity weight 0.1 against 0

For each texture the model holds (its exemplar found by file name in examples/, ../shared/data/style or
../shared/data/samples), at --size px with the reference metric (FACTS.md; the exemplar resized so its long side is
the texture's):
- style: the style distance of a sample (seed 0) to its exemplar; "noise": that of uniform noise, and their ratio
  (bar: at most 0.2); with --slow, the slow `stransfer texture` (Gatys from noise, its defaults) at the same size
  and seed, and the ratio net/slow (bar: at most 1.5). The slow one takes minutes a texture (14 at 512 px on two
  AVX2 cores); --slow-dir keeps them (EXEMPLAR-STEM_SIZE.png) for the next report, which compares the kept ones
  even without --slow.
- diversity: the mean absolute pixel difference of two samples (seeds 0 and 1), over that of two non-overlapping
  crops of the exemplar at the same scale (bar: at least 0.6); both measured on square crops of half the size.
- layout: the same ratio over 16 x 16 px block means, where the large shapes lie: a generator that ignores its
  noise's coarse scales puts them in the same places for every seed while the fine grain still differs.
- nearest: the exemplar nearest (style distance) to the texture's sample: its own, or the bar fails.
- blend: for consecutive textures A and B, a 0.5/0.5 code's sample must lie nearer A than B's own sample does,
  and nearer B than A's own sample does.
--speed: seconds for one --size texture, model loaded (median of 11); --memory N: peak RSS of
`stransfer texture -m net --size N` in a fresh process. --sheet FILE draws each texture at three seeds and its
0.5/0.5 blend with the next (the exemplars are not drawn: their licence does not let them ship).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import stransfer
from stransfer import images, losses, metrics, weights
from stransfer.drawing import BACKGROUND, INK, font
from stransfer.engines.named import model_styles
from stransfer.engines.texturenet import ENGINE
from timing import peak_rss

REPO = Path(__file__).resolve().parents[1]
LAYOUT_POOL = 16  # 16 x 16 px blocks: a 256 px crop as 16 x 16 cells
SPEED_RUNS = 11  # a median over many: one run on a shared 2-core machine varies by a fifth
SEARCH = (REPO / "examples", REPO.parent / "shared" / "data" / "style", REPO.parent / "shared" / "data" / "samples")


def exemplar(name: str) -> torch.Tensor:
    for folder in SEARCH:
        if (folder / name).exists():
            return images.load_image(folder / name).rgb
    raise SystemExit(f"exemplar {name} not found in {', '.join(map(str, SEARCH))}")


class Yardstick:
    """Style distances on the metric's VGG16, each exemplar's Grams taken once per size."""

    def __init__(self) -> None:
        state, _ = weights.resolve("vgg16")
        self.net = metrics.metric_backbone(state)
        self.grams: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def grams_of(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.net(image.float(), set(metrics.STYLE_LAYERS))
        return {k: losses.gram(feats[k]) for k in metrics.STYLE_LAYERS}

    def exemplar_grams(self, key: int, image: torch.Tensor, long_side: int) -> dict[str, torch.Tensor]:
        if (key, long_side) not in self.grams:
            size = images.fit_long_side(image.shape[-2], image.shape[-1], long_side)
            self.grams[(key, long_side)] = self.grams_of(images.resize(image, size))
        return self.grams[(key, long_side)]

    def distance(self, output: torch.Tensor, target: dict[str, torch.Tensor]) -> float:
        own = self.grams_of(output)
        return sum(losses.relative_sq_error(own[k], target[k]).item() for k in metrics.STYLE_LAYERS) / len(own)


def mad_ratio(a: torch.Tensor, b: torch.Tensor, example: torch.Tensor, side: int, pool: int = 1) -> float:
    """Mean |a - b| over centre crops of `side` px, over that of two non-overlapping `side` px crops of the
    exemplar (resized so its long side is twice `side`); each crop first averaged over `pool` x `pool` blocks
    (`LAYOUT_POOL`: where the large shapes lie, not the fine grain that any two seeds' samples differ in)."""
    h, w = a.shape[-2:]
    top, left = (h - side) // 2, (w - side) // 2
    crop = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
    pair = (F.avg_pool2d(a[crop], pool) - F.avg_pool2d(b[crop], pool)).abs().mean().item()
    ex = images.resize(example, images.fit_long_side(example.shape[-2], example.shape[-1], 2 * side))
    eh, ew = ex.shape[-2:]
    if ew >= 2 * side:
        first, second = ex[..., :side, :side], ex[..., :side, ew - side:]
    else:
        first, second = ex[..., :side, :side], ex[..., eh - side:, :side]
    return pair / (F.avg_pool2d(first, pool) - F.avg_pool2d(second, pool)).abs().mean().item()


def sample(model: str, textures: list[str], size: int, seed: int, blend: list[float] | None = None) -> torch.Tensor:
    image = stransfer.texture(textures, size, method="net", model=model, seed=seed, style_blend=blend)
    return images.pil_to_tensor(image)


def slow_texture(file: str, size: int, keep: Path | None, make: bool) -> torch.Tensor | None:
    """The slow texture (Gatys from noise, its defaults, seed 0) of an exemplar, read from `keep` when made before;
    made when `make`, None otherwise."""
    kept = keep / f"{Path(file).stem}_{size}.png" if keep else None
    if kept and kept.exists():
        return images.load_image(kept).rgb
    if not make:
        return None
    image = stransfer.texture(str(_find(file)), size, seed=0)
    if kept:
        keep.mkdir(parents=True, exist_ok=True)
        image.save(kept)
    return images.pil_to_tensor(image)


def report(model: str, size: int, slow: bool, keep: Path | None = None) -> None:
    path = weights.find_model(model)
    payload = weights.load_model(path, ENGINE)
    names = model_styles(payload, path)
    files = payload.get("style_images") or [f"{n}.jpg" for n in names]
    stick = Yardstick()
    examples = [exemplar(f) for f in files]
    targets = [stick.exemplar_grams(i, e, size) for i, e in enumerate(examples)]
    noise_image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    samples = [sample(model, [n], size, 0) for n in names]
    print(f"model {path.stem}: {len(names)} textures at {size} px")
    print("| texture | style | noise | net/noise | slow | net/slow | diversity | layout | nearest |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, name in enumerate(names):
        style = stick.distance(samples[i], targets[i])
        noise = stick.distance(noise_image, targets[i])
        slow_d = "-"
        ratio_slow = "-"
        slow_image = slow_texture(files[i], size, keep, slow) if slow or keep else None
        if slow_image is not None:
            slow_value = stick.distance(slow_image, targets[i])
            slow_d, ratio_slow = f"{slow_value:.3f}", f"{style / slow_value:.2f}"
        other = sample(model, [name], size, 1)
        spread = mad_ratio(samples[i], other, examples[i], size // 2)
        layout = mad_ratio(samples[i], other, examples[i], size // 2, LAYOUT_POOL)
        nearest = min(range(len(names)), key=lambda j: stick.distance(samples[i], targets[j]))
        print(f"| {name} | {style:.3f} | {noise:.3f} | {style / noise:.3f} | {slow_d} | {ratio_slow} | "
              f"{spread:.2f} | {layout:.2f} | {'own' if nearest == i else names[nearest]} |")
    blends(model, names, size, stick, samples, targets)


def _find(name: str) -> Path:
    return next(folder / name for folder in SEARCH if (folder / name).exists())


def blends(model: str, names: list[str], size: int, stick: Yardstick, samples: list[torch.Tensor],
           targets: list[dict[str, torch.Tensor]]) -> None:
    print("\n| blend A + B | d(blend, A) | d(B's own, A) | d(blend, B) | d(A's own, B) | holds |")
    print("|---|---|---|---|---|---|")
    for a in range(len(names) - 1):
        b = a + 1
        mixed = sample(model, [names[a], names[b]], size, 0, [0.5, 0.5])
        to_a, b_to_a = stick.distance(mixed, targets[a]), stick.distance(samples[b], targets[a])
        to_b, a_to_b = stick.distance(mixed, targets[b]), stick.distance(samples[a], targets[b])
        holds = to_a < b_to_a and to_b < a_to_b
        print(f"| {names[a]} + {names[b]} | {to_a:.3f} | {b_to_a:.3f} | {to_b:.3f} | {a_to_b:.3f} | "
              f"{'yes' if holds else 'no'} |")


def speed(model: str, size: int) -> None:
    maker = stransfer.TextureMaker("net", model_styles(*_payload(model))[:1], model=model)
    maker(size, seed=0)  # warm-up
    times = []
    for seed in range(SPEED_RUNS):
        start = time.perf_counter()
        maker(size, seed=seed)
        times.append(time.perf_counter() - start)
    print(f"\n{size} px texture, model loaded: {statistics.median(times):.3f} s (median of {SPEED_RUNS}, fastest "
          f"{min(times):.3f}; {torch.get_num_threads()} threads)")


def _payload(model: str) -> tuple[dict, Path]:
    path = weights.find_model(model)
    return weights.load_model(path, ENGINE), path


def memory(model: str, size: int) -> None:
    first = model_styles(*_payload(model))[0]
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"texture_nets_{size}.png"
    seconds, peak = peak_rss(["texture", "-m", "net", "--model", model, "-s", first, "--size", str(size),
                              "-o", str(out)], dict(os.environ))
    out.unlink(missing_ok=True)
    print(f"\n{size} px texture in a fresh process: {seconds:.1f} s, peak RSS {peak / 2**30:.2f} GiB")


def sheet(model: str, out: Path, side: int = 256) -> None:
    """A row per texture: seeds 0, 1 and 2, then its 0.5/0.5 blend with the next texture, each captioned."""
    names = model_styles(*_payload(model))
    gap, caption = 8, 22
    columns = 4
    canvas = Image.new("RGB", (columns * (side + gap) + gap, len(names) * (side + caption + gap) + gap), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for row, name in enumerate(names):
        after = names[(row + 1) % len(names)]
        cells = [(stransfer.texture([name], side, method="net", model=model, seed=seed), f"{name}, seed {seed}")
                 for seed in range(3)]
        cells.append((stransfer.texture([name, after], side, method="net", model=model, seed=0,
                                        style_blend=[0.5, 0.5]), f"0.5 {name} + 0.5 {after}"))
        y = gap + row * (side + caption + gap)
        for col, (image, text) in enumerate(cells):
            x = gap + col * (side + gap)
            canvas.paste(image, (x, y))
            draw.text((x + 2, y + side + 3), text[:40], fill=INK, font=font(12))
    canvas.save(out, quality=88)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="textures")
    parser.add_argument("--compare", help="a second model, reported the same way (e.g. trained without diversity)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slow", action="store_true", help="also run the slow texture at the same size")
    parser.add_argument("--slow-dir", type=Path, help="where slow textures are kept between reports")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--memory", type=int, default=0, help="peak memory of a texture of this size")
    parser.add_argument("--sheet", type=Path, help="draw the textures here (e.g. docs/textures.jpg)")
    args = parser.parse_args()
    if args.sheet:
        sheet(args.model, args.sheet)
        return
    for model in filter(None, (args.model, args.compare)):
        report(model, args.size, args.slow, args.slow_dir)
        if args.speed:
            speed(model, args.size)
        if args.memory:
            memory(model, args.memory)
        print()


if __name__ == "__main__":
    main()
