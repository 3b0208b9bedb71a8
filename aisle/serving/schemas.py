"""Request and response models of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from aisle.retrieval.config import Mode


class _Request(BaseModel):
    # A key the API does not know (a typo such as "partiton") is refused, never ignored.
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Request):
    query: str = Field(description="the shopper's query, 1..512 characters")
    # Strict: a JSON true is not k=1, nor "5" k=5.
    k: StrictInt | None = Field(default=None, description="results to return, 1..1000")
    mode: Mode | None = Field(
        default=None, description="dense, lexical or hybrid (default: the index's, hybrid "
        "wherever it carries BM25)")
    partition: str | None = Field(default=None, description="retailer/store partition")


class BatchRequest(_Request):
    queries: list[str] = Field(description="queries, each 1..512 characters")
    k: StrictInt | None = None
    mode: Mode | None = None
    partition: str | None = None


class Result(BaseModel):
    product_id: str
    title: str
    score: float


class SearchResponse(BaseModel):
    results: list[Result]
    index_version: str
    mode: Mode = Field(description="the mode that answered")
    corrected_query: str | None = Field(
        description="the query as searched when a misspelt word was corrected ('showing "
        "results for ...'), else null")
    took_ms: float


class BatchResponse(BaseModel):
    responses: list[SearchResponse]
    index_version: str
    took_ms: float


class Problem(BaseModel):
    """Every error response (RFC 9457 problem details, served as application/problem+json)."""

    type: str = Field(description="always about:blank: the status says what kind of error")
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what is wrong, and what to send instead")
    field: str | None = Field(
        description="the part of the request at fault: a query parameter, a JSON key (a dotted "
        "path for a nested one: queries.2) or a header; null when no one field is")


class AutocompleteSuggestion(BaseModel):
    text: str
    popularity: int = Field(description="query-log count (or proxy) / products naming it")
    source: str = Field(description="'log' (a past query) or 'catalog' (a catalog phrase)")
    edits: int = Field(description="typo edits between the prefix and the suggestion's start")


class AutocompleteResponse(BaseModel):
    prefix: str
    suggestions: list[AutocompleteSuggestion]
    version: str = Field(description="the autocomplete artifact's version")
    took_ms: float
