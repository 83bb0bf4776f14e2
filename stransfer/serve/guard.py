"""What every request passes before the routes (plain ASGI, so it also sees the body as it arrives): the token;
without one, loopback Host and Origin only, so neither another machine nor a web page on another site reaches
the server (DNS rebinding, cross-site form posts); a body limit counted as bytes arrive; and a deadline by which
every request is answered."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from stransfer.serve.problems import ServeError, busy
from stransfer.serve.settings import ServeConfig, is_loopback

Scope = dict[str, Any]
Message = dict[str, Any]


async def send_error(send: Callable, error: ServeError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _hostname(value: str) -> str:
    try:
        return urlsplit(value if "//" in value else "//" + value).hostname or ""
    except ValueError:
        return ""


class _Exchange:
    """One request's receive and send, counting the body's bytes and noting whether an answer has started."""

    def __init__(self, limit: int, receive: Callable, send: Callable) -> None:
        self.limit, self._receive, self._send = limit, receive, send
        self.received = 0
        self.body_done = False
        self.too_large = False
        self.started = False

    async def receive(self) -> Message:
        if self.too_large:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.too_large = True  # the app sees the client go, and stops reading
                return {"type": "http.disconnect"}
            self.body_done = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.too_large:  # the app's answer to a body cut short is replaced by the 413
            return
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


class Guard:
    def __init__(self, app: Callable, config: ServeConfig, retry_after: Callable[[], int]) -> None:
        self.app, self.config, self.retry_after = app, config, retry_after

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            await send_error(send, refusal)
            return
        exchange = _Exchange(self.config.max_upload_bytes, receive, send)
        try:
            async with asyncio.timeout(self.config.request_timeout):
                await self.app(scope, exchange.receive, exchange.send)
        except TimeoutError:
            if not exchange.started:
                await send_error(send, self._late(exchange))
            return
        if exchange.too_large:
            await send_error(send, self._too_large())

    def _late(self, exchange: _Exchange) -> ServeError:
        limit = f"{self.config.request_timeout:g} s"
        if not exchange.body_done:
            return ServeError(408, "timeout", f"the request's body did not arrive within {limit}")
        return busy(self.retry_after(), f"not done within {limit}, this server's limit for a response (slow "
                    "methods and large sizes run as jobs: POST /v1/jobs)")

    def _too_large(self) -> ServeError:
        return ServeError(413, "too_large", f"the request is larger than this server's limit of "
                          f"{self.config.max_upload_bytes:,} bytes")

    def refusal(self, scope: Scope) -> ServeError | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token = self.config.token
        if token is not None and scope["path"].startswith("/v1/"):
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return ServeError(401, "unauthorized", "this server needs its token: Authorization: Bearer TOKEN",
                                  headers={"WWW-Authenticate": "Bearer"})
        if token is None and not is_loopback(_hostname(headers.get("host", ""))):
            return ServeError(403, "forbidden", "this server answers requests addressed to localhost only")
        origin = headers.get("origin", "null")
        if token is None and origin != "null" and not is_loopback(_hostname(origin)):
            return ServeError(403, "forbidden", f"requests from pages of {origin} are refused")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.config.max_upload_bytes:
            return self._too_large()
        return None
