"""The warm lane: ``GET /search`` planned and answered below the web framework.

Most traffic is head queries whose embeddings are cached (ITEMS: over 95%). For them the
search itself costs less than FastAPI's request handling around it, so this ASGI layer answers
them directly, on the event loop (``Engine.plan``: their results or vectors are in memory). A
valid request that needs more (the query tower, or BM25 on a thread) is finished here too:
FastAPI's routing and dependencies cost a cold request about as much CPU as its BM25 side, for
nothing the lane has not already done. Anything invalid, or the index still loading, falls
through unchanged, and the route owns validation and error messages; an error while finishing
(a full queue, say) is handed to the route to raise, so the service's own error handlers answer
it. The lane can only answer what that route would answer, never differently. A client that
disconnects while its plan is being finished cancels it (the micro-batcher then drops its
query unencoded) and gets no answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from aisle.serving.metrics import CLIENT_GONE

# query parameters ((name, value) pairs, in order) -> the JSON body of the answer, a plan for
# ``Finish`` to run, or None to let the route handle it (parsed as Starlette parses them:
# latin-1 bytes, then parse_qsl)
Lane = Callable[[Sequence[tuple[str, str]]], bytes | object | None]
# (a plan from the lane, when the request started) -> the JSON body of its answer
Finish = Callable[[Any, float], Awaitable[bytes]]

HEADERS = [(b"content-type", b"application/json")]

T = TypeVar("T")


class WarmLane:
    def __init__(self, app: ASGIApp, lane: Lane, finish: Finish, route: Any,
                 state_key: str) -> None:
        self.app = app
        self.lane = lane
        self.finish = finish
        self.route = route  # the GET /search route: metrics label the request with its path
        self.state_key = state_key  # where the route finds an error the lane met finishing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/search":
            started = time.perf_counter()
            params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            found = self.lane(params)
            body = found if isinstance(found, bytes) else None
            if found is not None and body is None:
                try:
                    body = await unless_gone(self.finish(found, started), receive)
                except ClientGone:
                    scope["route"] = self.route
                    scope[CLIENT_GONE] = True
                    return
                except Exception as e:  # the route raises it, for the app's error handlers
                    scope.setdefault("state", {})[self.state_key] = e
            if body is not None:
                scope["route"] = self.route
                await send({"type": "http.response.start", "status": 200,
                            "headers": [*HEADERS, (b"content-length", b"%d" % len(body))]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def unless_gone(work: Awaitable[T], receive: Receive) -> T:
    """``work``'s result, or ``ClientGone`` (``work`` cancelled) once the client disconnects:
    the server goes on running a request whose client has left, and without this a queue of
    abandoned searches (clients timing out under load) would all be encoded. ``receive`` must
    be past the request's body (a GET's is empty; a route has read a POST's)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        raise ClientGone
    return task.result()


async def _disconnected(receive: Receive) -> None:
    """Returns once the client has disconnected (a GET's empty body read on the way)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a server that cannot tell: the answer is awaited as before
        await asyncio.Event().wait()
