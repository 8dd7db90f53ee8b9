"""A fake API that offers direct uploads and the bucket its part URLs point to, behind one
httpx MockTransport handler, and an upload through a sync or async client over it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from typing import Any

import httpx

from tests.helpers import record_json
from uploads_api.client import AsyncClient, Client, FileRecord, RetryPolicy
from uploads_api.client.direct import part_ranges

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, jitter=False)
API = "http://uploads.test"
BUCKET = "bucket.test"
OFFER = {"min_size": 100, "part_size": 40, "max_parts": 10_000, "expires_in": 3600}
UPLOAD_ID = "up-1"

Answer = int | type[httpx.TransportError]


class FakeService:
    """An API that offers direct uploads and the bucket its part URLs point to, behind one
    MockTransport handler. ``part_answers[k]`` are answered to part k's PUTs before it is
    stored (a status, or a transport error raised)."""

    def __init__(self, offer: dict[str, int] | int | None = None) -> None:
        self.offer: dict[str, int] | int | None = OFFER if offer is None else offer
        self.requests: list[httpx.Request] = []
        self.parts: dict[int, bytes] = {}
        self.part_answers: dict[int, list[Answer]] = {}
        self.complete_answers: list[Answer] = []
        self.created: list[dict[str, Any]] = []
        self.stored: list[bytes] = []  # whole files, however they came
        self.files: dict[str, dict[str, Any]] = {}  # completed direct uploads by id
        self._lock = threading.Lock()

    def paths(self, method: str | None = None) -> list[str]:
        return [r.url.path for r in self.requests if method in (None, r.method)]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        body = request.read()
        if request.url.host == BUCKET:
            return self._part(request, body)
        route = (request.method, request.url.path)
        if route == ("GET", "/v1/capabilities"):
            if isinstance(self.offer, int):
                return httpx.Response(self.offer, json={"code": "not-found"})
            return httpx.Response(200, json={"direct_uploads": self.offer or None})
        if route == ("POST", "/v1/direct-uploads"):
            return self._create(json.loads(body))
        if route == ("POST", f"/v1/direct-uploads/{UPLOAD_ID}/complete"):
            return self._complete(json.loads(body)["parts"])
        if route == ("DELETE", f"/v1/direct-uploads/{UPLOAD_ID}"):
            return httpx.Response(204)
        if route[0] == "PUT" and request.url.path.startswith("/v1/files/"):
            self.stored.append(body)
            return httpx.Response(201, json=record_json(body, request.url.path.split("/")[-1]))
        if route[0] == "GET" and route[1].startswith("/v1/files/"):
            record = self.files.get(route[1].split("/")[-1])
            return httpx.Response(200, json=record) if record else httpx.Response(404, json={})
        return httpx.Response(404, json={"code": "not-found"})

    def _create(self, spec: dict[str, Any]) -> httpx.Response:
        self.created.append(spec)
        count = len(part_ranges(spec["size"], OFFER["part_size"]))
        parts = [
            {"number": n, "url": f"https://{BUCKET}/key?partNumber={n}&X-Amz-Signature=s"}
            for n in range(1, count + 1)
        ]
        plan = {"id": UPLOAD_ID, "part_size": OFFER["part_size"], "parts": parts}
        return httpx.Response(201, json={**plan, "expires_at": "2026-01-01T00:00:00Z"})

    def _part(self, request: httpx.Request, body: bytes) -> httpx.Response:
        number = int(request.url.params["partNumber"])
        answers = self.part_answers.get(number, [])
        if answers:
            answer = answers.pop(0)
            if not isinstance(answer, int):
                raise answer("storage went away", request=request)
            return httpx.Response(answer, text="<Error/>")
        assert "authorization" not in request.headers, "the API key must not reach storage"
        assert request.headers["content-length"] == str(len(body))
        self.parts[number] = body
        return httpx.Response(200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def _complete(self, listed: list[dict[str, Any]]) -> httpx.Response:
        if UPLOAD_ID in self.files:
            return httpx.Response(404, json={"code": "not-found", "status": 404})
        if self.complete_answers and isinstance(self.complete_answers[0], int):
            # Another request is completing it (an earlier try whose answer was lost).
            status = self.complete_answers.pop(0)
            assert isinstance(status, int)
            return httpx.Response(status, json={"code": "direct-upload-busy", "status": status})
        assert [p["number"] for p in listed] == sorted(self.parts)
        for part in listed:
            assert part["etag"] == f'"{hashlib.md5(self.parts[part["number"]]).hexdigest()}"'
        data = b"".join(self.parts[n] for n in sorted(self.parts))
        self.stored.append(data)
        # Hashed later, by the server's verify task; the file has the upload's id.
        record = record_json(data, self.created[-1]["filename"], UPLOAD_ID)
        self.files[UPLOAD_ID] = {**record, "sha256": None}
        if self.complete_answers:
            answer = self.complete_answers.pop(0)
            assert not isinstance(answer, int)
            raise answer("the answer was lost", request=self.requests[-1])
        return httpx.Response(201, json=self.files[UPLOAD_ID])


def upload_with(
    kind: str, service: FakeService, source: Any, options: dict[str, Any] | None = None, **kw: Any
) -> FileRecord:
    """``upload(source, **kw)`` on a sync or async client over ``service``."""
    transport = httpx.MockTransport(service)
    settings = {"retry": FAST, "api_key": "upk_secret", **(options or {})}
    if kind == "sync":
        with Client(API, transport=transport, **settings) as client:
            return client.upload(source, **kw)

    async def main() -> FileRecord:
        async with AsyncClient(API, transport=transport, **settings) as client:
            return await client.upload(source, **kw)

    return asyncio.run(main())
