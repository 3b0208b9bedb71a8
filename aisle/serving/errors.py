"""The service's typed errors, and the one shape every error response has: RFC 9457 problem
details (``application/problem+json``) with ``field``, the part of the request at fault.

Routes and dependencies raise these; which status each becomes is decided in ``app.py`` only.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response

from aisle.serving.schemas import Problem

PROBLEM_JSON = "application/problem+json"


class InvalidRequest(ValueError):
    """A request the service refuses as malformed or out of range; the message says what to
    fix and ``field`` names the query parameter or JSON key at fault (a dotted path into the
    body, e.g. ``queries.2``), or None when no one field is."""

    def __init__(self, detail: str, field: str | None) -> None:
        super().__init__(detail)
        self.field = field


class NotReady(RuntimeError):
    """The index is still loading, or the service is shutting down."""


class AdminOff(LookupError):
    """The admin endpoints are off: the service was started without an admin token."""


class NotAuthorized(PermissionError):
    """An admin request without the admin token."""


class NoAutocomplete(LookupError):
    """The service was started without an autocomplete artifact."""


def problem_body(status: int, detail: str, field: str | None = None) -> bytes:
    return orjson.dumps({"type": "about:blank", "title": HTTPStatus(status).phrase,
                         "status": status, "detail": detail, "field": field})


def problem(status: int, detail: str, field: str | None = None,
            headers: dict[str, str] | None = None) -> Response:
    return Response(problem_body(status, detail, field), status, headers, PROBLEM_JSON)


# What each error status means, for the OpenAPI document of the routes that answer it.
MEANING = {
    400: "the body could not be read (not UTF-8 text)",
    401: "the admin token is missing or wrong",
    404: "no such thing: an unknown partition, or a feature this service was started without",
    409: "the index on disk was refused; the one serving still is",
    413: "the request body is over max_body_bytes",
    422: "a malformed or out-of-range request; `field` names what to fix",
    503: "the index is still loading, the encoder's queue is full, or the service is shutting "
         "down (retry after Retry-After)",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that answers ``statuses`` (as problem details: the OpenAPI
    document gives every error response that media type, aisle/serving/openapi.py)."""
    return {status: {"model": Problem, "description": MEANING[status]} for status in statuses}
