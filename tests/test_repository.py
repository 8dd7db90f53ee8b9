"""The repository against a real database file: files, the task queue, leases and status."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from tests.db_helpers import Repositories, new_file, open_repository
from uploads_api.db import files as files_module
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
    NewFile,
    Task,
)
from uploads_api.db.tables import utcnow
from uploads_api.db.usage import Quota
from uploads_api.errors import QuotaExceeded
from uploads_api.media.outputs import Thumbnail

# Add "postgresql" here (a URL to a fresh, empty database) to run every test against it too.

Body = Callable[[Repositories], Awaitable[None]]


@pytest.fixture
def with_repo(database_url: str) -> Callable[..., None]:
    def run(body: Body, *, max_attempts: int = 3) -> None:
        async def main() -> None:
            async with open_repository(database_url, max_attempts=max_attempts) as repo:
                await body(repo)

        asyncio.run(main())

    return run


async def add_files(repo: Repositories, count: int, tasks: tuple[str, ...] = ()) -> list[NewFile]:
    files = [new_file() for _ in range(count)]
    for item in files:
        await repo.files.create_files([item], tasks)
    return files


async def task_of(repo: Repositories, file_id: str, name: str) -> Task:
    record = await repo.files.get_file(file_id)
    assert record is not None
    (task,) = [task for task in record.tasks if task.name == name]
    return task


async def all_tasks(repo: Repositories) -> list[Task]:
    return sorted(
        await repo.queue.list_tasks(state=None, limit=10_000, after_id=None), key=lambda t: t.id
    )


# Files ---------------------------------------------------------------------------------------


def test_create_files_inserts_files_and_queued_tasks(with_repo: Callable[..., None]) -> None:
    first, second = new_file(owner="alice"), new_file()

    async def body(repo: Repositories) -> None:
        before = utcnow()
        await repo.files.create_files([first, second], (METADATA, THUMBNAILS, CLEANUP))
        for item in (first, second):
            record = await repo.files.get_file(item.id)
            assert record is not None
            assert (record.id, record.filename, record.content_type) == (
                item.id,
                item.filename,
                item.content_type,
            )
            assert (record.size, record.sha256, record.storage_key, record.owner) == (
                item.size,
                item.sha256,
                item.storage_key,
                item.owner,
            )
            assert record.status == PROCESSING
            assert record.metadata is None
            assert record.thumbnails == []
            assert before <= record.created_at <= utcnow()
            assert [t.name for t in record.tasks] == [METADATA, THUMBNAILS, CLEANUP]
            for task in record.tasks:
                assert (task.file_id, task.state, task.attempts, task.max_attempts) == (
                    item.id,
                    QUEUED,
                    0,
                    repo.files.max_attempts,
                )
                assert task.lease_owner is None
                assert task.error is None
                assert task.run_after <= utcnow()
        assert len(await all_tasks(repo)) == 6

    with_repo(body, max_attempts=5)


def test_a_duplicate_in_the_batch_inserts_nothing(with_repo: Callable[..., None]) -> None:
    good, dup = new_file(), new_file()

    async def body(repo: Repositories) -> None:
        with pytest.raises(IntegrityError):
            await repo.files.create_files([good, dup, dup], (METADATA, THUMBNAILS))
        assert await repo.files.existing_file_ids([good.id, dup.id]) == set()
        assert await all_tasks(repo) == []

    with_repo(body)


def test_a_batch_clashing_with_an_existing_file_inserts_nothing(
    with_repo: Callable[..., None],
) -> None:
    existing, fresh = new_file(), new_file()

    async def body(repo: Repositories) -> None:
        await repo.files.create_files([existing], (METADATA,))
        with pytest.raises(IntegrityError):
            await repo.files.create_files([fresh, existing], (METADATA,))
        assert await repo.files.get_file(fresh.id) is None
        assert [t.file_id for t in await all_tasks(repo)] == [existing.id]

    with_repo(body)


def test_an_empty_batch_is_a_no_op(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        await repo.files.create_files([], (METADATA,))
        assert await repo.files.list_files(limit=10) == ([], None)
        assert await all_tasks(repo) == []

    with_repo(body)


def test_get_file_and_existing_ids(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        a, _b, c = await add_files(repo, 3, (METADATA,))
        missing = secrets.token_hex(16)
        record = await repo.files.get_file(a.id)
        assert record is not None and [t.name for t in record.tasks] == [METADATA]
        assert await repo.files.get_file(missing) is None
        assert await repo.files.existing_file_ids([a.id, missing, c.id]) == {a.id, c.id}
        assert await repo.files.existing_file_ids([]) == set()

    with_repo(body)


def test_existing_file_ids_over_many_ids(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        stored = [new_file() for _ in range(30)]
        await repo.files.create_files(stored, ())
        asked = [secrets.token_hex(16) for _ in range(1200)] + [f.id for f in stored]
        assert await repo.files.existing_file_ids(asked) == {f.id for f in stored}

    with_repo(body)


def flat(pages: list[list[str]]) -> list[str]:
    return [item for page in pages for item in page]


async def collect_pages(repo: Repositories, limit: int, **filters: str) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        records, cursor = await repo.files.list_files(limit=limit, cursor=cursor, **filters)
        pages.append([r.id for r in records])
        assert len(pages) < 50, "the cursor does not advance"
        if cursor is None:
            return pages


@pytest.mark.parametrize(("limit", "sizes"), [(3, [3, 3, 1]), (7, [7]), (10, [7]), (1, [1] * 7)])
def test_list_files_newest_first_with_cursor(
    with_repo: Callable[..., None], limit: int, sizes: list[int]
) -> None:
    async def body(repo: Repositories) -> None:
        files = await add_files(repo, 4)
        batch = [new_file() for _ in range(3)]
        await repo.files.create_files(batch, ())
        pages = await collect_pages(repo, limit)
        assert [len(p) for p in pages] == sizes
        # Within a batch the later part is the newer one.
        assert flat(pages) == [f.id for f in reversed(files + batch)]

    with_repo(body)


def test_list_files_exact_multiple_of_the_limit_ends_without_cursor(
    with_repo: Callable[..., None],
) -> None:
    async def body(repo: Repositories) -> None:
        files = await add_files(repo, 6)
        pages = await collect_pages(repo, 3)
        assert pages == [[f.id for f in reversed(files)][:3], [f.id for f in reversed(files)][3:]]
        assert await repo.files.list_files(limit=3, cursor=None, status=FILE_FAILED) == ([], None)

    with_repo(body)


def test_list_files_pages_through_equal_timestamps(
    with_repo: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = datetime(2024, 5, 6, 7, 8, 9)
    monkeypatch.setattr(files_module, "utcnow", lambda: frozen)

    async def body(repo: Repositories) -> None:
        files = await add_files(repo, 7)  # one per batch: every created_at is equal
        pages = await collect_pages(repo, 3)
        assert [len(p) for p in pages] == [3, 3, 1]
        assert flat(pages) == sorted((f.id for f in files), reverse=True)

    with_repo(body)


def test_list_files_filters(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        shared = b"same bytes"
        twins = [new_file(content=shared) for _ in range(4)]
        for twin in twins:
            await repo.files.create_files([twin], (METADATA,))
        others = await add_files(repo, 3, (METADATA,))
        # Make two twins ready and one other failed.
        finish = {twins[0].id: SUCCEEDED, twins[2].id: SKIPPED, others[1].id: FAILED}
        claimed = await repo.queue.claim_tasks("w", 100, 60)
        for task in claimed:
            if task.file_id in finish:
                assert await repo.queue.finish_task(task, "w", finish[task.file_id], None)
        digest = twins[0].sha256

        assert await collect_pages(repo, 2, sha256=digest) == [
            [twins[3].id, twins[2].id],
            [twins[1].id, twins[0].id],
        ]
        assert flat(await collect_pages(repo, 2, sha256=digest.upper())) == [
            t.id for t in reversed(twins)
        ]
        assert flat(await collect_pages(repo, 1, status=READY)) == [twins[2].id, twins[0].id]
        assert await collect_pages(repo, 5, status=FILE_FAILED) == [[others[1].id]]
        processing = flat(await collect_pages(repo, 2, status=PROCESSING))
        assert processing == [others[2].id, others[0].id, twins[3].id, twins[1].id]
        ready_twins = await collect_pages(repo, 5, status=READY, sha256=digest)
        assert ready_twins == [[twins[2].id, twins[0].id]]
        assert await collect_pages(repo, 5, sha256="0" * 64) == [[]]

    with_repo(body)


@pytest.mark.parametrize("cursor", ["!!!", "bm90LWEtZGF0ZQ", "__8", "x"])
def test_list_files_refuses_a_bad_cursor(with_repo: Callable[..., None], cursor: str) -> None:
    async def body(repo: Repositories) -> None:
        await add_files(repo, 2)
        with pytest.raises(ValueError):
            await repo.files.list_files(limit=1, cursor=cursor)

    with_repo(body)


def test_metadata_is_merged_and_thumbnails_replaced(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1)
        thumbs = [Thumbnail(size=256, width=256, height=100, content_type="image/webp")]
        await repo.files.merge_metadata(item.id, {"kind": "other", "size": item.size})
        await repo.files.merge_metadata(item.id, {"exif": {"Make": "X"}, "kind": "image"})
        assert await repo.files.set_thumbnails(item.id, thumbs, {"thumbhash": "a"})
        assert await repo.files.set_thumbnails(item.id, thumbs[:1], {"thumbhash": "b"})
        assert not await repo.files.set_thumbnails(secrets.token_hex(16), thumbs, {})
        record = await repo.files.get_file(item.id)
        assert record is not None
        assert record.metadata == {
            "kind": "image",
            "size": item.size,
            "exif": {"Make": "X"},
            "thumbhash": "b",
        }
        assert record.thumbnails == thumbs

    with_repo(body)


def test_concurrent_metadata_merges_keep_every_field(with_repo: Callable[..., None]) -> None:
    async def body(repo: Repositories) -> None:
        (item,) = await add_files(repo, 1)
        await asyncio.gather(*(repo.files.merge_metadata(item.id, {f"k{i}": i}) for i in range(20)))
        record = await repo.files.get_file(item.id)
        assert record is not None
        assert record.metadata == {f"k{i}": i for i in range(20)}

    with_repo(body)


def test_a_quota_is_checked_inside_the_insert(with_repo: Callable[..., None]) -> None:
    quota = Quota(owner="alice", max_bytes=None, max_files=3)

    async def body(repo: Repositories) -> None:
        await repo.files.create_files(
            [new_file(owner="alice") for _ in range(2)], (METADATA,), quota
        )
        with pytest.raises(QuotaExceeded):
            await repo.files.create_files(
                [new_file(owner="alice") for _ in range(2)], (METADATA,), quota
            )
        assert await repo.usage.usage("alice") == (2 * 32, 2)  # each test file holds its 32-char id
        assert len(await all_tasks(repo)) == 2
        await repo.files.create_files([new_file(owner="bob") for _ in range(5)], (), None)
        assert (await repo.usage.usage("bob"))[1] == 5

    with_repo(body)


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
