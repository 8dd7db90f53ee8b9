"""``/v1/tasks``: monitoring the background pipeline across files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from uploads_api.api.contract import problem_responses
from uploads_api.api.deps import PrincipalDep, TasksDep, get_principal
from uploads_api.api.schemas import TaskList, TaskWithFileOut
from uploads_api.db.models import TASK_STATES

router = APIRouter(
    prefix="/v1/tasks",
    tags=["tasks"],
    dependencies=[Depends(get_principal)],
)


@router.get(
    "",
    response_model=TaskList,
    operation_id="listTasks",
    responses=problem_responses(),
    summary="Tasks, newest first, optionally by state",
)
async def list_tasks(
    tasks: TasksDep,
    caller: PrincipalDep,
    state: Annotated[str | None, Query(pattern="^(" + "|".join(TASK_STATES) + ")$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        int | None, Query(ge=0, le=2**53, description="next_cursor of the previous page")
    ] = None,
) -> TaskList:
    page, next_cursor = await tasks.list_tasks(caller, state=state, limit=limit, cursor=cursor)
    return TaskList(tasks=[TaskWithFileOut.of(t) for t in page], next_cursor=next_cursor)
