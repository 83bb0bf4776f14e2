"""HTTP downloads that give up on a silent network: streamed to a file, hashed on the way, reported as events."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import urllib.error
import urllib.request
from typing import IO, Any

from stransfer import __version__
from stransfer.config import check
from stransfer.errors import UsageError
from stransfer.events import Download, EventCallback

DEFAULT_TIMEOUT_S = 15.0  # a source silent for this long (DNS included) is given up on
MAX_TIMEOUT_S = 3600.0
_READ_BYTES = 1 << 20


class SourceUnavailable(Exception):
    """One source failed; the next one is tried."""


def network_timeout() -> float:
    """$STRANSFER_NET_TIMEOUT in seconds; a value that is no positive number is a usage error, not a default
    quietly taken instead of what the user asked for."""
    text = os.environ.get("STRANSFER_NET_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"$STRANSFER_NET_TIMEOUT must be a number of seconds (got {text!r})") from None
    return check("$STRANSFER_NET_TIMEOUT", seconds, gt=0.0, le=MAX_TIMEOUT_S)


def http_get(url: str, sink: IO[bytes], label: str, on_event: EventCallback, timeout: float,
             accept: str | None = None) -> str:
    """Stream `url` into `sink` and return its sha256.

    The transfer runs in a daemon thread while this one waits on a queue, so a network that never answers
    fails after `timeout` seconds of silence whatever stage it hangs in (socket timeouts miss DNS lookups).
    """
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    cancel = threading.Event()
    threading.Thread(target=_transfer, args=(url, accept, timeout, events, cancel), daemon=True,
                     name=f"fetch {label}").start()
    done = total = 0
    while True:
        try:
            kind, value = events.get(timeout=timeout)
        except queue.Empty:
            cancel.set()
            raise SourceUnavailable(f"no answer for {timeout:g} s") from None
        if kind == "start":
            total = value
            on_event(Download(label, 0, total))
        elif kind == "data":
            sink.write(value)
            done += len(value)
            on_event(Download(label, done, total))
        elif kind == "done":
            if total and done != total:
                raise SourceUnavailable(f"connection closed after {done} of {total} bytes")
            return value
        else:
            raise SourceUnavailable(_describe_network_error(value))


def _transfer(url: str, accept: str | None, timeout: float, events: queue.Queue[tuple[str, Any]],
              cancel: threading.Event) -> None:
    """The download itself, in its own thread: everything it learns, errors included, goes onto `events`."""
    try:
        headers = {"User-Agent": f"stransfer/{__version__}"}
        if accept:
            headers["Accept"] = accept
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            events.put(("start", int(response.headers.get("Content-Length") or 0)))
            digest = hashlib.sha256()
            while not cancel.is_set():
                chunk = response.read(_READ_BYTES)
                if not chunk:
                    break
                digest.update(chunk)
                events.put(("data", chunk))
            events.put(("done", digest.hexdigest()))
    except BaseException as e:  # noqa: BLE001 - handed to the waiting thread, which reports it
        events.put(("error", e))


def _describe_network_error(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        reason = e.reason
        return f"unreachable ({getattr(reason, 'strerror', None) or reason})"
    if isinstance(e, TimeoutError):
        return "timed out"
    return f"{type(e).__name__}: {e}"
