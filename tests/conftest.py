"""Fixtures: a real uvicorn server on a free loopback port, with its own data dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytest_plugins = [
    "tests.service_fixtures",
    "tests.tus_helpers",
    "tests.browser_helpers",
    "tests.intake_helpers",
    "tests.repository_helpers",
    "tests.security_helpers",
]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

LOOPBACK_TARGETS = "localhost,127.0.0.0/8,::1"
# Fast retries and short sweeps so fault tests finish in seconds.
TEST_ENV = {
    "UPLOADS_TASK_RETRY_BASE_DELAY": "0.2",
    "UPLOADS_TASK_POLL_INTERVAL": "0.2",
    "UPLOADS_TASK_LEASE_SECONDS": "3",
    "UPLOADS_IMAGE_WORKERS": "2",
    "UPLOADS_SHUTDOWN_GRACE_SECONDS": "2",
    "UPLOADS_LOG_LEVEL": "INFO",
    # Nothing a test (or the contract fuzzer) registers can make a server send elsewhere.
    "UPLOADS_WEBHOOK_ALLOWED_TARGETS": LOOPBACK_TARGETS,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    """One ``uploads-api`` process with its own log; ``kill`` and ``start`` again keep the
    data dir, as after a crash and a restart."""

    what = "process"

    def __init__(self, data_dir: Path, env: dict[str, str], log_path: Path) -> None:
        self.data_dir = data_dir
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def _launch(self, *args: str) -> int:
        """Start ``uploads-api ARGS``; the log's length before it, to read only what's new."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOADS_")}
        env.update(TEST_ENV)
        env.update(self.env)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = [sys.executable, "-m", "uploads_api.cli", *args]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        return offset

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.what} exited early:\n{self.logs()[-3000:]}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.what} did not start:\n{self.logs()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as after a crash or an OOM kill."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        # The image workers are children of the forkserver; give them a moment to go.
        time.sleep(0.3)

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


class Server(ServiceProcess):
    """``uploads-api serve`` on a free loopback port."""

    what = "server"

    def __init__(self, data_dir: Path, env: dict[str, str], log_path: Path) -> None:
        super().__init__(data_dir, env, log_path)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        self._launch("serve", "--port", str(self.port), "--data-dir", str(self.data_dir))
        self._wait_until(self._answers, timeout)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def temp_files(self) -> list[Path]:
        return sorted((self.data_dir / "tmp").glob("*.part"))


ServerFactory = Callable[..., Server]


@contextmanager
def _servers(root: Path) -> Iterator[ServerFactory]:
    """Starts servers with settings (``body_timeout=2`` is ``UPLOADS_BODY_TIMEOUT=2``), each
    with its own data dir under ``root``; stops them all at the end."""
    started: list[Server] = []

    def make(extra_env: dict[str, str] | None = None, **settings: object) -> Server:
        data_dir = root / f"data{len(started)}"
        env = {f"UPLOADS_{k.upper()}": str(v) for k, v in settings.items()}
        server = Server(data_dir, {**env, **(extra_env or {})}, root / f"server{len(started)}.log")
        started.append(server)  # before start: a server that fails to answer is stopped too
        server.start()
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    with _servers(tmp_path) as make:
        yield make


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Servers that live for the whole module: for module-scoped fixtures that set a server
    up once (keys, settings) for many tests."""
    with _servers(tmp_path_factory.mktemp("module")) as make:
        yield make


@pytest.fixture
def server(server_factory: ServerFactory) -> Server:
    return server_factory()


@pytest.fixture(scope="module")
def shared_server(module_server_factory: ServerFactory) -> Server:
    """One server for a whole module, for tests that only look at their own files."""
    return module_server_factory()


@pytest.fixture
def shared_client(shared_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url, timeout=60) as http:
        yield http


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from UPLOADS_* variables: never let the caller's leak into a test."""
    for name in list(os.environ):
        if name.startswith("UPLOADS_"):
            monkeypatch.delenv(name)
