"""The outbox against a real database: each change writes its event in its own
transaction (none for one that rolled back), rendered as the API answers, with one
delivery per endpoint that takes it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.db_helpers import Repositories, new_file, open_repository
from uploads_api.db.deliveries import DeliveryRepository
from uploads_api.db.models import CLEANUP, FAILED, METADATA, SUCCEEDED, THUMBNAILS
from uploads_api.db.tables import events, utcnow, webhook_deliveries
from uploads_api.db.usage import Quota
from uploads_api.db.webhooks import EndpointRepository
from uploads_api.errors import QuotaExceeded
from uploads_api.file_json import render_file

Body = Callable[[Repositories], Awaitable[None]]
TASKS = (METADATA, THUMBNAILS, CLEANUP)


@pytest.fixture
def with_repo(database_url: str) -> Callable[[Body], None]:
    def run(body: Body) -> None:
        async def main() -> None:
            async with open_repository(database_url) as repo:
                await body(repo)

        asyncio.run(main())

    return run


async def stored_events(repo: Repositories) -> list[dict[str, Any]]:
    async with repo.engines.reader.connect() as conn:
        rows = await conn.execute(select(events).order_by(events.c.seq))
        return [dict(row._mapping) for row in rows]


async def stored_deliveries(repo: Repositories) -> list[tuple[str, str]]:
    d = webhook_deliveries
    async with repo.engines.reader.connect() as conn:
        rows = await conn.execute(select(d.c.endpoint_id, d.c.event_id).order_by(d.c.id))
        return [(row.endpoint_id, row.event_id) for row in rows]


async def finish_all(repo: Repositories, state: str = SUCCEEDED) -> None:
    """Run every runnable task (a file's cleanup comes after the others), thumbnails ending
    as ``state``."""
    while claimed := await repo.queue.claim_tasks("worker", 100, 60):
        for task in claimed:
            outcome = state if task.name == THUMBNAILS else SUCCEEDED
            error = "broken" if outcome == FAILED else None
            await repo.queue.finish_task(task, "worker", outcome, error)


def test_each_change_writes_its_event_with_the_record_as_the_api_answers(
    with_repo: Callable[[Body], None],
) -> None:
    async def body(repo: Repositories) -> None:
        woken: list[int] = []
        repo.files.events.subscribe(events=lambda: woken.append(1))
        first, second = new_file(owner="alice"), new_file(owner="alice")
        created = await repo.files.create_files([first, second], TASKS)
        assert len(woken) == 1
        stored = await stored_events(repo)
        assert [(e["type"], e["file_id"]) for e in stored] == [
            ("file.created", first.id),
            ("file.created", second.id),
        ]
        assert stored[0]["payload"]["data"] == render_file(created[0])
        assert stored[0]["owner"] == "alice" and stored[0]["id"].startswith("msg_")

        await finish_all(repo)
        ready = await repo.files.get_file(first.id)
        assert ready is not None and ready.status == "ready"
        stored = await stored_events(repo)
        assert sorted(e["type"] for e in stored[2:]) == ["file.ready", "file.ready"]
        (first_ready,) = [e for e in stored[2:] if e["file_id"] == first.id]
        assert first_ready["payload"]["data"] == render_file(ready)
        assert first_ready["payload"]["timestamp"].endswith("Z")

        assert await repo.files.delete_file(first.id, {"storage_key": first.storage_key})
        deleted = (await stored_events(repo))[-1]
        assert (deleted["type"], deleted["payload"]["data"]) == ("file.deleted", render_file(ready))
        assert len({e["id"] for e in await stored_events(repo)}) == 5

    with_repo(body)


def test_a_failed_file_writes_file_failed_and_nothing_else_repeats(
    with_repo: Callable[[Body], None],
) -> None:
    async def body(repo: Repositories) -> None:
        item = new_file()
        await repo.files.create_files([item], TASKS)
        await finish_all(repo, state=FAILED)
        final = [e for e in await stored_events(repo) if e["type"] != "file.created"]
        assert [e["type"] for e in final] == ["file.failed"]
        tasks = final[0]["payload"]["data"]["tasks"]
        assert [(t["name"], t["error"]) for t in tasks if t["state"] == "failed"] == [
            (THUMBNAILS, "broken")
        ]
        # Retrying makes it processing again: no event; succeeding then is file.ready.
        assert await repo.files.retry_file(item.id) == 1
        await finish_all(repo)
        kinds = [e["type"] for e in await stored_events(repo)]
        assert kinds == ["file.created", "file.failed", "file.ready"]

    with_repo(body)


def test_a_file_with_nothing_to_do_is_created_and_ready_at_once(
    with_repo: Callable[[Body], None],
) -> None:
    async def body(repo: Repositories) -> None:
        await repo.files.create_files([new_file()], ())
        assert [e["type"] for e in await stored_events(repo)] == ["file.created", "file.ready"]

    with_repo(body)


def test_a_change_that_rolls_back_leaves_no_event(with_repo: Callable[[Body], None]) -> None:
    async def body(repo: Repositories) -> None:
        quota = Quota(owner="alice", max_bytes=None, max_files=1)
        await repo.files.create_files([new_file(owner="alice")], TASKS, quota)
        with pytest.raises(QuotaExceeded):
            await repo.files.create_files([new_file(owner="alice")], TASKS, quota)
        assert [e["type"] for e in await stored_events(repo)] == ["file.created"]
        assert not await repo.files.delete_file("0" * 32, {})
        assert len(await stored_events(repo)) == 1

    with_repo(body)


def test_deliveries_go_to_the_endpoints_that_take_the_event(
    with_repo: Callable[[Body], None],
) -> None:
    async def body(repo: Repositories) -> None:
        endpoints = EndpointRepository(repo.engines)
        alice_all = await endpoints.create("alice", "https://a.example/", ["file.created"], "")
        alice_ready = await endpoints.create("alice", "https://a.example/r", ["file.ready"], "")
        every_owner = await endpoints.create(None, "https://ops.example/", ["file.created"], "")
        bob = await endpoints.create("bob", "https://b.example/", ["file.created"], "")
        off = await endpoints.create("alice", "https://off.example/", ["file.created"], "")
        await endpoints.update(off.id, {"enabled": False})
        await repo.files.create_files([new_file(owner="alice")], TASKS)
        (event,) = await stored_events(repo)
        assert sorted(await stored_deliveries(repo)) == sorted(
            [(alice_all.id, event["id"]), (every_owner.id, event["id"])]
        )
        assert alice_ready.id and bob.id

    with_repo(body)


def test_the_sweep_drops_old_events_but_not_one_still_being_delivered(
    with_repo: Callable[[Body], None],
) -> None:
    async def body(repo: Repositories) -> None:
        endpoints = EndpointRepository(repo.engines)
        waiting = await endpoints.create("alice", "https://a.example/", ["file.ready"], "")
        deliveries = DeliveryRepository(repo.engines, repo.files.events)
        await repo.files.create_files([new_file(owner="alice")], ())  # created + ready
        before = await stored_events(repo)
        assert await deliveries.sweep(utcnow() - timedelta(seconds=60)) == 0
        assert await deliveries.sweep(utcnow() + timedelta(seconds=1)) == 1
        left = await stored_events(repo)
        assert [e["type"] for e in left] == ["file.ready"]
        assert left[0]["id"] == before[1]["id"]
        (pending,) = await stored_deliveries(repo)
        assert pending == (waiting.id, left[0]["id"])

    with_repo(body)
