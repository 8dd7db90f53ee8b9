"""Request bodies handled a chunk at a time, by a few requests at once per process.

The event loop parses, hashes and hands to storage every chunk of every body. When hundreds
of uploads arrive together (a phone's photo burst), each turn of the loop served all of
them, and a `/healthz` or a small `GET` waited behind them all. Here a request takes a turn
for each chunk it handles: it waits for one once a chunk has arrived, and gives it back when
it asks for the next (or its body is complete, or its answer starts). A connection that
sends nothing holds no turn, so slow uploads never stall the others; and while a request
waits, uvicorn stops reading its socket once its buffer is full, so waiting costs the loop
nothing.

A turn spans what the request does with its chunk, which may be waiting for storage (an S3
part going up). So a request waits ``TURN_WAIT`` at most, then goes on without one: turns
spread the loop's work, they never hold a body back, and a wait never counts towards the
body's stall timeout.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Longest a chunk waits for a turn: under a burst a turn comes within milliseconds, so only
# turns held through slow storage make a chunk wait this long.
TURN_WAIT = 0.1


class BodyTurns:
    def __init__(self, app: ASGIApp, *, at_once: int) -> None:
        self.app = app
        self._turns = asyncio.Semaphore(at_once)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        holding = False

        def give_back() -> None:
            nonlocal holding
            if holding:
                holding = False
                self._turns.release()

        async def receive_in_turn() -> Message:
            nonlocal holding
            give_back()
            message = await receive()
            # The last chunk takes no turn: what follows it (a commit) is not the loop's
            # work, and holding a turn through it would cap concurrent commits too.
            if message["type"] == "http.request" and message.get("more_body", False):
                try:
                    async with asyncio.timeout(TURN_WAIT):
                        await self._turns.acquire()
                except TimeoutError:
                    return message
                holding = True
            return message

        async def send_out_of_turn(message: Message) -> None:
            if message["type"] == "http.response.start":
                give_back()
            await send(message)

        try:
            await self.app(scope, receive_in_turn, send_out_of_turn)
        finally:
            give_back()
