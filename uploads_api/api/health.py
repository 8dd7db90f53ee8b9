"""Liveness, readiness and metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from uploads_api import metrics
from uploads_api.api.deps import ServicesDep, get_principal
from uploads_api.api.schemas import Health

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health}},
    summary="Readiness: database and storage reachable",
)
async def readyz(services: ServicesDep) -> Response:
    checks: dict[str, str] = {}
    for name, probe in (
        ("database", services.repository.ping),
        ("storage", services.storage.check),
    ):
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness check %s failed: %s", name, exc)
            checks[name] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(get_principal)])
async def prometheus_metrics(services: ServicesDep) -> Response:
    try:
        depth, oldest = await services.repository.queue_stats()
        metrics.QUEUE_DEPTH.set(depth)
        metrics.QUEUE_OLDEST.set(oldest or 0)
    except Exception:
        log.exception("could not read queue statistics")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
