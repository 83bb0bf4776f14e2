"""The server's settings and limits, and the rule that keeps it on the loopback unless a token guards it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from stransfer.config import check
from stransfer.errors import UsageError


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # required off the loopback; every /v1 request then carries it
    device: str = "auto"
    precision: str = "auto"
    vgg_weights: Path | None = None
    # Engine runs at once. An engine already spreads one image over every core, so more workers split the cores
    # (server.run gives each its share of threads) rather than add speed.
    workers: int = 1
    queue: int = 4  # runs that may wait behind the running ones; one more is answered 503 + Retry-After
    max_size: int = 1024  # output long side: a one-pass engine still answers within seconds on a CPU
    # A phone photo is 12-50 MB at most as a JPEG; the decoder's memory grows with pixels, so both are capped
    # (16 MP decodes to a 192 MB float tensor, and only two decode at once).
    max_upload_bytes: int = 50 << 20
    max_pixels: int = 16_000_000
    request_timeout: float = 120.0  # seconds: every response, a queued synchronous stylisation included
    job_timeout: float = 1800.0  # seconds a job may run: room for a Gatys run at max_size on a few CPU cores
    engines: int = 6  # loaded Stylizers kept (AdaIN's weighs about 60 MB); the least recently used goes first
    jobs_kept: int = 64  # finished jobs kept with their results; the oldest finished go first
    workdir: Path | None = None  # the server's own temporary folder; None: made when the app is

    def __post_init__(self) -> None:
        check("port", self.port, ge=1, le=65535, integer=True)
        check("workers", self.workers, ge=1, le=64, integer=True)
        check("queue", self.queue, ge=0, le=10_000, integer=True)
        check("max_size", self.max_size, ge=16, le=16384, integer=True)
        check("max_upload_bytes", self.max_upload_bytes, ge=1024, integer=True)
        check("max_pixels", self.max_pixels, ge=1, integer=True)
        check("request_timeout", self.request_timeout, gt=0.0, le=86400.0)
        check("job_timeout", self.job_timeout, gt=0.0, le=7 * 86400.0)
        check("engines", self.engines, ge=1, le=1000, integer=True)
        check("jobs_kept", self.jobs_kept, ge=1, le=100_000, integer=True)
        if self.token is not None and not self.token.strip():
            raise UsageError("`token` must not be empty")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only. A name other than localhost counts as not: what it resolves to
    may change after the check (DNS rebinding), so it is not looked up."""
    name = host.strip("[]").lower()
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_binding(config: ServeConfig) -> None:
    """Refuse to listen beyond the loopback without a token: the server would run anyone's jobs on this machine."""
    if config.token is None and not is_loopback(config.host):
        raise UsageError(f"`host` {config.host} is reachable from other machines: give a `token` that requests "
                         "must carry, or bind to 127.0.0.1")
