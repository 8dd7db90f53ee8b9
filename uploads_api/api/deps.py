"""Dependencies, as ``Annotated`` aliases so routes read like sentences."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import Scope

from uploads_api.auth import Principal
from uploads_api.errors import InvalidLink, LinkExpired, Unauthorized
from uploads_api.runtime import Runtime
from uploads_api.services.audit import Auditor
from uploads_api.services.direct_uploads import DirectUploadService
from uploads_api.services.event_stream import EventStreamService
from uploads_api.services.files import FileService
from uploads_api.services.health import HealthService
from uploads_api.services.links import LinkGrant, LinkService
from uploads_api.services.tasks import TaskService
from uploads_api.services.tus import TusService
from uploads_api.services.variants import VariantService
from uploads_api.services.webhooks import WebhookService

# Declares the scheme in OpenAPI (so /docs can send a key); the check itself is ours.
# Every dependency here is `async def`, even those that only look something up: FastAPI
# runs a plain `def` dependency in its thread pool, a thread hop per request for nothing.
bearer = HTTPBearer(auto_error=False, description="An API key from `uploads-api keys create`")


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_principal(
    request: Request,
    runtime: RuntimeDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    address = request.client.host if request.client else None
    return await caller_of(runtime, request.headers.get("authorization"), address)


async def caller_of(runtime: Runtime, authorization: str | None, address: str | None) -> Principal:
    """The caller a request's ``Authorization`` names; a refusal is audited."""
    try:
        principal = await runtime.authenticator.authenticate(authorization)
    except Unauthorized:
        # The address only, never the key nor any part of it. Counted per address and
        # minute, so requests without a valid key add at most one row a minute each.
        runtime.auditor.record("auth.failed", None, address=address)
        raise
    return dataclasses.replace(principal, address=address)


async def scope_caller(runtime: Runtime, scope: Scope, headers: Headers) -> Principal:
    """``caller_of`` for a plain ASGI endpoint: the key and the address of its request."""
    client = scope.get("client")
    return await caller_of(runtime, headers.get("authorization"), client[0] if client else None)


async def get_stream_caller(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    token: Annotated[
        str | None,
        Query(
            max_length=1024,
            pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
            description="A token from `POST /v1/events/tokens`, in place of the"
            " `Authorization` header (a browser's `EventSource` cannot send one)",
        ),
    ] = None,
) -> Principal:
    """The key, or a signed token naming the caller."""
    if token is None:
        return await get_principal(request, runtime, credentials)
    address = request.client.host if request.client else None
    try:
        principal = await runtime.event_stream.caller_of_token(token)
    except Unauthorized:
        runtime.auditor.record("auth.failed", None, address=address)
        raise
    return dataclasses.replace(principal, address=address)


@dataclasses.dataclass(frozen=True)
class Reader:
    """Who reads a download: a key's principal, or a verified link's grant."""

    caller: Principal
    link: LinkGrant | None = None

    def cache_control(self, with_key: str) -> str:
        """``with_key`` for a key; through a link, public for as long as it lives at most."""
        if self.link is None:
            return with_key
        return f"public, max-age={self.link.seconds_left()}, immutable"


async def get_reader(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    link: Annotated[
        str | None,
        Query(
            max_length=2048,
            pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
            description="A signed link's token (from `POST /v1/files/{file_id}/links`), in"
            " place of the `Authorization` header, valid for this path until it expires",
        ),
    ] = None,
) -> Reader:
    """The key, or a signed link made for this method and path: the download routes only.
    A request that sends an ``Authorization`` header is judged by it alone."""
    if link is None or "authorization" in request.headers:
        return Reader(await get_principal(request, runtime, credentials))
    address = request.client.host if request.client else None
    # Decoded and relative to the app, as the link was signed (a proxy's prefix is not in it).
    path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
    try:
        grant = runtime.link_service.verify(link, request.method, path)
    except (InvalidLink, LinkExpired):
        runtime.auditor.record("auth.failed", None, address=address)
        raise
    return Reader(dataclasses.replace(grant.caller, address=address), grant)


async def get_file_service(runtime: RuntimeDep) -> FileService:
    return runtime.file_service


async def get_variant_service(runtime: RuntimeDep) -> VariantService:
    return runtime.variant_service


async def get_task_service(runtime: RuntimeDep) -> TaskService:
    return runtime.task_service


async def get_webhook_service(runtime: RuntimeDep) -> WebhookService:
    return runtime.webhook_service


async def get_event_stream(runtime: RuntimeDep) -> EventStreamService:
    return runtime.event_stream


async def get_health_service(runtime: RuntimeDep) -> HealthService:
    return runtime.health_service


async def get_link_service(runtime: RuntimeDep) -> LinkService:
    return runtime.link_service


async def get_direct_upload_service(runtime: RuntimeDep) -> DirectUploadService:
    return runtime.direct_upload_service


async def get_tus_service(runtime: RuntimeDep) -> TusService:
    return runtime.tus_service


async def get_auditor(runtime: RuntimeDep) -> Auditor:
    return runtime.auditor


PrincipalDep = Annotated[Principal, Depends(get_principal)]
StreamCallerDep = Annotated[Principal, Depends(get_stream_caller)]
ReaderDep = Annotated[Reader, Depends(get_reader)]
FilesDep = Annotated[FileService, Depends(get_file_service)]
VariantsDep = Annotated[VariantService, Depends(get_variant_service)]
TasksDep = Annotated[TaskService, Depends(get_task_service)]
WebhooksDep = Annotated[WebhookService, Depends(get_webhook_service)]
EventStreamDep = Annotated[EventStreamService, Depends(get_event_stream)]
HealthDep = Annotated[HealthService, Depends(get_health_service)]
DirectUploadsDep = Annotated[DirectUploadService, Depends(get_direct_upload_service)]
TusDep = Annotated[TusService, Depends(get_tus_service)]
AuditDep = Annotated[Auditor, Depends(get_auditor)]
LinksDep = Annotated[LinkService, Depends(get_link_service)]
