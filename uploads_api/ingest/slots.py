"""A cap on concurrent uploads per API key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from uploads_api import metrics
from uploads_api.errors import TooManyUploads


class UploadSlots:
    """Counts uploads in flight per caller, to cap them (per server process)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._in_flight: dict[int | None, int] = {}

    @contextmanager
    def hold(self, caller: int | None) -> Iterator[None]:
        if self.limit is not None and self._in_flight.get(caller, 0) >= self.limit:
            raise TooManyUploads(f"at most {self.limit} uploads at once per API key", retry_after=1)
        self._in_flight[caller] = self._in_flight.get(caller, 0) + 1
        metrics.UPLOADS_IN_PROGRESS.inc()
        try:
            yield
        finally:
            metrics.UPLOADS_IN_PROGRESS.dec()
            self._in_flight[caller] -= 1
            if not self._in_flight[caller]:
                del self._in_flight[caller]
