"""The `stransfer` command: each command parses its flags and hands them to the library (stransfer.api, batch,
train, metrics, gallery, weights); this package renders what comes back and maps errors to exit codes."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import typer

from stransfer import console
from stransfer.cli import serve, stylize, tools, train
from stransfer.cli.options import epilog
from stransfer.engines import ENGINES, SYNTHESIZERS
from stransfer.errors import StransferError
from stransfer.train import TRAINERS

ROOT_EXAMPLES = ("stransfer stylize examples/tubingen.jpg -s examples/starry_night.jpg -o tubingen_starry.png",
                 "stransfer stylize photos/ -m adain -s examples/the_scream.jpg --alpha 0.8 -o styled/")
WEIGHTS_EXAMPLES = ("stransfer weights fetch", "stransfer weights list")


def build_app() -> typer.Typer:
    """The command tree, made from the registries as they are now (an entry registered at run time shows)."""
    app = typer.Typer(
        help="Repaint photos and videos in the style of artworks, make textures, and train the networks that do "
             "it fast.",
        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, epilog=epilog(ROOT_EXAMPLES),
    )
    app.command("stylize", epilog=epilog(stylize.EXAMPLES["stylize"]))(stylize.command(ENGINES))
    app.command("texture", epilog=epilog(stylize.EXAMPLES["texture"]))(stylize.texture_command(SYNTHESIZERS))
    train_app = typer.Typer(help=f"Train the networks that engines and texture makers run ({', '.join(TRAINERS)}).",
                            no_args_is_help=True, epilog=epilog(train.group_examples(TRAINERS.values()), False))
    for spec in TRAINERS.values():
        train_app.command(spec.name, epilog=epilog(train.examples(spec)))(train.command_for(spec))
    app.add_typer(train_app, name="train")
    weights_app = typer.Typer(help="Fetch the pretrained backbone weights into the cache, or list what is there.",
                              no_args_is_help=True, epilog=epilog(WEIGHTS_EXAMPLES, False))
    weights_app.command("fetch", epilog=epilog(tools.EXAMPLES["weights fetch"]))(tools.weights_fetch)
    weights_app.command("list", epilog=epilog(tools.EXAMPLES["weights list"], False))(tools.weights_list)
    app.add_typer(weights_app, name="weights")
    app.command("eval", epilog=epilog(tools.EXAMPLES["eval"]))(tools.evaluate)
    app.command("gallery", epilog=epilog(tools.EXAMPLES["gallery"]))(tools.gallery_sheet)
    app.command("export", epilog=epilog(tools.EXAMPLES["export"]))(tools.export)
    app.command("models", epilog=epilog(tools.EXAMPLES["models"], False))(tools.models)
    app.command("serve", epilog=epilog(serve.EXAMPLES))(serve.serve)
    return app


app = build_app()


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """A library warning not turned into a note where it arose: one line, without the source line Python
    prints under it."""
    console.warn(" ".join(str(message).split()))


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes one line on stderr and a documented exit code."""
    command = typer.main.get_command(build_app())
    previous, warnings.showwarning = warnings.showwarning, _warning_line
    try:
        code = command.main(args=argv, prog_name="stransfer", standalone_mode=False)
    except StransferError as e:
        console.error(console.error_line(e))
        code = e.exit_code
    except KeyboardInterrupt:
        console.error("interrupted")
        code = 130
    except Exception as e:  # noqa: BLE001
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):  # typer/click usage errors
            console.error(f"{e.format_message()} (see --help)")
            code = e.exit_code
        elif os.environ.get("STRANSFER_DEBUG"):
            raise
        else:
            console.error(f"internal error: {type(e).__name__}: {e} (set STRANSFER_DEBUG=1 for a traceback)")
            code = 1
    finally:
        warnings.showwarning = previous
    sys.exit(code if isinstance(code, int) else 0)
