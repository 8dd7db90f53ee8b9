"""``EventStreamService`` on a real database, without HTTP: a resumed stream whose stored
events overlap what the poller hands on sends each event once; a stream that falls too
far behind ends with a comment; tokens name their caller and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from uploads_api.auth import Principal
from uploads_api.db.engine import Engines, create_engines
from uploads_api.db.event_feed import EventFeed
from uploads_api.db.events import FILE_CREATED, EventWriter, new_event_id
from uploads_api.db.schema import ensure_schema
from uploads_api.db.tables import utcnow
from uploads_api.errors import Unauthorized
from uploads_api.file_json import render_file
from uploads_api.services.event_fanout import EventPoller, StreamEvent
from uploads_api.services.event_stream import Comment, EventStreamService, StreamItem
from uploads_api.signing import KeyRing

ADMIN = Principal(owner=None, admin=True)
KEY = "k" * 43


async def always(_caller: Principal) -> bool:
    return True


@asynccontextmanager
async def service(url: str, **options: Any) -> AsyncIterator[tuple[Engines, EventStreamService]]:
    engines = create_engines(url)
    await ensure_schema(engines)
    feed = EventFeed(engines)
    events = EventStreamService(
        EventPoller(feed, interval=0.05), feed, KeyRing([KEY]), always, **options
    )
    try:
        yield engines, events
    finally:
        await events.close()
        await engines.dispose()


async def commit(engines: Engines, count: int = 1) -> list[str]:
    rows: list[dict[str, Any]] = [
        {
            "id": new_event_id(),
            "type": FILE_CREATED,
            "owner": "alice",
            "file_id": "f" * 32,
            "payload": {"type": FILE_CREATED, "timestamp": "t", "data": {}},
            "created_at": utcnow(),
        }
        for _ in range(count)
    ]
    async with engines.write() as conn:
        await EventWriter(render_file).write(conn, rows)
    return [row["id"] for row in rows]


async def take(stream: AsyncIterator[StreamItem], count: int) -> list[StreamItem]:
    got: list[StreamItem] = []
    async with asyncio.timeout(5):
        while len(got) < count:
            got.append(await anext(stream))
    return got


def test_a_resumed_stream_sends_each_event_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with service(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite") as (engines, events):
            (before,) = await commit(engines)
            # Another stream keeps the poller reading, so it hands on what comes next...
            other = await events.open(ADMIN, None)
            first = asyncio.ensure_future(anext(other))
            async with asyncio.timeout(5):
                while events.poller.floor() is None:
                    await asyncio.sleep(0.01)
            # ...which the resumed stream also reads from the outbox.
            stored = await commit(engines, 3)
            resumed = await events.open(ADMIN, before)
            got = await take(resumed, 3)
            assert [item.id for item in got if isinstance(item, StreamEvent)] == stored
            (later,) = await commit(engines)
            events.poller.wake()
            (next_item,) = await take(resumed, 1)
            assert isinstance(next_item, StreamEvent) and next_item.id == later
            await resumed.aclose()
            # The other stream: waiting in its queue (its task is cancelled), or holding its
            # first event (closed).
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first
            await other.aclose()
            assert events.poller.listeners == 0

    asyncio.run(main())


def test_a_stream_too_far_behind_ends_with_a_comment(tmp_path: Path) -> None:
    async def main() -> None:
        url = f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"
        async with service(url, max_queued=2) as (engines, events):
            stream = await events.open(ADMIN, None)
            waiting = asyncio.ensure_future(anext(stream))  # subscribed, reading nothing
            async with asyncio.timeout(5):
                while events.poller.floor() is None:
                    await asyncio.sleep(0.01)
            await commit(engines, 5)
            events.poller.wake()
            async with asyncio.timeout(5):
                items = [await waiting, *[item async for item in stream]]
            # Dropped at the third event: nothing of what was queued is kept for it.
            assert items == [Comment("too far behind: reconnect with Last-Event-ID to go on")]
            assert events.poller.listeners == 0

    asyncio.run(main())


def test_tokens_name_their_caller_and_expire(tmp_path: Path) -> None:
    async def main() -> None:
        url = f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"
        async with service(url) as (_engines, events):
            alice = Principal(owner="alice", admin=False, key_id=7, address="127.0.0.1")
            token, expires_at = events.issue_token(alice)
            assert 55 < expires_at.timestamp() - time.time() <= 60
            caller = await events.caller_of_token(token)
            assert caller == Principal(owner="alice", admin=False, key_id=7)
            other_use = KeyRing([KEY]).sign({"use": "link", "owner": "alice", "admin": True})
            wrong_types = KeyRing([KEY]).sign({"use": "events", "owner": 1, "admin": "yes"})
            for bad in (other_use, wrong_types, token + "x"):
                with pytest.raises(Unauthorized):
                    await events.caller_of_token(bad)

            async def revoked(_caller: Principal) -> bool:
                return False

            events.still_valid = revoked
            with pytest.raises(Unauthorized, match="no longer valid"):
                await events.caller_of_token(token)

    asyncio.run(main())
