"""``create_app(config) -> FastAPI``: start-up and shut-down, routers, limits, metrics, hot
reload. Nothing happens at import.

State lives on ``app.state`` (config, metrics; from start-up on: engine, batcher, executor) and
reaches the routes through the typed dependencies of ``serving/deps.py``. Domain errors are
turned into status codes here, and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from aisle.configs import load_config
from aisle.cores import available_cores, cap_this_thread, cap_thread_pools
from aisle.data.fields import FieldType
from aisle.errors import AisleError
from aisle.retrieval.filters import FilterError
from aisle.serving import reloading
from aisle.serving.autocomplete_routes import add_autocomplete_routes
from aisle.serving.batching import MicroBatcher, Overloaded
from aisle.serving.cache import LRUCache, QueryCache, RedisCache, TieredCache
from aisle.serving.config import ServeConfig, env_overrides
from aisle.serving.engine import Engine, UnknownPartition
from aisle.serving.errors import (
    AdminOff,
    InvalidRequest,
    NoAutocomplete,
    NotAuthorized,
    NotReady,
    problem,
)
from aisle.serving.fastlane import WarmLane
from aisle.serving.metrics import Metrics
from aisle.serving.middleware import LimitsAndMetrics
from aisle.serving.openapi import contract
from aisle.serving.params import MODES
from aisle.serving.reloading import ReloadRefused, settle_heap
from aisle.serving.routes import ops, page, search

if TYPE_CHECKING:
    from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)

# Seconds an overloaded service asks a client to wait before retrying (503 Retry-After).
RETRY_AFTER_S = 1

# The status of each domain error, its headers, and the request field at fault where the
# error does not carry its own (``InvalidRequest.field``).
ERRORS: dict[type[Exception], tuple[int, dict[str, str] | None, str | None]] = {
    InvalidRequest: (422, None, None),
    FilterError: (422, None, None),
    UnknownPartition: (404, None, "partition"),
    NoAutocomplete: (404, None, None),
    AdminOff: (404, None, None),
    NotAuthorized: (401, {"WWW-Authenticate": "Bearer"}, "Authorization"),
    ReloadRefused: (409, None, None),
    Overloaded: (503, {"Retry-After": str(RETRY_AFTER_S)}, None),
    NotReady: (503, {"Retry-After": str(RETRY_AFTER_S)}, None),
}


def build_cache(config: ServeConfig) -> QueryCache:
    local = LRUCache(config.lru_size)
    if not config.redis_url:
        return local
    remote = RedisCache(config.redis_url, config.cache_ttl_s, config.redis_timeout_s,
                        config.redis_backoff_s)
    return TieredCache(local, remote)


def batch_sizes(config: ServeConfig, engine: Engine, cores: int) -> tuple[int, int]:
    """``(batch_max, batch_lanes)`` for the model served now, read once (a reload on another
    thread may swap it between two reads)."""
    model = engine.snapshot.model
    return batch_max(config, model), batch_lanes(config, model, cores)


def batch_lanes(config: ServeConfig, model: TwoTowerModel, cores: int) -> int:
    """``config.batch_lanes``, or by default one lane per core where the query tower runs on
    ONNX (one thread a call) and one lane on torch, whose every call already spreads over all
    cores (lanes there would only oversubscribe them)."""
    if config.batch_lanes < 0:
        raise AisleError(f"batch_lanes must be >= 0 (0: one per core on ONNX query towers, one "
                         f"on torch), got {config.batch_lanes}")
    if config.batch_lanes:
        return config.batch_lanes
    return 1 if model.backend == "torch" else cores


def batch_max(config: ServeConfig, model: TwoTowerModel) -> int:
    """``config.batch_max``, or by default 32 queries a batch where one call encodes many
    texts (torch and fp32 ONNX transformers), and 2 where the query tower gains nothing from a
    batch (``batches_queries``: int8 ONNX, one text a call, and a static tower, a lookup),
    which would only make its first queries wait for its last (a batch is answered once its
    last query is searched)."""
    if config.batch_max:
        return config.batch_max
    return 32 if model.batches_queries else 2


def create_app(config: ServeConfig, engine: Engine | None = None) -> FastAPI:
    """The service. ``engine`` is built from ``config`` at start-up unless one is given."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        cap_thread_pools()  # `aisle serve` did already; a host that builds the app may not
        cores = available_cores()
        # Every lane busy must still leave threads for THREAD-lane searches and reloads.
        executor = ThreadPoolExecutor(max_workers=max(4, max(cores, config.batch_lanes) + 2),
                                      thread_name_prefix="aisle-search",
                                      initializer=cap_this_thread)
        tasks: list[asyncio.Task[None]] = []
        metrics: Metrics = app.state.metrics
        built: Engine | None = None  # an engine made here is closed here; a given one is not

        async def reload(eng: Engine) -> str:  # the watcher's: only an index not serving yet
            return await reloading.reload(eng, executor, metrics, unless_served=True)

        try:
            if engine is not None:
                eng = engine
            else:  # loading the model and index takes seconds: off the event loop
                eng = built = await loop.run_in_executor(executor, Engine, config,
                                                         build_cache(config))
            metrics.bind(eng)
            settle_heap()
            size, lanes = batch_sizes(config, eng, cores)
            log.info("micro-batches: up to %d queries, %d at once (query tower on %s)", size,
                     lanes, eng.snapshot.model.query_runtime)
            batcher = MicroBatcher(
                eng, executor, config.batch_wait_ms / 1000, size, config.batch_queue_max, lanes,
                sizing=lambda: batch_sizes(config, eng, cores))
            app.state.engine, app.state.batcher, app.state.executor = eng, batcher, executor
            tasks.append(asyncio.create_task(batcher.run()))
            if config.watch_interval_s > 0:
                tasks.append(asyncio.create_task(
                    reloading.watch(eng, config.watch_interval_s, reload)))
            yield
        finally:
            for name in ("engine", "batcher", "executor"):
                if hasattr(app.state, name):
                    delattr(app.state, name)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            executor.shutdown(wait=False, cancel_futures=True)
            metrics.unbind()
            if built is not None:
                built.cache.close()

    app = FastAPI(title="aisle", version="0.1.0", lifespan=lifespan)
    app.state.config = config
    app.state.metrics = Metrics()
    add_error_handlers(app)

    app.include_router(search.router)
    app.include_router(ops.router)
    app.include_router(page.router)  # the search page at /, outside the OpenAPI document
    add_autocomplete_routes(app, config)

    search_route = next(r for r in search.router.routes if getattr(r, "path", None) == "/search"
                        and "GET" in getattr(r, "methods", ()))
    app.add_middleware(WarmLane, lane=search.warm_lane(app), finish=search.lane_finish(app),
                       route=search_route, state_key=search.FAILED_STATE)
    # Added last, so outermost: it sees every request, the warm lane's included.
    app.add_middleware(LimitsAndMetrics, metrics=app.state.metrics,
                       max_body_bytes=config.max_body_bytes)
    app.openapi = lambda: contract(app, config, *served_shape(app))  # type: ignore[method-assign]
    return app


def served_shape(app: FastAPI) -> tuple[dict[str, FieldType], tuple[str, ...]]:
    """The stored fields of the index being served and the modes it searches in (no fields
    and every mode before it has loaded)."""
    engine = getattr(app.state, "engine", None)
    if engine is None:
        return {}, MODES
    # The default partition's, as for the fields: one build gives every partition the same
    # fields and BM25 or none.
    retriever = engine.snapshot.retriever
    return (dict(retriever.index.fields.types),
            MODES if retriever.has_lexical else ("dense",))


def app_from_env() -> FastAPI:
    """The service as the environment configures it (``AISLE_<KEY>`` for each ServeConfig
    key), for an ASGI server to start: ``AISLE_INDEX=runs/demo/index uvicorn --factory
    aisle.serving.app:app_from_env``."""
    config = load_config(ServeConfig, None, env_overrides(os.environ))
    if not config.index:
        raise AisleError("set AISLE_INDEX to the index directory to serve")
    return create_app(config)


def add_error_handlers(app: FastAPI) -> None:
    """Every error, the framework's included, as one problem-details shape (serving/errors.py)."""

    def domain(status: int, headers: dict[str, str] | None, field: str | None) -> Any:
        async def handle(_: Request, exc: Exception) -> Response:
            return problem(status, str(exc), getattr(exc, "field", field), headers)
        return handle

    for kind, (status, headers, field) in ERRORS.items():
        app.add_exception_handler(kind, domain(status, headers, field))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        parts, fields = [], []
        media_type = request.headers.get("content-type")
        if not is_json(media_type) and any(
                tuple(err.get("loc", ())) == ("body",) and err.get("type") != "missing"
                for err in exc.errors()):
            # FastAPI read the body as bytes, and would say it is no JSON object
            got = repr(media_type[:60]) if media_type else "none"
            return problem(422, f"malformed request: send the body as JSON with 'Content-Type: "
                           f"application/json' (got {got})", "Content-Type")
        for err in exc.errors():
            # ("body", "queries", 2) -> queries.2; a body that is no JSON at all has no field
            where = ".".join(str(p) for p in err.get("loc", ())[1:])
            if err.get("type") == "json_invalid":
                where = ""
            parts.append(f"{where or 'body'}: {err.get('msg')}")
            fields.append(where or None)
        return problem(422, "malformed request: " + "; ".join(parts), fields[0] if fields else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        headers = dict(exc.headers or {})
        cause = exc.__cause__
        # FastAPI's "There was an error parsing the body" for any error but a JSON syntax
        # error: say which one, and what to send
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
            return problem(400, "malformed request: the body is not UTF-8 text; send the JSON "
                           "as UTF-8", None, headers)
        if exc.status_code == 400 and isinstance(cause, ValueError) and (
                "integer string conversion" in str(cause)):  # int()'s limit, json.loads's too
            return problem(422, "malformed request: the body holds a number of over 4,300 "
                           "digits, which no field takes", None, headers)
        if exc.status_code == 400 and isinstance(cause, RecursionError):
            return problem(422, "malformed request: the body nests lists or objects too deeply "
                           "to read; no field nests more than a few levels (a filter's value is "
                           "a value, a list of values or a range)", None, headers)
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request))
        return problem(exc.status_code, str(exc.detail), None, headers)

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> Response:
        # Starlette re-raises the error after this answer, and the server logs it.
        return problem(500, "the service failed to answer this request; it is logged")


def is_json(media_type: str | None) -> bool:
    """Whether FastAPI reads a body of this Content-Type as JSON (application/json or
    application/...+json, any parameters)."""
    if not media_type:
        return False
    message = email.message.Message()
    message["content-type"] = media_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json"))


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route answers at the request's path. Starlette's own 405 names only
    the methods of the first route it tried (GET /search's, never POST's)."""
    return [method for method in METHODS if any(
        route.matches({**request.scope, "method": method})[0] is Match.FULL
        for route in app.router.routes)]


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
