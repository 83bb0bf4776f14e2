"""Batch throughput and peak memory per engine.

    python benchmarks/batch_memory.py [--engines johnson,adain,gatys] [--sizes 1024,2048,4096]

1. Images per second over a folder of 512 px images (`stransfer stylize FOLDER`, one process, model loaded once).
2. Peak resident memory (RSS) of one `stransfer stylize` process per output size, with `--tile auto`.

Each measurement runs the real command in a fresh process and reads its peak RSS from the kernel (wait4), so
start-up and image buffers are included. Johnson and AdaIN use random-weight models of the shipped
architectures (weights do not change cost); Gatys uses the real VGG16 from the cache.

Gatys' memory rows run 1, 51 and 51 evaluations per scale (`--gatys-iterations`): L-BFGS's history, most of
its memory, is full after 51, so the peak is the default schedule's in about half the time.

`--engines johnson,adain` takes about 6 minutes on 2 AVX2-only cores. The default run, Gatys included, took 48
minutes on 2 AVX-512 cores running the AVX2 code paths (all three caps, benchmarks/timing.py), 44 of them Gatys:
two 512x512 images 5.6 minutes, the 1024 and 2048 px memory rows 7.7 and 31 minutes. An AVX2-only chip has not
timed it.

The engines' tiling budgets (BYTES_PER_PIXEL) come from peaks like these: peak RSS at 1024x768 less that at
256x192, per added pixel, --tile off. Johnson, fp32, shipped architecture: 550 bytes (0.38 GB; 360 with glibc's
own malloc settings, which keep no freed blocks), budgeted at 600. AdaIN and swap, fp32 and bf16, on AVX-512 and
AVX2 code paths: at most 1,300 at alpha 1, budgeted at 1,400; 1,903 (swap, AVX2 paths) with the content skips
of alpha < 1, budgeted at 1,400 + 550. Two runs of one command differed by about 10%.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from stransfer import weights
from stransfer.engines.adain import Decoder
from stransfer.engines.johnson import JohnsonArch, TransformerNet
from stransfer.train.johnson import JohnsonTrainConfig
from timing import peak_rss

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def make_models(models: Path) -> None:
    models.mkdir(parents=True, exist_ok=True)
    cfg = JohnsonTrainConfig()
    arch = JohnsonArch(cfg.width, cfg.residual_blocks)
    weights.save_model(models / "bench_johnson.pth", "johnson", TransformerNet(arch).state_dict(),
                       arch=dataclasses.asdict(arch), style="bench", style_image="starry_night.jpg",
                       backbone="vgg16", train_config={}, steps=0, record={})
    weights.save_model(models / "bench_adain.pth", "adain", Decoder().state_dict(), backbone="vgg16",
                       encoder_layer="relu4_1", encoder_digest="", train_config={}, steps=0, record={})


def photo(path: Path, side: int) -> Path:
    """The Tübingen example resized to side x side (upscaled past 1024): a real photo at any size."""
    with Image.open(EXAMPLES / "tubingen.jpg") as im:
        im.convert("RGB").resize((side, side), Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def engine_args(engine: str) -> list[str]:
    style = ["-s", str(EXAMPLES / "starry_night.jpg")]
    return {"johnson": ["-m", "johnson", "--model", "bench_johnson"],
            "adain": ["-m", "adain", "--model", "bench_adain", *style],
            "gatys": ["-m", "gatys", *style]}[engine]


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds, stdout) of `python -m stransfer ARGS` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "stransfer", *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr}")
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="johnson,adain,gatys")
    parser.add_argument("--sizes", default="1024,2048,4096")
    parser.add_argument("--gatys-max-size", type=int, default=2048, help="Gatys is minutes per megapixel")
    parser.add_argument("--folder-images", type=int, default=8)
    parser.add_argument("--parts", default="throughput,memory", help="which tables to make")
    parser.add_argument("--keep", type=Path, help="folder to keep the large outputs in, to look for seams")
    parser.add_argument("--gatys-iterations", default="1,51,51",
                        help="Gatys evaluations per scale in the memory table: L-BFGS's history (50 pairs) is full "
                             "after 51, so its peak is reached in a fraction of the default schedule's time; "
                             "'' for the default schedule")
    args = parser.parse_args()
    engines = args.engines.split(",")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        make_models(home / "models")
        cache = weights.cache_path("vgg16")
        if cache.exists():  # reuse the user's verified VGG16 instead of fetching it again
            home.mkdir(exist_ok=True)
            os.symlink(cache, home / cache.name)
            os.symlink(weights.cache_path("vgg16").with_suffix(".json"), home / cache.with_suffix(".json").name)
        env = {**os.environ, "STRANSFER_HOME": str(home)}
        print(f"# batch throughput and memory: {torch.get_num_threads()} threads, torch {torch.__version__}")

        folder = tmp / "folder"
        folder.mkdir()
        for i in range(args.folder_images if "throughput" in args.parts else 0):
            photo(folder / f"p{i}.jpg", 512 + 8 * i)  # slightly different sizes: the real-world case
        print("\n| engine | images | wall s | images/s (per-file time, model loaded once) |")
        print("|---|---|---|---|")
        for engine in engines if "throughput" in args.parts else []:
            count = 2 if engine == "gatys" else args.folder_images
            files = sorted(folder.iterdir())[:count]
            out = tmp / f"out-{engine}"
            seconds, stdout = run(["stylize", *map(str, files), "-o", str(out), "--size", "512", "--json",
                                      *engine_args(engine)], env)
            per_file = sum(json.loads(line)["seconds"] for line in stdout.splitlines() if line.startswith("{"))
            print(f"| {engine} | {count} | {seconds:.1f} | {count / per_file:.3g} |", flush=True)

        print("\n| engine | output | tile | wall s | peak RSS GB |")
        print("|---|---|---|---|---|")
        for engine in engines if "memory" in args.parts else []:
            for side in map(int, args.sizes.split(",")):
                if engine == "gatys" and side > args.gatys_max_size:
                    continue
                source = photo(tmp / f"big{side}.jpg", side) if not (tmp / f"big{side}.jpg").exists() \
                    else tmp / f"big{side}.jpg"
                out = (args.keep or tmp) / f"big-{engine}-{side}.png"
                cmd = ["stylize", str(source), "-o", str(out), "--size", str(side), *engine_args(engine)]
                if engine != "gatys":
                    cmd += ["--tile", "auto"]
                elif args.gatys_iterations:
                    cmd += ["--iterations", args.gatys_iterations]
                seconds, rss = peak_rss(cmd, env)
                note = f" ({args.gatys_iterations} evaluations)" if engine == "gatys" and args.gatys_iterations else ""
                print(f"| {engine}{note} | {side}x{side} | auto | {seconds:.1f} | {rss / 1e9:.2f} |", flush=True)


if __name__ == "__main__":
    main()
