"""Raw bodies (a ``PUT``'s) streamed into a real local storage, and uploads through the ASGI
app: stored, refused as problems, and nothing left behind."""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import ClientDisconnect

from tests.helpers import MULTIPART_TYPE, Part, multipart
from tests.intake_helpers import PNG, leftovers, policy_of, read_blob, run, sha, stream
from uploads_api.app import create_app
from uploads_api.config import Settings
from uploads_api.db.models import NewFile
from uploads_api.errors import PayloadTooLarge
from uploads_api.ingest.raw import receive_raw
from uploads_api.storage.local import LocalStorage

# Raw bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (PNG, "image/png"),
        (b"", "application/x-empty"),
        (b"plain words\n" * 10, "text/plain"),
        (secrets.token_bytes(2 * 1024 * 1024 + 1), None),
    ],
)
@pytest.mark.parametrize("announce", [True, False])
def test_receive_raw(
    storage: LocalStorage, data: bytes, content_type: str | None, announce: bool
) -> None:
    received: NewFile = run(
        receive_raw(
            storage,
            policy_of(),
            "../dir/Raw Name.bin",
            stream(data, 65536),
            len(data) if announce else None,
        )
    )
    assert (received.filename, received.size, received.sha256) == (
        "Raw Name.bin",
        len(data),
        sha(data),
    )
    if content_type is not None:
        assert received.content_type == content_type
    assert run(read_blob(storage, received.storage_key)) == data
    assert list(storage.temp_dir.iterdir()) == []


def test_receive_raw_refuses_an_announced_oversize_body_before_reading(
    storage: LocalStorage,
) -> None:
    read = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        read = True
        yield b"x"

    with pytest.raises(PayloadTooLarge):
        run(receive_raw(storage, policy_of(max_file_size=100), "a.bin", body(), 101))
    assert not read
    assert leftovers(storage) == []


@pytest.mark.parametrize("announced", [None, 50])
def test_receive_raw_refuses_an_oversize_stream(
    storage: LocalStorage, announced: int | None
) -> None:
    policy = policy_of(max_file_size=100)
    with pytest.raises(PayloadTooLarge):
        run(receive_raw(storage, policy, "a.bin", stream(b"x" * 101, 10), announced))
    assert leftovers(storage) == []


@pytest.mark.parametrize("fail_at", [0, 30_000])
def test_receive_raw_disconnect_leaves_nothing(storage: LocalStorage, fail_at: int) -> None:
    with pytest.raises(ClientDisconnect):
        run(
            receive_raw(
                storage, policy_of(), "a.bin", stream(b"y" * 60_000, 1000, fail_at=fail_at), None
            )
        )
    assert leftovers(storage) == []


# Through the ASGI app ------------------------------------------------------------------------


def app_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "d",
        "image_workers": 1,
        "task_concurrency": 2,
        "shutdown_grace_seconds": 1,
    }
    values.update(overrides)
    return Settings(**values)


async def with_client(settings: Settings, body: Any) -> Any:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await body(client)


def test_asgi_multipart_upload(tmp_path: Path) -> None:
    text = b"just some text\n" * 40
    files = [
        ("file", ("../notes.txt", text, "application/x-whatever")),
        ("file", ("pic.png", PNG, "image/png")),
    ]

    async def body(client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/files", files=files, data={"note": "hi"})
        assert response.status_code == 201, response.text
        created = response.json()["files"]
        assert [f["filename"] for f in created] == ["notes.txt", "pic.png"]
        assert [f["content_type"] for f in created] == ["text/plain", "image/png"]
        assert [f["size"] for f in created] == [len(text), len(PNG)]
        assert [f["sha256"] for f in created] == [sha(text), sha(PNG)]
        for item in created:
            assert len(item["id"]) == 32
            assert item["links"] == {
                "self": f"/v1/files/{item['id']}",
                "content": f"/v1/files/{item['id']}/content",
            }
            assert item["status"] in ("processing", "ready", "failed")
            assert {t["name"] for t in item["tasks"]} == {"metadata", "thumbnails", "cleanup"}
        download = await client.get(created[0]["links"]["content"])
        assert download.status_code == 200
        assert download.content == text
        partial = await client.get(created[1]["links"]["content"], headers={"Range": "bytes=0-7"})
        assert partial.status_code == 206
        assert partial.content == PNG[:8]
        assert partial.headers["content-range"] == f"bytes 0-7/{len(PNG)}"

    run(with_client(app_settings(tmp_path), body))
    assert list((tmp_path / "d" / "tmp").glob("*.part")) == []


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (multipart(Part("file", b"x" * 1001, filename="a")), MULTIPART_TYPE, 413, "file-too-large"),
        (multipart(Part("note", b"hi")), MULTIPART_TYPE, 422, "no-files"),
        (
            multipart(Part("file", b"x", filename="a"), close=False),
            MULTIPART_TYPE,
            400,
            "malformed-multipart",
        ),
        (b'{"file": "x"}', "application/json", 415, "unsupported-media-type"),
    ],
)
def test_asgi_refusals_are_problems(
    tmp_path: Path, content: bytes, content_type: str, status: int, code: str
) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        headers = {"Content-Type": content_type}
        response = await client.post("/v1/files", content=content, headers=headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == code
        listing = await client.get("/v1/files")
        assert listing.json()["files"] == []

    run(with_client(app_settings(tmp_path, max_file_size=1000), body))
    assert list((tmp_path / "d" / "tmp").glob("*.part")) == []
    assert [p for p in (tmp_path / "d" / "blobs").rglob("*") if p.is_file()] == []


def test_start_up_objects_are_kept_out_of_the_collector(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        assert (await client.get("/healthz")).status_code == 200
        # Everything alive once the app has started is frozen: full collections skip it.
        assert gc.get_freeze_count() > 10_000

    try:
        asyncio.run(with_client(app_settings(tmp_path), body))
    finally:
        gc.unfreeze()
