"""``/v1/files``: list, check hashes, get, delete, retry. Uploads are in ``api/uploads.py``,
downloads in ``api/downloads.py``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Response

from uploads_api.api.contract import problem_responses
from uploads_api.api.deps import FilesDep, PrincipalDep, get_principal
from uploads_api.api.schemas import FileList, HashCheck, HashCheckResult
from uploads_api.db.models import CURSOR_PATTERN, FILE_STATUSES
from uploads_api.file_json import FileOut

router = APIRouter(prefix="/v1/files", tags=["files"], dependencies=[Depends(get_principal)])

# One path template serves three operations: PUT stores a file under a name, GET and
# DELETE take an id. OpenAPI allows one name per template, so it is `file` for all three.
FILE_ID = Annotated[str, Path(description="The file's id (32 hex digits)")]


@router.get(
    "",
    response_model=FileList,
    operation_id="listFiles",
    responses=problem_responses(),
    summary="List files, newest first",
)
async def list_files(
    files: FilesDep,
    caller: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page"),
    ] = None,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(FILE_STATUSES) + ")$")] = None,
    sha256: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$")] = None,
) -> FileList:
    records, next_cursor = await files.list_files(
        caller, limit=limit, cursor=cursor, status=status, sha256=sha256
    )
    return FileList(files=[FileOut.of(r) for r in records], next_cursor=next_cursor)


@router.post(
    "/check",
    response_model=HashCheckResult,
    operation_id="checkHashes",
    responses=problem_responses("bad-request"),
    summary="Which of these sha256 hashes are already uploaded",
)
async def check_hashes(body: HashCheck, files: FilesDep, caller: PrincipalDep) -> HashCheckResult:
    present, missing = await files.check(caller, body.sha256)
    return HashCheckResult(present=present, missing=missing)


@router.get(
    "/{file}",
    response_model=FileOut,
    operation_id="getFile",
    responses=problem_responses("not-found"),
    summary="One file",
)
async def get_file(
    file: FILE_ID,
    files: FilesDep,
    caller: PrincipalDep,
    wait: Annotated[float, Query(ge=0, le=60, description="hold until processed, seconds")] = 0,
) -> FileOut:
    return FileOut.of(await files.get(caller, file, wait))


@router.delete(
    "/{file}",
    status_code=204,
    operation_id="deleteFile",
    responses=problem_responses("not-found"),
    summary="Delete a file",
)
async def delete_file(
    file: FILE_ID, files: FilesDep, caller: PrincipalDep, background: BackgroundTasks
) -> Response:
    await files.delete(caller, file)
    background.add_task(files.start_processing, [file])
    return Response(status_code=204)


@router.post(
    "/{file_id}/retry",
    response_model=FileOut,
    operation_id="retryFile",
    responses=problem_responses("not-found"),
    summary="Re-queue failed tasks",
)
async def retry_file(
    file_id: FILE_ID, files: FilesDep, caller: PrincipalDep, background: BackgroundTasks
) -> FileOut:
    record = await files.retry(caller, file_id)
    background.add_task(files.start_processing, [file_id])
    return FileOut.of(record)
