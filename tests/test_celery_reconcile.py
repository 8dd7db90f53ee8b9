"""The Celery reconciler over a real Redis and a SQLite file, with no worker taking
messages: it publishes again as many waiting rows as the broker is short of messages, and
never a backlog whose messages still wait."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.db_helpers import Repositories
from tests.runner_db_helpers import add_file
from tests.runner_helpers import TASK, settings_for
from uploads_api.db.engine import create_engines
from uploads_api.db.queue import TaskQueue
from uploads_api.db.schema import ensure_schema
from uploads_api.tasks.base import TaskHandler
from uploads_api.tasks.celery_app import WorkerRuntime, make_celery

ROWS = 4


@dataclass
class QueueOnly:
    """What the reconciler needs of a worker's services: the task queue."""

    repositories: Repositories
    handlers: dict[str, TaskHandler] = field(default_factory=dict)

    @property
    def queue(self) -> TaskQueue:
        return self.repositories.queue

    async def start_worker(self) -> None:
        await ensure_schema(self.repositories.engines)

    async def stop(self) -> None:
        await self.repositories.engines.dispose()


@dataclass
class Stack:
    runtime: WorkerRuntime
    services: QueueOnly
    broker: redis.Redis
    queue_name: str

    def reconcile(self) -> None:
        self.runtime.run(self.runtime.reconcile())

    def messages(self) -> Counter[int]:
        """How many messages wait in the broker for each task id."""
        ids = Counter[int]()
        for raw in self.broker.lrange(self.queue_name, 0, -1):
            body = json.loads(base64.b64decode(json.loads(raw)["body"]))
            ids[body[0][0]] += 1
        return ids


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    queue_name = f"uploads-test-{secrets.token_hex(4)}"
    settings = settings_for(
        tmp_path,
        task_backend="celery",
        broker_url=f"{redis_url}/0",
        celery_queue=queue_name,
        reconcile_after=0.01,
    )
    built: list[QueueOnly] = []

    def build(_settings: object) -> QueueOnly:
        engines = create_engines(settings.resolved_database_url)
        built.append(QueueOnly(Repositories.over(engines)))
        return built[0]

    runtime = WorkerRuntime(settings, make_celery(settings, build), build)
    broker = redis.Redis.from_url(f"{redis_url}/0")
    runtime.run(asyncio.sleep(0))  # starts its loop and services
    try:
        yield Stack(runtime, built[0], broker, queue_name)
    finally:
        broker.delete(queue_name)
        broker.close()
        runtime.close()


def waiting_rows(stack: Stack) -> list[int]:
    """``ROWS`` files with a queued task each, waiting longer than ``reconcile_after``."""
    for _ in range(ROWS):
        stack.runtime.run(add_file(stack.services.repositories, TASK))
    time.sleep(0.05)
    return stack.runtime.run(stack.services.queue.runnable_task_ids())


def test_a_backlog_is_published_once(stack: Stack) -> None:
    rows = waiting_rows(stack)
    assert len(rows) == ROWS
    stack.reconcile()  # nothing was ever published
    assert stack.messages() == Counter(rows)
    for _ in range(3):
        stack.reconcile()
    assert stack.messages() == Counter(rows)


def test_lost_messages_are_published_again(stack: Stack) -> None:
    rows = waiting_rows(stack)
    stack.reconcile()
    # Two messages lost: the two that workers would have taken first.
    stack.broker.rpop(stack.queue_name, 2)
    assert sum(stack.messages().values()) == ROWS - 2
    stack.reconcile()
    assert stack.messages() == Counter(rows)
    stack.broker.delete(stack.queue_name)
    stack.reconcile()
    assert stack.messages() == Counter(rows)
