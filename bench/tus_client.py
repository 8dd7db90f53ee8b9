"""The one client of the tus benchmark (S9, S10), run in a process of its own so that its
CPU is never the server's and never the harness's.

    python -m bench.tus_client '{"mode": "tus", "port": 8000, "endpoint": "/v1/tus/", ...}'

It prints ``{"ready": true}`` once set up, waits for a line on stdin (the harness reads the
server's CPU meanwhile), sends, and prints one JSON line with the times. Modes:

- ``tus``: ``POST`` creation (``Upload-Length``, no body), then ``PATCH``es of ``chunk``
  bytes on one keep-alive connection, each read from the file with ``os.pread`` as it is
  sent; no ``Upload-Checksum``.
- ``parallel``: ``streams`` partial uploads (``Upload-Concat: partial``) of an equal share
  each, one thread and one connection per stream, then ``Upload-Concat: final;...``.
- ``put``: the whole file as the body of one ``PUT`` (read the same way, ``chunk`` at a time).

Every time runs from the first request to the last answer (``time.perf_counter``).
http.client keeps each connection alive and sends a body with ``sendall`` of whole
chunks, during which other threads run.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TUS_VERSION = "1.0.0"


@dataclass(frozen=True)
class Spec:
    mode: str  # tus, parallel, put
    port: int
    endpoint: str  # where uploads are created, or the PUT path
    file: str
    size: int
    chunk: int
    streams: int = 1
    filename: str = "big.bin"
    host: str = "127.0.0.1"


class Failed(Exception):
    """An answer other than the one the protocol promises."""


def _metadata(filename: str) -> str:
    pairs = {"filename": filename, "filetype": "application/octet-stream"}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


class Stream:
    """One keep-alive connection sending byte ranges of one open file."""

    def __init__(self, spec: Spec, fd: int) -> None:
        self.spec = spec
        self.fd = fd
        self.conn = http.client.HTTPConnection(spec.host, spec.port, timeout=600)

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        start: int = 0,
        length: int = 0,
        expect: int = 204,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """Send the request with the file's bytes ``[start, start + length)`` as its body;
        the answer and its body, read whole (the connection stays usable)."""
        self.conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            self.conn.putheader(name, value)
        self.conn.putheader("Content-Length", str(length))
        self.conn.endheaders()
        sent = 0
        while sent < length:
            piece = os.pread(self.fd, min(self.spec.chunk, length - sent), start + sent)
            if not piece:
                raise Failed(f"{self.spec.file} ended at {start + sent}")
            self.conn.send(piece)
            sent += len(piece)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != expect:
            raise Failed(f"{method} {path}: {response.status} {body[:500]!r}")
        return response, body

    def create(self, length: int, extra: dict[str, str] | None = None) -> str:
        """A new upload of ``length`` bytes; its path (``Location`` may be absolute)."""
        headers = {
            "Tus-Resumable": TUS_VERSION,
            "Upload-Length": str(length),
            "Upload-Metadata": _metadata(self.spec.filename),
            **(extra or {}),
        }
        response, _ = self.request("POST", self.spec.endpoint, headers, expect=201)
        location = response.getheader("Location")
        if not location:
            raise Failed("POST: 201 without Location")
        return urlsplit(location).path

    def upload(self, path: str, start: int, length: int) -> http.client.HTTPResponse | None:
        """PATCH the range in chunks; the last answer (None for an empty range)."""
        last = None
        offset = 0
        while offset < length:
            size = min(self.spec.chunk, length - offset)
            headers = {
                "Tus-Resumable": TUS_VERSION,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
            }
            last, _ = self.request("PATCH", path, headers, start + offset, size)
            if last.getheader("Upload-Offset") != str(offset + size):
                raise Failed(f"PATCH {path}: Upload-Offset {last.getheader('Upload-Offset')}")
            offset += size
        return last

    def close(self) -> None:
        self.conn.close()


def one_stream(spec: Spec, fd: int) -> dict[str, Any]:
    stream = Stream(spec, fd)
    started = time.perf_counter()
    path = stream.create(spec.size)
    last = stream.upload(path, 0, spec.size)
    seconds = time.perf_counter() - started
    stream.close()
    return {
        "seconds": seconds,
        "upload": path,
        "file_id": last.getheader("File-Id") if last else None,
    }


def parallel(spec: Spec, fd: int) -> dict[str, Any]:
    share = -(-spec.size // spec.streams)
    ranges = [(i * share, min(share, spec.size - i * share)) for i in range(spec.streams)]
    streams = [Stream(spec, fd) for _ in ranges]
    paths: list[str] = [""] * len(ranges)
    ended = [0.0] * len(ranges)
    errors: list[BaseException] = []
    gate = threading.Barrier(len(ranges) + 1)

    def send(index: int) -> None:
        start, length = ranges[index]
        try:
            gate.wait()
            paths[index] = streams[index].create(length, {"Upload-Concat": "partial"})
            streams[index].upload(paths[index], start, length)
        except BaseException as exc:
            errors.append(exc)
        ended[index] = time.perf_counter()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(ranges))]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    gate.wait()  # every stream sets off now
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    parts_done = max(ended)
    final = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Concat": "final;" + " ".join(paths),
        "Upload-Metadata": _metadata(spec.filename),
    }
    response, _ = streams[0].request("POST", spec.endpoint, final, expect=201)
    finished = time.perf_counter()
    for stream in streams:
        stream.close()
    return {
        "seconds": finished - started,
        "parts_seconds": parts_done - started,
        "final_seconds": finished - parts_done,
        "upload": urlsplit(response.getheader("Location") or "").path,
        "file_id": response.getheader("File-Id"),
    }


def put(spec: Spec, fd: int) -> dict[str, Any]:
    stream = Stream(spec, fd)
    started = time.perf_counter()
    headers = {"Content-Type": "application/octet-stream"}
    _, body = stream.request("PUT", spec.endpoint, headers, 0, spec.size, expect=201)
    seconds = time.perf_counter() - started
    stream.close()
    record = json.loads(body)
    return {"seconds": seconds, "upload": spec.endpoint, "file_id": record["id"]}


MODES = {"tus": one_stream, "parallel": parallel, "put": put}


def main(argv: list[str]) -> int:
    spec = Spec(**json.loads(argv[0]))
    fd = os.open(spec.file, os.O_RDONLY)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        result = MODES[spec.mode](spec, fd)
    except (Failed, OSError, http.client.HTTPException) as exc:
        print(f"tus client: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    after = resource.getrusage(resource.RUSAGE_SELF)
    result["client_cpu"] = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
