"""``/v1/audit``: the audit log, for admin keys."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from uploads_api.api.contract import problem_responses
from uploads_api.api.deps import AuditDep, PrincipalDep, get_principal
from uploads_api.api.schemas import AuditEntryOut, AuditList
from uploads_api.db.models import AUDIT_ACTIONS, AUDIT_CURSOR_PATTERN

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(get_principal)])

ACTION_PATTERN = "^(" + "|".join(re.escape(action) for action in AUDIT_ACTIONS) + ")$"
# Times and cursors are checked by the service, so that a malformed one is a 400 problem;
# the description still says which are accepted.
DATE_TIME = {"format": "date-time"}


@router.get(
    "",
    response_model=AuditList,
    operation_id="listAudit",
    responses=problem_responses("bad-request", "forbidden"),
    summary="Audit log rows, newest first (admin keys only)",
)
async def list_audit(
    audit: AuditDep,
    caller: PrincipalDep,
    owner: Annotated[str | None, Query(max_length=64, description="Rows of this owner")] = None,
    action: Annotated[str | None, Query(pattern=ACTION_PATTERN)] = None,
    since: Annotated[
        str | None, Query(description="RFC 3339: rows at or after", json_schema_extra=DATE_TIME)
    ] = None,
    until: Annotated[
        str | None, Query(description="RFC 3339: rows before", json_schema_extra=DATE_TIME)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page",
            json_schema_extra={"pattern": AUDIT_CURSOR_PATTERN},
        ),
    ] = None,
) -> AuditList:
    entries, next_cursor = await audit.list_entries(
        caller,
        owner=owner,
        action=action,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return AuditList(items=[AuditEntryOut.of(e) for e in entries], next_cursor=next_cursor)
