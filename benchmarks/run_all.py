"""Regenerate the benchmark tables (docs/benchmarks.md) and the README's picture (docs/gallery.jpg).

    python benchmarks/run_all.py [--quick] [--only KEY,KEY] [--no-docs] [--gallery-only] [--cell-size 384]

Runs the benchmark scripts one after another and rewrites this machine kind's block of docs/benchmarks.md
(KIND from timing.machine_kind), each table under its own key, leaving the other kinds' blocks as they are; the
README's time for its main job on this kind is rewritten from the same measurement, so the two never disagree.
`--only` reruns some tables (keys: see BENCHMARKS; `quality` for the shipped models' scores) and keeps the rest
of the block; the long ones (style_losses, texture, video_flicker) run only when named. A kind that has no block
(an unknown CPU) writes benchmarks/RESULTS.md only.

About an hour and a half on 2 AVX2-only cores; --quick skips the 300-evaluation baseline and the Gatys memory
rows (about 35 minutes). The gallery alone (--gallery-only) is 12 cells, three of them Gatys at --cell-size.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from timing import cpu_name, machine_kind

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DOCS = REPO / "docs" / "benchmarks.md"
README = REPO / "README.md"

# The kinds of machine docs/benchmarks.md keeps a block for, in its order, with their headings.
KINDS = {
    "avx512-bf16": "2 AVX-512 BF16 cores (bf16 where `--precision auto` picks it)",
    "avx2": "2 AVX2-only cores (fp32)",
    "avx2-capped": "An AVX-512 chip on its AVX2 code paths (checks behaviour; not an AVX2 chip's times)",
    "gpu": "One CUDA GPU",
}

HEADER = """# Benchmarks

Speed, memory and quality of stransfer, one block per kind of machine. This page is written by
`python benchmarks/run_all.py`: a run replaces its own machine kind's tables and leaves the others; `--only KEY`
reruns one table. Each table says when and on which chip it was measured and which script printed it. The
scripts print numbers rather than assert them.

Which kind a machine is: `grep -o 'avx512_bf16\\|amx_bf16' /proc/cpuinfo` prints something on an AVX-512 BF16
chip (bf16 runs natively there, about twice fp32's speed) and nothing on an AVX2-only one, where bf16 is emulated
and `--precision auto` never picks it. An AVX-512 chip runs the AVX2 code paths with `ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2`; its times go to a block of their own.

Distances are the reference metric (`stransfer eval`, stransfer/metrics.py): style ratio = the output's style
distance over the photo's own (lower = more of the style), content distance lower = more of the photo. The
shipped models' scores are in [weights/README.md](../weights/README.md).
"""


@dataclass(frozen=True)
class Benchmark:
    key: str
    title: str
    args: list[str]
    quick: list[str] = field(default_factory=list)  # replaces args with --quick
    long: bool = False  # runs only when named in --only


BENCHMARKS = [
    Benchmark("gatys_speed", "Gatys: seconds per evaluation against the bare network pass",
              ["benchmarks/gatys_speed.py"]),
    Benchmark("gatys_quality_speed", "Gatys at 512 px: time and distances against single-scale L-BFGS",
              ["benchmarks/gatys_quality_speed.py"], ["benchmarks/gatys_quality_speed.py", "--skip-baseline"]),
    Benchmark("johnson_speed", "Johnson: ms per image and training steps per second", ["benchmarks/johnson_speed.py"]),
    Benchmark("multistyle_speed", "Johnson: a training step for one style, several, and --add-style",
              ["benchmarks/multistyle_speed.py"]),
    Benchmark("adain_speed", "AdaIN: ms per image, style encoding apart, and training steps per second",
              ["benchmarks/adain_speed.py"]),
    Benchmark("swap_speed", "Style-swap beside AdaIN at 1024 px", ["benchmarks/swap_speed.py"]),
    Benchmark("layout", "Memory layout: contiguous against channels-last", ["benchmarks/layout.py"]),
    Benchmark("allocator", "Memory reuse: glibc's malloc settings against stransfer's", ["benchmarks/allocator.py"]),
    Benchmark("winograd", "3x3 convolutions: direct against Winograd", ["benchmarks/winograd.py"]),
    Benchmark("batch_memory", "Batch throughput and peak memory with tiling", ["benchmarks/batch_memory.py"],
              ["benchmarks/batch_memory.py", "--engines", "johnson,adain"]),
    Benchmark("style_losses", "Gatys per style loss at 512 px", ["benchmarks/style_losses.py"], long=True),
    Benchmark("texture", "A 1024 px texture", ["benchmarks/texture.py"], long=True),
    Benchmark("video_flicker", "Video: flicker with and without the temporal blend", ["benchmarks/video_flicker.py"],
              long=True),
]
MAIN_JOB = "main_job"


# ------------------------------------------------------------------------------------ the page and its blocks


def stamp() -> str:
    return f"Measured {datetime.date.today()} on {os.cpu_count()} x {cpu_name()}, torch {torch.__version__}"


def section(key: str, title: str, how: str, body: str) -> str:
    """One table as the page holds it: a key the next run finds it by, a title, when/where/how, the table."""
    return f"<!-- section:{key} -->\n### {title}\n\n{how}\n\n{body.strip()}\n"


def parse(text: str) -> dict[str, dict[str, str]]:
    """The page's blocks: kind -> {key: section text}, in the page's order."""
    blocks: dict[str, dict[str, str]] = {}
    for kind, body in re.findall(r"<!-- benchmarks:([\w-]+):start -->\n(.*?)<!-- benchmarks:\1:end -->", text, re.S):
        parts = re.split(r"(?m)^(?=<!-- section:)", body)
        keyed = (re.match(r"<!-- section:([\w:.-]+) -->", p) for p in parts)
        blocks[kind] = {m[1]: p.rstrip("\n") + "\n" for m, p in zip(keyed, parts) if m}
    return blocks


def render(blocks: dict[str, dict[str, str]]) -> str:
    """The whole page from its blocks: the header, then each kind's heading and block (known kinds first)."""
    out = [HEADER]
    for kind in [*KINDS, *(k for k in blocks if k not in KINDS)]:
        sections = blocks.get(kind, {})
        body = "\n".join(sections.values()) if sections else "Not measured yet.\n"
        out.append(f"## {KINDS.get(kind, kind)}\n\n<!-- benchmarks:{kind}:start -->\n{body}"
                   f"<!-- benchmarks:{kind}:end -->\n")
    return "\n".join(out)


def merge(blocks: dict[str, dict[str, str]], kind: str, fresh: dict[str, str]) -> dict[str, dict[str, str]]:
    """`kind`'s block with the fresh sections in place of their old selves; the other kinds as they were."""
    merged = {k: dict(v) for k, v in blocks.items()}
    merged.setdefault(kind, {}).update(fresh)
    return merged


def main_job_seconds(section_text: str) -> float | None:
    """The wall seconds a main-job section records (the last column of its table's last row)."""
    rows = [line for line in section_text.splitlines() if line.startswith("| `")]
    found = re.search(r"\| ([0-9.]+) \|\s*$", rows[-1]) if rows else None
    return float(found[1]) if found else None


def duration(seconds: float) -> str:
    """How the README says a time: seconds under a minute and a half, whole minutes above."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def readme_with_time(readme: str, kind: str, seconds: float) -> str:
    """The README with its main-job figure for `kind` (between `<!-- main-job:KIND -->` and `<!-- /main-job -->`)
    set to `seconds`; unchanged where it has no figure for that kind."""
    return re.sub(rf"(<!-- main-job:{re.escape(kind)} -->).*?(<!-- /main-job -->)",
                  lambda m: f"{m[1]}{duration(seconds)}{m[2]}", readme)


# --------------------------------------------------------------------------------------------- measuring


def run(bench: Benchmark, quick: bool) -> str:
    args = bench.quick if quick and bench.quick else bench.args
    print(f"running: {bench.title}", file=sys.stderr, flush=True)
    how = f"{stamp()}: `python {' '.join(args)}`"
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        return section(bench.key, bench.title, how, f"failed:\n\n```\n{done.stderr.strip()[-2000:]}\n```")
    lines = [line for line in done.stdout.splitlines() if line.startswith(("|", "#", "content's", "training"))]
    body = "\n".join(line if not line.startswith("#") else f"*{line.lstrip('# ')}*\n" for line in lines)
    return section(bench.key, bench.title, how, body)


def readme_main_job() -> list[str]:
    """The README's main job as its code block gives it (the `.venv/bin/stransfer stylize` line)."""
    line = next(line for line in README.read_text().splitlines() if line.startswith(".venv/bin/stransfer stylize"))
    return shlex.split(line)[1:]


def time_main_job() -> str:
    """The README's main job from the command line, start-up included, the weights already cached."""
    print("running: the README's main job", file=sys.stderr, flush=True)
    args = readme_main_job()
    subprocess.run([sys.executable, "-m", "stransfer", "weights", "fetch"], cwd=REPO, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.index("-o") + 1
        timed = [*args[:out], str(Path(tmp) / Path(args[out]).name), *args[out + 1:]]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stransfer", *timed], cwd=REPO, check=True)
        seconds = time.perf_counter() - start
    table = f"| command | wall s |\n|---|---|\n| `stransfer {' '.join(args)}` | {seconds:.1f} |"
    return section(MAIN_JOB, "The README's main job", f"{stamp()}, the VGG16 weights cached", table)


def johnson_styles(path: Path) -> list[str]:
    """The styles a Johnson model file holds (one for a one-style file)."""
    from stransfer import weights
    from stransfer.engines.johnson import model_styles

    return model_styles(weights.load_model(path, "johnson"), path)


def quality_runs() -> list[Benchmark]:
    """The reference metric of every shipped model on photos it never trained on, a table per style."""
    runs = []
    for model in sorted(p.stem for p in (REPO / "weights").glob("*.pth")):
        if model.startswith("adain"):
            if (SHARED / "style").is_dir():
                runs += [Benchmark(f"quality:{model}:alpha{alpha}", f"Quality: {model}, alpha {alpha}",
                                   ["benchmarks/quality.py", "adain", "--model", model, "--styles",
                                    str(SHARED / "style"), "--held-out", "--alpha", alpha]) for alpha in ("1", "0.5")]
            continue
        styles = johnson_styles(REPO / "weights" / f"{model}.pth")
        for style in styles:
            picked = ["--style-name", style] if len(styles) > 1 else []
            runs.append(Benchmark(f"quality:{model}" + (f":{style}" if picked else ""),
                                  f"Quality: {model}" + (f", {style}" if picked else ""),
                                  ["benchmarks/quality.py", "johnson", "--model", model, *picked]))
    return runs


def measure(only: set[str] | None, quick: bool) -> dict[str, str]:
    """The sections asked for, freshly measured, by key."""
    wanted = (lambda key: key in only or key.split(":")[0] in only) if only else (lambda key: True)
    fresh = {}
    if wanted(MAIN_JOB):
        fresh[MAIN_JOB] = time_main_job()
    for bench in [*BENCHMARKS, *quality_runs()]:
        if wanted(bench.key) and (not bench.long or only):
            fresh[bench.key] = run(bench, quick)
    return fresh


# ---------------------------------------------------------------------------------------------- the gallery

GALLERY_PHOTO = "tubingen"
GALLERY_STYLES = ("starry_night", "the_scream", "woman_with_hat_matisse")
GALLERY_ENGINES = "gatys,johnson,adain,swap"


def make_gallery(folder: Path, cell: int) -> None:
    """The pictures of README.md and docs/methods.md, cells of `cell` pixels: gallery.jpg, the photo through
    every engine in each of three styles (a band per style); gallery/ENGINE.jpg, one engine in the three styles;
    gallery/adain_alpha.jpg, AdaIN's alpha. Only the examples/ images may ship (examples/SOURCES.md), so the
    photo is Tübingen; johnson uses the shipped model named after each style."""
    from stransfer import gallery, images
    from stransfer.device import make_runtime

    runtime = make_runtime("auto", "auto", seed=0)
    photo = images.load_image(REPO / "examples" / f"{GALLERY_PHOTO}.jpg").rgb
    contents = [(GALLERY_PHOTO, images.resize_long_side(photo, cell))]
    styles = [(name, images.load_image(REPO / "examples" / f"{name}.jpg").rgb) for name in GALLERY_STYLES]
    title = f"stransfer {GALLERY_ENGINES} · {cell} px · {runtime.device} {runtime.precision}"
    engines = gallery.settings(GALLERY_ENGINES, None)
    per_style = []
    for style in styles:
        print(f"gallery: {style[0]}", file=sys.stderr, flush=True)
        per_style.append(gallery.run(contents, [style], engines, runtime)[0][0])
    bands = [gallery.sheet(contents, [style], [[cells]], cell=cell, title="" if k else title)
             for k, (style, cells) in enumerate(zip(styles, per_style))]
    (folder / "gallery").mkdir(parents=True, exist_ok=True)
    _save(_stacked(bands), folder / "gallery.jpg")
    for k, (engine, _) in enumerate(engines):
        sheet = gallery.sheet(contents, styles, [[[cells[k]] for cells in per_style]], cell=cell)
        _save(sheet, folder / "gallery" / f"{engine}.jpg")
    alpha = gallery.run(contents, styles[1:2], [("adain", {"alpha": a}) for a in (0.0, 0.5, 1.0)], runtime)
    _save(gallery.sheet(contents, styles[1:2], alpha, cell=cell), folder / "gallery" / "adain_alpha.jpg")


def _stacked(sheets: list) -> Any:
    from PIL import Image

    out = Image.new("RGB", (max(s.width for s in sheets), sum(s.height for s in sheets)), "white")
    for k, sheet in enumerate(sheets):
        out.paste(sheet, (0, sum(s.height for s in sheets[:k])))
    return out


def _save(image: Any, path: Path) -> None:
    image.save(path, quality=85, optimize=True)
    print(path, file=sys.stderr)


# ---------------------------------------------------------------------------------------------------- main


def write(kind: str, fresh: dict[str, str]) -> None:
    """This kind's block of docs/benchmarks.md and the README's figure; RESULTS.md for a kind with no block."""
    if kind not in KINDS:
        (REPO / "benchmarks" / "RESULTS.md").write_text(f"# Benchmark results ({kind})\n\n" + "\n".join(fresh.values()))
        print(f"no block for {kind} machines in {DOCS.name}: tables in benchmarks/RESULTS.md", file=sys.stderr)
        return
    blocks = parse(DOCS.read_text()) if DOCS.exists() else {}
    DOCS.write_text(render(merge(blocks, kind, fresh)))
    seconds = main_job_seconds(fresh.get(MAIN_JOB, ""))
    if seconds is not None:
        README.write_text(readme_with_time(README.read_text(), kind, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 300-iteration baseline and Gatys memory")
    parser.add_argument("--only", help="comma-separated keys of the tables to rerun (the rest of the block stays)")
    parser.add_argument("--no-docs", action="store_true", help="print the tables; write nothing")
    parser.add_argument("--gallery-only", action="store_true", help="redraw docs/gallery.jpg and stop")
    parser.add_argument("--no-gallery", action="store_true", help="leave docs/gallery.jpg as it is")
    parser.add_argument("--cell-size", type=int, default=384, help="side of each gallery cell in pixels")
    args = parser.parse_args()
    if not args.gallery_only:
        only = {k.strip() for k in args.only.split(",")} if args.only else None
        fresh = measure(only, args.quick)
        if not args.no_docs:
            write(machine_kind(), fresh)
        print("\n".join(fresh.values()))
    if args.gallery_only or not (args.no_gallery or args.only):
        make_gallery(REPO / "docs", args.cell_size)


if __name__ == "__main__":
    main()
