"""Operations: ``/healthz``, ``/readyz``, Prometheus ``/metrics`` and ``POST /admin/reload``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aisle.serving import reloading
from aisle.serving.deps import ConfigDep, EngineDep, MetricsDep, PoolDep
from aisle.serving.errors import AdminOff, NotAuthorized

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(engine: EngineDep) -> dict[str, str]:
    return {"status": "ready", "index_version": engine.snapshot.version}


@router.get("/metrics")
async def prometheus(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def admin(request: Request, config: ConfigDep) -> None:
    if not config.admin_token:
        raise AdminOff("admin endpoints are off; start the service with an admin token")
    if request.headers.get("authorization") != f"Bearer {config.admin_token}":
        raise NotAuthorized("admin endpoints need 'Authorization: Bearer <admin token>'")


@router.post("/admin/reload", dependencies=[Depends(admin)])
async def admin_reload(engine: EngineDep, pool: PoolDep, metrics: MetricsDep) -> dict[str, str]:
    return {"index_version": await reloading.reload(engine, pool, metrics)}
