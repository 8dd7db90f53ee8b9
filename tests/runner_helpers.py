"""Helpers for the task runner's tests: the task name, small fake handlers, and settings
for a quick runner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from uploads_api.config import Settings
from uploads_api.db.models import Task

TASK = "work"


class Scripted:
    """Raises the scripted exceptions in turn, then succeeds; records every attempt it saw."""

    def __init__(self, *script: BaseException | None, name: str = TASK) -> None:
        self.name = name
        self.script = list(script)
        self.attempts: list[int] = []
        self.times: list[float] = []

    async def run(self, task: Task) -> None:
        self.attempts.append(task.attempts)
        self.times.append(time.monotonic())
        step = self.script[min(len(self.attempts), len(self.script)) - 1] if self.script else None
        if step is not None:
            raise step


class Always:
    """Raises a fresh copy of the same exception on every attempt."""

    def __init__(self, make: Callable[[], BaseException], name: str = TASK) -> None:
        self.name = name
        self.make = make
        self.attempts: list[int] = []

    async def run(self, task: Task) -> None:
        self.attempts.append(task.attempts)
        raise self.make()


class Sleeper:
    """Runs until cancelled."""

    def __init__(self, name: str = TASK) -> None:
        self.name = name
        self.started = asyncio.Event()
        self.cancelled = False

    async def run(self, task: Task) -> None:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Noop:
    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, task: Task) -> None:
        return None


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "task_retry_base_delay": 0.01,
        "task_poll_interval": 0.05,
        "task_lease_seconds": 30,
        "task_max_attempts": 3,
        "task_concurrency": 4,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
