"""Batches for ``AsyncClient``: many files in one ``POST /v1/files``, retried under one
``Idempotency-Key``; a file the server refuses by name is left out and the rest sent again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx

from uploads_api.client import attempts
from uploads_api.client.batching import (
    READ_AHEAD,
    BatchProgress,
    BatchRequest,
    BatchRetry,
    BatchState,
    Outcome,
    PartFailed,
    Relay,
    batch_names,
    batch_request,
    new_key,
    parse_batch,
)
from uploads_api.client.calls import FILES, FORM_END
from uploads_api.client.errors import ApiError, IntegrityError
from uploads_api.client.retry import RetryPolicy
from uploads_api.client.sources import Opened, open_batch


class AsyncBatches:
    def __init__(self, http: httpx.AsyncClient, policy: RetryPolicy) -> None:
        self._http = http
        self._policy = policy

    async def upload(
        self,
        paths: Sequence[Path],
        sha256s: Sequence[str | None],
        progress: BatchProgress | None,
        on_retry: BatchRetry | None,
    ) -> list[Outcome]:
        """Each file's record, or why it was not stored. Raises what fails the request as
        a whole (``ApiError``, ``TransportError``) once retries are spent."""
        names = batch_names(paths)
        state = BatchState(len(paths))
        while state.pending:
            pending = list(state.pending)
            try:
                outcomes = await self._send(
                    [paths[i] for i in pending],
                    [names[i] for i in pending],
                    [sha256s[i] for i in pending],
                    Relay(pending, progress, on_retry),
                )
            except (ApiError, PartFailed) as exc:
                if not state.refused(exc):
                    raise
                continue
            state.answered(outcomes)
        return state.outcomes()

    async def _send(
        self,
        paths: list[Path],
        names: list[str],
        sha256s: list[str | None],
        relay: Relay,
    ) -> list[Outcome]:
        """One request for these files, tried until the policy gives up, under one key."""
        key = new_key()

        async def attempt() -> list[Outcome]:
            opened = await asyncio.to_thread(open_batch, paths, READ_AHEAD)
            try:
                sizes = [item.reader.size or 0 for item in opened]
                request = batch_request(names, sizes, sha256s, key)
                response = await self._http.post(
                    FILES, content=_body(request, opened, relay), headers=request.headers
                )
            finally:
                for item in opened:
                    item.reader.close()
            return parse_batch(response, [(o.reader.sent, o.reader.hexdigest()) for o in opened])

        return await attempts.retrying(self._policy, attempt, on_retry=relay.retried)


async def _body(request: BatchRequest, opened: list[Opened], relay: Relay) -> AsyncIterator[bytes]:
    for position, (head, item) in enumerate(zip(request.heads, opened, strict=True)):
        yield head
        relay.sent(position, 0)
        if item.ahead is not None:
            for chunk in item.ahead:
                if chunk:
                    yield chunk
            relay.sent(position, item.reader.sent)
            continue
        reader = item.reader
        while not reader.finished:
            try:
                chunk = await asyncio.to_thread(reader.read)
            except (OSError, IntegrityError) as exc:
                raise PartFailed(position, exc) from exc
            if chunk:
                yield chunk
            relay.sent(position, reader.sent)
    yield FORM_END
