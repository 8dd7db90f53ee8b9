"""The task queue against a real database: claims, leases that lapse, are renewed or run
out, the cleanup that waits for a file's other tasks, and two repositories that never claim
the same task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from tests.db_helpers import Repositories, new_file, open_repository
from tests.repository_helpers import add_files, task_of
from uploads_api.db.models import (
    CLEANUP,
    FAILED,
    FILE_FAILED,
    METADATA,
    PROCESSING,
    READY,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    THUMBNAILS,
)
from uploads_api.db.tables import utcnow

# Claims and leases ----------------------------------------------------------------------------


def test_claim_takes_at_most_limit_and_marks_rows_running(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        files = await add_files(repo, 5, (METADATA,))
        before = utcnow()
        first = await repo.queue.claim_tasks("worker-a", 3, 30)
        after = utcnow()
        assert len(first) == 3
        for task in first:
            assert (task.state, task.attempts, task.lease_owner) == (RUNNING, 1, "worker-a")
            assert task.lease_until is not None
            assert task.started_at is not None
            assert (
                before + timedelta(seconds=30) <= task.lease_until <= after + timedelta(seconds=30)
            )
            assert before <= task.started_at <= after
            assert task.finished_at is None
            stored = await task_of(repo, task.file_id or "", METADATA)
            assert stored == task
            assert await repo.status_of(task.file_id or "") == PROCESSING
        # Oldest first.
        assert [t.file_id for t in first] == [f.id for f in files[:3]]

        second = await repo.queue.claim_tasks("worker-b", 3, 30)
        assert [t.file_id for t in second] == [f.id for f in files[3:]]
        assert {t.lease_owner for t in second} == {"worker-b"}
        assert await repo.queue.claim_tasks("worker-c", 3, 30) == []
        assert {t.id for t in first}.isdisjoint(t.id for t in second)

    with_repo(body)


def test_a_lapsed_lease_is_claimable_again(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1, (METADATA,))
        (lost,) = await repo.queue.claim_tasks("dead-worker", 10, 0.05)
        assert await repo.queue.claim_tasks("other", 10, 30) == []  # the lease still holds
        await asyncio.sleep(0.1)
        (taken,) = await repo.queue.claim_tasks("other", 10, 30)
        assert taken.id == lost.id
        assert taken.lease_owner == "other"
        assert taken.attempts == 2
        # The first worker wakes up: its lease is gone, so its result is refused.
        assert not await repo.queue.finish_task(lost, "dead-worker", SUCCEEDED, None)
        assert (await task_of(repo, item.id, METADATA)).state == RUNNING
        assert await repo.queue.finish_task(taken, "other", SUCCEEDED, None)
        assert await repo.status_of(item.id) == READY

    with_repo(body)


def test_renew_leases_extends_only_the_owners_rows(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        await add_files(repo, 2, (METADATA,))
        # Leases long enough that a slow machine cannot let one lapse between the claims.
        (mine,) = await repo.queue.claim_tasks("me", 1, 1.0)
        (theirs,) = await repo.queue.claim_tasks("them", 1, 1.0)
        await repo.queue.renew_leases("me", [mine.id, theirs.id], 30)
        await repo.queue.renew_leases("me", [], 30)
        await asyncio.sleep(1.1)
        (stolen,) = await repo.queue.claim_tasks("thief", 10, 30)
        assert stolen.id == theirs.id

    with_repo(body)


def test_exhausted_leases_fail_instead_of_running_again(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1, (METADATA,))
        for attempt in (1, 2):
            (task,) = await repo.queue.claim_tasks(f"worker-{attempt}", 10, 0.02)
            assert task.attempts == attempt
            await asyncio.sleep(0.05)
        assert await repo.queue.fail_exhausted_leases() == []  # one attempt left
        (task,) = await repo.queue.claim_tasks("worker-3", 10, 0.02)
        assert task.attempts == 3
        assert await repo.queue.fail_exhausted_leases() == []  # its lease still holds
        await asyncio.sleep(0.05)
        assert await repo.queue.claim_tasks("worker-4", 10, 30) == []
        (failed,) = await repo.queue.fail_exhausted_leases()
        assert (failed.id, failed.state, failed.lease_owner) == (task.id, FAILED, None)
        assert failed.error == "the worker stopped while running this task"
        assert failed.finished_at is not None
        assert await repo.status_of(item.id) == FILE_FAILED
        assert await repo.queue.fail_exhausted_leases() == []

    with_repo(body)


def test_cleanup_waits_for_the_files_other_tasks(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1, (METADATA, THUMBNAILS, CLEANUP))
        await repo.queue.enqueue_sweep()
        claimed = await repo.queue.claim_tasks("w", 10, 30)
        # The sweep belongs to no file, so it never waits.
        assert sorted((t.name, t.file_id) for t in claimed) == [
            (CLEANUP, None),
            (METADATA, item.id),
            (THUMBNAILS, item.id),
        ]
        by_name = {t.name: t for t in claimed if t.file_id}
        assert await repo.queue.finish_task(by_name[METADATA], "w", SUCCEEDED, None)
        assert await repo.queue.claim_tasks("w", 10, 30) == []  # thumbnails still running
        assert await repo.queue.requeue_task(by_name[THUMBNAILS], "w", 0, "again")
        (again,) = await repo.queue.claim_tasks("w", 10, 30)
        assert again.name == THUMBNAILS  # queued siblings hold the cleanup back too
        assert await repo.queue.finish_task(again, "w", SKIPPED, "not an image")
        (cleanup,) = await repo.queue.claim_tasks("w", 10, 30)
        assert (cleanup.name, cleanup.file_id) == (CLEANUP, item.id)

    with_repo(body)


# Concurrency ---------------------------------------------------------------------------------


def test_two_repositories_never_claim_the_same_task(database_url: str) -> None:
    async def drain(repo: Repositories, worker: str) -> list[int]:
        taken: list[int] = []
        while batch := await repo.queue.claim_tasks(worker, 3, 60):
            taken += [t.id for t in batch]
            await asyncio.sleep(0)
        return taken

    async def main() -> None:
        async with (
            open_repository(database_url) as first,
            open_repository(database_url) as second,
        ):
            files = [new_file() for _ in range(30)]
            await first.files.create_files(files, (METADATA, THUMBNAILS))
            results = await asyncio.gather(
                drain(first, "a1"), drain(second, "b1"), drain(first, "a2"), drain(second, "b2")
            )
            claimed = [task_id for result in results for task_id in result]
            assert len(claimed) == len(set(claimed)) == 60
            assert results[0] + results[2], "the first repository took work"
            assert results[1] + results[3], "the second repository took work"
            rows = await first.queue.list_tasks(state=RUNNING, limit=100, after_id=None)
            assert {t.id for t in rows} == set(claimed)
            assert all(t.attempts == 1 for t in rows)

    asyncio.run(main())
