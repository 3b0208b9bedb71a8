"""Pure ASGI middleware: the request-body limit and per-route metrics.

A body that announces its length is refused up front when too large. A chunked one (no
Content-Length) is read here, up to the limit, and handed on whole: counting it inside the
app would be too late, as FastAPI turns any error while reading a body into a 400.

Written against the ASGI interface rather than ``@app.middleware("http")``: Starlette's
``BaseHTTPMiddleware`` wraps every request in extra tasks and memory streams, which cost more
than a warm search does.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aisle.serving.errors import PROBLEM_JSON, problem_body
from aisle.serving.metrics import CLIENT_CLOSED, CLIENT_GONE, Metrics


class LimitsAndMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before it starts a response

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            length = _content_length(scope)
            if length is not None and length > self.max_body_bytes:
                await _reject(send_and_note, 413, f"request body is {length} bytes; at most "
                              f"{self.max_body_bytes}")
            elif length is None and scope["method"] in BODY_METHODS:
                body = await _read_body(receive, self.max_body_bytes)
                if body is None:
                    await _reject(send_and_note, 413, f"request body is over "
                                  f"{self.max_body_bytes} bytes; at most {self.max_body_bytes}")
                else:
                    await self.app(scope, _replay(body, receive), send_and_note)
            else:
                await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            if scope.get(CLIENT_GONE):
                status = CLIENT_CLOSED
            self.metrics.observe(path, status, time.perf_counter() - started)


BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it is over ``limit`` bytes (or the client left)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # http.disconnect: nobody to answer
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            return None
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: disconnect notices

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _reject(send: Any, status: int, detail: str) -> None:
    body = problem_body(status, detail)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_JSON.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
