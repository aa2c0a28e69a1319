"""The ASGI middleware in front of every endpoint: it answers before a request body is read.

In order: on a loopback bind, a ``Host`` header naming a loopback address (400: a page elsewhere must not
reach the service through DNS rebinding); the bearer token (401) on ``/v1/*`` but ``/v1/health``; then, on
the endpoints that run the model, a ``Content-Length`` that is present (411) and within ``--max-upload-mb``
(413), and a free place in the queue (503 with ``Retry-After``). The place is held until the response is
sent; a body that takes longer than ``--upload-timeout`` to arrive ends the request with 408, so a stalled
client cannot hold it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from emodistill.serve.jobs import JobQueue

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("emodistill.serve")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
OPEN_PATHS = ("/v1/health",)
MODEL_PATHS = ("/v1/predict", "/v1/predict/features", "/v1/timeline")


class BodyTimeout(Exception):
    """The request body took longer than ``--upload-timeout``."""


def error_body(status: int, message: str) -> bytes:
    """The JSON of every error of the service: ``{"error": one line, "status": code}``."""
    return json.dumps({"error": message, "status": status}).encode()


async def send_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = error_body(status, message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """See the module docstring.

    Args:
        app: the application behind it.
        token: the bearer token, or None for no authentication.
        max_bytes: the largest request body accepted by the model endpoints.
        jobs: the queue whose places are taken.
    """

    def __init__(self, app: ASGIApp, token: str | None, max_bytes: int, jobs: JobQueue,
                 upload_timeout: float = 60.0, loopback_only: bool = False) -> None:
        self.app, self.token, self.max_bytes, self.jobs = app, token, max_bytes, jobs
        self.upload_timeout, self.loopback_only = upload_timeout, loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), [0]

        async def logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, logged)
        finally:
            # method, path, status, body size and time; never a header (the token) or the body
            if scope["path"].startswith("/v1/"):
                size = dict(scope["headers"]).get(b"content-length", b"0").decode("latin-1")
                path = "".join(c if c.isprintable() else "?" for c in scope["path"])[:200]  # one line
                log.info("%s %s %d %s B %.3f s", scope["method"], path, status[0], size, time.perf_counter() - t0)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") or "/"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.loopback_only:
            host = headers.get("host", "")
            host = host[: host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]  # port dropped
            if host not in LOOPBACK_HOSTS:
                shown = "".join(c for c in host if c.isprintable())[:100]
                await send_error(send, 400, f"Host {shown!r}: this service listens on a loopback address and "
                                 "answers only requests for 127.0.0.1, localhost or [::1]")
                return
        if self.token is not None and path.startswith("/v1/") and path not in OPEN_PATHS:
            given = headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token.encode()):
                reason = "missing" if not given else "wrong"
                await send_error(send, 401, f"{reason} token: send the header 'Authorization: Bearer TOKEN' "
                                 "with the token the service was started with", {"WWW-Authenticate": "Bearer"})
                return
        if scope["method"] != "POST" or path not in MODEL_PATHS:
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is None or not length.isdigit():
            await send_error(send, 411, "the request has no Content-Length; send the body with its length "
                             "(not chunked)")
            return
        if int(length) > self.max_bytes:
            await send_error(send, 413, f"the request is {int(length) / 1e6:.1f} MB, over the limit of "
                             f"{self.max_bytes / 1e6:g} MB (--max-upload-mb)")
            return
        if not self.jobs.admit():
            await send_error(send, 503, f"busy: {self.jobs.capacity} requests are already running or waiting; "
                             "retry later", {"Retry-After": str(self.jobs.retry_after())})
            return
        try:
            await self._with_deadline(scope, receive, send)
        finally:
            self.jobs.release()

    async def _with_deadline(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, its body reads bounded by ``upload_timeout`` seconds in all; past it, 408."""
        deadline = time.monotonic() + self.upload_timeout
        late = f"the request body did not arrive within {self.upload_timeout:g} s (--upload-timeout)"
        state = {"body_done": False, "late": False, "answered": False}

        async def timed_receive() -> Message:
            if state["body_done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                state["late"] = True
                raise BodyTimeout(late) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def checked_send(message: Message) -> None:
            if state["late"]:  # the app answered a broken body (400): say what happened instead
                if message["type"] == "http.response.start" and not state["answered"]:
                    state["answered"] = True
                    await send_error(send, 408, late, {"Connection": "close"})
                return
            await send(message)

        try:
            await self.app(scope, timed_receive, checked_send)
        except BodyTimeout:
            if not state["answered"]:
                state["answered"] = True
                await send_error(send, 408, late, {"Connection": "close"})
