"""The service's typed errors, and the one shape every error response has: RFC 9457 problem
details (``application/problem+json``) with ``field``, the part of the request at fault.

Routes and dependencies raise these; which status each becomes is decided in ``app.py`` only.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson
from starlette.responses import Response

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
