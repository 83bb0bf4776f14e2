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
from stransfer.cli.options import EXIT_CODES
from stransfer.engines import ENGINES, SYNTHESIZERS
from stransfer.errors import StransferError
from stransfer.train import TRAINERS



def build_app() -> typer.Typer:
    """The command tree, made from the registries as they are now (an entry registered at run time shows)."""
    app = typer.Typer(
        help="Neural style transfer: Gatys (optimise pixels), Johnson (feed-forward), AdaIN (arbitrary style).",
        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, epilog=EXIT_CODES,
    )
    app.command("stylize", epilog=EXIT_CODES)(stylize.command(ENGINES))
    app.command("texture", epilog=EXIT_CODES)(stylize.texture_command(SYNTHESIZERS))
    train_app = typer.Typer(help=f"Train the feed-forward engines ({', '.join(TRAINERS)}).", no_args_is_help=True)
    for spec in TRAINERS.values():
        train_app.command(spec.name, epilog=EXIT_CODES)(train.command_for(spec))
    app.add_typer(train_app, name="train")
    weights_app = typer.Typer(help="Pretrained backbone weights: fetch them into the cache, list what is there.",
                              no_args_is_help=True)
    weights_app.command("fetch", epilog=EXIT_CODES)(tools.weights_fetch)
    weights_app.command("list")(tools.weights_list)
    app.add_typer(weights_app, name="weights")
    app.command("eval", epilog=EXIT_CODES)(tools.evaluate)
    app.command("gallery", epilog=EXIT_CODES)(tools.gallery_sheet)
    app.command("export", epilog=EXIT_CODES)(tools.export)
    app.command("models")(tools.models)
    app.command("serve", epilog=EXIT_CODES)(serve.serve)
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
