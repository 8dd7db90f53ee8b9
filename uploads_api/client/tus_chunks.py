"""One tus upload's chunks, as any tus server takes them: a ``PATCH`` from an offset with
the chunk's checksum, asked again from where the server stands after a failure."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from dataclasses import dataclass

import httpx

from uploads_api.client import attempts
from uploads_api.client.attempts import OnRetry
from uploads_api.client.errors import ApiError, transport_error
from uploads_api.client.retry import Retrying, RetryPolicy, describe
from uploads_api.client.sources import RangeReader

TUS = {"Tus-Resumable": "1.0.0"}
# A chunk refused because the upload stands elsewhere or is being written: asked again
# this often, this many times (a writer that vanished loses its hold within ~10 s).
CONFLICT_PAUSE = 1.0
MAX_CONFLICTS = 30


@dataclass(frozen=True)
class Piece:
    """One tus upload of a file's bytes ``[start, start + length)``, standing at ``offset``:
    the whole file, or one of its ``parallel`` partial uploads."""

    url: str
    start: int
    length: int
    offset: int
    partial: bool


async def send_chunk(
    api: httpx.AsyncClient,
    policy: RetryPolicy,
    piece: Piece,
    ranges: RangeReader,
    offset: int,
    chunk_size: int,
    on_retry: OnRetry | None,
) -> httpx.Response:
    """One chunk from ``offset``, with its checksum; after a failure the next try asks
    the server where the upload stands, and sends from there."""
    position = offset

    async def attempt() -> httpx.Response:
        length = min(chunk_size, piece.length - position)
        chunk = await asyncio.to_thread(ranges.read_at, piece.start + position, length)
        digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
        headers = {
            **TUS,
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(position),
            "Upload-Checksum": f"sha256 {digest}",
        }
        return await attempts.send_once(api, "PATCH", piece.url, content=chunk, headers=headers)

    async def where() -> httpx.Response | None:
        nonlocal position
        with contextlib.suppress(httpx.TransportError, ApiError):
            answer = await attempts.send_once(api, "HEAD", piece.url, headers=TUS)
            position = int(answer.headers["upload-offset"])
        return None

    state = policy.start()
    conflicts = 0
    while True:
        try:
            return await attempt()
        except (httpx.TransportError, ApiError) as exc:
            # 409: the server stands elsewhere (an earlier try got through after all);
            # 423: an earlier try is still being written. Both: ask, and go on.
            conflict = isinstance(exc, ApiError) and exc.status in (409, 423)
            conflicts += conflict
            pause = CONFLICT_PAUSE if conflict else state.pause_for(exc)
            if pause is None or conflicts > MAX_CONFLICTS:
                if isinstance(exc, ApiError):
                    raise
                raise transport_error(exc) from exc
            if on_retry is not None:
                on_retry(Retrying(state.failed_tries, pause, describe(exc)))
            await asyncio.sleep(pause)
            await where()
