"""``create_app(config) -> FastAPI``: start-up and shut-down, routers, limits, metrics, hot
reload. Nothing happens at import.

State lives on ``app.state`` (config, metrics; from start-up on: engine, batcher, executor) and
reaches the routes through the typed dependencies of ``serving/deps.py``. Domain errors are
turned into status codes here, and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from aisle.serving import reloading
from aisle.serving.autocomplete_routes import add_autocomplete_routes
from aisle.serving.batching import MicroBatcher, Overloaded
from aisle.serving.cache import LRUCache, QueryCache, RedisCache, TieredCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine, UnknownPartition
from aisle.serving.fastlane import WarmLane
from aisle.serving.metrics import Metrics
from aisle.serving.middleware import LimitsAndMetrics
from aisle.serving.reloading import settle_heap
from aisle.serving.routes import ops, search
from aisle.serving.schemas import ErrorResponse

log = logging.getLogger(__name__)

# Seconds an overloaded service asks a client to wait before retrying (503 Retry-After).
RETRY_AFTER_S = 1


def build_cache(config: ServeConfig) -> QueryCache:
    local = LRUCache(config.lru_size)
    if not config.redis_url:
        return local
    remote = RedisCache(config.redis_url, config.cache_ttl_s, config.redis_timeout_s,
                        config.redis_backoff_s)
    return TieredCache(local, remote)


def create_app(config: ServeConfig, engine: Engine | None = None) -> FastAPI:
    """The service. ``engine`` is built from ``config`` at start-up unless one is given."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aisle-search")
        tasks: list[asyncio.Task[None]] = []
        metrics: Metrics = app.state.metrics

        async def reload(eng: Engine) -> str:
            return await reloading.reload(eng, executor, metrics)

        try:
            if engine is not None:
                eng = engine
            else:  # loading the model and index takes seconds: off the event loop
                eng = await loop.run_in_executor(executor, Engine, config, build_cache(config))
            metrics.bind(eng)
            settle_heap()
            batcher = MicroBatcher(eng, executor, config.batch_wait_ms / 1000, config.batch_max,
                                   config.batch_queue_max)
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

    app = FastAPI(title="aisle", version="0.1.0", lifespan=lifespan,
                  responses={422: {"model": ErrorResponse}})
    app.state.config = config
    app.state.metrics = Metrics()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where or 'body'}: {err.get('msg')}")
        return JSONResponse({"detail": "malformed request: " + "; ".join(parts)}, 422)

    @app.exception_handler(UnknownPartition)
    async def unknown_partition(_: Request, exc: UnknownPartition) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 404)

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    app.include_router(search.router)
    app.include_router(ops.router)
    add_autocomplete_routes(app, config)

    search_route = next(r for r in search.router.routes if getattr(r, "path", None) == "/search"
                        and "GET" in getattr(r, "methods", ()))
    app.add_middleware(WarmLane, lane=search.warm_lane(app), route=search_route,
                       state_key=search.PLAN_STATE)
    # Added last, so outermost: it sees every request, the warm lane's included.
    app.add_middleware(LimitsAndMetrics, metrics=app.state.metrics,
                       max_body_bytes=config.max_body_bytes)
    return app
