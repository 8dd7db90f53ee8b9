"""What a task is: a small class with ``name`` and ``run(task)``. It raises to say how a run
ended; the runner turns that into the row's state. Return values mean nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from uploads_api.db.models import Task


class RetryableError(Exception):
    """A transient failure: the runner tries again later, with exponential backoff."""


class PermanentError(Exception):
    """Retrying cannot help (an undecodable image): the task fails at once."""


class TaskSkipped(Exception):
    """The task does not apply to this file (a thumbnail of a text file)."""


class TaskHandler(Protocol):
    name: str

    async def run(self, task: Task) -> None: ...


class TaskDispatcher(Protocol):
    """How a route hands freshly committed work to whatever executes it."""

    async def dispatch(self, file_ids: Sequence[str]) -> None: ...
