"""The runs of ``bench.direct_upload``: moto's S3 server, the two ways of sending a file (in
parts to presigned URLs, or as one ``PUT`` through the API), and the meters of wall time
and process CPU around them."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.measure import tree
from tests.conftest import free_port

MiB = 1024 * 1024
GiB = 1024 * MiB
MODES = {"direct": "direct", "api": "through the API"}


@dataclass(frozen=True)
class Source:
    path: Path
    size: int
    sha256: str


def write_source(path: Path, size_mib: int) -> Source:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size_mib):
            block = os.urandom(MiB)
            digest.update(block)
            out.write(block)
    return Source(path, size_mib * MiB, digest.hexdigest())


class Cpu:
    """CPU seconds of a process tree (reaped children included), in clock ticks (10 ms).
    The tree is listed once, not at each reading: the reading right after a 201 must not
    spend milliseconds walking /proc while the server's next task gets going."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.procs = tree(pid)

    def read(self) -> float:
        total = 0.0
        for proc in self.procs:
            try:
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def same_tree(self) -> bool:
        return {p.pid for p in tree(self.pid)} == {p.pid for p in self.procs}


@dataclass
class Run:
    """One upload: (name, wall, API CPU) at each instant, the first being the start."""

    number: int
    mode: str
    marks: list[tuple[str, float, float]] = field(default_factory=list)
    moto_cpu: float = 0.0
    client_cpu: float = 0.0

    def since_start(self, name: str) -> tuple[float, float]:
        _, wall, cpu = next(mark for mark in self.marks if mark[0] == name)
        return wall - self.marks[0][1], cpu - self.marks[0][2]

    def phase(self, name: str) -> tuple[float, float]:
        """(wall, CPU) from the mark before ``name`` to ``name``."""
        i = next(i for i, mark in enumerate(self.marks) if mark[0] == name)
        (_, wall0, cpu0), (_, wall1, cpu1) = self.marks[i - 1], self.marks[i]
        return wall1 - wall0, cpu1 - cpu0

    @property
    def replied(self) -> tuple[float, float]:
        """Wall and CPU to the 201 that ends the upload (the mark before ``ready``)."""
        return self.since_start(self.marks[-2][0])


class Moto:
    """moto's S3 server on a free loopback port, its output in a log."""

    def __init__(self, log: Path) -> None:
        self.url = f"http://127.0.0.1:{(port := free_port())}"
        with log.open("wb") as out:
            command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def created(answer: httpx.Response) -> dict[str, Any]:
    if answer.status_code != 201:
        raise RuntimeError(f"{answer.request.url}: {answer.status_code} {answer.text[:500]}")
    body: dict[str, Any] = answer.json()
    return body


@dataclass
class Bench:
    api: httpx.Client
    server_pid: int
    moto_pid: int
    concurrency: int

    def measure(self, number: int, mode: str, source: Source) -> Run:
        cpu, moto = Cpu(self.server_pid), Cpu(self.moto_pid)
        run = Run(number, mode)
        moto_before, client_before = moto.read(), time.process_time()

        def mark(name: str) -> None:
            run.marks.append((name, time.perf_counter(), cpu.read()))

        mark("begin")
        if mode == "direct":
            file_id = self.send_direct(source, mark)
        else:
            file_id = self.send_through_api(source, mark)
        self.wait_ready(file_id, source)
        mark("ready")
        run.moto_cpu = moto.read() - moto_before
        run.client_cpu = time.process_time() - client_before
        if not cpu.same_tree():
            raise RuntimeError("the server's process tree changed during the upload")
        self.api.delete(f"/v1/files/{file_id}").raise_for_status()  # moto keeps it in memory
        return run

    def send_direct(self, source: Source, mark: Callable[[str], None]) -> str:
        """Start, PUT every part (``concurrency`` at a time), complete: the file's id."""
        start = {"filename": source.path.name, "size": source.size, "sha256": source.sha256}
        offer = created(self.api.post("/v1/direct-uploads", json=start))
        mark("start")
        part_size: int = offer["part_size"]
        fd = os.open(source.path, os.O_RDONLY)
        # No API credentials go to storage: a client of its own, as a browser would hold.
        limits = httpx.Limits(max_connections=self.concurrency)
        storage = httpx.Client(timeout=300, limits=limits)

        def put(part: dict[str, Any]) -> dict[str, Any]:
            offset = (part["number"] - 1) * part_size
            body = os.pread(fd, min(part_size, source.size - offset), offset)
            answer = storage.put(part["url"], content=body)
            answer.raise_for_status()
            return {"number": part["number"], "etag": answer.headers["ETag"]}

        try:
            with ThreadPoolExecutor(self.concurrency) as pool:
                parts = list(pool.map(put, offer["parts"]))
        finally:
            storage.close()
            os.close(fd)
        mark("parts")
        url = f"/v1/direct-uploads/{offer['id']}/complete"
        done = created(self.api.post(url, json={"parts": parts}))
        mark("complete")
        return str(done["id"])

    def send_through_api(self, source: Source, mark: Callable[[str], None]) -> str:
        def body() -> Iterator[bytes]:
            with source.path.open("rb") as stream:
                while chunk := stream.read(MiB):
                    yield chunk

        # A Content-Length, as curl -T sends it, rather than a chunked body.
        headers = {"content-length": str(source.size)}
        url = f"/v1/files/{source.path.name}"
        done = created(self.api.put(url, content=body(), headers=headers))
        mark("upload")
        return str(done["id"])

    def wait_ready(self, file_id: str, source: Source) -> None:
        deadline = time.monotonic() + 600
        record = self.api.get(f"/v1/files/{file_id}", params={"wait": 60}).json()
        while record["status"] == "processing" and time.monotonic() < deadline:
            record = self.api.get(f"/v1/files/{file_id}", params={"wait": 60}).json()
        if record["status"] != "ready" or record["sha256"] != source.sha256:
            raise RuntimeError(f"not ready with the file's sha256: {record}")

    def idle(self, seconds: float) -> float:
        """The server's CPU per second at rest (its task polls): a floor under every span."""
        cpu = Cpu(self.server_pid)
        before = cpu.read()
        time.sleep(seconds)
        return (cpu.read() - before) / seconds
