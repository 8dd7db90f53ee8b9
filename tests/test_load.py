"""Load: 32 concurrent clients send 2,000 mixed uploads (1 KB to 20 MB, most small, images
and not) while deleting and listing. No answer may be a 5xx, every upload must come back
byte for byte, and nothing may be left behind."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests import imagegen
from tests.conftest import ROOT, Server
from tests.helpers import blob_files, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 32
UPLOADS = 2000
KB, MB = 1024, 1024 * 1024
SEED = 20260128


def _base_images() -> list[tuple[str, bytes]]:
    """A few small images; each upload appends random bytes after the image's end
    marker (decoders ignore them), so every upload has its own sha256."""
    images = []
    for i, (fmt, ext) in enumerate([("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif")] * 2):
        out = io.BytesIO()
        size = (160 + 90 * i, 120 + 40 * i)
        img = imagegen.gradient(size)
        img.save(out, fmt, **({"quality": 80} if fmt == "JPEG" else {}))
        images.append((ext, out.getvalue()))
    return images


@dataclass(frozen=True)
class Planned:
    index: int
    image: bool
    size: int  # for data files; images take their base size plus a 16-byte tail
    multipart: bool
    base: int = 0


def _plan() -> list[Planned]:
    rng = random.Random(SEED)
    plan = []
    for index in range(UPLOADS):
        roll = rng.random()
        if roll < 0.20:
            planned = Planned(index, True, 0, rng.random() < 0.5, rng.randrange(6))
        elif roll < 0.90:
            planned = Planned(index, False, rng.randint(1 * KB, 64 * KB), rng.random() < 0.5)
        elif roll < 0.98:
            planned = Planned(index, False, rng.randint(64 * KB, 1 * MB), rng.random() < 0.5)
        else:
            planned = Planned(index, False, rng.randint(1 * MB, 20 * MB), rng.random() < 0.5)
        plan.append(planned)
    return plan


@dataclass
class Outcome:
    uploaded: dict[str, tuple[str, int, bool]] = field(default_factory=dict)  # id: sha, size, image
    deleted: set[str] = field(default_factory=set)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)

    def note(self, what: str, response: httpx.Response) -> None:
        self.statuses[(what, response.status_code)] += 1
        if response.status_code >= 500:
            self.server_errors.append(f"{what} {response.status_code}: {response.text[:300]}")


async def _client(
    http: httpx.AsyncClient,
    queue: asyncio.Queue[Planned],
    images: list[tuple[str, bytes]],
    outcome: Outcome,
    rng: random.Random,
) -> None:
    mine: list[str] = []
    while True:
        try:
            planned = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        if planned.image:
            ext, base = images[planned.base]
            data, name = base + os.urandom(16), f"img{planned.index}.{ext}"
        else:
            data, name = os.urandom(planned.size), f"data{planned.index}.bin"
        digest = hashlib.sha256(data).hexdigest()
        if planned.multipart:
            response = await http.post("/v1/files", files={"file": (name, data)})
            outcome.note("upload", response)
            record = response.json()["files"][0] if response.status_code == 201 else None
        else:
            response = await http.put(f"/v1/files/{name}", content=data)
            outcome.note("upload", response)
            record = response.json() if response.status_code == 201 else None
        if record is not None:
            assert (record["sha256"], record["size"]) == (digest, len(data)), name
            outcome.uploaded[record["id"]] = (digest, len(data), planned.image)
            mine.append(record["id"])
        roll = rng.random()
        if roll < 0.06 and mine:
            victim = mine.pop(rng.randrange(len(mine)))
            deleted = await http.delete(f"/v1/files/{victim}")
            outcome.note("delete", deleted)
            if deleted.status_code == 204:
                outcome.deleted.add(victim)
        elif roll < 0.12:
            outcome.note("list", await http.get("/v1/files", params={"limit": 50}))
        elif roll < 0.14:
            outcome.note("tasks", await http.get("/v1/tasks", params={"limit": 50}))


async def _run_clients(server: Server, outcome: Outcome) -> None:
    queue: asyncio.Queue[Planned] = asyncio.Queue()
    for planned in _plan():
        queue.put_nowait(planned)
    images = _base_images()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
        await asyncio.gather(
            *(
                _client(http, queue, images, outcome, random.Random(SEED + n))
                for n in range(CLIENTS)
            )
        )


async def _all_records(server: Server) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        cursor = None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/v1/files", params=params)).json()
            records.update({r["id"]: r for r in page["files"]})
            cursor = page["next_cursor"]
            if cursor is None:
                return records


async def _check_bytes(
    server: Server, outcome: Outcome, records: dict[str, dict[str, Any]]
) -> None:
    kept = sorted(set(outcome.uploaded) - outcome.deleted)
    sample = random.Random(SEED).sample(kept, len(kept) // 10)
    images = [file_id for file_id in kept if outcome.uploaded[file_id][2]]
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
        gate = asyncio.Semaphore(CLIENTS)

        async def download(file_id: str) -> None:
            async with gate:
                response = await http.get(f"/v1/files/{file_id}/content")
            assert response.status_code == 200
            assert hashlib.sha256(response.content).hexdigest() == outcome.uploaded[file_id][0]

        async def thumbnails(file_id: str) -> None:
            for thumb in records[file_id]["thumbnails"]:
                async with gate:
                    response = await http.get(thumb["url"])
                assert response.status_code == 200, thumb
                assert response.content[:4] == b"RIFF" and response.content[8:12] == b"WEBP"

        async def gone(file_id: str) -> None:
            async with gate:
                response = await http.get(f"/v1/files/{file_id}")
            assert response.status_code == 404

        await asyncio.gather(
            *(download(i) for i in sample),
            *(thumbnails(i) for i in images),
            *(gone(i) for i in outcome.deleted),
        )


# About 90 s on an idle 2-core machine, most of it the task pipeline catching up (some 10 ms
# of server CPU per task run); the timeout leaves room for a machine busy with other work.
@pytest.mark.timeout(540)
def test_32_clients_2000_mixed_uploads(server: Server) -> None:
    started = time.monotonic()
    outcome = Outcome()
    asyncio.run(_run_clients(server, outcome))
    uploaded_in = time.monotonic() - started
    assert outcome.server_errors == [], outcome.server_errors[:5]
    assert outcome.statuses[("upload", 201)] == UPLOADS, outcome.statuses
    assert {status for (what, status) in outcome.statuses if what == "upload"} == {201}
    assert outcome.deleted, "deletes ran alongside the uploads"
    total = sum(size for _, size, _ in outcome.uploaded.values())
    assert 300 * MB < total < 1536 * MB

    kept = set(outcome.uploaded) - outcome.deleted

    def processed() -> bool:
        # Cheap to ask, so the polling does not slow the pipeline it waits for.
        waiting = httpx.get(f"{server.url}/v1/files", params={"status": "processing", "limit": 1})
        files: list[dict[str, Any]] = waiting.json()["files"]
        return files == []

    wait_for(processed, timeout=360, what="every file to be processed", interval=1)
    records = asyncio.run(_all_records(server))
    assert set(records) == kept
    for file_id, record in records.items():
        digest, size, image = outcome.uploaded[file_id]
        assert (record["sha256"], record["size"]) == (digest, size)
        assert record["status"] == "ready", record["tasks"]
        if image:
            assert record["content_type"].startswith("image/")
            assert [t["size"] for t in record["thumbnails"]] == [256, 1024]
    asyncio.run(_check_bytes(server, outcome, records))

    # The deleted files' bytes go once their cleanup tasks have run.
    kept_images = sum(1 for file_id in kept if outcome.uploaded[file_id][2])

    def cleaned() -> bool:
        blobs = blob_files(server)
        originals = [p for p in blobs if "originals" in p.parts]
        thumbs = [p for p in blobs if "thumbnails" in p.parts]
        return (len(originals), len(thumbs)) == (len(kept), 2 * kept_images)

    wait_for(cleaned, timeout=60, what="deleted files' bytes to be removed")
    work = server.data_dir / "tmp" / "work"
    wait_for(lambda: not any(work.glob("*")), timeout=60, what="scratch space to be cleaned")
    sweep = subprocess.run(
        [sys.executable, "-m", "uploads_api.cli", "sweep", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("UPLOADS_")},
        timeout=120,
    )
    assert sweep.returncode == 0, sweep.stderr
    assert "removed 0 temp entries and 0 unreferenced blobs" in sweep.stdout
    assert server.temp_files() == []
    assert cleaned(), "the sweep found nothing to take either"
    print(
        f"\n{UPLOADS} uploads ({total / MB:.0f} MB) in {uploaded_in:.1f}s; "
        f"all checked after {time.monotonic() - started:.1f}s; {dict(outcome.statuses)}"
    )
