"""``create_app(config) -> FastAPI``: routes, limits, metrics, hot reload. Nothing at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aisle.retrieval.config import Mode
from aisle.retrieval.querytext import query_problem
from aisle.retrieval.store import Hit
from aisle.serving import reloading
from aisle.serving.autocomplete_routes import add_autocomplete_routes
from aisle.serving.batching import MicroBatcher, Overloaded
from aisle.serving.cache import LRUCache, QueryCache, RedisCache, TieredCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine, UnknownPartition
from aisle.serving.fastlane import WarmLane
from aisle.serving.metrics import Metrics
from aisle.serving.middleware import LimitsAndMetrics
from aisle.serving.params import SEARCH_PARAMETERS, BadParameter, parse_search_params
from aisle.serving.reloading import ReloadRefused, settle_heap
from aisle.serving.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    SearchRequest,
    SearchResponse,
)

log = logging.getLogger(__name__)


def build_cache(config: ServeConfig) -> QueryCache:
    local = LRUCache(config.lru_size)
    if not config.redis_url:
        return local
    remote = RedisCache(config.redis_url, config.cache_ttl_s, config.redis_timeout_s,
                        config.redis_backoff_s)
    return TieredCache(local, remote)


def _bad(detail: str, status: int = 422) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


# Seconds an overloaded service asks a client to wait before retrying (503 Retry-After).
RETRY_AFTER_S = 1


def create_app(config: ServeConfig, engine: Engine | None = None) -> FastAPI:
    """The service. ``engine`` is built from ``config`` at start-up unless one is given."""
    metrics = Metrics()
    state: dict[str, object] = {}

    def get_engine() -> Engine:
        current = state.get("engine")
        if not isinstance(current, Engine):
            raise _bad("the index is still loading; retry shortly", 503)
        return current

    def get_batcher() -> MicroBatcher:
        batcher = state.get("batcher")
        assert isinstance(batcher, MicroBatcher)
        return batcher

    def pool() -> ThreadPoolExecutor:
        """This start-up's threads (made at start-up, shut at shut-down: an app can restart)."""
        executor = state.get("executor")
        if not isinstance(executor, ThreadPoolExecutor):
            raise _bad("the service is not running; retry shortly", 503)
        return executor

    async def reload(eng: Engine) -> str:
        return await reloading.reload(eng, pool(), metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aisle-search")
        tasks: list[asyncio.Task[None]] = []
        try:
            if engine is not None:
                eng = engine
            else:  # loading the model and index takes seconds: off the event loop
                eng = await loop.run_in_executor(executor, Engine, config, build_cache(config))
            metrics.bind(eng)
            settle_heap()
            batcher = MicroBatcher(eng, executor, config.batch_wait_ms / 1000, config.batch_max,
                                   config.batch_queue_max)
            state.update(engine=eng, batcher=batcher, executor=executor)
            tasks.append(asyncio.create_task(batcher.run()))
            if config.watch_interval_s > 0:
                tasks.append(asyncio.create_task(
                    reloading.watch(eng, config.watch_interval_s, reload)))
            yield
        finally:
            state.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="aisle", version="0.1.0", lifespan=lifespan,
                  responses={422: {"model": ErrorResponse}})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where or 'body'}: {err.get('msg')}")
        return JSONResponse({"detail": "malformed request: " + "; ".join(parts)}, 422)

    def check_query(q: str) -> str:
        problem = query_problem(q)
        if problem is not None:
            raise _bad(problem)
        if len(q) > config.max_query_chars:
            raise _bad(f"query is {len(q)} characters; at most {config.max_query_chars}")
        return q

    def check_k(k: int | None) -> int:
        k = config.default_k if k is None else k
        if not 1 <= k <= config.max_k:
            raise _bad(f"k is {k}; it must be between 1 and {config.max_k}")
        return k

    def read_get(params: Mapping[str, str]) -> tuple[str, int, Mode, str | None]:
        """GET /search's (query, k, mode, partition), checked and defaulted; a 422 saying what
        to fix."""
        try:
            q, k, mode, partition = parse_search_params(params)
        except BadParameter as e:
            raise _bad(str(e)) from e
        return check_query(q), check_k(k), mode or config.default_mode, partition

    async def run_search(texts: list[str], k: int | None, mode: Mode | None,
                         partition: str | None) -> tuple[list[list[Hit]], str, Mode]:
        eng = get_engine()
        use_mode: Mode = mode or config.default_mode
        k = check_k(k)
        loop = asyncio.get_running_loop()
        try:
            # Warm path: a cached query (most traffic) needs no encoder, so it skips the
            # micro-batcher's wait and queue. A dense search of a vector in the in-process
            # cache is a dict lookup plus an ANN search (HNSW at ef 64: ~0.14 ms,
            # bench/hnsw_real.py): it runs right here, as a hand-off to a thread would cost
            # more. Lookups that may reach Redis, BM25 (lexical, hybrid), and a partition not
            # yet loaded from disk, run on the executor.
            found = None
            warm = eng.snapshot.partition_loaded(partition)
            if use_mode == "dense" and warm:
                found = eng.search_if_cached(texts, k, use_mode, partition, local_only=True)
            if found is None and (use_mode != "dense" or eng.cache.has_remote or not warm):
                found = await loop.run_in_executor(
                    pool(), eng.search_if_cached, texts, k, use_mode, partition
                )
            if found is None:
                found = await get_batcher().search(texts, k, use_mode, partition)
            hits, version = found
        except UnknownPartition as e:
            raise _bad(str(e), 404) from e
        except Overloaded as e:
            raise HTTPException(503, str(e), headers={"Retry-After": str(RETRY_AFTER_S)}) from e
        return hits, version, use_mode

    # Responses are built as plain dicts and encoded by orjson: the shapes are the declared
    # response models (OpenAPI documents them), but re-validating our own output through
    # pydantic on every request would cost more than the search.
    def response(hits: list[Hit], version: str, mode: Mode, started: float) -> dict[str, Any]:
        return {
            "results": [
                {"product_id": h.product_id, "title": h.title, "score": float(h.score)}
                for h in hits
            ],
            "index_version": version,
            "mode": mode,
            "took_ms": (time.perf_counter() - started) * 1000,
        }

    def json_response(payload: dict[str, Any]) -> Response:
        return Response(orjson.dumps(payload), media_type="application/json")

    @app.get("/search", response_model=SearchResponse,
             openapi_extra={"parameters": SEARCH_PARAMETERS})
    async def search_get(request: Request) -> Response:
        started = time.perf_counter()
        q, k, mode, partition = read_get(request.query_params)
        hits, version, used = await run_search([q], k, mode, partition)
        return json_response(response(hits[0], version, used, started))

    @app.post("/search", response_model=SearchResponse)
    async def search_post(body: SearchRequest) -> Response:
        started = time.perf_counter()
        hits, version, used = await run_search([check_query(body.query)], body.k, body.mode,
                                               body.partition)
        return json_response(response(hits[0], version, used, started))

    @app.post("/search/batch", response_model=BatchResponse)
    async def search_batch(body: BatchRequest) -> Response:
        started = time.perf_counter()
        if not 1 <= len(body.queries) <= config.max_batch:
            raise _bad(f"batch holds {len(body.queries)} queries; send 1 to {config.max_batch}")
        texts = [check_query(q) for q in body.queries]
        hits, version, used = await run_search(texts, body.k, body.mode, body.partition)
        return json_response({
            "responses": [response(h, version, used, started) for h in hits],
            "index_version": version,
            "took_ms": (time.perf_counter() - started) * 1e3,
        })

    def warm_answer(params: dict[str, str]) -> bytes | None:
        """GET /search's answer when it is a valid dense query whose vector is in the
        in-process cache; None (the route takes over) in every other case."""
        started = time.perf_counter()
        eng = state.get("engine")
        try:
            q, k, mode, partition = read_get(params)
        except HTTPException:
            return None
        if mode != "dense" or not isinstance(eng, Engine):
            return None
        try:  # local_only: None for a partition not loaded yet (its load is the route's job)
            found = eng.search_if_cached([q], k, mode, partition, local_only=True)
        except UnknownPartition:
            return None
        if found is None:
            return None
        hits, version = found
        return orjson.dumps(response(hits[0], version, mode, started))

    search_route = next(r for r in app.routes if getattr(r, "path", None) == "/search"
                        and "GET" in getattr(r, "methods", ()))
    app.add_middleware(WarmLane, answer=warm_answer, route=search_route)
    # Added last, so outermost: it sees every request, the warm lane's included.
    app.add_middleware(LimitsAndMetrics, metrics=metrics, max_body_bytes=config.max_body_bytes)

    add_autocomplete_routes(app, config)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "index_version": get_engine().snapshot.version}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def admin(request: Request) -> None:
        if not config.admin_token:
            raise _bad("admin endpoints are off; start the service with an admin token", 404)
        if request.headers.get("authorization") != f"Bearer {config.admin_token}":
            raise _bad("admin endpoints need 'Authorization: Bearer <admin token>'", 401)

    @app.post("/admin/reload", dependencies=[Depends(admin)])
    async def admin_reload() -> dict[str, str]:
        eng = get_engine()
        try:
            version = await reload(eng)
        except ReloadRefused as e:
            raise _bad(str(e), 409) from e
        return {"index_version": version}

    return app
