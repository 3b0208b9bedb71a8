"""Operations: ``/healthz``, ``/readyz``, Prometheus ``/metrics`` and ``POST /admin/reload``."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aisle.serving import reloading
from aisle.serving.deps import ConfigDep, EngineDep, MetricsDep, PoolDep
from aisle.serving.errors import AdminOff, NotAuthorized, documented
from aisle.serving.schemas import Health, Ready, Reloaded

router = APIRouter()

# Documents the admin token in OpenAPI; ``admin`` checks it (and says what is wrong).
bearer = HTTPBearer(auto_error=False, description="the service's admin token")


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses=documented(503))
async def readyz(engine: EngineDep) -> Ready:
    return Ready(status="ready", index_version=engine.snapshot.version)


@router.get("/metrics", response_class=Response, responses={200: {
    "description": "the Prometheus text exposition format",
    "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
}})
async def prometheus(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def admin(config: ConfigDep,
                credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                ) -> None:
    if not config.admin_token:
        raise AdminOff("admin endpoints are off; start the service with an admin token")
    if credentials is None or not secrets.compare_digest(
            credentials.credentials.encode(), config.admin_token.encode()):
        raise NotAuthorized("admin endpoints need 'Authorization: Bearer <admin token>'")


@router.post("/admin/reload", response_model=Reloaded, dependencies=[Depends(admin)],
             responses=documented(401, 404, 409, 503))
async def admin_reload(engine: EngineDep, pool: PoolDep, metrics: MetricsDep) -> Reloaded:
    return Reloaded(index_version=await reloading.reload(engine, pool, metrics))
