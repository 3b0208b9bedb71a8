"""Query-string parsing for ``GET /search``, by hand, and the one rule for an integer in a
query string (``whole_number``; ``integer_query`` applies it where FastAPI reads one).

FastAPI's per-request parameter validation showed up in a profile as a large share of a warm
search, so the hot endpoint reads its parameters itself; ``SEARCH_PARAMETERS`` documents them
in OpenAPI exactly as FastAPI would have. ``filter`` and ``fields`` may repeat (one condition,
one field name each); any other parameter given twice counts once, the last. Errors say what
to fix, in the service's 422 wording; a parameter it does not know (a typo such as
``partiton``) is an error too, never silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, get_args

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from aisle.retrieval.config import Mode
from aisle.serving.errors import InvalidRequest

MODES: tuple[str, ...] = get_args(Mode)
NAMES = ("q", "k", "mode", "partition", "filter", "fields")
REPEATED = ("filter", "fields")
# More digits than any k the service could take (and fewer than int()'s limit of 4,300).
MAX_K_DIGITS = 18
# An integer (what the OpenAPI document declares k) as a query string spells one: ASCII
# digits, optionally signed, and nothing else. FastAPI (pydantic, lax) also took " 5 " and
# "5.0"; int() alone would also take spaces, "1_000" and other scripts' digits ("\u0665").
INTEGER = re.compile(r"([+-]?)([0-9]+)", re.ASCII)


class BadParameter(InvalidRequest):
    """A query-string parameter is missing or malformed; the message says which and why."""


def refuse_unknown(given: Iterable[str], known: Sequence[str], route: str) -> None:
    """A ``BadParameter`` naming the first of ``given`` that ``route`` does not take (sorted,
    cut to 40 characters), so that a typo is refused rather than answered as if absent."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise BadParameter(
            f"malformed request: unknown query parameter {unknown[0][:40]!r}; "
            f"{route} takes {', '.join(known)}", unknown[0][:40]
        )


def whole_number(raw: str, most: str) -> int:
    """The integer query-string value ``raw`` spells (``INTEGER``); a ValueError saying what
    is wrong otherwise, ``most`` naming the largest value the parameter takes."""
    whole = INTEGER.fullmatch(raw)
    if whole is None:
        raise ValueError(f"must be a whole number, digits only (such as 10), got {raw[:40]!r}")
    sign, digits = whole.group(1), whole.group(2).lstrip("0") or "0"
    if len(digits) > MAX_K_DIGITS:  # int() refuses over 4,300 digits (a 500): far out anyway
        raise ValueError(f"must be a whole number from 1 to {most}, got a {len(digits)}-digit "
                         "number")
    return -int(digits) if sign == "-" else int(digits)  # (int() counts leading zeros too)


def integer_query(most: str) -> BeforeValidator:
    """For an integer query parameter that FastAPI reads (``Annotated[int,
    integer_query(...)]``): ``whole_number``'s rules, not pydantic's lax ones (" 5 ", "5.0",
    "1_000"), and its message, which the service's 422 quotes as GET /search's. The document
    still declares an integer."""

    def parse(raw: object) -> object:
        if not isinstance(raw, str):
            return raw  # a default, never read from the query string
        try:
            return whole_number(raw, most)
        except ValueError as e:
            raise PydanticCustomError("int_parsing", str(e)) from None

    return BeforeValidator(parse)


class SearchParams(NamedTuple):
    q: str
    k: int | None  # None: absent (the service's default)
    mode: Mode | None
    partition: str | None
    filters: tuple[str, ...]  # text conditions, checked against the index later
    fields: tuple[str, ...]  # stored fields each result carries


def parse_search_params(query: Mapping[str, str] | Sequence[tuple[str, str]]) -> SearchParams:
    """The parameters of a query string (its ``(name, value)`` pairs, in order, or a mapping
    of names to values); all but ``q`` are None or empty when absent."""
    items = list(query.items()) if isinstance(query, Mapping) else list(query)
    params = dict(items)
    refuse_unknown(params, NAMES, "GET /search")
    q = params.get("q")
    if q is None:
        raise BadParameter("malformed request: q: the query parameter is required", "q")
    raw_k = params.get("k")
    k = None
    if raw_k is not None:
        try:
            k = whole_number(raw_k, "max_k")
        except ValueError as e:
            raise BadParameter(f"malformed request: k: {e}", "k") from None
    raw_mode = params.get("mode")
    if raw_mode is not None and raw_mode not in MODES:
        raise BadParameter(
            f"malformed request: mode: must be one of {', '.join(MODES)}, got {raw_mode!r}", "mode"
        )
    mode: Any = raw_mode  # checked against MODES above
    filters = tuple(v for n, v in items if n == "filter")
    fields = tuple(v for n, v in items if n == "fields")
    # An empty partition (a blank form field) means the whole index, as an absent one does.
    return SearchParams(q, k, mode, params.get("partition") or None, filters, fields)


def _parameter(name: str, schema: dict[str, Any], description: str,
               required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


# The limits that come from the config (q's length, k's range) are added by serving/openapi.py.
SEARCH_PARAMETERS: list[dict[str, Any]] = [
    _parameter("q", {"type": "string"}, "the query: some letter or digit, at most "
               "max_query_chars characters", required=True),
    _parameter("k", {"type": "integer"}, "results to return, 1..max_k (default: default_k)"),
    _parameter("mode", {"type": "string", "enum": list(MODES)},
               "dense, lexical or hybrid where the index carries BM25, dense alone where "
               "it does not (default: the index's, hybrid wherever it carries BM25)"),
    _parameter("partition", {"type": "string"},
               "search only this retailer/store partition of the index (404 if it has none)"),
    # The index's own fields and their patterns are added by serving/openapi.py.
    {**_parameter("filter", {"type": "array", "items": {"type": "string"}},
                  "only products meeting this condition (repeat: all must hold): "
                  "brand=DeWalt, brand=DeWalt|Makita, category^=dairy eggs (a path and what "
                  "is under it), price<=50, price=10..50, in_stock=true"),
     "style": "form", "explode": True},
    {**_parameter("fields", {"type": "array", "items": {"type": "string"}},
                  "a stored field each result carries (repeat for more)"),
     "style": "form", "explode": True},
]
