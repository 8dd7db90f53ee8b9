"""Tasks: the background pipeline's rows across files, as their owner may see them."""

from __future__ import annotations

from uploads_api.auth import Principal
from uploads_api.db.models import Task
from uploads_api.db.queue import TaskQueue


class TaskService:
    def __init__(self, queue: TaskQueue) -> None:
        self.queue = queue

    async def list_tasks(
        self, caller: Principal, *, state: str | None, limit: int, cursor: int | None
    ) -> tuple[list[Task], int | None]:
        """A page of tasks, newest first, and the cursor of the next page."""
        tasks = await self.queue.list_tasks(
            state=state, limit=limit + 1, after_id=cursor, scope=caller.scope
        )
        page = tasks[:limit]
        return page, page[-1].id if len(tasks) > limit else None
