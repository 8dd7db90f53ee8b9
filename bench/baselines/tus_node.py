"""``@tus/server`` with ``@tus/file-store``, the reference tus server, under Node, as a
baseline of S9: ``tests/clients/tus_server.mjs`` (the interop tests' server) on a free
loopback port, uploads at ``/v1/tus/`` stored in ``<directory>/<id>`` (and ``<id>.json``).
Its defaults: a write stream per PATCH, no fsync. The packages come from ``.cache/node``,
installed by ``make test-tools`` from ``tests/clients/package.json``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

from tests.conftest import ROOT, free_port

SCRIPT = ROOT / "tests" / "clients" / "tus_server.mjs"
PACKAGE = ROOT / ".cache" / "node" / "node_modules" / "@tus" / "server" / "package.json"


def available() -> str | None:
    """Why the baseline cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (install Node.js 20+ with npm, then `make test-tools`)"
    if not PACKAGE.is_file():
        return "@tus/server is not in .cache/node (npm was absent at `make test-tools`)"
    return None


def version() -> str:
    if not PACKAGE.is_file():
        return "not installed"
    return str(json.loads(PACKAGE.read_text())["version"])


class TusNode:
    def __init__(self, root: Path) -> None:
        self.store = root / "store"
        self.log = root / "node.log"
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                ["node", str(SCRIPT), str(self.port), str(self.store)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.process.stdout is not None
        # The script prints one line once it listens.
        line = self.process.stdout.readline()
        if not line.startswith("{"):
            self.stop()
            raise RuntimeError(f"@tus/server did not start:\n{self.log.read_text()[-2000:]}")

    def stored(self, upload_path: str) -> Path:
        """The file holding the bytes of the upload at ``upload_path`` (``/v1/tus/<id>``)."""
        return self.store / upload_path.rstrip("/").rsplit("/", 1)[-1]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
