"""``/v1/direct-uploads``: start a direct upload (S3), complete it, abort it. The client
PUTs each part to the URL it was given; these routes never see the bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from uploads_api.api.contract import problem_responses
from uploads_api.api.deps import (
    DirectUploadsDep,
    FilesDep,
    PrincipalDep,
    RuntimeDep,
    get_principal,
)
from uploads_api.api.problems import over_setting
from uploads_api.file_json import FileOut
from uploads_api.services.files import waiting_ids

router = APIRouter(
    prefix="/v1/direct-uploads", tags=["direct uploads"], dependencies=[Depends(get_principal)]
)
UPLOAD_ID = Annotated[str, Path(description="The direct upload's id (32 hex digits)")]
SHA256 = "^[0-9a-fA-F]{64}$"


class DirectUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=1024, description="The file's name")
    size: int = Field(
        ge=1, description="The file's exact size in bytes, at most `UPLOADS_MAX_FILE_SIZE`"
    )
    sha256: str | None = Field(
        default=None,
        pattern=SHA256,
        description="Optional: the file's SHA-256; the verify task compares it with the bytes",
    )


def describe_limits(schema: dict[str, Any], max_file_size: int) -> None:
    """Say this server's largest file: a larger ``size`` is refused as invalid (422)."""
    size = schema["components"]["schemas"]["DirectUploadRequest"]["properties"]["size"]
    size["maximum"] = max_file_size


class PartUrl(BaseModel):
    number: int = Field(description="The part's number, from 1")
    url: str = Field(description="PUT the part's bytes here, with no other credentials")


class DirectUploadOut(BaseModel):
    id: str = Field(description="The upload's id, and the file's id once completed")
    part_size: int = Field(description="Bytes in every part but the last")
    parts: list[PartUrl]
    expires_at: datetime = Field(description="Parts must be sent and completed by then")


class SentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1, max_length=256, description="The ETag the part's PUT answered")


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: list[SentPart] = Field(min_length=1, max_length=10_000)


@router.post(
    "",
    status_code=201,
    response_model=DirectUploadOut,
    operation_id="startDirectUpload",
    responses={
        201: {
            "links": {
                name: {"operationId": name, "parameters": {"upload_id": "$response.body#/id"}}
                for name in ("completeDirectUpload", "abortDirectUpload")
            }
        },
        **problem_responses("bad-request", "direct-uploads-unavailable", "quota-exceeded"),
    },
    summary="Start a direct upload: a presigned URL for each part (S3 storage)",
)
async def start_direct_upload(
    body: DirectUploadRequest, uploads: DirectUploadsDep, caller: PrincipalDep, runtime: RuntimeDep
) -> DirectUploadOut:
    limit = runtime.settings.max_file_size
    if body.size > limit:
        raise over_setting(("body", "size"), limit, body.size)
    offer = await uploads.start(caller, body.filename, body.size, body.sha256)
    return DirectUploadOut(
        id=offer.upload.id,
        part_size=offer.upload.part_size,
        parts=[PartUrl(number=i, url=url) for i, url in enumerate(offer.urls, start=1)],
        expires_at=offer.expires_at.replace(tzinfo=UTC),
    )


@router.post(
    "/{upload_id}/complete",
    status_code=201,
    response_model=FileOut,
    operation_id="completeDirectUpload",
    responses={
        201: {
            "links": {
                "getFile": {"operationId": "getFile", "parameters": {"file": "$response.body#/id"}}
            }
        },
        **problem_responses(
            "bad-request",
            "direct-uploads-unavailable",
            "not-found",
            "invalid-parts",
            "size-mismatch",
            "direct-upload-busy",
            "unsupported-media-type",
            "quota-exceeded",
        ),
    },
    summary="Complete a direct upload: the file is recorded and processed",
)
async def complete_direct_upload(
    upload_id: UPLOAD_ID,
    body: CompleteRequest,
    uploads: DirectUploadsDep,
    files: FilesDep,
    caller: PrincipalDep,
    background: BackgroundTasks,
) -> FileOut:
    parts = [(part.number, part.etag) for part in body.parts]
    record = await uploads.complete(caller, upload_id, parts)
    background.add_task(files.start_processing, waiting_ids([record]))
    return FileOut.of(record)


@router.delete(
    "/{upload_id}",
    status_code=204,
    response_class=Response,
    operation_id="abortDirectUpload",
    responses=problem_responses("direct-uploads-unavailable", "not-found", "direct-upload-busy"),
    summary="Abort a direct upload: its parts are dropped",
)
async def abort_direct_upload(
    upload_id: UPLOAD_ID, uploads: DirectUploadsDep, caller: PrincipalDep
) -> Response:
    await uploads.abort(caller, upload_id)
    return Response(status_code=204)
