"""Request and response models of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field

from aisle.indexing.config import Mode


class SearchRequest(BaseModel):
    query: str = Field(description="the shopper's query, 1..512 characters")
    k: int | None = Field(default=None, description="results to return, 1..1000")
    mode: Mode | None = Field(default=None, description="dense, lexical or hybrid")
    partition: str | None = Field(default=None, description="retailer/store partition")


class BatchRequest(BaseModel):
    queries: list[str] = Field(description="queries, each 1..512 characters")
    k: int | None = None
    mode: Mode | None = None
    partition: str | None = None


class Result(BaseModel):
    product_id: str
    title: str
    score: float


class SearchResponse(BaseModel):
    results: list[Result]
    index_version: str
    mode: Mode
    took_ms: float


class BatchResponse(BaseModel):
    responses: list[SearchResponse]
    index_version: str
    took_ms: float


class ErrorResponse(BaseModel):
    detail: str
