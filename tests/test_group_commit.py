"""Group commit: concurrent uploads share transactions, and each still gets its own outcome."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import IntegrityError, OperationalError

from tests.db_helpers import Repositories, new_file, open_repository
from uploads_api.db.group_commit import GroupCommit
from uploads_api.db.models import METADATA, THUMBNAILS, NewFile


def _group_engine(repo: Repositories) -> Engine:
    """The engine group commits go through: on a SQLite file, the one-trip writer's."""
    one_trip = repo.engines.one_trip
    return one_trip.engine if one_trip is not None else repo.engines.writer.sync_engine


def _count_commits(repo: Repositories) -> list[int]:
    commits = [0]

    @event.listens_for(_group_engine(repo), "commit")
    def _on_commit(_connection: object) -> None:
        commits[0] += 1

    return commits


def test_uploads_arriving_together_share_transactions(database_url: str) -> None:
    async def main() -> None:
        async with open_repository(database_url) as repo:
            commits = _count_commits(repo)
            uploads = [[new_file()] for _ in range(40)]
            results = await asyncio.gather(
                *(repo.files.create_files(files, (METADATA, THUMBNAILS)) for files in uploads)
            )
            # Every caller gets its own records, with its own task rows.
            for files, records in zip(uploads, results, strict=True):
                assert [r.id for r in records] == [nf.id for nf in files]
                assert [t.name for t in records[0].tasks] == [METADATA, THUMBNAILS]
                assert {t.file_id for t in records[0].tasks} == {files[0].id}
            assert len(await repo.files.existing_file_ids(files[0].id for files in uploads)) == 40
            assert 0 < commits[0] < 40, "concurrent uploads were not grouped"

    asyncio.run(main())


def test_a_bad_upload_in_a_group_fails_alone(database_url: str) -> None:
    async def main() -> None:
        async with open_repository(database_url) as repo:
            taken = new_file()
            await repo.files.create_files([taken], (METADATA,))
            good = [[new_file()] for _ in range(5)]
            # The same id again breaks the primary key: only that upload may fail.
            duplicate = NewFile(**{**taken.__dict__, "filename": "again.bin"})
            outcomes = await asyncio.gather(
                *(repo.files.create_files(files, (METADATA,)) for files in good[:3]),
                repo.files.create_files([duplicate], (METADATA,)),
                *(repo.files.create_files(files, (METADATA,)) for files in good[3:]),
                return_exceptions=True,
            )
            assert isinstance(outcomes[3], IntegrityError)
            assert all(isinstance(o, list) for i, o in enumerate(outcomes) if i != 3)
            stored = await repo.files.existing_file_ids(files[0].id for files in good)
            assert len(stored) == 5
            kept = await repo.files.get_file(taken.id)
            assert kept is not None and kept.filename == taken.filename

    asyncio.run(main())


def test_a_cancelled_upload_is_either_written_or_not_and_says_which(database_url: str) -> None:
    async def main() -> None:
        async with open_repository(database_url) as repo:
            uploads = [[new_file()] for _ in range(30)]
            calls = [
                asyncio.create_task(repo.files.create_files(files, (METADATA,)))
                for files in uploads
            ]
            await asyncio.sleep(0)
            for call in calls[::2]:
                call.cancel()
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            stored = await repo.files.existing_file_ids(f[0].id for f in uploads)
            for files, outcome in zip(uploads, outcomes, strict=True):
                # A cancelled caller either saw its records (the write had begun) or a
                # cancellation with nothing written: never a record it was not told of.
                if isinstance(outcome, asyncio.CancelledError):
                    assert files[0].id not in stored
                else:
                    assert isinstance(outcome, list) and files[0].id in stored

    asyncio.run(main())


def test_cancelling_a_written_upload_returns_it_and_a_waiting_one_drops_it(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with open_repository(f"sqlite+aiosqlite:///{tmp_path}/c.db") as repo:
            slow = asyncio.Event()

            assert repo.engines.one_trip is not None

            @event.listens_for(_group_engine(repo), "before_cursor_execute")
            def _hold(*_args: object) -> None:
                # Runs in the driver's thread: holds the transaction open, not the loop.
                if slow.is_set():
                    time.sleep(0.3)

            slow.set()
            in_flight, waiting, after = ([new_file()] for _ in range(3))
            first = asyncio.create_task(repo.files.create_files(in_flight, (METADATA,)))
            await asyncio.sleep(0.1)  # its transaction has begun and is held
            second = asyncio.create_task(repo.files.create_files(waiting, (METADATA,)))
            third = asyncio.create_task(repo.files.create_files(after, (METADATA,)))
            await asyncio.sleep(0)
            first.cancel()
            second.cancel()
            records = await first
            assert [r.id for r in records] == [in_flight[0].id]
            with pytest.raises(asyncio.CancelledError):
                await second
            await third
            slow.clear()
            stored = await repo.files.existing_file_ids([in_flight[0].id, waiting[0].id])
            assert stored == {in_flight[0].id}
            assert await repo.files.get_file(after[0].id) is not None

    asyncio.run(main())


class FakeDatabase:
    """Transactions that count themselves and fail as told."""

    def __init__(self, failure: Exception | None = None, delay: float = 0.01) -> None:
        self.failure = failure
        self.delay = delay
        self.transactions = 0

    async def commit(self, items: list[int]) -> list[int]:
        self.transactions += 1
        await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        return [item * 2 for item in items]


def test_a_database_that_refuses_fails_the_whole_batch_at_once() -> None:
    locked = OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
    database = FakeDatabase(failure=locked)

    async def main() -> None:
        group = GroupCommit(database.commit)
        outcomes = await asyncio.gather(
            *(group.submit(i) for i in range(20)), return_exceptions=True
        )
        assert all(isinstance(o, OperationalError) for o in outcomes)
        # Not retried one by one: a locked database refuses each item the same way.
        assert database.transactions == 1

    asyncio.run(main())


def test_shutting_down_mid_batch_leaves_no_caller_waiting() -> None:
    database = FakeDatabase(delay=0.5)

    async def main() -> None:
        group = GroupCommit(database.commit)
        callers = [asyncio.create_task(group.submit(i)) for i in range(5)]
        await asyncio.sleep(0.1)  # the first batch is in its transaction
        flusher = group._flusher
        assert flusher is not None
        flusher.cancel()
        outcomes = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)

    asyncio.run(main())
