"""Starting the scale-out stack for tests: Celery workers beside API servers, all sharing
PostgreSQL, Redis and an S3 server."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.conftest import ServiceProcess

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class ClusterConfig:
    database_url: str
    storage_url: str
    s3_endpoint: str
    broker_url: str
    queue: str = field(default_factory=lambda: f"uploads-test-{secrets.token_hex(4)}")
    # Short, so that a killed worker's tasks are published again within seconds.
    reconcile_after: float = 3

    def settings(self) -> dict[str, str]:
        return {
            "task_backend": "celery",
            "database_url": self.database_url,
            "storage_url": self.storage_url,
            "s3_endpoint_url": self.s3_endpoint,
            "broker_url": self.broker_url,
            "celery_queue": self.queue,
            "reconcile_after": str(self.reconcile_after),
        }

    def env(self) -> dict[str, str]:
        return {f"UPLOADS_{k.upper()}": v for k, v in self.settings().items()} | AWS_ENV


class Worker(ServiceProcess):
    """One ``uploads-api worker`` process."""

    what = "worker"

    def __init__(self, config: ClusterConfig, data_dir: Path, log_path: Path, beat: bool) -> None:
        super().__init__(data_dir, config.env(), log_path)
        self.beat = beat

    def kill(self) -> None:
        """SIGKILL the worker and what it started (the embedded beat, pool processes), as
        when its machine dies: nothing of it lingers after the test."""
        assert self.process is not None
        children = psutil.Process(self.process.pid).children(recursive=True)
        super().kill()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()

    def start(self, timeout: float = 60) -> None:
        args = ["worker", "--concurrency", "4", "--data-dir", str(self.data_dir)]
        offset = self._launch(*args, *(["--beat"] if self.beat else []))
        self._wait_until(lambda: " ready." in self.logs()[offset:], timeout)
