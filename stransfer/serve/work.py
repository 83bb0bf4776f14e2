"""The bounded queue of engine runs: a fixed number of worker threads, a fixed number of places to wait, and a
refusal (Busy) rather than a longer wait when they are all taken."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from stransfer.events import Event, Step


class Busy(Exception):
    """Every worker is running and every place in the queue is taken; try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"busy: try again in {retry_after} s")
        self.retry_after = retry_after


class Stopped(Exception):
    """A run stopped before its end: cancelled, past its deadline, or the server shutting down."""


@dataclass(eq=False)  # identity: tasks are kept in a set
class Task:
    """One engine run: what to call, its outcome (`future`), and what its progress events say so far."""

    run: Callable[[Task], Any]
    timeout: float  # seconds the run may take once started
    future: Future = field(default_factory=Future)
    stop_reason: str | None = None  # set from any thread; the run stops at its next progress event
    step: int = 0
    total: int = 0
    started: float | None = None
    finished: float | None = None
    released: bool = False  # its place in the queue given back (WorkQueue's lock guards it)

    def stop(self, reason: str = "cancelled") -> None:
        """Stop it: a queued task never starts; a running one stops at its next progress event (Gatys, texture:
        within one evaluation), or its result is dropped (a one-pass engine sends none)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.future.cancel()

    def on_event(self, event: Event) -> None:
        """The engine's progress callback: records steps, and is where a stop or a deadline takes effect."""
        if isinstance(event, Step):
            self.step, self.total = event.step, event.total
        if self.stop_reason is not None:
            raise Stopped(self.stop_reason)
        if self.started is not None and time.monotonic() - self.started > self.timeout:
            raise Stopped(f"stopped after {self.timeout:g} s, the time limit of a run")

    @property
    def progress(self) -> float:
        if self.future.done() and not self.future.cancelled() and self.future.exception() is None:
            return 1.0
        return self.step / self.total if self.total else 0.0


class WorkQueue:
    """`workers` threads run tasks; at most `depth` more wait. Nothing waits unboundedly: submit() refuses."""

    def __init__(self, workers: int, depth: int) -> None:
        self.capacity = workers + depth
        self._workers = workers
        self._admitted = 0  # running + waiting
        self._running: set[Task] = set()
        self._closing = False
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._recent_seconds = 5.0  # a guess until runs are timed: a few one-pass images' worth on a CPU
        self._threads = [threading.Thread(target=self._work, name=f"stransfer-worker-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, run: Callable[[Task], Any], timeout: float) -> Task:
        with self._lock:
            if self._admitted >= self.capacity:
                raise Busy(self.retry_after())
            self._admitted += 1
        task = Task(run, timeout)
        # A task cancelled while it waits gives its place back at once, not when a worker reaches it.
        task.future.add_done_callback(lambda future: future.cancelled() and self._release(task))
        self._queue.put(task)
        return task

    def _release(self, task: Task) -> None:
        with self._lock:
            if not task.released:
                task.released = True
                self._admitted -= 1

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the runs ahead, at the recent pace."""
        return max(1, math.ceil(self._recent_seconds * max(1, self._admitted) / self._workers))

    @property
    def admitted(self) -> int:
        return self._admitted

    def _work(self) -> None:
        while (task := self._queue.get()) is not None:
            if self._closing:
                task.stop("the server is shutting down")
            try:
                if task.future.set_running_or_notify_cancel():
                    self._running.add(task)
                    self._run(task)
            finally:
                self._running.discard(task)
                self._release(task)

    def _run(self, task: Task) -> None:
        task.started = time.monotonic()
        try:
            result = task.run(task)
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the future
            task.future.set_exception(e)
        else:
            if task.stop_reason is not None:  # stopped while a one-pass engine ran: its result goes unused
                task.future.set_exception(Stopped(task.stop_reason))
            else:
                task.future.set_result(result)
        finally:
            task.finished = time.monotonic()
            self._recent_seconds = 0.7 * self._recent_seconds + 0.3 * (task.finished - task.started)

    def close(self) -> None:
        """Stop the workers: runs stop at their next progress event, tasks still waiting never start."""
        self._closing = True
        for task in list(self._running):
            task.stop("the server is shutting down")
        for _ in self._threads:
            self._queue.put(None)
