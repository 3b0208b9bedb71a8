"""``GET /search``, ``POST /search``, ``POST /search/batch`` and the warm lane's answer.

A request is checked once into an ``Ask`` and planned once (``Engine.plan``, the one place that
decides which tier answers it). A valid ``GET /search`` is planned and finished by the warm
lane (``serving/fastlane.py``), below the framework; the route here answers what the lane
left: an invalid request (the route's validation says what to fix), a request that came while
the index was loading, or an error the lane met finishing a plan (raised here, so the app's
error handlers answer it).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response

from aisle.retrieval.config import Mode
from aisle.retrieval.filters import Filter, FilterError, filter_from_json, parse_filters
from aisle.retrieval.querytext import query_problem
from aisle.retrieval.retriever import Found
from aisle.serving.batching import MicroBatcher, on_thread
from aisle.serving.config import ServeConfig
from aisle.serving.deps import BatcherDep, ConfigDep, EngineDep, PoolDep
from aisle.serving.engine import Answer, Ask, Engine, Lane, Plan, UnknownPartition
from aisle.serving.errors import InvalidRequest, documented
from aisle.serving.fastlane import ClientGone, unless_gone
from aisle.serving.metrics import CLIENT_CLOSED, CLIENT_GONE
from aisle.serving.params import SEARCH_PARAMETERS, parse_search_params
from aisle.serving.schemas import (
    BatchRequest,
    BatchResponse,
    Fields,
    SearchRequest,
    SearchResponse,
)

router = APIRouter()

# Where the warm lane leaves an error it met finishing a GET /search, for the route to raise
# (``request.state``).
FAILED_STATE = "search_failed"


def check_query(q: str, config: ServeConfig, field: str) -> str:
    problem = query_problem(q)
    if problem is not None:
        raise InvalidRequest(problem, field)
    if len(q) > config.max_query_chars:
        raise InvalidRequest(f"query is {len(q)} characters; at most {config.max_query_chars}",
                             field)
    return q


def make_ask(texts: Sequence[str], where: Sequence[str], k: int | None, mode: Mode | None,
             partition: str | None, config: ServeConfig, filters: Filter | None = None,
             fields: Sequence[str] = ()) -> Ask:
    """A checked request (``where``: where each text is in the request, for the error
    saying what to fix). Filters and fields are checked against the index when planned."""
    k = min(config.default_k, config.max_k) if k is None else k
    if not 1 <= k <= config.max_k:
        raise InvalidRequest(f"k is {k}; it must be between 1 and {config.max_k}", "k")
    checked = tuple(check_query(t, config, f) for t, f in zip(texts, where, strict=True))
    # An empty partition (a blank form field) means the whole index, as an absent one does.
    return Ask(checked, k, mode or config.default_mode, partition or None, filters or None,
               tuple(dict.fromkeys(fields)), received=time.monotonic())


def ask_from_query_string(params: Mapping[str, str] | Sequence[tuple[str, str]],
                          config: ServeConfig) -> Ask:
    q, k, mode, partition, conditions, fields = parse_search_params(params)
    return make_ask([q], ["q"], k, mode, partition, config,
                    parse_filters(conditions, "filter"), fields)


def body_filters(filters: dict[str, Any] | None) -> Filter | None:
    return None if filters is None else filter_from_json(filters, "filters")


async def finish(plan: Plan, engine: Engine, batcher: MicroBatcher, pool: Executor) -> Answer:
    """The answer of a plan, from the tier it names."""
    if plan.answer is not None:
        return plan.answer
    if plan.lane is Lane.THREAD:
        answer = await on_thread(pool, engine.run, plan)
        if answer is not None:
            return answer
    return await batcher.search(plan.ask, plan.mode)


# Responses are built as plain dicts and encoded by orjson: the shapes are the declared
# response models (OpenAPI documents them), but re-validating our own output through
# pydantic on every request would cost more than the search.
def payload(found: Found, version: str, started: float,
            values: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    results = [{"product_id": h.product_id, "title": h.title, "score": float(h.score)}
               for h in found.hits]
    if values is not None:
        for result, fields in zip(results, values, strict=True):
            result["fields"] = fields
    return {
        "results": results,
        "index_version": version,
        "mode": found.mode,
        "corrected_query": found.query.correction,
        "reranked": found.reranked,
        "took_ms": (time.perf_counter() - started) * 1000,
    }


async def finish_for(request: Request, plan: Plan, engine: Engine, batcher: MicroBatcher,
                     pool: Executor) -> Answer | None:
    """``finish`` for a route that has read its body: None (counted as 499, the work
    cancelled, so a queued query is dropped unencoded) once its client has disconnected."""
    try:
        return await unless_gone(finish(plan, engine, batcher, pool), request.receive)
    except ClientGone:
        request.scope[CLIENT_GONE] = True
        return None


def one(answer: Answer, started: float) -> dict[str, Any]:
    """The response body of a one-query answer."""
    values = None if answer.values is None else answer.values[0]
    return payload(answer.found[0], answer.version, started, values)


def json_response(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/search", response_model=SearchResponse, responses=documented(404, 422, 503),
            openapi_extra={"parameters": SEARCH_PARAMETERS})
async def search_get(request: Request, config: ConfigDep, engine: EngineDep,
                     batcher: BatcherDep, pool: PoolDep) -> Response:
    started = time.perf_counter()
    failed = getattr(request.state, FAILED_STATE, None)
    if isinstance(failed, Exception):  # the warm lane's, finishing this request's plan
        raise failed
    plan = engine.plan(ask_from_query_string(request.query_params.multi_items(), config))
    answer = await finish(plan, engine, batcher, pool)
    return json_response(one(answer, started))


@router.post("/search", response_model=SearchResponse,
             responses=documented(400, 404, 413, 422, 503))
async def search_post(request: Request, body: SearchRequest, config: ConfigDep,
                      engine: EngineDep, batcher: BatcherDep, pool: PoolDep) -> Response:
    started = time.perf_counter()
    ask = make_ask([body.query], ["query"], body.k, body.mode, body.partition, config,
                   body_filters(body.filters), body.fields or ())
    answer = await finish_for(request, engine.plan(ask), engine, batcher, pool)
    if answer is None:
        return Response(status_code=CLIENT_CLOSED)  # nobody reads it
    return json_response(one(answer, started))


@router.post("/search/batch", response_model=BatchResponse,
             responses=documented(400, 404, 413, 422, 503))
async def search_batch(request: Request, body: BatchRequest, config: ConfigDep,
                       engine: EngineDep, batcher: BatcherDep, pool: PoolDep) -> Response:
    started = time.perf_counter()
    if not 1 <= len(body.queries) <= config.max_batch:
        raise InvalidRequest(
            f"batch holds {len(body.queries)} queries; send 1 to {config.max_batch}", "queries")
    where = [f"queries.{i}" for i in range(len(body.queries))]
    ask = make_ask(body.queries, where, body.k, body.mode, body.partition, config,
                   body_filters(body.filters), body.fields or ())
    answer = await finish_for(request, engine.plan(ask), engine, batcher, pool)
    if answer is None:
        return Response(status_code=CLIENT_CLOSED)  # nobody reads it
    values: list[list[dict[str, Any]] | None] = (
        list(answer.values) if answer.values is not None else [None] * len(answer.found))
    return json_response({
        "responses": [payload(f, answer.version, started, v)
                      for f, v in zip(answer.found, values, strict=True)],
        "index_version": answer.version,
        "took_ms": (time.perf_counter() - started) * 1e3,
    })


@router.get("/fields", response_model=Fields, responses=documented(503))
async def fields(engine: EngineDep) -> Response:
    """The stored fields that filters and ``fields`` can name, with their types, the most
    common values of text fields and the range of number fields."""
    snapshot = engine.snapshot
    return json_response({"fields": snapshot.retriever.index.fields.summary(),
                          "index_version": snapshot.version})


def warm_lane(app: FastAPI) -> Callable[[Sequence[tuple[str, str]]], bytes | Plan | None]:
    """What the warm lane does with ``GET /search``'s parameters: the answer's JSON for a
    LOOP plan; the plan, for ``lane_finish``; None (the route takes over and says what is
    wrong) for anything invalid, or while the index is loading."""

    def lane(params: Sequence[tuple[str, str]]) -> bytes | Plan | None:
        started = time.perf_counter()
        engine = getattr(app.state, "engine", None)
        if not isinstance(engine, Engine):
            return None
        try:
            plan = engine.plan(ask_from_query_string(params, app.state.config))
        except (InvalidRequest, UnknownPartition, FilterError):
            return None
        if plan.answer is None:
            return plan
        return orjson.dumps(one(plan.answer, started))

    return lane


def lane_finish(app: FastAPI) -> Callable[[Plan, float], Awaitable[bytes]]:
    """How the warm lane finishes a plan that the loop could not answer: the tier it names
    (``finish``, as the route would), then the answer's JSON. Started with the app, the
    engine, batcher and threads exist whenever the lane made a plan."""

    async def finish_plan(plan: Plan, started: float) -> bytes:
        state = app.state
        answer = await finish(plan, state.engine, state.batcher, state.executor)
        return orjson.dumps(one(answer, started))

    return finish_plan
