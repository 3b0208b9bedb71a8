"""``GET /autocomplete``: suggestions from an autocomplete artifact (aisle/autocomplete)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request

from aisle.autocomplete.lookup import Autocomplete
from aisle.serving.config import ServeConfig
from aisle.serving.errors import InvalidRequest, NoAutocomplete, documented
from aisle.serving.params import integer_query, refuse_unknown
from aisle.serving.schemas import AutocompleteResponse, AutocompleteSuggestion


def add_autocomplete_routes(app: FastAPI, config: ServeConfig) -> None:
    """Load ``config.autocomplete`` (a broken artifact refuses to start the service) and
    add the route; without an artifact the route answers 404 saying how to get one."""
    index = Autocomplete.load(Path(config.autocomplete)) if config.autocomplete else None

    # The limits (prefix length, k's range) are checked here, and declared in the OpenAPI
    # document by serving/openapi.py.
    @app.get("/autocomplete", response_model=AutocompleteResponse,
             responses=documented(404, 422))
    async def autocomplete(
        request: Request,
        prefix: str = Query(description="what the shopper has typed so far: not only spaces, "
                                        "at most max_query_chars characters"),
        # Query inside Annotated: as the default, FastAPI would drop integer_query.
        k: Annotated[int, integer_query("autocomplete_max_k"), Query(
            description="suggestions to return, 1..autocomplete_max_k")
        ] = min(config.default_k, config.autocomplete_max_k),
    ) -> AutocompleteResponse:
        started = time.perf_counter()
        refuse_unknown(request.query_params, ("prefix", "k"), "GET /autocomplete")
        if index is None:
            raise NoAutocomplete("this service has no autocomplete index; build one with "
                                 "`aisle autocomplete build` and start `aisle serve "
                                 "--autocomplete DIR`")
        if not prefix.strip():
            raise InvalidRequest("prefix is empty; send what the shopper has typed", "prefix")
        if len(prefix) > config.max_query_chars:
            raise InvalidRequest(f"prefix is {len(prefix)} characters; "
                                 f"at most {config.max_query_chars}", "prefix")
        if not 1 <= k <= config.autocomplete_max_k:
            raise InvalidRequest(
                f"k is {k}; it must be between 1 and {config.autocomplete_max_k}", "k"
            )
        # Sub-millisecond and CPU-only: answered on the event loop, no executor hop.
        found = index.suggest(prefix, k)
        return AutocompleteResponse(
            prefix=prefix,
            suggestions=[AutocompleteSuggestion(text=s.text, popularity=s.popularity,
                                                source=s.source, edits=s.edits) for s in found],
            version=index.version,
            took_ms=(time.perf_counter() - started) * 1000,
        )
