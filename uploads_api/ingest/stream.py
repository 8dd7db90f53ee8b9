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
        try:
            chunk = await asyncio.wait_for(anext(iterator), timeout=seconds)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise RequestTimeout(f"the request body sent nothing for {seconds:g} seconds") from exc
        yield chunk
