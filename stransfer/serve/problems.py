"""The server's errors: each an HTTP status, a short code and one line, sent as JSON; the library's errors map here."""

from __future__ import annotations

from stransfer.errors import ConfigError, InputError, ModelError, StransferError, UsageError, WeightsError
from stransfer.serve.work import Busy, Stopped


class ServeError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field = field  # the form field at fault, where there is one
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": self.code, "message": self.message} | ({"field": self.field} if self.field else {})


def busy(retry_after: int, message: str = "busy: every worker is running and the queue is full") -> ServeError:
    return ServeError(503, "busy", f"{message}; try again in {retry_after} s",
                      headers={"Retry-After": str(retry_after)})


def from_exception(e: BaseException) -> ServeError:
    """What a client is told of an exception raised by a run or a check: never a traceback."""
    if isinstance(e, ServeError):
        return e
    if isinstance(e, Busy):
        return busy(e.retry_after)
    if isinstance(e, Stopped):
        return ServeError(409 if "cancelled" in str(e) else 503, "stopped", str(e))
    if isinstance(e, ModelError):
        return ServeError(422, "bad_model", str(e), "model")
    if isinstance(e, ConfigError):
        return ServeError(422, "invalid_value", str(e), e.key)
    if isinstance(e, UsageError):
        return ServeError(422, "invalid_request", str(e))
    if isinstance(e, InputError):
        return ServeError(400, "bad_image", str(e))
    if isinstance(e, (WeightsError, StransferError)):
        return ServeError(500, "unavailable", str(e))
    if isinstance(e, MemoryError):
        return ServeError(503, "out_of_memory", "out of memory: try a smaller size", headers={"Retry-After": "5"})
    return ServeError(500, "internal", f"internal error: {type(e).__name__}")
