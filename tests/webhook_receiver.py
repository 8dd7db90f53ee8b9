"""A webhook receiver for the tests: a real HTTP server on a loopback port, in a thread,
that verifies every request with the ``standardwebhooks`` package and answers as told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    secret: str | None = None
    # How to answer the n-th request (0-based): a status.
    answer: Callable[[int], int] = lambda _n: 200
    received: list[Received] = field(default_factory=list)
    # Where a 3xx answer points.
    location: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received)} of {count} webhooks arrived")

    def of_type(self, kind: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.payload["type"] == kind]


@contextmanager
def receiver(host: str = "127.0.0.1") -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as most receivers

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified = False
            if state.secret is not None:
                try:
                    Webhook(state.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
            got = Received(headers, body, verified, 0)
            with state.lock:
                number = len(state.received)
                state.received.append(got)
            got.answered = status = state.answer(number)
            reply = b'{"ok": true}' if status < 300 else b"no thanks " * 300
            self.send_response(status)
            if state.location is not None and 300 <= status < 400:
                self.send_header("location", state.location)
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128

    server_class: type[ThreadingHTTPServer] = Server
    if ":" in host:
        import socket

        class V6Server(Server):
            address_family = socket.AF_INET6

        server_class = V6Server
    http = server_class((host, 0), Handler)
    port = http.server_address[1]
    state.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/hook"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        http.shutdown()
        http.server_close()
