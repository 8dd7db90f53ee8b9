"""``GET /v1/capabilities``: what this server offers and its limits, so that a client can
choose how to upload (direct to S3, or through the API) without trial and error."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from uploads_api.api import tus_protocol
from uploads_api.api.contract import problem_responses
from uploads_api.api.deps import RuntimeDep, get_principal
from uploads_api.services.direct_uploads import MAX_PARTS

router = APIRouter(prefix="/v1", tags=["server"], dependencies=[Depends(get_principal)])


class DirectUploadLimits(BaseModel):
    min_size: int = Field(description="Clients send files of at least this size directly")
    part_size: int = Field(description="Bytes per part (more for files over `max_parts` parts)")
    max_parts: int
    expires_in: int = Field(description="Seconds a started direct upload stays open")


class ResumableUploads(BaseModel):
    endpoint: str = Field(description="The tus 1.0 endpoint (docs/resumable.md)")
    extensions: list[str]
    checksum_algorithms: list[str]
    expires_in: int = Field(description="Seconds an unfinished upload lives after its last PATCH")
    max_open: int = Field(description="Unfinished uploads per API key")


class Capabilities(BaseModel):
    keys_required: bool = Field(description="Whether requests need an API key")
    max_file_size: int = Field(description="Bytes, per file")
    allowed_types: list[str] = Field(description="Sniffed types accepted (patterns); [] = any")
    thumbnail_sizes: list[int]
    direct_uploads: DirectUploadLimits | None = Field(
        description="`POST /v1/direct-uploads` is offered (S3 storage); null: it is not"
    )
    resumable_uploads: ResumableUploads = Field(description="Resumable uploads over tus")
    presigned_downloads: bool = Field(description="Downloads answer 302 to a presigned storage URL")
    link_max_age: int = Field(description="The longest life of a signed link, in seconds")
    variant_max_size: int = Field(description="The largest width or height of a variant")
    variant_presets: list[str] = Field(description="When not empty, the only variants served")


@router.get(
    "/capabilities",
    response_model=Capabilities,
    operation_id="getCapabilities",
    responses=problem_responses(),
    summary="What this server offers: upload methods and limits",
)
async def capabilities(runtime: RuntimeDep) -> Capabilities:
    settings = runtime.settings
    direct = runtime.direct_upload_service.available
    return Capabilities(
        keys_required=not await runtime.authenticator.is_open(),
        max_file_size=settings.max_file_size,
        allowed_types=list(settings.allowed_types),
        thumbnail_sizes=sorted(settings.thumbnail_sizes),
        direct_uploads=DirectUploadLimits(
            min_size=settings.direct_upload_min_size,
            part_size=settings.direct_upload_part_size,
            max_parts=MAX_PARTS,
            expires_in=settings.direct_upload_expiry,
        )
        if direct
        else None,
        resumable_uploads=ResumableUploads(
            endpoint="/v1/tus/",
            extensions=tus_protocol.EXTENSIONS.split(","),
            checksum_algorithms=tus_protocol.CHECKSUM_ALGORITHMS.split(","),
            expires_in=settings.tus_expiry,
            max_open=settings.tus_max_open,
        ),
        presigned_downloads=runtime.file_service.presigns_downloads,
        link_max_age=settings.link_max_age,
        variant_max_size=settings.variant_max_size,
        variant_presets=sorted(settings.variant_presets),
    )
