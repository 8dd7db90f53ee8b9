"""Dependencies, as ``Annotated`` aliases so routes read like sentences."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from uploads_api.auth import Principal
from uploads_api.runtime import Runtime
from uploads_api.services.files import FileService
from uploads_api.services.health import HealthService
from uploads_api.services.tasks import TaskService
from uploads_api.services.webhooks import WebhookService

# Declares the scheme in OpenAPI (so /docs can send a key); the check itself is ours.
bearer = HTTPBearer(auto_error=False, description="An API key from `uploads-api keys create`")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_principal(
    request: Request,
    runtime: RuntimeDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    return await runtime.authenticator.authenticate(request.headers.get("authorization"))


def get_file_service(runtime: RuntimeDep) -> FileService:
    return runtime.file_service


def get_task_service(runtime: RuntimeDep) -> TaskService:
    return runtime.task_service


def get_webhook_service(runtime: RuntimeDep) -> WebhookService:
    return runtime.webhook_service


def get_health_service(runtime: RuntimeDep) -> HealthService:
    return runtime.health_service


PrincipalDep = Annotated[Principal, Depends(get_principal)]
FilesDep = Annotated[FileService, Depends(get_file_service)]
TasksDep = Annotated[TaskService, Depends(get_task_service)]
WebhooksDep = Annotated[WebhookService, Depends(get_webhook_service)]
HealthDep = Annotated[HealthService, Depends(get_health_service)]
