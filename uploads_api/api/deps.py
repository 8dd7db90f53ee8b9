"""Dependencies, as ``Annotated`` aliases so routes read like sentences."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from uploads_api.auth import Principal
from uploads_api.config import Settings
from uploads_api.db.repository import Repository
from uploads_api.service import UploadService
from uploads_api.services import Services
from uploads_api.tasks.base import TaskDispatcher

# Declares the scheme in OpenAPI (so /docs can send a key); the check itself is ours.
bearer = HTTPBearer(auto_error=False, description="An API key from `uploads-api keys create`")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_principal(
    request: Request,
    services: ServicesDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    return await services.authenticator.authenticate(request.headers.get("authorization"))


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


def get_repository(services: ServicesDep) -> Repository:
    return services.repository


def get_upload_service(services: ServicesDep, principal: PrincipalDep) -> UploadService:
    return UploadService(services, principal)


def get_dispatcher(services: ServicesDep) -> TaskDispatcher:
    return services.dispatcher


SettingsDep = Annotated[Settings, Depends(get_settings)]
RepositoryDep = Annotated[Repository, Depends(get_repository)]
UploadServiceDep = Annotated[UploadService, Depends(get_upload_service)]
DispatcherDep = Annotated[TaskDispatcher, Depends(get_dispatcher)]
