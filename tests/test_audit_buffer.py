"""The audit log without a server: the buffered writer over a real SQLite database (a
flush at stop, a full batch, a database down and then up, the cap, failed authentications
merged per address and minute), ``Auditor.record`` and RFC 3339 times."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import held_by_another_process
from uploads_api.auth import Principal
from uploads_api.db.audit import AuditFilter, AuditRepository
from uploads_api.db.audit_buffer import AuditBuffer
from uploads_api.db.engine import Engines, create_engines
from uploads_api.db.models import AuditEntry
from uploads_api.db.schema import ensure_schema
from uploads_api.db.tables import utcnow
from uploads_api.errors import BadRequest
from uploads_api.services.audit import Auditor, parse_time

# The buffered writer ------------------------------------------------------------------------


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'uploads.db'}"


async def _repository(url: str, *, busy_timeout: float = 30.0) -> tuple[Engines, AuditRepository]:
    engines = create_engines(url, busy_timeout=busy_timeout)
    await ensure_schema(engines)
    return engines, AuditRepository(engines)


async def _stored(repository: AuditRepository) -> list[AuditEntry]:
    entries, _ = await repository.list_entries(AuditFilter(), limit=1000)
    return entries


_MINUTE = timedelta(minutes=1)


def _entry(n: int, **fields: Any) -> AuditEntry:
    return AuditEntry(
        **{"at": utcnow(), "action": "file.uploaded", "file_id": f"{n:032x}", **fields}
    )


def test_stop_writes_what_waits(database_url: str) -> None:
    async def main() -> None:
        engines, repository = await _repository(database_url)
        try:
            buffer = AuditBuffer(repository, interval=60)
            buffer.start()
            for n in range(3):
                buffer.add(_entry(n))
            await asyncio.sleep(0.1)
            assert await _stored(repository) == [], "nothing is written before the interval"
            await buffer.stop()
            assert sorted(e.file_id or "" for e in await _stored(repository)) == [
                f"{n:032x}" for n in range(3)
            ]
            assert buffer.pending == 0
        finally:
            await engines.dispose()

    asyncio.run(main())


def test_a_full_batch_is_written_before_the_interval(tmp_path: Path) -> None:
    async def main() -> None:
        engines, repository = await _repository(_sqlite(tmp_path))
        try:
            buffer = AuditBuffer(repository, interval=60, batch=10)
            buffer.start()
            for n in range(10):
                buffer.add(_entry(n))
            async with asyncio.timeout(5):
                while len(await _stored(repository)) < 10:
                    await asyncio.sleep(0.05)
            await buffer.stop()
            assert len(await _stored(repository)) == 10
        finally:
            await engines.dispose()

    asyncio.run(main())


def test_a_database_that_is_down_then_up_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "uploads_api.db.audit_buffer")
    at = utcnow()

    async def main() -> None:
        engines, repository = await _repository(_sqlite(tmp_path), busy_timeout=0.3)
        try:
            buffer = AuditBuffer(repository, interval=0.1)
            with held_by_another_process(tmp_path / "uploads.db.writer-lock") as holder:
                buffer.start()
                buffer.add(_entry(1))
                for _ in range(3):
                    buffer.add(AuditEntry(at=at, action="auth.failed", address="192.0.2.7"))
                await asyncio.sleep(1.0)
                assert buffer.pending == 2, "kept: one entry and one tally"
                buffer.add(_entry(2))
                buffer.add(AuditEntry(at=at, action="auth.failed", address="192.0.2.7", count=2))
                holder.kill()
                holder.wait()
            async with asyncio.timeout(10):
                while buffer.pending:
                    await asyncio.sleep(0.05)
            await buffer.stop()
            stored = await _stored(repository)
            assert sorted(e.file_id for e in stored if e.file_id) == [f"{1:032x}", f"{2:032x}"]
            failures = [e for e in stored if e.action == "auth.failed"]
            assert [(e.address, e.count) for e in failures] == [("192.0.2.7", 5)]
        finally:
            await engines.dispose()

    asyncio.run(main())
    assert any("kept for the next try" in r.getMessage() for r in caplog.records)


def test_the_buffer_keeps_the_newest_when_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "uploads_api.db.audit_buffer")

    async def main() -> None:
        engines, repository = await _repository(_sqlite(tmp_path))
        try:
            buffer = AuditBuffer(repository, limit=5)
            for n in range(8):
                buffer.add(_entry(n))
            assert (buffer.pending, buffer.dropped) == (5, 3)
            await buffer.stop()
            kept = sorted(e.file_id or "" for e in await _stored(repository))
            assert kept == [f"{n:032x}" for n in range(3, 8)]
        finally:
            await engines.dispose()

    asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if "audit buffer full" in r.getMessage()]
    assert len(warnings) == 1, "one warning, not one per entry dropped"


def test_failures_merge_with_the_row_another_process_wrote(database_url: str) -> None:
    minute = utcnow().replace(second=0, microsecond=0)

    async def main() -> None:
        engines, repository = await _repository(database_url)
        try:
            # Another process's row of this minute, and one of the minute before.
            await repository.write(
                [
                    AuditEntry(
                        at=minute + timedelta(seconds=5),
                        action="auth.failed",
                        address="192.0.2.1",
                        count=3,
                    ),
                    AuditEntry(
                        at=minute - timedelta(seconds=1),
                        action="auth.failed",
                        address="192.0.2.1",
                        count=7,
                    ),
                ]
            )
            buffer = AuditBuffer(repository)
            for second in (10, 50):
                buffer.add(
                    AuditEntry(
                        at=minute + timedelta(seconds=second),
                        action="auth.failed",
                        address="192.0.2.1",
                    )
                )
            buffer.add(
                AuditEntry(
                    at=minute + timedelta(seconds=59), action="auth.failed", address="192.0.2.2"
                )
            )
            assert buffer.pending == 2, "counted per address and minute in memory"
            await buffer.stop()
            stored = await _stored(repository)
            counts = sorted((e.address or "", e.at, e.count) for e in stored)
            assert counts == [
                ("192.0.2.1", minute - timedelta(seconds=1), 7),
                ("192.0.2.1", minute + timedelta(seconds=5), 5),
                ("192.0.2.2", minute + timedelta(seconds=59), 1),
            ]
        finally:
            await engines.dispose()

    asyncio.run(main())


def test_pages_filters_and_removal_by_age(database_url: str) -> None:
    start = datetime(2026, 3, 1, 12)
    # Two rows share a time: the id orders them.
    times = [start + timedelta(seconds=n) for n in (0, 1, 1, 2, 3, 4, 5)]

    async def main() -> None:
        engines, repository = await _repository(database_url)
        try:
            await repository.write(
                [
                    _entry(n, at=at, owner="even" if n % 2 == 0 else "odd", detail={"n": n})
                    for n, at in enumerate(times)
                ]
                + [AuditEntry(at=start, action="key.created", owner="even")]
            )
            everything, cursor = await repository.list_entries(AuditFilter(), limit=100)
            assert cursor is None and len(everything) == 8
            order = [(e.at, e.id or 0) for e in everything]
            assert order == sorted(order, reverse=True)
            assert everything[0].detail == {"n": 6}

            paged: list[AuditEntry] = []
            cursor = None
            while True:
                page, cursor = await repository.list_entries(
                    AuditFilter(action="file.uploaded"), limit=3, cursor=cursor
                )
                paged += page
                if cursor is None:
                    break
            assert [e.detail for e in paged] == [{"n": n} for n in range(6, -1, -1)]

            window = AuditFilter(owner="even", since=times[1], until=times[5])
            chosen, _ = await repository.list_entries(window, limit=100)
            assert [e.detail for e in chosen] == [{"n": 4}, {"n": 2}]

            assert await repository.delete_before(times[3]) == 4
            left, _ = await repository.list_entries(AuditFilter(), limit=100)
            assert sorted(e.at for e in left) == times[3:]
        finally:
            await engines.dispose()

    asyncio.run(main())


def test_a_minute_ends_a_failure_row(database_url: str) -> None:
    minute = datetime(2026, 3, 1, 12, 7)

    async def main() -> None:
        engines, repository = await _repository(database_url)
        try:
            for at in (minute + timedelta(seconds=59, microseconds=999_999), minute + _MINUTE):
                await repository.write([AuditEntry(at=at, action="auth.failed", address="::1")])
                await repository.write([AuditEntry(at=at, action="auth.failed", address="::1")])
            stored = await _stored(repository)
            assert sorted((e.at, e.count) for e in stored) == [
                (minute + timedelta(seconds=59, microseconds=999_999), 2),
                (minute + _MINUTE, 2),
            ]
        finally:
            await engines.dispose()

    asyncio.run(main())


def test_record_takes_the_callers_owner_key_and_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "uploads_api.audit")

    async def main() -> None:
        engines, repository = await _repository(_sqlite(tmp_path))
        try:
            buffer = AuditBuffer(repository)
            auditor = Auditor(buffer, repository)
            caller = Principal(owner="dana", admin=False, key_id=7, address="198.51.100.4")
            auditor.record("webhook.created", caller, detail={"endpoint": "wh_1"})
            auditor.record("webhook.deleted", None, owner="dana", detail={"endpoint": "wh_1"})
            with pytest.raises(ValueError, match="unknown audit action"):
                auditor.record("webhook.eaten", caller)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                auditor.record("webhook.updated", caller, detail={"when": datetime.now()})
            assert buffer.pending == 2, "neither refused action was queued"
            await buffer.stop()
            created, deleted = sorted(await _stored(repository), key=lambda e: e.id or 0)
            assert (created.owner, created.address, created.detail) == (
                "dana",
                "198.51.100.4",
                {"key_id": 7, "endpoint": "wh_1"},
            )
            assert (deleted.owner, deleted.address, deleted.detail) == (
                "dana",
                None,
                {"endpoint": "wh_1"},
            )
        finally:
            await engines.dispose()

    asyncio.run(main())
    (line, _) = [r for r in caplog.records if r.name == "uploads_api.audit"]
    assert (line.__dict__["action"], line.__dict__["owner"], line.__dict__["count"]) == (
        "webhook.created",
        "dana",
        1,
    )


# RFC 3339 times ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T12:00:00Z", datetime(2026, 1, 31, 12)),
        ("2026-01-31t12:00:00z", datetime(2026, 1, 31, 12)),
        ("2026-01-31T14:30:00.5+02:30", datetime(2026, 1, 31, 12, 0, 0, 500000)),
        ("2026-01-31T12:00:00.1234567-01:00", datetime(2026, 1, 31, 13, 0, 0, 123456)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59)),
        ("0001-01-01T00:00:00+01:00", datetime.min),
        ("9999-12-31T23:59:59-01:00", datetime.max),
    ],
)
def test_rfc3339_times(text: str, expected: datetime) -> None:
    assert parse_time("since", text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-31",
        "2026-01-31T12:00:00",
        "2026-01-31 12:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-01T00:00:00+24:00",
        "soon",
    ],
)
def test_not_rfc3339_times(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_time("since", text)
