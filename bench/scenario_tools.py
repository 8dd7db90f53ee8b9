"""What the scenario groups share with each other and with ``batch.py``, ``strip.py`` and
``tus.py``: random inputs and the sha256 of what a system stored, one curl transfer, a
server's pid, and the wait until thumbnails are ready. Kept out of ``scenarios.py``, which
keeps the groups and the types they pass around."""

from __future__ import annotations

import hashlib
import mmap
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.measure import MiB

# --- inputs -----------------------------------------------------------------------------


def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(8 * MiB)
    with path.open("wb") as out:
        left = size
        while left:
            piece = block[: min(len(block), left)]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
            block = block[1:] + block[:1]  # no two blocks alike
    return digest.hexdigest()


def sha256_of(path: Path, start: int = 0, end: int | None = None) -> str:
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return hashlib.sha256(memoryview(m)[start:end]).hexdigest()


def multipart_file_sha256(body: Path) -> str:
    """The sha256 of the one file inside a stored ``curl -F`` body (nginx keeps it whole)."""
    with body.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        first = m[: m.find(b"\r\n")]  # --boundary
        start = m.find(b"\r\n\r\n") + 4
        end = len(m) - len(b"\r\n" + first + b"--\r\n")
        return hashlib.sha256(memoryview(m)[start:end]).hexdigest()


def check_sha256(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise RuntimeError(f"{what}: sha256 {actual} is not {expected}")


# --- helpers ----------------------------------------------------------------------------


def curl(args: list[str], url: str, body: Path) -> float:
    """Run one curl transfer; its own ``time_total`` in seconds. Raises on an HTTP error."""
    out = subprocess.run(
        ["curl", "-sS", "-f", "-o", str(body), "-w", "%{time_total}", *args, url],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"curl {url} failed: {out.stderr.strip()}")
    return float(out.stdout.strip())


@contextmanager
def running(start: Callable[[], Any]) -> Iterator[Any]:
    server = start()
    try:
        yield server
    finally:
        server.stop()


def pid_of(server: Any) -> int:
    assert server.process is not None
    pid: int = server.process.pid
    return pid


def wait_ready(url: str, expected: int, timeout: float) -> float:
    """Poll until no file is processing; the time that took. Checks all ``expected`` are ready."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline:
            page = http.get("/v1/files", params={"status": "processing", "limit": 1}).json()
            if not page["files"]:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"files still processing after {timeout} s")
        ready = http.get("/v1/files", params={"status": "ready", "limit": 1000}).json()
        if len(ready["files"]) != expected:
            raise RuntimeError(f"{len(ready['files'])} of {expected} files ready")
    return time.monotonic()
