"""The task queue against a real database: finishing, requeueing and retrying runs and the
file status that follows them, deleting a file under a running task, the sweep, the queue's
stats and its listing."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import pytest

from tests.db_helpers import Repositories
from tests.repository_helpers import add_files, all_tasks, task_of
from uploads_api.db.models import (
    CLEANUP,
    FAILED,
    FILE_FAILED,
    METADATA,
    PROCESSING,
    QUEUED,
    READY,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    THUMBNAILS,
)

# Finishing runs and the file status -----------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ((SUCCEEDED, SUCCEEDED), READY),
        ((SUCCEEDED, SKIPPED), READY),
        ((SKIPPED, SKIPPED), READY),
        ((FAILED, SUCCEEDED), FILE_FAILED),
        ((SKIPPED, FAILED), FILE_FAILED),
        ((SUCCEEDED, None), PROCESSING),
        ((FAILED, None), PROCESSING),
        ((None, None), PROCESSING),
    ],
)
def test_file_status_follows_its_tasks(
    with_repo: Callable[..., None], outcomes: tuple[str | None, str | None], expected: str
) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1, (METADATA, THUMBNAILS))
        claimed = sorted(await repo.queue.claim_tasks("w", 10, 30), key=lambda t: t.name)
        assert [t.name for t in claimed] == [METADATA, THUMBNAILS]
        for task, outcome in zip(claimed, outcomes, strict=True):
            if outcome is not None:
                error = "boom" if outcome == FAILED else None
                assert await repo.queue.finish_task(task, "w", outcome, error)
        assert await repo.status_of(item.id) == expected
        record = await repo.files.get_file(item.id)
        assert record is not None
        assert record.status == expected
        for task, outcome in zip(record.tasks, outcomes, strict=True):
            assert task.state == (outcome or RUNNING)
            assert (task.finished_at is not None) == (outcome is not None)
            assert (task.lease_owner is None) == (outcome is not None)
            assert task.error == ("boom" if outcome == FAILED else None)

    with_repo(body)


def test_finish_task_with_the_wrong_worker_changes_nothing(
    with_repo: Callable[..., None],
) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1, (METADATA,))
        (task,) = await repo.queue.claim_tasks("owner", 10, 30)
        assert not await repo.queue.finish_task(task, "intruder", FAILED, "nope")
        assert not await repo.queue.requeue_task(task, "intruder", 0, "nope")
        stored = await task_of(repo, item.id, METADATA)
        assert (stored.state, stored.lease_owner, stored.error) == (RUNNING, "owner", None)
        assert await repo.queue.finish_task(task, "owner", SUCCEEDED, None)
        assert not await repo.queue.finish_task(task, "owner", FAILED, "twice")  # already ended
        assert (await task_of(repo, item.id, METADATA)).state == SUCCEEDED

    with_repo(body)


def test_requeue_with_a_delay(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1, (METADATA,))
        (task,) = await repo.queue.claim_tasks("w", 10, 30)
        assert await repo.queue.requeue_task(task, "w", 0.3, "try later")
        stored = await task_of(repo, item.id, METADATA)
        assert (stored.state, stored.attempts, stored.error) == (QUEUED, 1, "try later")
        assert stored.lease_owner is None
        assert await repo.status_of(item.id) == PROCESSING
        assert await repo.queue.claim_tasks("w", 10, 30) == []
        await asyncio.sleep(0.35)
        (again,) = await repo.queue.claim_tasks("w", 10, 30)
        assert (again.id, again.attempts) == (task.id, 2)

    with_repo(body)


def test_requeue_with_refund_gives_the_attempt_back(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1, (METADATA,))
        (task,) = await repo.queue.claim_tasks("w", 10, 30)
        assert await repo.queue.requeue_task(task, "w", 0, None, refund=True)
        stored = await task_of(repo, item.id, METADATA)
        assert (stored.state, stored.attempts, stored.error) == (QUEUED, 0, None)
        (again,) = await repo.queue.claim_tasks("w", 10, 30)
        assert again.attempts == 1

    with_repo(body)


def test_retry_file_requeues_failed_tasks_with_a_fresh_budget(
    with_repo: Callable[..., None],
) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1, (METADATA, THUMBNAILS, CLEANUP))
        (other,) = await add_files(repo, 1, (METADATA,))
        for task in await repo.queue.claim_tasks("w", 10, 30):
            if task.name == THUMBNAILS:
                assert await repo.queue.finish_task(task, "w", SUCCEEDED, None)
            else:
                assert await repo.queue.finish_task(task, "w", FAILED, "broken")
        (cleanup,) = await repo.queue.claim_tasks("w", 10, 30)
        assert await repo.queue.finish_task(cleanup, "w", SUCCEEDED, None)
        assert await repo.status_of(item.id) == FILE_FAILED

        assert await repo.files.retry_file(item.id) == 1
        metadata_task = await task_of(repo, item.id, METADATA)
        assert (metadata_task.state, metadata_task.attempts) == (QUEUED, 0)
        assert metadata_task.error is None
        assert metadata_task.finished_at is None
        assert (await task_of(repo, item.id, THUMBNAILS)).state == SUCCEEDED
        # The retried run leaves scratch files too, so the cleanup runs again after it.
        requeued_cleanup = await task_of(repo, item.id, CLEANUP)
        assert (requeued_cleanup.state, requeued_cleanup.attempts) == (QUEUED, 0)
        assert await repo.status_of(item.id) == PROCESSING
        assert await repo.status_of(other.id) == FILE_FAILED, "other files are untouched"
        assert (await task_of(repo, other.id, METADATA)).state == FAILED
        assert await repo.files.retry_file(item.id) == 0
        (again,) = await repo.queue.claim_tasks("w", 10, 30)
        assert (again.id, again.attempts) == (metadata_task.id, 1)
        assert await repo.queue.finish_task(again, "w", SUCCEEDED, None)
        (cleanup_again,) = await repo.queue.claim_tasks("w", 10, 30)
        assert cleanup_again.id == cleanup.id
        assert await repo.queue.finish_task(cleanup_again, "w", SUCCEEDED, None)
        assert await repo.status_of(item.id) == READY

    with_repo(body)


def test_retry_file_with_nothing_failed_changes_nothing(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1, (METADATA, CLEANUP))
        (task,) = await repo.queue.claim_tasks("w", 10, 30)
        assert await repo.queue.finish_task(task, "w", SUCCEEDED, None)
        (cleanup,) = await repo.queue.claim_tasks("w", 10, 30)
        assert await repo.queue.finish_task(cleanup, "w", SUCCEEDED, None)
        assert await repo.files.retry_file(item.id) == 0
        assert [t.state for t in await all_tasks(repo)] == [SUCCEEDED, SUCCEEDED]
        assert await repo.status_of(item.id) == READY
        assert await repo.files.retry_file(secrets.token_hex(16)) == 0

    with_repo(body)


def test_delete_file_keeps_running_tasks_and_queues_a_cleanup(
    with_repo: Callable[..., None],
) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1, (METADATA, THUMBNAILS, CLEANUP))
        (bystander,) = await add_files(repo, 1, (METADATA,))
        (running,) = await repo.queue.claim_tasks("w", 1, 30)
        assert running.file_id == item.id
        payload = {"deleted": True, "storage_key": item.storage_key, "thumbnail_prefix": "t/x"}

        assert await repo.files.delete_file(item.id, payload)
        assert await repo.files.get_file(item.id) is None
        left = [t for t in await all_tasks(repo) if t.file_id == item.id]
        assert [(t.id, t.state) for t in left[:1]] == [(running.id, RUNNING)]
        (cleanup,) = left[1:]
        assert (cleanup.name, cleanup.state, cleanup.payload) == (CLEANUP, QUEUED, payload)
        assert [t.file_id for t in await all_tasks(repo) if t.name == METADATA] == [
            item.id,
            bystander.id,
        ]

        # The cleanup waits for the run that was already going.
        claimed = await repo.queue.claim_tasks("w", 10, 30)
        assert [t.file_id for t in claimed] == [bystander.id]
        assert await repo.queue.finish_task(running, "w", SUCCEEDED, None)
        (claimed_cleanup,) = await repo.queue.claim_tasks("w", 10, 30)
        assert claimed_cleanup.id == cleanup.id

        assert not await repo.files.delete_file(item.id, payload)
        assert not await repo.files.delete_file(secrets.token_hex(16), payload)
        assert len([t for t in await all_tasks(repo) if t.name == CLEANUP]) == 1

    with_repo(body)


def test_enqueue_sweep_is_idempotent_while_one_is_pending(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        assert await repo.queue.enqueue_sweep()
        assert not await repo.queue.enqueue_sweep()
        (sweep,) = await repo.queue.claim_tasks("w", 10, 30)
        assert (sweep.name, sweep.file_id, sweep.payload) == (CLEANUP, None, {"sweep": True})
        assert not await repo.queue.enqueue_sweep()  # still running
        assert await repo.queue.finish_task(sweep, "w", SUCCEEDED, None)
        assert await repo.queue.enqueue_sweep()
        assert len(await repo.queue.list_tasks(state=QUEUED, limit=10, after_id=None)) == 1

    with_repo(body)


def test_queue_stats(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        assert await repo.queue.queue_stats() == (0, None)
        await add_files(repo, 2, (METADATA, THUMBNAILS))
        await asyncio.sleep(0.05)
        count, oldest = await repo.queue.queue_stats()
        assert count == 4
        assert oldest is not None
        assert 0.05 <= oldest < 30
        await repo.queue.claim_tasks("w", 3, 30)
        assert (await repo.queue.queue_stats())[0] == 1

    with_repo(body)


def test_list_tasks_filters_and_pages(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        await add_files(repo, 3, (METADATA, THUMBNAILS))
        claimed = await repo.queue.claim_tasks("w", 2, 30)
        everything = await repo.queue.list_tasks(state=None, limit=100, after_id=None)
        assert [t.id for t in everything] == sorted((t.id for t in everything), reverse=True)
        running = await repo.queue.list_tasks(state=RUNNING, limit=100, after_id=None)
        assert {t.id for t in running} == {t.id for t in claimed}
        page = await repo.queue.list_tasks(state=None, limit=2, after_id=everything[1].id)
        assert [t.id for t in page] == [t.id for t in everything[2:4]]

    with_repo(body)
