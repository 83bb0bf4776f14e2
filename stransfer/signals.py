"""Clean stops: the first SIGINT/SIGTERM asks the run to stop after the current file; a second one stops now."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # the shell's 128 + signal number


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[list[str]]:
    """Set `stop` on the first signal and record its name in the yielded list; restore the old handlers after.
    Outputs are written atomically, so even the immediate stop of a second signal leaves no partial file."""
    received: list[str] = []
    previous = {}

    def handle(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():  # second signal: stop now
            raise KeyboardInterrupt
        received.append(name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handle)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_code(name: str) -> int:
    return EXIT_CODES.get(name, 1)
