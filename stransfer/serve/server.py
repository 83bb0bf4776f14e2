"""Run the app under uvicorn until interrupted, in a temporary folder of its own that is removed at the end."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import torch
import uvicorn

from stransfer.serve.app import create_app
from stransfer.serve.settings import ServeConfig, check_binding

# More connections than this at once are answered 503 by uvicorn itself, before they cost a thread or a buffer.
MAX_CONNECTIONS = 64


def run(config: ServeConfig) -> None:
    check_binding(config)
    workdir = Path(tempfile.mkdtemp(prefix="stransfer-serve-"))
    # Starlette spools uploads over 1 MB through the tempfile module: into this folder too.
    tempfile.tempdir = str(workdir)
    if config.workers > 1:  # the cores are shared between the runs at once, not each given all of them
        torch.set_num_threads(max(1, torch.get_num_threads() // config.workers))
    try:
        app = create_app(dataclasses.replace(config, workdir=workdir))
        uvicorn.run(app, host=config.host, port=config.port, limit_concurrency=MAX_CONNECTIONS,
                    timeout_keep_alive=5, timeout_graceful_shutdown=5, log_level="info")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
