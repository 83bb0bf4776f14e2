"""Slow runs as jobs: an id to follow a run's progress by, fetch its image from, or cancel it with. Kept in the
event loop's thread only, so no lock; finished jobs beyond `keep` are forgotten oldest first."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from stransfer.serve.problems import ServeError, from_exception
from stransfer.serve.work import Stopped, Task


@dataclass(eq=False)
class Job:
    id: str
    method: str
    task: Task
    created: float = field(default_factory=time.time)

    @property
    def status(self) -> str:
        """queued, running, cancelling (stops at its next progress event), done, failed or cancelled."""
        future = self.task.future
        if future.cancelled():
            return "cancelled"
        if not future.done():
            if self.task.started is None:
                return "queued"
            return "cancelling" if self.task.stop_reason == "cancelled" else "running"
        error = future.exception()
        if error is None:
            return "done"
        return "cancelled" if isinstance(error, Stopped) and self.task.stop_reason == "cancelled" else "failed"

    @property
    def finished(self) -> bool:
        return self.task.future.done()

    def describe(self) -> dict:
        task, status = self.task, self.status
        seconds = None if task.started is None else (task.finished or time.monotonic()) - task.started
        body = {"id": self.id, "method": self.method, "status": status, "progress": round(task.progress, 4),
                "step": task.step, "total": task.total, "seconds": None if seconds is None else round(seconds, 2)}
        if status == "done":
            body["result"] = f"/v1/jobs/{self.id}/result"
        if status == "failed":
            body["error"] = from_exception(self.task.future.exception()).body()
        return body

    def result(self) -> bytes:
        status = self.status
        if status != "done":
            detail = {"queued": "is queued", "running": "is still running", "cancelling": "is being cancelled",
                      "cancelled": "was cancelled", "failed": "failed"}[status]
            raise ServeError(409, "not_ready", f"job {self.id} {detail}: it has no image")
        return self.task.future.result()


class JobStore:
    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def add(self, method: str, task: Task) -> Job:
        job = Job(uuid.uuid4().hex, method, task)
        self._jobs[job.id] = job
        finished = [j.id for j in self._jobs.values() if j.finished]
        for old in finished[:max(0, len(finished) - self.keep)]:
            del self._jobs[old]
        return job

    def get(self, job_id: str) -> Job:
        if job_id not in self._jobs:
            raise ServeError(404, "unknown_job", f"no job {job_id!r} (finished jobs are kept until "
                             f"{self.keep} newer ones have finished, or until deleted)")
        return self._jobs[job_id]

    def remove(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def stop_all(self) -> None:
        for job in self._jobs.values():
            job.task.stop("the server is shutting down")
