"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from uploads_api.api.deps import HealthDep, get_principal
from uploads_api.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    operation_id="healthz",
    summary="Liveness: the process answers",
)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    operation_id="readyz",
    responses={503: {"model": Health, "description": "The database or storage is down"}},
    summary="Readiness: database and storage reachable",
)
async def readyz(health: HealthDep) -> Response:
    checks = await health.readiness()
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(get_principal)])
async def prometheus_metrics(health: HealthDep) -> Response:
    await health.refresh_queue_metrics()
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
