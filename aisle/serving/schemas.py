"""Request and response models of the HTTP API.

Limits that come from the service's config (query length, k, batch size) are checked by the
routes and declared in the OpenAPI document by ``serving/openapi.py``, not here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from aisle.retrieval.config import Mode


def _whole(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A JSON integer as JSON Schema reads one: 5 or 5.0, never true (k=1) nor "5".
WholeNumber = Annotated[StrictInt, BeforeValidator(_whole)]


class _Request(BaseModel):
    # A key the API does not know (a typo such as "partiton") is refused, never ignored.
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Request):
    query: str = Field(description="the shopper's query: some letter or digit, at most "
                       "max_query_chars characters")
    k: WholeNumber | None = Field(default=None, description="results to return, 1..max_k "
                                "(default: default_k)")
    mode: Mode | None = Field(
        default=None, description="dense, lexical or hybrid where the index carries BM25, "
        "dense alone where it does not (default: the index's, hybrid wherever it carries "
        "BM25)")
    partition: str | None = Field(default=None, description="retailer/store partition")
    filters: dict[str, Any] | None = Field(
        default=None, description="only products meeting every one: {field: value}, "
        "{field: [any, of]}, for a number field {field: {gte, gt, lte, lt}}, for a text "
        "field of paths {field: {under: path}}")
    fields: list[str] | None = Field(default=None, description="stored fields each result "
                                     "carries (GET /fields lists them)")


class BatchRequest(_Request):
    queries: list[str] = Field(description="1..max_batch queries, each as SearchRequest's query")
    k: WholeNumber | None = Field(default=None, description="results to return per query")
    mode: Mode | None = None
    partition: str | None = None
    filters: dict[str, Any] | None = Field(default=None, description="as SearchRequest's")
    fields: list[str] | None = Field(default=None, description="as SearchRequest's")


FieldValue = str | float | bool | None


class Result(BaseModel):
    product_id: str
    title: str
    score: float
    fields: dict[str, FieldValue] | None = Field(
        default=None, description="the stored fields asked for (null where the catalog has "
        "no value); absent when none were")


class SearchResponse(BaseModel):
    results: list[Result]
    index_version: str
    mode: Mode = Field(description="the mode that answered")
    corrected_query: str | None = Field(
        description="the query as searched when a misspelt word was corrected ('showing "
        "results for ...'), else null")
    reranked: int = Field(description="first-stage products a cross-encoder re-ranked: 0 "
                          "when the service has none, or this query ran past its budget")
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


class FieldSummary(BaseModel):
    name: str
    type: Literal["string", "number", "boolean"]
    values: list[dict[str, str | int]] | None = Field(
        default=None, description="text fields: the most common values, with counts")
    groups: list[dict[str, str | int]] | None = Field(
        default=None, description="text fields whose values are paths (\"a > b\"): the most "
        "common top levels, with counts (field^=value keeps a level and what is under it)")
    min: float | None = Field(default=None, description="number fields: the smallest value")
    max: float | None = Field(default=None, description="number fields: the largest value")
    missing: int = Field(description="products without a value")


class Fields(BaseModel):
    fields: list[FieldSummary]
    index_version: str


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    index_version: str


class Reloaded(BaseModel):
    index_version: str = Field(description="the index version now served")


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
