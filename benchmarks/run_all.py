"""Regenerate every benchmark table and the README gallery, as Markdown.

    python benchmarks/run_all.py [--quick] [--no-readme] [--gallery-only]

Runs each benchmark script in turn, writes all tables to benchmarks/RESULTS.md, replaces the README's block for
this kind of machine (between `benchmarks:KIND:start` and `benchmarks:KIND:end`, KIND from timing.machine_kind)
with them, leaving the other kinds' blocks as they were, and redraws docs/gallery.jpg (3 photos x 3 styles x 4
engines).

About an hour and a half on 2 AVX2-only cores, estimated from capped runs on an AVX-512 chip: 65 minutes through
batch_memory (its Gatys rows 44 of them), then 15 quality runs of about a minute and the gallery. --quick skips
the 300-evaluation baseline and the Gatys rows: about 35 minutes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from timing import cpu_name, machine_kind

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def run(title: str, args: list[str]) -> str:
    print(f"running: {title}", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        return f"### {title}\n\nfailed:\n\n```\n{done.stderr.strip()[-2000:]}\n```\n"
    lines = [line for line in done.stdout.splitlines() if line.startswith(("|", "#", "content's", "training"))]
    body = "\n".join(line if not line.startswith("#") else f"*{line.lstrip('# ')}*\n" for line in lines)
    return f"### {title}\n\n`python {' '.join(args)}`\n\n{body}\n"


def johnson_styles(path: Path) -> list[str]:
    """The styles a Johnson model file holds (one for a one-style file)."""
    from stransfer import weights
    from stransfer.engines.johnson import model_styles

    return model_styles(weights.load_model(path, "johnson"), path)


def make_gallery(path: Path) -> None:
    """3 contents x 3 styles x 4 engines (style-swap beside AdaIN). Only one photo may ship with the project
    (examples/SOURCES.md), so the rows are that photo and two crops of it: the river and trees, the houses and
    tower."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        photo = Image.open(REPO / "examples" / "tubingen.jpg")
        w, h = photo.size
        rows = [REPO / "examples" / "tubingen.jpg"]
        for name, box in (("tubingen_river", (0, h // 3, w // 2, h)), ("tubingen_tower", (w // 2, 0, w, h * 2 // 3))):
            photo.crop(box).save(Path(tmp) / f"{name}.jpg", quality=95)
            rows.append(Path(tmp) / f"{name}.jpg")
        styles = [REPO / "examples" / f"{n}.jpg" for n in ("starry_night", "the_scream", "woman_with_hat_matisse")]
        path.parent.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "stransfer", "gallery", *sum((["-c", str(p)] for p in rows), []),
                        *sum((["-s", str(s)] for s in styles), []), "--methods", "gatys,johnson,adain,swap",
                        "--size", "200", "-o", str(path),
                        "--overwrite"], cwd=REPO, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 300-iteration baseline and Gatys memory")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--gallery-only", action="store_true", help="redraw docs/gallery.jpg and stop")
    args = parser.parse_args()
    if args.gallery_only:
        make_gallery(REPO / "docs" / "gallery.jpg")
        return

    sections = [
        run("Gatys: seconds per iteration", ["benchmarks/gatys_speed.py"]),
        run("3x3 convolutions: direct against Winograd", ["benchmarks/winograd.py"]),
        run("Gatys: quality and speed at 512 px", ["benchmarks/gatys_quality_speed.py"]
            + (["--skip-baseline"] if args.quick else [])),
        run("Johnson: speed", ["benchmarks/johnson_speed.py"]),
        run("AdaIN: speed", ["benchmarks/adain_speed.py"]),
        run("Batch throughput and peak memory", ["benchmarks/batch_memory.py"]
            + (["--engines", "johnson,adain"] if args.quick else [])),
    ]
    for model in sorted(p.stem for p in (REPO / "weights").glob("*.pth")):
        if model.startswith("adain"):
            if (SHARED / "style").is_dir():
                for alpha in ("1", "0.5", "0"):
                    sections.append(run(f"Quality: adain {model}, alpha {alpha} (held-out styles)",
                                        ["benchmarks/quality.py", "adain", "--model", model, "--styles",
                                         str(SHARED / "style"), "--held-out", "--alpha", alpha]))
        else:
            styles = johnson_styles(REPO / "weights" / f"{model}.pth")
            for style in styles:
                picked = ["--style-name", style] if len(styles) > 1 else []
                sections.append(run(f"Quality: johnson {model}{f', {style}' if picked else ''}",
                                    ["benchmarks/quality.py", "johnson", "--model", model, *picked]))

    make_gallery(REPO / "docs" / "gallery.jpg")

    kind = machine_kind()
    machine = f"{platform.machine()} ({kind}: {os.cpu_count()} x {cpu_name()}, torch {torch.__version__})"
    stamp = f"Measured {datetime.date.today()} on {machine}."
    tables = "\n".join([stamp, "", *sections])
    (REPO / "benchmarks" / "RESULTS.md").write_text(f"# Benchmark results\n\n{tables}")
    if not args.no_readme:
        start, end = f"<!-- benchmarks:{kind}:start -->", f"<!-- benchmarks:{kind}:end -->"
        readme = (REPO / "README.md").read_text()
        if start in readme and end in readme:
            head, rest = readme.split(start, 1)
            _, tail = rest.split(end, 1)
            (REPO / "README.md").write_text(f"{head}{start}\n{tables}\n{end}{tail}")
        else:
            print(f"README.md has no block for {kind} machines ({start}): tables only in RESULTS.md", file=sys.stderr)
    print(tables)


if __name__ == "__main__":
    main()
