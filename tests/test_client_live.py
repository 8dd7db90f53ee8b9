"""The Python client against a live server: every method of ``Client`` and ``AsyncClient``,
``upload_many`` sending each missing file once, and real 429s waited out."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import imagegen
from tests.conftest import Server
from tests.helpers import sha256 as sha
from uploads_api.client import (
    AsyncClient,
    Client,
    FileRecord,
    NotFound,
    Retrying,
    ValidationError,
)

# The cap lets one test provoke real 429s; the others never have more uploads in flight.
UPLOAD_CAP = 3


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("client-server")
    env = {"UPLOADS_MAX_CONCURRENT_UPLOADS": str(UPLOAD_CAP)}
    server = Server(base / "data", env, base / "server.log")
    server.start()
    yield server
    server.stop()


def inputs(folder: Path) -> dict[str, Path]:
    """A small photo, a truncated JPEG (its thumbnails fail) and a text file, unique bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    notes = folder / "notes.txt"
    notes.write_bytes(os.urandom(16).hex().encode() * 100)
    return {
        "photo": imagegen.jpeg_photo(folder, size=(120, 80)),
        "broken": imagegen.truncated_jpeg(folder),
        "notes": notes,
    }


@pytest.mark.e2e
def test_sync_client_every_method(live: Server, tmp_path: Path) -> None:
    files = inputs(tmp_path)
    with Client(live.url, timeout=30) as client:
        photo = client.upload(files["photo"])
        assert (photo.filename, photo.sha256) == ("photo.jpg", sha(files["photo"].read_bytes()))
        assert photo.sha256 is not None
        from_bytes = client.upload(os.urandom(100), filename="random.bin")
        with files["notes"].open("rb") as stream:
            notes = client.upload(stream)
        assert notes.filename == "notes.txt"
        broken = client.upload(files["broken"], filename="broken.jpg")

        ready = client.wait(photo.id, timeout=30)
        assert ready.status == "ready"
        assert [t.size for t in ready.thumbnails] == [256, 1024]
        assert client.full_url(ready.thumbnails[0].url).startswith(live.url + "/v1/files/")
        assert client.get(notes.id, wait=30).status == "ready"
        failed = client.wait(broken.id, timeout=30)
        assert failed.status == "failed"
        assert "thumbnails" in (failed.failure() or "")

        mine = {photo.id, from_bytes.id, notes.id, broken.id}
        listed = [r.id for r in client.list(page_size=1) if r.id in mine]
        assert sorted(listed) == sorted(mine), "every page is followed"
        assert len(list(client.list(limit=3, page_size=2))) == 3
        assert [r.id for r in client.list(sha256=photo.sha256)] == [photo.id]
        assert broken.id in {r.id for r in client.list("failed")}

        unknown = sha(b"never uploaded")
        check = client.check([photo.sha256, unknown, photo.sha256.upper()])
        assert (check.present, check.missing) == ((photo.sha256,), (unknown,))

        target = tmp_path / "out" / "copy.jpg"
        target.parent.mkdir()
        assert client.download(photo.id, target) == files["photo"].stat().st_size
        assert target.read_bytes() == files["photo"].read_bytes()
        assert not list(target.parent.glob(".*.part")), "no temp file left behind"
        buffer = io.BytesIO()
        client.download(notes.id, buffer)
        assert buffer.getvalue() == files["notes"].read_bytes()

        failed_tasks = [t for t in client.tasks("failed") if t.file_id == broken.id]
        assert [t.name for t in failed_tasks] == ["thumbnails"]
        assert client.retry(broken.id).status == "processing"
        assert client.wait(broken.id, timeout=30).status == "failed"

        client.delete(from_bytes.id)
        with pytest.raises(NotFound) as caught:
            client.get(from_bytes.id)
        assert caught.value.code == "not-found"
        with pytest.raises(NotFound):
            client.delete(from_bytes.id)
        with pytest.raises(ValidationError) as invalid:
            next(client.list("bogus"))
        assert invalid.value.code == "validation-error"


@pytest.mark.e2e
def test_async_client_every_method(live: Server, tmp_path: Path) -> None:
    files = inputs(tmp_path)

    async def main() -> None:
        async with AsyncClient(live.url, timeout=30) as client:
            seen: list[int] = []
            photo, notes, broken = await asyncio.gather(
                client.upload(files["photo"], progress=seen.append),
                client.upload(files["notes"].read_bytes(), filename="notes.txt"),
                client.upload(files["broken"]),
            )
            assert seen[0] == 0 and seen[-1] == files["photo"].stat().st_size
            assert (await client.wait(photo.id, timeout=30)).status == "ready"
            assert (await client.get(notes.id, wait=30)).status == "ready"
            failed = await client.wait(broken.id, timeout=30)
            assert failed.status == "failed"

            mine = {photo.id, notes.id, broken.id}
            listed = {r.id async for r in client.list(page_size=2)}
            assert mine <= listed
            assert [r.id async for r in client.list(sha256=notes.sha256)] == [notes.id]
            assert photo.sha256 is not None
            check = await client.check([photo.sha256, sha(b"nothing")])
            assert check.present == (photo.sha256,)

            target = tmp_path / "copy.jpg"
            await client.download(photo.id, target)
            assert target.read_bytes() == files["photo"].read_bytes()

            tasks = [t async for t in client.tasks("failed", limit=50)]
            assert broken.id in {t.file_id for t in tasks}
            assert (await client.retry(broken.id)).status == "processing"

            await client.delete(notes.id)
            with pytest.raises(NotFound):
                await client.get(notes.id)
            with pytest.raises(ValueError):
                await client.get(photo.id, wait=61)

    asyncio.run(main())


@pytest.mark.e2e
def test_upload_many_sends_each_missing_file_once(live: Server, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    paths = []
    for i in range(6):
        paths.append(folder / f"{i}.bin")
        paths[-1].write_bytes(os.urandom(2048))
    (folder / "copy.bin").write_bytes(paths[4].read_bytes())
    paths.append(folder / "copy.bin")

    with Client(live.url) as client:
        first = client.upload_many(paths[:3], concurrency=3)
        assert [r.outcome for r in first] == ["uploaded"] * 3
        second = client.upload_many(paths, concurrency=3, skip_existing=True)
    assert [r.outcome for r in second] == ["skipped"] * 3 + ["uploaded"] * 3 + ["skipped"]
    assert second[-1].reason == f"same bytes as {paths[4]}"

    async def again() -> list[str]:
        async with AsyncClient(live.url) as client:
            results = await client.upload_many(paths, concurrency=3, skip_existing=True)
            return [r.outcome for r in results]

    assert asyncio.run(again()) == ["skipped"] * 7
    with Client(live.url) as client:
        for path in paths[:6]:
            assert len(list(client.list(sha256=sha(path.read_bytes())))) == 1


class SlowStream(io.BytesIO):
    """A body that takes its time, holding one of the server's upload slots meanwhile."""

    def read(self, size: int | None = -1) -> bytes:
        time.sleep(0.4)
        return super().read(size)


@pytest.mark.e2e
def test_live_throttling_is_waited_out(live: Server) -> None:
    notices: list[Retrying] = []
    blobs = [os.urandom(1000) for _ in range(UPLOAD_CAP + 1)]

    async def main() -> list[FileRecord]:
        async with AsyncClient(live.url) as client:
            slow = [
                asyncio.create_task(client.upload(SlowStream(blob), filename="slow.bin"))
                for blob in blobs[:UPLOAD_CAP]
            ]
            await asyncio.sleep(0.3)
            quick = await client.upload(blobs[-1], filename="quick.bin", on_retry=notices.append)
            return [*await asyncio.gather(*slow), quick]

    records = asyncio.run(main())
    assert [r.sha256 for r in records] == [sha(b) for b in blobs]
    assert any(n.reason == "429 too-many-uploads" and n.delay >= 1 for n in notices), notices
