"""The audit log: who did what, and from where.

``Auditor.record`` is the one way in: it logs a line on the ``uploads_api.audit`` logger at
once and queues the row, which ``AuditBuffer`` writes with others in one transaction, so
the request that caused it never waits for the database. Admins read the rows back,
newest first.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from uploads_api.auth import Principal
from uploads_api.db.audit import AuditFilter, AuditRepository, InvalidAuditCursor
from uploads_api.db.audit_buffer import AuditBuffer
from uploads_api.db.models import AUDIT_ACTIONS, AuditAction, AuditEntry
from uploads_api.db.tables import utcnow
from uploads_api.errors import BadRequest, Forbidden

log = logging.getLogger("uploads_api.audit")

# RFC 3339 date-time (section 5.6): a date, "T", a time with optional fraction, an offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


class Auditor:
    def __init__(self, buffer: AuditBuffer, repository: AuditRepository) -> None:
        self.buffer = buffer
        self.repository = repository

    def record(
        self,
        action: AuditAction,
        caller: Principal | None,
        *,
        owner: str | None = None,
        file_id: str | None = None,
        address: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Record one action of ``caller`` (``None``: the operator on the server's machine,
        or nobody known). ``owner`` and ``address`` default to the caller's; the caller's
        key id is added to ``detail``. Never waits for the database, never raises for it.

        ``detail`` is stored as JSON: plain values only (``TypeError`` otherwise), and never
        a secret."""
        if action not in AUDIT_ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        facts: dict[str, Any] = {}
        if caller is not None:
            owner = owner if owner is not None else caller.owner
            address = address if address is not None else caller.address
            if caller.key_id is not None:
                facts["key_id"] = caller.key_id
        facts.update(detail or {})
        # Checked here, at the caller: a row that cannot be stored would hold up the batch.
        json.dumps(facts)
        entry = AuditEntry(
            at=utcnow(),
            action=action,
            owner=owner,
            file_id=file_id,
            address=address,
            detail=facts or None,
        )
        self.buffer.add(entry)
        log.info(
            "%s owner=%s file=%s address=%s",
            action,
            owner,
            file_id,
            address,
            extra={
                "at": entry.at.replace(tzinfo=UTC).isoformat(),
                "action": action,
                "owner": owner,
                "file_id": file_id,
                "address": address,
                "detail": entry.detail,
                "count": entry.count,
            },
        )

    async def list_entries(
        self,
        caller: Principal,
        *,
        owner: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[AuditEntry], str | None]:
        """A page of rows, newest first, and the next page's cursor. Admins only; ``since``
        (inclusive) and ``until`` (exclusive) are RFC 3339 times."""
        if not caller.admin:
            raise Forbidden("the audit log is for admin keys only")
        filters = AuditFilter(
            owner=owner,
            action=action,
            since=parse_time("since", since),
            until=parse_time("until", until),
        )
        try:
            return await self.repository.list_entries(filters, limit=limit, cursor=cursor)
        except InvalidAuditCursor as exc:
            raise BadRequest("the cursor is not valid: pass next_cursor as it came") from exc


def parse_time(name: str, value: str | None) -> datetime | None:
    """An RFC 3339 time as naive UTC (the database's times); ``BadRequest`` otherwise."""
    if value is None:
        return None
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise BadRequest(f"{name} is not an RFC 3339 time such as 2026-01-31T12:00:00Z")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = (match[7] or "")[:6].ljust(6, "0")
    off_hours, off_minutes = int(match[10] or 0), int(match[11] or 0)
    try:
        if off_hours > 23 or off_minutes > 59:
            raise ValueError("offset out of range")
        # A leap second (:60) is taken as the second before it.
        local = datetime(year, month, day, hour, minute, min(second, 59), int(fraction))
    except ValueError as exc:
        raise BadRequest(f"{name} is not a valid time: {exc}") from exc
    offset = timedelta(hours=off_hours, minutes=off_minutes)
    try:
        return local - offset if match[9] == "+" else local + offset
    except OverflowError:
        # Within a day of the calendar's ends: as far as it goes, which filters the same.
        return datetime.min if match[9] == "+" else datetime.max
