"""A small HTTP/1.1 load generator for many small uploads (S4).

Every request is the same pre-built bytes; each of ``concurrency`` clients keeps one
keep-alive connection and sends its next request as soon as the previous answer is read,
so the client costs little CPU and every latency is one request's round trip.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

BOUNDARY = b"benchboundary7MA4YWxkTrZu0gW"


def multipart_request(host: str, port: int, path: str, payload: bytes) -> bytes:
    body = b"".join(
        [
            b"--" + BOUNDARY + b"\r\n",
            b'Content-Disposition: form-data; name="file"; filename="small.bin"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n",
            payload,
            b"\r\n--" + BOUNDARY + b"--\r\n",
        ]
    )
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


@dataclass
class LoadResult:
    elapsed: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    client_cpu: float = 0.0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def _client(
    host: str, port: int, request: bytes, remaining: list[int], result: LoadResult
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while remaining[0] > 0:
            remaining[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            status, close = await _read_response(reader)
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def _run(host: str, port: int, request: bytes, total: int, concurrency: int) -> LoadResult:
    result = LoadResult(elapsed=0.0)
    remaining = [total]
    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(
        *(_client(host, port, request, remaining, result) for _ in range(concurrency))
    )
    result.elapsed = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu
    return result


def _run_loop(coro: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def upload_load(
    host: str, port: int, path: str, *, size: int, total: int, concurrency: int
) -> LoadResult:
    """``total`` multipart uploads of ``size`` random bytes from ``concurrency`` clients."""
    request = multipart_request(host, port, path, os.urandom(size))
    return _run_loop(_run(host, port, request, total, concurrency))
