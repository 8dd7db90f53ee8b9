"""Dependencies, as ``Annotated`` aliases so routes read like sentences."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from uploads_api.config import Settings
from uploads_api.db.repository import Repository
from uploads_api.service import UploadService
from uploads_api.services import Services
from uploads_api.tasks.base import TaskDispatcher


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_settings(services: Annotated[Services, Depends(get_services)]) -> Settings:
    return services.settings


def get_repository(services: Annotated[Services, Depends(get_services)]) -> Repository:
    return services.repository


def get_upload_service(services: Annotated[Services, Depends(get_services)]) -> UploadService:
    return UploadService(services)


def get_dispatcher(services: Annotated[Services, Depends(get_services)]) -> TaskDispatcher:
    return services.runner


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RepositoryDep = Annotated[Repository, Depends(get_repository)]
UploadServiceDep = Annotated[UploadService, Depends(get_upload_service)]
DispatcherDep = Annotated[TaskDispatcher, Depends(get_dispatcher)]
