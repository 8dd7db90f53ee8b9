"""Starting the scale-out stack for tests: Celery workers beside API servers, all sharing
PostgreSQL, Redis and an S3 server."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT, TEST_ENV

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

    def settings(self) -> dict[str, str]:
        return {
            "task_backend": "celery",
            "database_url": self.database_url,
            "storage_url": self.storage_url,
            "s3_endpoint_url": self.s3_endpoint,
            "broker_url": self.broker_url,
            "celery_queue": self.queue,
            "reconcile_after": "3",
        }

    def env(self) -> dict[str, str]:
        return {f"UPLOADS_{k.upper()}": v for k, v in self.settings().items()} | AWS_ENV


class Worker:
    """One ``uploads-api worker`` process."""

    def __init__(self, config: ClusterConfig, data_dir: Path, log_path: Path, beat: bool) -> None:
        self.config = config
        self.data_dir = data_dir
        self.log_path = log_path
        self.beat = beat
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOADS_")}
        env |= TEST_ENV | self.config.env()
        command = [sys.executable, "-m", "uploads_api.cli", "worker", "--concurrency", "4"]
        command += ["--data-dir", str(self.data_dir)] + (["--beat"] if self.beat else [])
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.logs()[-3000:]}")
            if " ready." in self.logs()[offset:]:
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker did not start:\n{self.logs()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown code runs
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
