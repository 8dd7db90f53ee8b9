"""The poller and its queues against real databases: events in order to every queue that
may see them, a slow queue dropped without holding up the others, a late commit on
PostgreSQL delivered rather than skipped, and no polling once nobody listens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from uploads_api.db.engine import Engines, create_engines
from uploads_api.db.event_feed import EventFeed
from uploads_api.db.events import FILE_CREATED, FILE_READY, WEBHOOK_TEST, EventWriter, new_event_id
from uploads_api.db.schema import ensure_schema
from uploads_api.db.tables import utcnow
from uploads_api.file_json import render_file
from uploads_api.services.event_fanout import OVERFLOW, EventPoller, StreamEvent, Subscription

Body = Callable[[Engines, EventPoller], Awaitable[None]]


@asynccontextmanager
async def polling(url: str, **options: Any) -> AsyncIterator[tuple[Engines, EventPoller]]:
    engines = create_engines(url)
    await ensure_schema(engines)
    poller = EventPoller(EventFeed(engines), interval=0.05, **options)
    try:
        yield engines, poller
    finally:
        await poller.close()
        await engines.dispose()


def row(kind: str = FILE_CREATED, owner: str | None = "alice") -> dict[str, Any]:
    return {
        "id": new_event_id(),
        "type": kind,
        "owner": owner,
        "file_id": "f" * 32,
        "payload": {"type": kind, "timestamp": "2026-12-03T09:12:44Z", "data": {"n": 1}},
        "created_at": utcnow(),
    }


async def commit(engines: Engines, *rows: dict[str, Any]) -> None:
    async with engines.write() as conn:
        await EventWriter(render_file).write(conn, list(rows))


async def started(poller: EventPoller) -> None:
    """Until the poller has read where the outbox ends (events after that are new)."""
    async with asyncio.timeout(5):
        while poller.floor() is None:
            await asyncio.sleep(0.01)


async def collect(subscription: Subscription, count: int) -> list[StreamEvent]:
    got: list[StreamEvent] = []
    async with asyncio.timeout(5):
        while len(got) < count:
            got += await subscription.take(1)
    return got


def run(url: str, body: Body, **options: Any) -> None:
    async def main() -> None:
        async with polling(url, **options) as (engines, poller):
            await body(engines, poller)

    asyncio.run(main())


def test_every_queue_gets_what_it_may_see_in_order(database_url: str) -> None:
    async def body(engines: Engines, poller: EventPoller) -> None:
        await commit(engines, row(owner="alice"))  # before anyone listened: not sent
        everyone = poller.subscribe(None, max_queued=100)
        alice = poller.subscribe("alice", max_queued=100)
        await started(poller)
        sent = [row(owner="alice"), row(owner="bob"), row(WEBHOOK_TEST), row(FILE_READY)]
        await commit(engines, *sent)
        poller.wake()
        got = await collect(everyone, 3)
        assert [e.id for e in got] == [sent[0]["id"], sent[1]["id"], sent[3]["id"]]
        assert (
            got[0].data
            == '{"type":"file.created","timestamp":"2026-12-03T09:12:44Z","data":{"n":1}}'
        )
        assert [e.id for e in await collect(alice, 2)] == [sent[0]["id"], sent[3]["id"]]

    run(database_url, body)


def test_a_slow_queue_is_dropped_and_the_others_get_everything(database_url: str) -> None:
    async def body(engines: Engines, poller: EventPoller) -> None:
        slow = poller.subscribe(None, max_queued=3)
        keeping_up = poller.subscribe(None, max_queued=1000)
        await started(poller)
        sent = [row() for _ in range(12)]
        await commit(engines, *sent)
        poller.wake()
        assert [e.id for e in await collect(keeping_up, 12)] == [r["id"] for r in sent]
        assert slow.ended == OVERFLOW
        assert await slow.take(0) == [], "dropped, with nothing kept for it"
        assert poller.listeners == 1

    run(database_url, body, batch=5)


def test_the_poller_stops_once_nobody_listens(database_url: str) -> None:
    async def body(engines: Engines, poller: EventPoller) -> None:
        first = poller.subscribe(None, max_queued=10)
        await started(poller)
        poller.unsubscribe(first)
        async with asyncio.timeout(5):
            while poller.floor() is not None:
                await asyncio.sleep(0.01)
        # Events committed meanwhile are not kept for a later listener: it starts from now.
        await commit(engines, row())
        later = poller.subscribe(None, max_queued=10)
        await started(poller)
        fresh = row()
        await commit(engines, fresh)
        poller.wake()
        assert [e.id for e in await collect(later, 1)] == [fresh["id"]]

    run(database_url, body)


def test_a_late_commit_is_delivered_and_a_rollback_is_given_up(postgres_url: str) -> None:
    """PostgreSQL hands out positions at insert: event 1 can commit after event 2."""

    async def body(engines: Engines, poller: EventPoller) -> None:
        subscription = poller.subscribe(None, max_queued=100)
        await started(poller)
        async with engines.writer.connect() as slow_conn:
            slow_tx = await slow_conn.begin()
            late = row()
            await EventWriter(render_file).write(slow_conn, [late])
            early = row()
            await commit(engines, early)
            poller.wake()
            assert [e.id for e in await collect(subscription, 1)] == [early["id"]]
            gap = poller.floor()
            assert gap is not None
            await slow_tx.commit()
        poller.wake()
        assert [e.id for e in await collect(subscription, 1)] == [late["id"]]
        assert (poller.floor() or 0) > gap

        # A rollback leaves a position that never commits: waited for, then given up.
        async with engines.writer.connect() as conn:
            tx = await conn.begin()
            await EventWriter(render_file).write(conn, [row()])
            await tx.rollback()
        after = row()
        await commit(engines, after)
        poller.wake()
        assert [e.id for e in await collect(subscription, 1)] == [after["id"]]
        hole = poller.floor()
        assert hole is not None
        async with asyncio.timeout(5):
            while poller.floor() == hole:
                await asyncio.sleep(0.05)

    run(postgres_url, body, gap_timeout=0.5)


@pytest.mark.parametrize("max_queued", [1, 5])
def test_a_subscription_wakes_for_its_end(max_queued: int) -> None:
    async def main() -> None:
        subscription = Subscription(None, max_queued=max_queued)
        waiting = asyncio.create_task(subscription.take(10))
        await asyncio.sleep(0.01)
        subscription.end("shutdown")
        async with asyncio.timeout(1):
            assert await waiting == []
        assert subscription.ended == "shutdown"

    asyncio.run(main())
