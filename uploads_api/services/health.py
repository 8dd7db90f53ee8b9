"""Readiness probes and the figures ``/metrics`` reads from the database."""

from __future__ import annotations

import logging

from uploads_api import metrics
from uploads_api.db.engine import Engines
from uploads_api.db.queue import TaskQueue
from uploads_api.storage import Storage

log = logging.getLogger(__name__)


class HealthService:
    def __init__(self, engines: Engines, storage: Storage, queue: TaskQueue) -> None:
        self.engines = engines
        self.storage = storage
        self.queue = queue

    async def readiness(self) -> dict[str, str]:
        """``ok`` or the error's type for the database and the storage."""
        checks: dict[str, str] = {}
        for name, probe in (("database", self.engines.ping), ("storage", self.storage.check)):
            try:
                await probe()
                checks[name] = "ok"
            except Exception as exc:
                log.warning("readiness check %s failed: %s", name, exc)
                checks[name] = f"error: {type(exc).__name__}"
        return checks

    async def refresh_queue_metrics(self) -> None:
        """Set the queue gauges from the task rows; a failure leaves them as they were."""
        try:
            depth, oldest = await self.queue.queue_stats()
        except Exception:
            log.exception("could not read queue statistics")
            return
        metrics.QUEUE_DEPTH.set(depth)
        metrics.QUEUE_OLDEST.set(oldest or 0)
