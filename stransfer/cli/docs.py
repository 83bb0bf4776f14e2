"""The generated parts of the documentation: docs/cli.md, the command reference, written from the command tree
itself (build_app), so a command, flag or engine added to a registry is documented by rerunning this; and the
table of shipped models in weights/README.md, from the model files and their records (weights/records/*.json).

    python -m stransfer.cli.docs            # rewrite both
    python -m stransfer.cli.docs --check    # exit 1 if either differs from what the code and files would give

The text depends only on the code and the files: no terminal width, no colour, commands in the order the app
lists them."""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from stransfer.cli.options import EXAMPLES_HEAD, split_epilog

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = REPO / "docs" / "cli.md"
MODELS_README = REPO / "weights" / "README.md"
PROG = "stransfer"
MODELS_START, MODELS_END = "<!-- models:start -->", "<!-- models:end -->"


def _context(command: Any, name: str, parent: Any = None) -> Any:
    """A context to ask a command about its parameters, without parsing anything."""
    return command.context_class(command, info_name=name, parent=parent)


def walk(command: Any, ctx: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """Every command and group under `command` (itself first) with its path of names and its context."""
    yield path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not getattr(sub, "hidden", False):
                yield from walk(sub, _context(sub, name, ctx), (*path, name))


def _paragraphs(text: str | None) -> str:
    """A docstring as Markdown paragraphs: its own line breaks inside a paragraph are spaces."""
    blocks = re.split(r"\n\s*\n", inspect.cleandoc(text or ""))
    return "\n\n".join(" ".join(block.split()) for block in blocks if block.strip())


def _cell(text: str, code: bool = False) -> str:
    """Text for one table cell: one line, its pipes escaped, and outside code its angle brackets, which Markdown
    would take for HTML tags (`runs/<task>`)."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if code else text.replace("<", "&lt;").replace(">", "&gt;")


def _usage(command: Any, ctx: Any, path: tuple[str, ...]) -> str:
    pieces = " ".join(command.collect_usage_pieces(ctx))
    pieces = re.sub(r"\{(\w+)\}", lambda m: m[1].upper(), pieces)
    return " ".join([PROG, *path, pieces]).strip()


def _parameter_tables(command: Any, ctx: Any) -> list[str]:
    """The command's arguments and options as tables, one per help panel (as `--help` groups them)."""
    panels: dict[str, list[str]] = {}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or "--help" in getattr(param, "opts", ()):
            continue
        names, help_text = record
        if param.param_type_name == "argument":
            panel, names = "Arguments", names.upper().split(" ")[0]
        else:
            panel = getattr(param, "rich_help_panel", None) or "Options"
        panels.setdefault(panel, []).append(f"| `{_cell(names, code=True)}` | {_cell(help_text)} |")
    order = sorted(panels, key=lambda p: {"Arguments": 0, "Options": 1}.get(p, 2))
    return [f"**{panel}**\n\n| {'argument' if panel == 'Arguments' else 'option'} | meaning |\n|---|---|\n"
            + "\n".join(panels[panel]) + "\n" for panel in order]


def _section(command: Any, ctx: Any, path: tuple[str, ...], root_epilog: str | None) -> str:
    parts = [f"{'#' * (2 + max(len(path) - 1, 0))} `{' '.join([PROG, *path])}`", _paragraphs(command.help),
             f"```\n{_usage(command, ctx, path)}\n```"]
    if hasattr(command, "list_commands"):
        rows = [f"| `{' '.join([PROG, *path, name])}` | {_cell(sub.get_short_help_str(limit=200))} |"
                for name in command.list_commands(ctx) if (sub := command.get_command(ctx, name)) is not None]
        parts.append("| command | what it does |\n|---|---|\n" + "\n".join(rows) + "\n")
    parts += _parameter_tables(command, ctx)
    text, examples = split_epilog(command.epilog)
    if text and text != split_epilog(root_epilog)[0]:
        parts.append(_paragraphs(text))
    if examples:
        parts.append(EXAMPLES_HEAD + "\n\n```bash\n" + "\n".join(examples) + "\n```")
    return "\n\n".join(p.strip() for p in parts if p.strip()) + "\n"


def reference(app: typer.Typer | None = None) -> str:
    """The whole command reference as Markdown."""
    if app is None:
        from stransfer.cli import build_app

        app = build_app()
    root = typer.main.get_command(app)
    tree = list(walk(root, _context(root, PROG)))
    intro = ("# Command reference\n\nWritten by `python -m stransfer.cli.docs` from the command itself; every "
             "command also answers `--help`.\n")
    if split_epilog(root.epilog)[0]:
        intro += f"\n{_paragraphs(split_epilog(root.epilog)[0])}\n"
    return "\n".join([intro, *(_section(cmd, ctx, path, root.epilog) for path, cmd, ctx in tree)])


# ------------------------------------------------------------------------------------------- shipped models


def _model_row(path: Path, record: dict[str, Any]) -> str:
    from stransfer import train, weights

    payload = weights.load_model(path, None)
    minutes = sum(stage.get("wall_time_s") or 0 for stage in train.lineage_of(payload)) / 60
    scores = record["scores"]
    content = f"{scores['content_mean']:.3f}" if "content_mean" in scores else "-"  # a texture has no photo
    return (f"| [{path.name}](records/{path.stem}.json) | `{hashlib.sha256(path.read_bytes()).hexdigest()}` | "
            f"{path.stat().st_size / 1e6:.1f} MB | {payload.get('steps')} | {minutes:.0f} min | "
            f"{scores['style_ratio_mean']:.3f}, {scores['style_ratio_max']:.3f} | {content} | "
            f"{record['trained']} | {_cell(record['licence'])} |")


def model_table(folder: Path) -> str:
    """One row per model file in `folder`, from the file (hash, size, steps, recorded training time) and its
    record in folder/records (scores, dates, the licence of its style images)."""
    rows = [_model_row(path, json.loads((folder / "records" / f"{path.stem}.json").read_text(encoding="utf-8")))
            for path in sorted(folder.glob("*.pth"))]
    head = ("| file (record) | sha256 | size | steps | training time | style ratio (mean, max) | content (mean) | "
            "trained | style images and their licence |\n|---|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *rows])


def with_model_table(readme: str, folder: Path) -> str:
    """`readme` with the text between its models markers replaced by the table of `folder`'s models."""
    head, _, rest = readme.partition(MODELS_START)
    _, _, tail = rest.partition(MODELS_END)
    return f"{head}{MODELS_START}\n{model_table(folder)}\n{MODELS_END}{tail}"


# ----------------------------------------------------------------------------------------------------- main


def generated() -> dict[Path, str]:
    """Each generated file and what it should hold now."""
    out = {DEFAULT_OUTPUT: reference()}
    if MODELS_README.exists():
        out[MODELS_README] = with_model_table(MODELS_README.read_text(encoding="utf-8"), MODELS_README.parent)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) docs/cli.md and weights/README.md's table.")
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file differs from the code")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated().items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path)
    for path in stale:
        print(f"{path} is stale: run python -m stransfer.cli.docs", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
