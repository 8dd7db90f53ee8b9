"""One request tried until it succeeds or the retry policy gives up: the loops both
clients and their direct uploads share. The async and the sync forms differ only in how
they send and how they sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from uploads_api.client.errors import ApiError, error_from_response, transport_error
from uploads_api.client.retry import Retrying, RetryPolicy, describe, may_have_stored

T = TypeVar("T")
OnRetry = Callable[[Retrying], None]


async def send_once(
    http: httpx.AsyncClient, method: str, url: str, *, stream: bool = False, **options: Any
) -> httpx.Response:
    """One try. A non-2xx answer is raised as ``ApiError``."""
    request = http.build_request(method, url, **options)
    response = await http.send(request, stream=stream)
    if not response.is_success:
        try:
            await response.aread()
        finally:
            await response.aclose()
        raise error_from_response(response)
    return response


def send_once_sync(
    http: httpx.Client, method: str, url: str, *, stream: bool = False, **options: Any
) -> httpx.Response:
    """See ``send_once``."""
    request = http.build_request(method, url, **options)
    response = http.send(request, stream=stream)
    if not response.is_success:
        try:
            response.read()
        finally:
            response.close()
        raise error_from_response(response)
    return response


async def retrying(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    retryable: Callable[[], bool] = lambda: True,
    on_retry: OnRetry | None = None,
    recover: Callable[[], Awaitable[T | None]] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds or ``policy`` gives up. ``recover`` runs before a
    retry that might repeat work the server already did; what it finds is the answer."""
    state = policy.start()
    while True:
        try:
            return await attempt()
        except (httpx.TransportError, ApiError) as exc:
            pause = state.pause_for(exc) if retryable() else None
            if pause is None:
                if isinstance(exc, ApiError):
                    raise
                raise transport_error(exc) from exc
            if on_retry is not None:
                on_retry(Retrying(state.failed_tries, pause, describe(exc)))
            await asyncio.sleep(pause)
            if recover is not None and may_have_stored(exc):
                found = await recover()
                if found is not None:
                    return found


def retrying_sync(
    policy: RetryPolicy,
    attempt: Callable[[], T],
    *,
    retryable: Callable[[], bool] = lambda: True,
    on_retry: OnRetry | None = None,
    recover: Callable[[], T | None] | None = None,
) -> T:
    """See ``retrying``."""
    state = policy.start()
    while True:
        try:
            return attempt()
        except (httpx.TransportError, ApiError) as exc:
            pause = state.pause_for(exc) if retryable() else None
            if pause is None:
                if isinstance(exc, ApiError):
                    raise
                raise transport_error(exc) from exc
            if on_retry is not None:
                on_retry(Retrying(state.failed_tries, pause, describe(exc)))
            time.sleep(pause)
            if recover is not None and may_have_stored(exc):
                found = recover()
                if found is not None:
                    return found
