"""Idempotency keys in the database, on SQLite and PostgreSQL: one holder at a time, the
answer recorded with the files or not at all, lapsed holds taken over, the sweep."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from tests.db_helpers import Repositories, new_file, open_repository
from uploads_api.db.idempotency import DONE, RUNNING, Completion, IdempotencyRepository
from uploads_api.db.models import FileRecord
from uploads_api.errors import IdempotencyKeyInProgress

Body = Callable[[Repositories, IdempotencyRepository], Awaitable[None]]
DAY = 86400.0


@pytest.fixture
def with_keys(database_url: str) -> Callable[[Body], None]:
    def run(body: Body) -> None:
        async def main() -> None:
            async with open_repository(database_url) as repo:
                await body(repo, IdempotencyRepository(repo.engines))

        asyncio.run(main())

    return run


def render(records: Sequence[FileRecord]) -> dict[str, Any]:
    return {"files": [{"id": r.id, "size": r.size} for r in records]}


def completion(holder: str, owner: str = "alice", key: str = "k1") -> Completion:
    return Completion(owner, key, holder, "f" * 64, 201, render)


def test_the_first_claim_holds_the_key_and_the_answer_is_recorded_with_the_files(
    with_keys: Callable[[Body], None],
) -> None:
    async def body(repo: Repositories, keys: IdempotencyRepository) -> None:
        assert await keys.claim("alice", "k1", "a", ttl=DAY, lease=60) is None
        held = await keys.claim("alice", "k1", "b", ttl=DAY, lease=60)
        assert held is not None and (held.state, held.holder) == (RUNNING, "a")
        assert await keys.claim("bob", "k1", "b", ttl=DAY, lease=60) is None, "per owner"

        done = completion("a")
        (record,) = await repo.files.create_files([new_file()], (), completion=done)
        assert done.body == {"files": [{"id": record.id, "size": record.size}]}
        stored = await keys.claim("alice", "k1", "c", ttl=DAY, lease=60)
        assert stored is not None
        assert (stored.state, stored.fingerprint, stored.status) == (DONE, "f" * 64, 201)
        assert stored.body == done.body
        await keys.release("alice", "k1", "a")
        assert await keys.claim("alice", "k1", "c", ttl=DAY, lease=60) == stored, "kept"

    with_keys(body)


def test_a_released_key_is_claimed_anew(with_keys: Callable[[Body], None]) -> None:
    async def body(repo: Repositories, keys: IdempotencyRepository) -> None:
        assert await keys.claim("alice", "k1", "a", ttl=DAY, lease=60) is None
        await keys.release("alice", "k1", "a")
        assert await keys.claim("alice", "k1", "b", ttl=DAY, lease=60) is None

    with_keys(body)


def test_a_lapsed_hold_is_taken_over_and_its_files_are_not_recorded(
    with_keys: Callable[[Body], None],
) -> None:
    async def body(repo: Repositories, keys: IdempotencyRepository) -> None:
        assert await keys.claim("alice", "k1", "a", ttl=DAY, lease=0) is None
        assert not await keys.renew("alice", "k1", "b", 60), "only the holder renews"
        assert await keys.claim("alice", "k1", "b", ttl=DAY, lease=60) is None
        late = new_file()
        with pytest.raises(IdempotencyKeyInProgress):
            await repo.files.create_files([late], (), completion=completion("a"))
        assert await repo.files.get_file(late.id) is None, "rolled back with the answer"
        assert await keys.renew("alice", "k1", "b", 60)

    with_keys(body)


def test_a_holder_known_to_be_gone_is_replaced(with_keys: Callable[[Body], None]) -> None:
    async def body(repo: Repositories, keys: IdempotencyRepository) -> None:
        assert await keys.claim("alice", "k1", "dead", ttl=DAY, lease=60) is None
        assert await keys.claim("alice", "k1", "b", ttl=DAY, lease=60, replace="other") is not None
        assert await keys.claim("alice", "k1", "b", ttl=DAY, lease=60, replace="dead") is None

    with_keys(body)


def test_an_expired_answer_no_longer_counts(with_keys: Callable[[Body], None]) -> None:
    async def body(repo: Repositories, keys: IdempotencyRepository) -> None:
        assert await keys.claim("alice", "k1", "a", ttl=0, lease=60) is None
        await repo.files.create_files([new_file()], (), completion=completion("a"))
        assert await keys.claim("alice", "k1", "b", ttl=DAY, lease=60) is None

    with_keys(body)


def test_the_sweep_removes_expired_keys_but_not_one_still_held(
    with_keys: Callable[[Body], None],
) -> None:
    async def body(repo: Repositories, keys: IdempotencyRepository) -> None:
        await keys.claim("alice", "done", "a", ttl=0, lease=60)
        await repo.files.create_files([new_file()], (), completion=completion("a", key="done"))
        await keys.claim("alice", "lapsed", "a", ttl=0, lease=0)
        await keys.claim("alice", "held", "a", ttl=0, lease=60)
        await keys.claim("alice", "young", "a", ttl=DAY, lease=0)
        assert await keys.remove_expired() == 2
        assert await keys.claim("alice", "held", "b", ttl=DAY, lease=60) is not None
        assert await keys.claim("alice", "young", "b", ttl=DAY, lease=60) is None, "lapsed"

    with_keys(body)


def test_requests_racing_for_a_new_key_leave_one_holder(
    with_keys: Callable[[Body], None],
) -> None:
    async def body(repo: Repositories, keys: IdempotencyRepository) -> None:
        claims = await asyncio.gather(
            *(keys.claim("alice", "race", f"h{i}", ttl=DAY, lease=60) for i in range(6))
        )
        assert sum(claim is None for claim in claims) == 1
        holders = {claim.holder for claim in claims if claim is not None}
        assert len(holders) == 1

    with_keys(body)
