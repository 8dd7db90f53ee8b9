"""The systems under test, each started on a free loopback port with its own directories."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.baselines import nginx, tus_node
from tests.conftest import ROOT, Server, free_port

# The service's own defaults, undoing the fast-retry settings the tests use. Only the
# file size limit is raised (for the 1 GiB uploads) and the shutdown grace shortened
# (it only matters when a server is stopped between runs).
BENCH_ENV = {
    "UPLOADS_TASK_RETRY_BASE_DELAY": "2.0",
    "UPLOADS_TASK_POLL_INTERVAL": "1.0",
    "UPLOADS_TASK_LEASE_SECONDS": "30",
    "UPLOADS_IMAGE_WORKERS": str(os.cpu_count() or 1),
    "UPLOADS_LOG_LEVEL": "INFO",
    "UPLOADS_MAX_FILE_SIZE": str(2 * 1024**3),
    "UPLOADS_SHUTDOWN_GRACE_SECONDS": "2",
}


def ours(root: Path, name: str, workers: int = 1) -> Server:
    """``uploads-api serve`` (uvicorn) with its default settings."""
    env = {**BENCH_ENV, "UPLOADS_WORKERS": str(workers)}
    root.mkdir(parents=True, exist_ok=True)
    server = Server(root / f"{name}-data", env, root / f"{name}.log")
    server.start(timeout=60)
    return server


class Process:
    """Any HTTP server command that answers ``GET /healthz`` once it is ready."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.command = command
        self.env = env
        self.log = log
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOADS_")}
        env.update(self.env)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[:3]} exited:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.command[:3]} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def tutorial(root: Path, name: str = "tutorial") -> Process:
    """The FastAPI tutorial app under uvicorn's defaults (1 worker, access log on)."""
    return _uvicorn_app(root, name, "bench.baselines.tutorial:app", "TUTORIAL_UPLOAD_DIR")


def tuspyserver(root: Path, name: str = "tuspyserver") -> Process:
    """tuspyserver's router in a FastAPI app under uvicorn's defaults (S9's baseline)."""
    return _uvicorn_app(root, name, "bench.baselines.tuspyserver_app:app", "TUSPY_UPLOAD_DIR")


def _uvicorn_app(root: Path, name: str, app: str, upload_dir_variable: str) -> Process:
    """A baseline app under uvicorn's defaults, storing under ``root/<name>-files``."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    env = {upload_dir_variable: str(root / f"{name}-files")}
    process = Process(command, env, root / f"{name}.log", port)
    process.start()
    return process


def start_tus_node(root: Path) -> tus_node.TusNode:
    server = tus_node.TusNode(root)
    server.start()
    return server


def ours_on(server: str, root: Path, name: str) -> Process:
    """The same app under another ASGI server (granian or hypercorn), for comparison."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    bin_dir = Path(sys.executable).parent
    if server == "granian":
        command = [str(bin_dir / "granian"), "--interface", "asgi", "--factory"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        command += ["uploads_api.app:create_app_from_env"]
    elif server == "hypercorn":
        # --workers 0 serves in this process: hypercorn's worker processes are daemonic,
        # and a daemonic process may not start the image pool.
        command = [str(bin_dir / "hypercorn"), "--bind", f"127.0.0.1:{port}", "--workers", "0"]
        command += ["--worker-class", "uvloop", "uploads_api.app:create_app_from_env()"]
    else:
        raise ValueError(server)
    env = {**BENCH_ENV, "UPLOADS_DATA_DIR": str(root / f"{name}-data")}
    process = Process(command, env, root / f"{name}.log", port)
    process.start()
    return process


def start_nginx(root: Path) -> nginx.Nginx:
    server = nginx.Nginx(root, free_port())
    server.start()
    return server


def missing() -> dict[str, str]:
    """What is not installed, by baseline, with how to get it."""
    found: dict[str, str] = {}
    reason = nginx.available()
    if reason:
        found["nginx"] = reason
    if shutil.which("vipsthumbnail") is None:
        found["vipsthumbnail"] = "vipsthumbnail is not installed (apt-get install libvips-tools)"
    try:
        if importlib.util.find_spec("pyvips") is None:
            found["pyvips"] = "pyvips is not installed (pip install -e '.[bench]')"
        else:
            import pyvips  # noqa: F401  (fails here when libvips itself is missing)
    except Exception as exc:
        found["pyvips"] = f"pyvips cannot load libvips ({exc}; apt-get install libvips42)"
    for tool in ("granian", "hypercorn"):
        if not (Path(sys.executable).parent / tool).exists():
            found[tool] = f"{tool} is not installed (pip install -e '.[bench]')"
    if importlib.util.find_spec("tuspyserver") is None:
        found["tuspyserver"] = "tuspyserver is not installed (pip install -e '.[bench]')"
    reason = tus_node.available()
    if reason:
        found["tus-node"] = reason
    if shutil.which("curl") is None:
        found["curl"] = "curl is not installed (apt-get install curl)"
    return found
