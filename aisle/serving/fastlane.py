"""The warm lane: ``GET /search`` planned below the web framework, and answered there when
its plan runs on the event loop (``Engine.plan``: its results or its vectors are in memory).

Most traffic is head queries whose embeddings are cached (ITEMS: over 95%). For them the
search itself costs less than FastAPI's request handling around it, so this ASGI layer answers
them directly. Any other plan goes on to the FastAPI route in the request's state, so the route
neither parses nor plans the request again; anything invalid, or the index still loading,
falls through unchanged, and the route owns validation and error messages: the lane can only
answer what that route would answer, never differently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

# query parameters ((name, value) pairs, in order) -> the JSON body of the answer, something
# for the route to finish, or None to let the route handle it (parsed as Starlette parses
# them: latin-1 bytes, then parse_qsl)
Lane = Callable[[Sequence[tuple[str, str]]], bytes | object | None]

HEADERS = [(b"content-type", b"application/json")]


class WarmLane:
    def __init__(self, app: ASGIApp, lane: Lane, route: Any, state_key: str) -> None:
        self.app = app
        self.lane = lane
        self.route = route  # the GET /search route: metrics label the request with its path
        self.state_key = state_key  # where the route finds what the lane leaves it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/search":
            params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            found = self.lane(params)
            if isinstance(found, bytes):
                scope["route"] = self.route
                await send({"type": "http.response.start", "status": 200,
                            "headers": [*HEADERS, (b"content-length", b"%d" % len(found))]})
                await send({"type": "http.response.body", "body": found})
                return
            if found is not None:
                scope.setdefault("state", {})[self.state_key] = found
        await self.app(scope, receive, send)
