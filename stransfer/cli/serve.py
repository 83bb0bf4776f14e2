"""`stransfer serve`: the web page and HTTP API (stransfer.serve), on this machine unless a token guards it."""

from __future__ import annotations

from typing import Annotated

import typer

from stransfer import console
from stransfer.cli.options import Device, DeviceOpt, Precision, PrecisionOpt, VggWeightsOpt
from stransfer.errors import UsageError
from stransfer.serve.settings import ServeConfig, check_binding

EXAMPLES = ("stransfer serve", "stransfer serve --host 0.0.0.0 --port 8080 --token my-secret --workers 2")


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; one beyond the loopback needs --token.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    token: Annotated[str | None, typer.Option(
        envvar="STRANSFER_SERVE_TOKEN", help="Secret every API request must carry (Authorization: Bearer TOKEN).",
        show_default=False)] = None,
    workers: Annotated[int, typer.Option(help="Engine runs at once (they share the cores).")] = 1,
    queue: Annotated[int, typer.Option(help="Runs that may wait; past that, requests get 503 + Retry-After.")] = 4,
    max_size: Annotated[int, typer.Option(help="Largest long side of a result, in pixels.")] = 1024,
    device: DeviceOpt = Device["auto"],
    precision: PrecisionOpt = Precision["auto"],
    vgg_weights: VggWeightsOpt = None,
) -> None:
    r"""Serve a web page for trying styles by eye, and an HTTP API (pip install 'stransfer\[serve]').

    The page is at http://HOST:PORT/, the API under /v1 (its OpenAPI page at /docs; docs/serve.md has the rest).
    Ctrl-C stops it (exit 0); a bad flag, or a public --host without --token, is a usage error (exit 2)."""
    config = ServeConfig(host=host, port=port, token=token, workers=workers, queue=queue, max_size=max_size,
                         device=device.value, precision=precision.value, vgg_weights=vgg_weights)
    check_binding(config)  # before the extra is imported: the refusal is one line either way
    try:
        from stransfer.serve import server
    except ImportError as e:
        raise UsageError(f"serve needs the serve extra ({e.name} is missing): pip install 'stransfer[serve]'") from None
    page = config.url + (f"#token={token}" if token else "")
    console.stdout.print(f"stransfer serve: {page} (API docs at {config.url}docs); Ctrl-C stops it")
    server.run(config)
