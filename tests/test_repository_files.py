"""The repository against a real database: files created with their tasks, read, listed a
page at a time and filtered, their metadata and thumbnails, and the quota."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import datetime

import pytest
from sqlalchemy.exc import IntegrityError

from tests.db_helpers import Repositories, new_file
from tests.repository_helpers import add_files, all_tasks
from uploads_api.db import files as files_module
from uploads_api.db.models import (
    CLEANUP,
    FAILED,
    FILE_FAILED,
    METADATA,
    PROCESSING,
    QUEUED,
    READY,
    SKIPPED,
    SUCCEEDED,
    THUMBNAILS,
)
from uploads_api.db.tables import utcnow
from uploads_api.db.usage import Quota
from uploads_api.errors import QuotaExceeded
from uploads_api.media.outputs import Thumbnail

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
