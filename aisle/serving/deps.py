"""Typed dependencies of the routes: what a start-up put on ``app.state``.

Everything a route needs comes through these, so a test can replace any of them with
``app.dependency_overrides``. They are ``async``: FastAPI runs a plain function dependency on a
thread, a hop that would cost more than a warm search.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from aisle.serving.batching import MicroBatcher
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine
from aisle.serving.errors import NotReady
from aisle.serving.metrics import Metrics

T = TypeVar("T")


async def get_config(request: Request) -> ServeConfig:
    config: ServeConfig = request.app.state.config
    return config


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def _started(request: Request, name: str, kind: type[T], why: str) -> T:
    """``app.state.<name>``, which start-up sets; ``NotReady`` saying ``why`` before (or
    after)."""
    value = getattr(request.app.state, name, None)
    if not isinstance(value, kind):
        raise NotReady(f"{why}; retry shortly")
    return value


async def get_engine(request: Request) -> Engine:
    return _started(request, "engine", Engine, "the index is still loading")


async def get_batcher(request: Request) -> MicroBatcher:
    return _started(request, "batcher", MicroBatcher, "the service is not running")


async def get_pool(request: Request) -> ThreadPoolExecutor:
    """This start-up's threads (made at start-up, shut at shut-down: an app can restart)."""
    return _started(request, "executor", ThreadPoolExecutor, "the service is not running")


ConfigDep = Annotated[ServeConfig, Depends(get_config)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
EngineDep = Annotated[Engine, Depends(get_engine)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
PoolDep = Annotated[ThreadPoolExecutor, Depends(get_pool)]
