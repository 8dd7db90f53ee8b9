"""Peak server memory while it receives one large upload, against a 1 MiB upload in the same run.

    python -m bench.upload_memory --size-mib 1024

Starts ``uploads-api serve`` on a free loopback port, sends the file with ``curl -F`` (and
``curl -T``), samples the server's RSS every 20 ms, and checks the sha256 it reports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tests.conftest import Server

CHUNK = 8 * 1024 * 1024


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(CHUNK)
    with path.open("wb") as out:
        written = 0
        while written < size:
            piece = block[: min(CHUNK, size - written)]
            out.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def send(server: Server, path: Path, mode: str) -> tuple[dict[str, object], float]:
    if mode == "multipart":
        args = ["-F", f"file=@{path}", f"{server.url}/v1/files"]
    else:
        args = ["-T", str(path), f"{server.url}/v1/files/"]
    started = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "-f", *args], check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    body = json.loads(out.stdout)
    record = body["files"][0] if mode == "multipart" else body
    return record, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="uploads-bench-") as scratch:
        root = Path(scratch)
        server = Server(root / "data", {"UPLOADS_MAX_FILE_SIZE": str(8 * 1024**3)}, root / "log")
        server.start()
        try:
            assert server.process is not None
            rows: list[tuple[int, str, float, float, float]] = []
            for size_mib in (1, args.size_mib):
                source = root / f"{size_mib}.bin"
                expected = make_file(source, size_mib * 1024 * 1024)
                for mode in ("multipart", "raw"):
                    with PeakRss(server.process.pid) as rss:
                        before = rss.peak
                        record, elapsed = send(server, source, mode)
                    assert record["sha256"] == expected, "sha256 mismatch"
                    rows.append(
                        (size_mib, mode, before / 2**20, rss.peak / 2**20, size_mib / elapsed)
                    )
                source.unlink()
        finally:
            server.stop()
    print("| upload | route | RSS before (MiB) | peak RSS (MiB) | MiB/s |")
    print("|---|---|---|---|---|")
    for size_mib, mode, before_mib, peak_mib, rate in rows:
        print(f"| {size_mib} MiB | {mode} | {before_mib:.1f} | {peak_mib:.1f} | {rate:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
