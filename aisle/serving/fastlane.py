"""The warm lane: ``GET /search`` for a query whose vector is in the in-process cache,
answered below the web framework.

Most traffic is head queries whose embeddings are cached (ITEMS: over 95%). For them the
search itself (a dict lookup and an ANN search, ~0.14 ms) costs less than FastAPI's request
handling around it, so this ASGI layer answers them directly. Anything else (a cache miss, a
non-dense mode, any invalid input, the index still loading) falls through unchanged to the
FastAPI route, which owns validation, error messages and the encoder: the lane can only
answer what that route would answer, never differently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

# query parameters -> the JSON body of the answer, or None to let the route handle it
# (parsed as Starlette parses them: latin-1 bytes, then parse_qsl)
Answer = Callable[[dict[str, str]], bytes | None]

HEADERS = [(b"content-type", b"application/json")]


class WarmLane:
    def __init__(self, app: ASGIApp, answer: Answer, route: Any) -> None:
        self.app = app
        self.answer = answer
        self.route = route  # the GET /search route: metrics label the request with its path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/search":
            params = dict(parse_qsl(scope["query_string"].decode("latin-1"),
                                    keep_blank_values=True))
            body = self.answer(params)
            if body is not None:
                scope["route"] = self.route
                await send({"type": "http.response.start", "status": 200,
                            "headers": [*HEADERS, (b"content-length", b"%d" % len(body))]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
