"""The live event stream (``GET /v1/events``) of one caller, and the short-lived tokens that
let a browser's ``EventSource``, which cannot send a header, open it.

A stream carries the caller's events (an admin's or an open server's: everyone's) from
the moment it opens, or from after the event a client names with ``Last-Event-ID``, read
from the outbox first and then handed on by the process's one ``EventPoller``. Every
``heartbeat`` seconds the caller's key is checked again (a revoked key's streams end) and
a comment goes out if nothing else did, so proxies and clients see a live connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime

from uploads_api.auth import Principal
from uploads_api.db.event_feed import EventFeed
from uploads_api.errors import Unauthorized
from uploads_api.services.event_fanout import (
    OVERFLOW,
    STREAM_TYPES,
    EventPoller,
    StreamEvent,
    Subscription,
)
from uploads_api.signing import KeyRing

log = logging.getLogger(__name__)

TOKEN_USE = "events"
# Long enough to open a connection with; a reconnecting page asks for a new one.
TOKEN_SECONDS = 60
REPLAY_PAGE = 500


@dataclass(frozen=True)
class Comment:
    """A comment line: clients skip it; it keeps the connection busy or says something to
    a person reading the stream."""

    text: str


StreamItem = StreamEvent | Comment
KEEP_ALIVE = Comment("keep-alive")
ENDINGS = {
    OVERFLOW: "too far behind: reconnect with Last-Event-ID to go on",
}
SHUTTING_DOWN = "the server is stopping: reconnect with Last-Event-ID to go on"

# Whether a caller authenticated earlier may still be served (Authenticator.still_valid).
StillValid = Callable[[Principal], Awaitable[bool]]


class EventStreamService:
    def __init__(
        self,
        poller: EventPoller,
        feed: EventFeed,
        keys: KeyRing,
        still_valid: StillValid,
        *,
        heartbeat: float = 15.0,
        max_queued: int = 1000,
    ) -> None:
        self.poller = poller
        self.feed = feed
        self.keys = keys
        self.still_valid = still_valid
        self.heartbeat = heartbeat
        self.max_queued = max_queued

    def issue_token(self, caller: Principal) -> tuple[str, datetime]:
        """A token naming the caller, valid ``TOKEN_SECONDS`` to open a stream with."""
        expires = int(time.time()) + TOKEN_SECONDS
        payload = {
            "use": TOKEN_USE,
            "owner": caller.owner,
            "admin": caller.admin,
            "key": caller.key_id,
            "exp": expires,
        }
        return self.keys.sign(payload), datetime.fromtimestamp(expires, UTC)

    async def caller_of_token(self, token: str) -> Principal:
        """The caller a token names, if it is genuine, unexpired and its key still valid."""
        payload = self.keys.verify(token)
        if payload is None or payload.get("use") != TOKEN_USE:
            raise Unauthorized(
                "the event stream token is not valid or has expired;"
                " POST /v1/events/tokens gives a new one"
            )
        owner, admin, key_id = payload.get("owner"), payload.get("admin"), payload.get("key")
        if not (
            (owner is None or isinstance(owner, str))
            and isinstance(admin, bool)
            and (key_id is None or (isinstance(key_id, int) and not isinstance(key_id, bool)))
        ):
            raise Unauthorized("the event stream token is not valid")
        caller = Principal(owner=owner, admin=admin, key_id=key_id)
        if not await self.still_valid(caller):
            raise Unauthorized("the API key this token was made with is no longer valid")
        return caller

    async def open(
        self, caller: Principal, last_event_id: str | None, *, wait: float | None = None
    ) -> AsyncGenerator[StreamItem, None]:
        """The caller's stream: after ``last_event_id`` if given (an unknown one is said in
        a comment, and the stream starts from now), for ``wait`` seconds or for as long as
        the client stays. ``wait=0`` gives what is stored after ``last_event_id`` and ends.

        What can fail before the first byte (finding ``last_event_id``) fails here, while
        an error can still be answered."""
        resume = None
        if last_event_id is not None:
            resume = await self.feed.position_of(last_event_id, caller.scope)
        return self._items(caller, last_event_id, resume, wait)

    def end_streams(self) -> None:
        """End every open stream now (each tells its client to reconnect) and open no more:
        called when the server is asked to stop, before it waits for open responses."""
        self.poller.end_all()

    async def close(self) -> None:
        await self.poller.close()

    async def _items(
        self,
        caller: Principal,
        last_event_id: str | None,
        resume: int | None,
        wait: float | None,
    ) -> AsyncGenerator[StreamItem, None]:
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        # Subscribed before the stored events are read, so nothing falls between the two.
        subscription = None
        if wait != 0:
            subscription = self.poller.subscribe(caller.scope, max_queued=self.max_queued)
        try:
            skip: set[int] = set()
            if last_event_id is not None and resume is None:
                # Echoed without line breaks: a comment is one line.
                shown = "".join(ch for ch in last_event_id if ch.isprintable())
                yield Comment(f"{shown} is unknown or no longer kept: events from now on")
            elif resume is not None:
                replayed = []
                async with aclosing(self._replay(resume, caller.scope)) as stored:
                    async for event in stored:
                        yield event
                        replayed.append(event.seq)
                if subscription is not None:
                    skip = self._also_queued(replayed, subscription)
            if subscription is None:
                return
            async with aclosing(self._live(caller, subscription, skip, deadline)) as live:
                async for item in live:
                    yield item
        finally:
            if subscription is not None:
                self.poller.unsubscribe(subscription)

    async def _replay(self, after: int, scope: str | None) -> AsyncGenerator[StreamEvent, None]:
        while True:
            page = await self.feed.events_after(after, scope, STREAM_TYPES, limit=REPLAY_PAGE)
            for row in page:
                yield StreamEvent.of(row)
            if len(page) < REPLAY_PAGE:
                return
            after = page[-1].seq

    def _also_queued(self, replayed: list[int], subscription: Subscription) -> set[int]:
        """Of the events just read from the outbox, those the poller may hand this
        subscription too (queued already, or at or above its floor): skipped when they come.
        Older ones cannot come, so a long catch-up leaves no large set behind."""
        floor = self.poller.floor()
        if floor is None:
            return set(replayed)
        lowest = min([floor, *subscription.queued_seqs()])
        return {seq for seq in replayed if seq >= lowest}

    async def _live(
        self,
        caller: Principal,
        subscription: Subscription,
        skip: set[int],
        deadline: float | None,
    ) -> AsyncGenerator[StreamItem, None]:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat
        sent = False
        while True:
            until = next_beat if deadline is None else min(next_beat, deadline)
            for event in await subscription.take(until - loop.time()):
                if event.seq in skip:
                    skip.discard(event.seq)
                    continue
                yield event
                sent = True
            if subscription.ended is not None:
                yield Comment(ENDINGS.get(subscription.ended, SHUTTING_DOWN))
                return
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if now >= next_beat:
                if not await self._allowed(caller):
                    yield Comment("the API key is no longer valid")
                    return
                if not sent:
                    yield KEEP_ALIVE
                sent, next_beat = False, loop.time() + self.heartbeat

    async def _allowed(self, caller: Principal) -> bool:
        try:
            return await self.still_valid(caller)
        except Exception:
            # The database is away for a moment: a key cannot be revoked meanwhile either.
            log.debug("could not check the key of an open event stream", exc_info=True)
            return True
