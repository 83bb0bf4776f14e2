"""The documentation is checked against the code: the generated pages are not stale, every `stransfer ...`
command written in README.md and docs/ parses with today's command line, the README's recipes run end to end on
tiny images, a figure on two pages is the same on both, and every link leads to a file."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

from conftest import REPO, cli, gradient_image
from stransfer.cli import build_app, docs
from stransfer.cli.options import split_epilog
from stransfer.config import param
from stransfer.engines import ENGINES, EngineSpec
from stransfer.train import TRAINERS
from stransfer.train.loop import TrainConfig
from stransfer.train.spec import TrainerSpec, TrainInput

sys.path.insert(0, str(REPO / "benchmarks"))
import run_all  # noqa: E402

README = REPO / "README.md"
# docs/cli.md is written from the parser itself (its staleness test covers it); every other page is checked.
PAGES = [README, REPO / "weights" / "README.md",
         *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "cli.md")]


# ------------------------------------------------------------------------------------ commands in the pages


def shell_lines(text: str) -> list[str]:
    """The command lines of a page: every line of its shell code blocks (continuations joined), and every
    inline code span that starts with `stransfer `."""
    lines = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang in ("", "bash", "sh", "console", "shell"):
            lines += [line.strip() for line in body.replace("\\\n", " ").splitlines() if line.strip()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    lines += re.findall(r"(?<!`)`(stransfer [^`]+)`", prose)
    return lines


def stransfer_argv(line: str) -> list[list[str]]:
    """The arguments of each stransfer invocation in a shell line: `stransfer ...`, `.venv/bin/stransfer ...`,
    `python -m stransfer ...`, `torchrun ... -m stransfer ...`, also after a pipe or `&&`."""
    words = shlex.split(line, comments=True)
    found, segment = [], []
    for word in [*words, "|"]:
        if word not in ("|", "&&", ";"):
            segment.append(word)
            continue
        if segment and Path(segment[0]).name == "stransfer":
            found.append(segment[1:])
        elif "-m" in segment and segment.index("-m") + 1 < len(segment) and segment[segment.index("-m") + 1] == \
                "stransfer":
            found.append(segment[segment.index("-m") + 2:])
        segment = []
    return found


def written_commands() -> list[tuple[str, list[str]]]:
    return [(f"{page.relative_to(REPO)}: {line}", argv) for page in PAGES
            for line in shell_lines(page.read_text(encoding="utf-8")) for argv in stransfer_argv(line)]


def help_examples() -> list[tuple[str, list[str]]]:
    """The example command lines that each command's --help ends with (its epilog), from a fresh command tree."""
    root = typer.main.get_command(build_app())
    return [(f"stransfer {' '.join(path)} --help: {line}".replace("  ", " "), argv)
            for path, command, _ in docs.walk(root, root.context_class(root, info_name="stransfer"))
            for line in split_epilog(command.epilog)[1] for argv in stransfer_argv(line)]


def parse(argv: list[str]) -> None:
    """Parse `stransfer ARGV` with the command line as it is now, running nothing: an unknown command or flag, a
    missing argument, a value of the wrong type or outside a choice raises. A span that only names a command
    (`stransfer eval`) must name one that exists."""
    command = typer.main.get_command(build_app())
    ctx, args = command.context_class(command, info_name="stransfer"), list(argv)
    while hasattr(command, "list_commands"):
        if not args:
            return
        name = args.pop(0)
        sub = command.get_command(ctx, name)
        assert sub is not None, f"no command {name!r}"
        command, ctx = sub, sub.context_class(sub, info_name=name, parent=ctx)
    if not args:
        return  # the command's name alone, as prose mentions it
    command.make_context(ctx.info_name, args, parent=ctx.parent)


COMMANDS = written_commands() + help_examples()


def test_the_pages_write_commands():
    """The extraction finds the README's main job, the recipes and inline mentions, and every --help's examples,
    so the next test checks something."""
    assert len(COMMANDS) > 40
    assert any(argv[:2] == ["train", "johnson"] for _, argv in COMMANDS)
    root = typer.main.get_command(build_app())
    assert len(help_examples()) == 2 * len(list(docs.walk(root, root.context_class(root, info_name="stransfer"))))


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[w[:90] for w, _ in COMMANDS])
def test_every_written_command_parses_with_the_current_cli(where, argv):
    parse(argv)


@pytest.mark.parametrize("argv", [["stylize", "a.jpg", "--no-such-flag"], ["stylize", "a.jpg", "-m", "picasso"],
                                  ["train", "johnson", "--steps", "many"], ["nosuch"], ["weights", "fetch", "x"]])
def test_the_parse_check_catches_a_wrong_command(argv):
    with pytest.raises(Exception):  # noqa: B017 - click's and typer's own usage errors, whichever the parser raises
        parse(argv)


# ---------------------------------------------------------------------------------------- the README's recipes


def recipes() -> tuple[list[list[str]], list[str]]:
    """The README's recipe commands (shell words) and Python blocks, in order."""
    section = README.read_text(encoding="utf-8").split("\n## Recipes\n", 1)[1].split("\n## ", 1)[0]
    shell = [shlex.split(line, comments=True) for lang, body in re.findall(r"```(\w*)\n(.*?)```", section, re.S)
             if lang == "bash" for line in body.replace("\\\n", " ").splitlines() if line.strip()]
    python = [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", section, re.S) if lang == "python"]
    return shell, python


def tiny(argv: list[str], folder: Path) -> list[str]:
    """A recipe's arguments with settings that make it run in seconds on tiny images (a flag given twice takes
    the last value)."""
    runtime = ["--device", "cpu"]
    if argv[0] == "stylize":
        method = next((argv[i + 1] for i, a in enumerate(argv) if a in ("-m", "--method")), "gatys")
        return [*argv, "--size", "32", *runtime, *(["--iterations", "2"] if method == "gatys" else [])]
    if argv[0] == "texture" and "net" in argv:  # a trained network: one pass, already fast
        return [*argv, "--size", "32", *runtime]
    if argv[0] == "texture":
        (folder / "tiny-gatys.toml").write_text("scales = [1.0]\niterations = [2]\n")
        return [*argv, "--size", "32", "--config", str(folder / "tiny-gatys.toml"), *runtime]
    if argv[:2] == ["train", "johnson"]:
        shape = [] if "--init" in argv else ["--width", "4", "--residual-blocks", "1"]
        return [*argv, "--steps", "2", "--batch-size", "2", "--image-size", "32", "--style-size", "32",
                "--checkpoint-every", "1", "--preview-every", "2", "--precision", "fp32", *shape, *runtime]
    raise AssertionError(f"no tiny settings for a recipe `stransfer {' '.join(argv)}`")


@pytest.fixture
def recipe_folder(tmp_path, monkeypatch, random_weights_file) -> Path:
    """A folder like a user's: the examples, photos/ with a subfolder, clip.mp4. The backbone is random, so the
    shipped models are seen through a folder where adain_vgg16 is a random decoder made for it (the real one
    refuses other encoder weights); the Johnson models are the shipped files."""
    from stransfer import video, weights
    from stransfer.engines.adain import Decoder

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for model in (REPO / "weights").glob("*.pth"):
        if model.stem != "adain_vgg16":
            (shipped / model.name).symlink_to(model)
    weights.save_model(shipped / "adain_vgg16.pth", "adain", Decoder("vgg16").state_dict(), backbone="vgg16",
                       encoder_layer="relu4_1")
    monkeypatch.setattr("stransfer.weights.models.SHIPPED_MODELS", shipped)

    (tmp_path / "examples").symlink_to(REPO / "examples")
    for i, sub in enumerate(["", "", "", "trip/"]):
        (tmp_path / "photos" / sub).mkdir(parents=True, exist_ok=True)
        gradient_image(48 + 4 * i, 36, seed=i).save(tmp_path / "photos" / sub / f"p{i}.jpg")
    big = np.asarray(gradient_image(72, 48, seed=5))
    video.encode_clip(tmp_path / "clip.mp4", [np.ascontiguousarray(big[:, 2 * i: 2 * i + 64]) for i in range(4)], 10)
    monkeypatch.setenv("STRANSFER_VGG_WEIGHTS", str(random_weights_file))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def output_of(argv: list[str]) -> Path | None:
    flags = [i for i, a in enumerate(argv) if a in ("-o", "--output")]
    return Path(argv[flags[-1] + 1]) if flags else None


def test_the_readme_recipes_run_end_to_end(capsys, recipe_folder):
    shell, _ = recipes()
    assert len(shell) >= 8
    for words in shell:
        if words[0] == "torchrun":
            continue  # the slow test below starts the processes
        assert Path(words[0]).name == "stransfer", words
        code, _, err = cli(capsys, *tiny(words[1:], recipe_folder))
        assert code == 0, (words, err)
        out = output_of(words)
        # an output file, a folder of them, or OUT_SEED files (texture --count)
        assert out is None or out.is_file() or (out.is_dir() and any(out.iterdir())) or \
            any(out.parent.glob(f"{out.stem}_*{out.suffix}")), words


def test_the_readme_python_recipe_runs(recipe_folder):
    _, python = recipes()
    assert python
    for source in python:
        before = set(recipe_folder.iterdir())
        exec(compile(source, "README.md", "exec"), {"__name__": "readme_recipe"})  # noqa: S102 - our own README
        made = {p.name for p in set(recipe_folder.iterdir()) - before}
        named = set(re.findall(r"\.save\(\"([^\"{]+)\"\)", source))
        assert named <= made and len(made) >= source.count(".save("), (named, made)
        for name in made:
            with Image.open(recipe_folder / name) as image:
                assert image.mode == "RGB" and max(image.size) in (512, 1024)


@pytest.mark.slow
def test_the_readme_torchrun_recipe_runs(recipe_folder):
    shell, _ = recipes()
    (words,) = [w for w in shell if w[0] == "torchrun"]
    argv = tiny(words[words.index("stransfer") + 1:], recipe_folder)
    launcher = words[1:words.index("-m")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "stransfer", *argv],
                          cwd=recipe_folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    written = sorted(p.relative_to(output_of(words)).as_posix() for p in output_of(words).rglob("*.png"))
    assert written == ["p0_starry_night_johnson.png", "p1_starry_night_johnson.png", "p2_starry_night_johnson.png",
                       "trip/p3_starry_night_johnson.png"]


# ------------------------------------------------------------------------------------------ the README itself


def test_readme_is_short_and_opens_with_the_three_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line.startswith(("python3 -m venv", ".venv/bin/"))]
    assert len(ci) == 2, ci  # CI runs exactly the README's set-up line and its test line
    head = lines[:12]
    assert ci[0] in head and ci[1] in head
    assert any(line.startswith(".venv/bin/stransfer stylize ") for line in head)
    assert head.index(ci[0]) < head.index(ci[1])


def test_readme_picture_has_cells_of_at_least_384_px():
    """docs/gallery.jpg: a band per style, each the photo and one cell per engine (run_all.make_gallery)."""
    engines = run_all.GALLERY_ENGINES.split(",")
    source = Path(run_all.__file__).read_text()
    assert re.search(r'"--cell-size", type=int, default=(\d+)', source)[1] == "384"
    with Image.open(REPO / "docs" / "gallery.jpg") as sheet:
        assert sheet.width >= (1 + len(engines)) * 384
        assert sheet.height >= len(run_all.GALLERY_STYLES) * 2 * 384
    for engine in engines:
        assert (REPO / "docs" / "gallery" / f"{engine}.jpg").is_file()
    assert "![" in README.read_text() and "(docs/gallery.jpg)" in README.read_text()


def test_every_link_in_the_pages_leads_to_a_file():
    for page in [*PAGES, REPO / "docs" / "cli.md"]:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target) or target.startswith("#"):
                continue
            assert (page.parent / target.split("#")[0]).exists(), f"{page.relative_to(REPO)} links to {target}"


# ------------------------------------------------------------------------------------- generated pages


def test_docs_cli_md_is_what_the_code_writes():
    assert (REPO / "docs" / "cli.md").read_text(encoding="utf-8") == docs.reference(), \
        "docs/cli.md is stale: run python -m stransfer.cli.docs"


def test_weights_readme_table_is_what_the_files_give():
    readme = (REPO / "weights" / "README.md").read_text(encoding="utf-8")
    assert readme == docs.with_model_table(readme, REPO / "weights"), \
        "weights/README.md's table is stale: run python -m stransfer.cli.docs"


def test_the_check_mode_fails_on_a_stale_page(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "cli.md"
    stale.write_text("# an old reference\n")
    monkeypatch.setattr(docs, "DEFAULT_OUTPUT", stale)
    monkeypatch.setattr(docs, "MODELS_README", tmp_path / "absent.md")
    assert docs.main(["--check"]) == 1 and "stale" in capsys.readouterr().err
    stale.write_text(docs.reference())
    assert docs.main(["--check"]) == 0


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch):
    wide = docs.reference()
    monkeypatch.setenv("COLUMNS", "20")
    monkeypatch.setenv("TERMINAL_WIDTH", "20")
    assert docs.reference() == wide
    assert max(len(line) for line in wide.splitlines()) > 120  # nothing was wrapped to a width


@dataclass(frozen=True)
class PastelConfig:
    softness: float = param(0.5, ge=0.0, le=1.0, help="How far colours move toward pastel.")


@dataclass(frozen=True)
class PastelTrainConfig(TrainConfig):
    palette_size: int = param(8, ge=1, help="Colours the network learns.")


def test_a_registered_engine_and_trainer_reach_the_reference_with_no_other_change(monkeypatch):
    monkeypatch.setitem(ENGINES, "pastel", EngineSpec(name="pastel", config_type=PastelConfig,
                                                      build=lambda cfg, runtime, inputs: None, style_input="images"))
    monkeypatch.setitem(TRAINERS, "pastel", TrainerSpec(
        name="pastel", summary="Train a pastel network.", config_type=PastelTrainConfig,
        inputs={"data": TrainInput("folder", "Folder of photos."), "out": TrainInput("out", "Model file.", "-o")},
        loss_layers=lambda cfg: ("relu1_1",), make_task=object, model_engine="pastel"))
    text = docs.reference()
    assert "\\|".join(ENGINES).endswith("\\|pastel") and "\\|".join(ENGINES) in text  # the new one among all
    assert "## `stransfer train pastel`" in text and "Train a pastel network." in text
    assert "`--palette-size <int>`" in text and "Colours the network learns." in text
    parse(["train", "pastel", "--data", "photos/", "-o", "p.pth", "--palette-size", "4"])


# ----------------------------------------------------------------------------- numbers that live in one place


def test_readme_times_are_the_ones_docs_benchmarks_records():
    """The main job's time per machine kind is written by run_all.py into both pages; they must agree."""
    readme = README.read_text(encoding="utf-8")
    blocks = run_all.parse((REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8"))
    measured = {kind: run_all.main_job_seconds(sections[run_all.MAIN_JOB]) for kind, sections in blocks.items()
                if run_all.MAIN_JOB in sections}
    shown = dict(re.findall(r"<!-- main-job:([\w-]+) -->(.*?)<!-- /main-job -->", readme))
    assert shown and set(shown) == set(measured)
    assert shown == {kind: run_all.duration(seconds) for kind, seconds in measured.items()}


def test_docs_benchmarks_is_in_the_form_run_all_writes():
    text = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert run_all.render(run_all.parse(text)) == text
    assert set(run_all.KINDS) <= set(run_all.parse(text))


def test_run_all_replaces_only_its_own_kind(tmp_path):
    text = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    blocks = run_all.parse(text)
    table = "| command | wall s |\n|---|---|\n| `stransfer stylize a.jpg -s b.jpg` | 150.0 |"
    fresh = {run_all.MAIN_JOB: run_all.section(run_all.MAIN_JOB, "The README's main job", "Measured now", table)}
    merged = run_all.parse(run_all.render(run_all.merge(blocks, "avx2", fresh)))
    assert merged["avx2"][run_all.MAIN_JOB] == fresh[run_all.MAIN_JOB]
    assert {k: v for k, v in merged["avx2"].items() if k != run_all.MAIN_JOB} == \
        {k: v for k, v in blocks["avx2"].items() if k != run_all.MAIN_JOB}
    assert all(merged[kind] == blocks[kind] for kind in blocks if kind != "avx2")
    readme = run_all.readme_with_time(README.read_text(encoding="utf-8"), "avx2", 150.0)
    assert "<!-- main-job:avx2 -->2 min<!-- /main-job -->" in readme
    assert re.findall(r"main-job:avx512-bf16 -->(.*?)<", readme) == \
        re.findall(r"main-job:avx512-bf16 -->(.*?)<", README.read_text(encoding="utf-8"))


def test_run_all_times_the_readme_main_job():
    assert run_all.readme_main_job() == ["stylize", "examples/tubingen.jpg", "-s", "examples/starry_night.jpg",
                                         "-o", "out/tubingen_starry_night.png"]


# ---------------------------------------------------------------------------------------- shipped models


def test_weights_readme_is_short_and_every_model_has_a_full_record():
    readme = (REPO / "weights" / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 120
    models = sorted(p.stem for p in (REPO / "weights").glob("*.pth"))
    rows = re.findall(r"^\| \[(\w+)\.pth\]", readme, re.M)
    assert rows == models
    for name in models:
        record = json.loads((REPO / "weights" / "records" / f"{name}.json").read_text(encoding="utf-8"))
        assert record["model"] == name and record["file"] == f"{name}.pth"
        # A texture model's ratio is over uniform noise's distance, and it has no photo to keep.
        photo = {"content_mean"} if record["engine"] != "texturenet" else set()
        assert {"style_ratio_mean", "style_ratio_max"} | photo <= set(record["scores"])
        assert record["licence"] and all(s["licence"] for s in record["styles"])
        stages = [stage for part in record["history"] for stage in part["stages"]]
        assert stages and all(stage["blocks"] for stage in stages)


# ------------------------------------------------------------------------------------------------ exit codes


def test_the_exit_code_table_matches_the_codes_the_cli_uses():
    from stransfer import errors, signals

    page = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    table = page.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    documented = {int(code) for row in table.splitlines()[2:] for code in re.findall(r"\d+", row.split("|")[1])}

    def subclasses(cls):
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    used = {0, 1}  # success; an internal error
    used |= {cls.exit_code for cls in subclasses(errors.StransferError)}
    used |= set(signals.EXIT_CODES.values())
    used.add(130)  # KeyboardInterrupt outside a batch, in cli.main
    assert documented == used == {0, 1, 2, 130, 143}
