"""Webhooks under load: how long an event takes to reach a receiver, and what sending them
costs the uploads.

    python -m bench.webhooks [--runs N] [--uploads N] [--concurrency N]

Per run, two fresh servers take turns (which goes first alternates): one with an endpoint
subscribed to ``file.ready`` (a receiver on loopback, in a process of its own, answering
200), one without. Each gets S4's load: 10 KiB uploads of random bytes from keep-alive
clients; such a file has nothing to process, so ``file.ready`` is written in the upload's
own transaction. Figures:

- delivery lag: from the event's ``timestamp`` (its commit) to the receiver's answer,
  p50 and p99 over every event (goal p99 <= 1 s);
- uploads/s with the endpoint over uploads/s without, run by run (goal >= 0.9x).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from bench.load import upload_load
from bench.systems import BENCH_ENV
from tests.conftest import Server


def _receive(ready: Connection, done: Any) -> None:
    """A receiver process: answers 200 and notes when each event arrived."""
    arrivals: list[tuple[str, float]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
            arrivals.append((json.loads(body)["timestamp"], time.time()))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128
        daemon_threads = True

    http = Server(("127.0.0.1", 0), Handler)
    ready.send(http.server_address[1])
    serving = threading.Thread(target=http.serve_forever, daemon=True)
    serving.start()
    done.wait()
    http.shutdown()
    ready.send(list(arrivals))


def _lags(arrivals: list[tuple[str, float]]) -> list[float]:
    return [
        arrived - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        for stamp, arrived in arrivals
    ]


def _server(root: Path, name: str) -> Server:
    env = {**BENCH_ENV, "UPLOADS_WEBHOOK_ALLOW_PRIVATE": "true"}
    server = Server(root / f"{name}-data", env, root / f"{name}.log")
    server.start(timeout=60)
    return server


def _load(server: Server, uploads: int, concurrency: int) -> float:
    upload_load("127.0.0.1", server.port, "/v1/files", size=64 * 1024, total=64, concurrency=4)
    result = upload_load(
        "127.0.0.1",
        server.port,
        "/v1/files",
        size=10 * 1024,
        total=uploads,
        concurrency=concurrency,
    )
    assert result.ok == uploads, result.statuses
    return result.rate


def _run_hooked(root: Path, name: str, uploads: int, concurrency: int) -> tuple[float, list[float]]:
    here, there = multiprocessing.Pipe()
    done = multiprocessing.Event()
    receiver = multiprocessing.Process(target=_receive, args=(there, done), daemon=True)
    receiver.start()
    port = here.recv()
    server = _server(root, name)
    try:
        created = httpx.post(
            f"{server.url}/v1/webhooks",
            json={"url": f"http://127.0.0.1:{port}/hook", "events": ["file.ready"]},
        )
        created.raise_for_status()
        rate = _load(server, uploads, concurrency)
        deadline = time.monotonic() + 120
        endpoint = created.json()["id"]
        while time.monotonic() < deadline:
            pending = httpx.get(
                f"{server.url}/v1/webhooks/{endpoint}/deliveries",
                params={"state": "pending", "limit": 1},
            ).json()["deliveries"]
            if not pending:
                break
            time.sleep(0.2)
    finally:
        server.stop()
        done.set()
    arrivals = here.recv()
    receiver.join(10)
    return rate, _lags(arrivals)


def _run_plain(root: Path, name: str, uploads: int, concurrency: int) -> float:
    server = _server(root, name)
    try:
        return _load(server, uploads, concurrency)
    finally:
        server.stop()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    hooked_rates: list[float] = []
    plain_rates: list[float] = []
    lags: list[float] = []
    delivered: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        root = Path(tmp)
        for run in range(args.runs):
            hooked_first = run % 2 == 0
            if not hooked_first:
                plain_rates.append(_run_plain(root, f"plain{run}", args.uploads, args.concurrency))
            rate, run_lags = _run_hooked(root, f"hooked{run}", args.uploads, args.concurrency)
            hooked_rates.append(rate)
            lags += run_lags
            # The warm-up's 64 files are events too.
            delivered.append(len(run_lags))
            if hooked_first:
                plain_rates.append(_run_plain(root, f"plain{run}", args.uploads, args.concurrency))
    ratio = statistics.median(h / p for h, p in zip(hooked_rates, plain_rates, strict=True))
    p50, p99 = _quantile(lags, 0.5), _quantile(lags, 0.99)
    command = (
        f"python -m bench.webhooks --runs {args.runs} --uploads {args.uploads}"
        f" --concurrency {args.concurrency}"
    )
    print(f"`{command}`, {time.strftime('%Y-%m-%d')}\n")
    print("| Figure | Value | Goal | Met |")
    print("|---|---|---|---|")
    print(
        f"| events delivered per run | {', '.join(map(str, delivered))} | every upload's | "
        f"{'yes' if all(d == args.uploads + 64 for d in delivered) else 'no'} |"
    )
    print(f"| delivery lag p50 | {p50 * 1000:.0f} ms | | |")
    print(
        f"| delivery lag p99 | {p99 * 1000:.0f} ms | <= 1000 ms | {'yes' if p99 <= 1 else 'no'} |"
    )
    print(
        f"| uploads/s with an endpoint / without | {statistics.median(hooked_rates):.0f} / "
        f"{statistics.median(plain_rates):.0f} = {ratio:.2f}x | >= 0.9x | "
        f"{'yes' if ratio >= 0.9 else 'no'} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
