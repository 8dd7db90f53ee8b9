"""Helpers shared by the test modules: raw HTTP exchanges, multipart bodies, checks of what a
server answers and keeps, API keys made with the CLI, and a lock held by another process.

Test modules import from here (or use conftest's fixtures), never from each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT, Server

# Raw HTTP ------------------------------------------------------------------------------------


@dataclass
class RawResponse:
    """What came back on a raw socket; ``status_code`` is ``None`` if the server closed
    the connection without answering."""

    status_code: int | None
    headers: dict[str, str]
    content: bytes
    elapsed: float
    send_error: str | None = None

    def json(self) -> Any:
        return json.loads(self.content)


def _complete(data: bytes) -> bool:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value)
    return False


def exchange(
    server: Server,
    head: bytes,
    body: bytes = b"",
    *,
    chunk: int = 64 * 1024,
    timeout: float = 15,
) -> RawResponse:
    """Send ``head`` then ``body`` (in chunks) and read one response at the same time, so
    an early answer is read even if the server stops reading and resets the connection."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    received = bytearray()
    done = threading.Event()

    def read() -> None:
        try:
            while not _complete(bytes(received)):
                data = sock.recv(65536)
                if not data:
                    break
                received.extend(data)
        except OSError:
            pass
        finally:
            done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    send_error = None
    try:
        sock.sendall(head)
        for offset in range(0, len(body), chunk):
            if done.is_set():
                break  # answered already: the rest would go nowhere
            sock.sendall(body[offset : offset + chunk])
    except OSError as exc:
        send_error = type(exc).__name__
    done.wait(timeout)
    elapsed = time.monotonic() - started
    sock.close()
    reader.join(1)
    head_bytes, _, content = bytes(received).partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status, headers, content, elapsed, send_error)


def request_head(
    method: str,
    path: str,
    *,
    content_type: str | None = None,
    length: int | None = None,
    headers: tuple[str, ...] = (),
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += headers
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# Multipart bodies ----------------------------------------------------------------------------

BOUNDARY = "----uploads-test-boundary-7MA4YWxkTrZu0gW"
MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass(frozen=True)
class Part:
    """One part of a multipart body, its name and filename sent as given (names no browser
    would send included); ``disposition`` replaces the whole Content-Disposition value."""

    name: str
    data: bytes
    filename: str | None = None
    headers: tuple[str, ...] = ()
    disposition: str | None = None

    def __repr__(self) -> str:
        # Short, so that a failing hypothesis example or assertion prints readably.
        data = f"<{len(self.data)} bytes: {self.data[:40]!r}...>"
        return f"Part(name={self.name!r}, filename={self.filename!r}, data={data})"

    def encode(self) -> bytes:
        """The part's headers and data, without its delimiter."""
        disposition = self.disposition
        if disposition is None:
            disposition = f'form-data; name="{self.name}"'
            if self.filename is not None:
                disposition += f'; filename="{self.filename}"'
        lines = [f"Content-Disposition: {disposition}", *self.headers]
        return "".join(f"{line}\r\n" for line in lines).encode() + b"\r\n" + self.data


def multipart(
    *parts: Part, close: bool = True, epilogue: bytes = b"", boundary: str = BOUNDARY
) -> bytes:
    """A multipart/form-data body; ``close=False`` leaves out the closing delimiter."""
    delimiter = b"--" + boundary.encode()
    body = b"".join(delimiter + b"\r\n" + p.encode() + b"\r\n" for p in parts)
    return body + (delimiter + b"--\r\n" + epilogue if close else b"")


def file_part(data: bytes = b"hello", filename: str = "a.txt") -> Part:
    return Part("file", data, filename)


# Answers -------------------------------------------------------------------------------------

PROBLEM_JSON = "application/problem+json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_json(data: bytes, name: str = "a.bin", file_id: str = "ab" * 16) -> dict[str, Any]:
    """A FileRecord as the server sends it, for a fake server."""
    return {
        "id": file_id,
        "filename": name,
        "content_type": "application/octet-stream",
        "size": len(data),
        "sha256": sha256(data),
        "created_at": "2026-01-28T05:26:37.058683Z",
        "status": "processing",
        "metadata": None,
        "thumbnails": [],
        "tasks": [],
        "links": {"self": f"/v1/files/{file_id}", "content": f"/v1/files/{file_id}/content"},
    }


def resumable_audit(client: httpx.Client) -> list[dict[str, Any]]:
    """The uploads the audit log records as resumable (its rows are written within 0.5 s)."""
    deadline = time.monotonic() + 10
    while True:
        entries = client.get("/v1/audit", params={"action": "file.uploaded"}).json()["items"]
        found = [e for e in entries if (e.get("detail") or {}).get("resumable")]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def wait_for(
    check: Callable[[], bool], timeout: float = 5, what: str = "condition", interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def assert_problem(
    response: httpx.Response | RawResponse, status: int, code: str
) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem: dict[str, Any] = response.json()
    assert (problem["status"], problem["code"]) == (status, code), problem
    assert problem["type"].endswith("/" + code) and problem["title"] and problem["detail"]
    return problem


def assert_healthy(server: Server) -> None:
    started = time.monotonic()
    response = httpx.get(f"{server.url}/healthz", timeout=5)
    assert response.status_code == 200
    assert time.monotonic() - started < 1, "the server is still busy with the last request"


# Files, their records and what a server keeps ------------------------------------------------


def upload(client: httpx.Client, *paths: Path) -> list[dict[str, Any]]:
    """The files in one multipart request; their records."""
    files = [("file", (p.name, p.read_bytes())) for p in paths]
    response = client.post("/v1/files", files=files)
    assert response.status_code == 201, response.text
    records: list[dict[str, Any]] = response.json()["files"]
    return records


def wait_done(client: httpx.Client, file_id: str, timeout: float = 30) -> dict[str, Any]:
    """The record once its processing has ended, however it ended."""
    record: dict[str, Any] = client.get(f"/v1/files/{file_id}", params={"wait": timeout}).json()
    assert record["status"] != "processing", record
    return record


def task_of(record: dict[str, Any], name: str) -> dict[str, Any]:
    task: dict[str, Any] = next(t for t in record["tasks"] if t["name"] == name)
    return task


def blob_files(server: Server) -> list[Path]:
    root = server.data_dir / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def thumbnail_dir(server: Server, file_id: str) -> Path:
    return server.data_dir / "blobs" / "thumbnails" / file_id[:2] / file_id


def assert_nothing_stored(server: Server, headers: dict[str, str] | None = None) -> None:
    """No record, no temp file and no blob: what a refused or abandoned upload leaves."""
    # A temp file is removed when the request ends; after a disconnect that is a moment later.
    wait_for(lambda: server.temp_files() == [], what=f"temp files to go: {server.temp_files()}")
    listing = httpx.get(f"{server.url}/v1/files", headers=headers, timeout=10)
    assert listing.status_code == 200
    assert listing.json()["files"] == []
    assert blob_files(server) == []


# API keys ------------------------------------------------------------------------------------


def cli_env() -> dict[str, str]:
    """The environment for a CLI process: the caller's, without its UPLOADS_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("UPLOADS_")}


def sweep(data_dir: Path, settings: dict[str, str]) -> None:
    """``uploads-api sweep`` once, in a process of its own, with these settings."""
    swept = subprocess.run(
        [sys.executable, "-m", "uploads_api.cli", "sweep", "--data-dir", str(data_dir)],
        env={**cli_env(), **settings},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert swept.returncode == 0, swept.stderr


def create_keys(data_dir: Path, *owners: str, admin: tuple[str, ...] = ()) -> dict[str, str]:
    """Several ``keys create`` at once (each is a process start and a database write)."""
    running = {
        owner: subprocess.Popen(
            [
                *(sys.executable, "-m", "uploads_api.cli", "keys", "create", owner),
                *("--data-dir", str(data_dir), *(["--admin"] if owner in admin else [])),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            cwd=ROOT,
        )
        for owner in owners
    }
    keys = {}
    for owner, process in running.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        keys[owner] = out.strip()
    return keys


def create_key(data_dir: Path, owner: str, *, admin: bool = False) -> str:
    return create_keys(data_dir, owner, admin=(owner,) if admin else ())[owner]


def wait_closed(server: Server) -> None:
    """Keys take effect within the authenticator's cache time (2 s)."""
    wait_for(
        lambda: httpx.get(f"{server.url}/v1/files").status_code == 401,
        what="the first key to close the server",
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# Locks ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def held_by_another_process(lock_file: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock file, as a hung server would; killed on exit."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock_file)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
