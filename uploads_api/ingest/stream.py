"""The request body as a stream that may not stall for longer than the body timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from uploads_api.errors import RequestTimeout


async def with_timeout(stream: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """Yield the chunks of ``stream``; raise ``RequestTimeout`` when one takes too long
    (a slowloris client holding a connection and a temp file open)."""
    iterator = aiter(stream)
    while True:
        # A deadline per read, not wait_for: that wraps every read in a task of its own.
        try:
            async with asyncio.timeout(seconds):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise RequestTimeout(f"the request body sent nothing for {seconds:g} seconds") from exc
        yield chunk
