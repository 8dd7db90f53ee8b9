"""Streaming intake: multipart and raw bodies fed chunk by chunk into a real local storage."""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import secrets
from collections.abc import AsyncIterator, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import ClientDisconnect

from tests.helpers import BOUNDARY, MULTIPART_TYPE, Part, multipart
from uploads_api.api.problems import http_status
from uploads_api.app import create_app
from uploads_api.config import Settings
from uploads_api.db.models import NewFile
from uploads_api.db.usage import Quota
from uploads_api.errors import (
    ChecksumMismatch,
    FieldTooLarge,
    InsufficientStorage,
    MalformedMultipart,
    NoFiles,
    PayloadTooLarge,
    QuotaExceeded,
    TooManyParts,
    UnsupportedMediaType,
    UploadsError,
)
from uploads_api.ingest.limits import IngestLimits
from uploads_api.ingest.multipart import MultipartIntake, boundary_of
from uploads_api.ingest.policy import UploadPolicy
from uploads_api.ingest.raw import receive_raw
from uploads_api.storage.local import LocalStorage

PNG = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(3000)
# Bytes that look like the start of a boundary must stay data.
TRICKY = b"line one\r\n--" + BOUNDARY[:-3].encode() + b"\r\n--\r\n\r\nend " * 20
MAX_FILE_SIZE = 8 * 1024 * 1024
LIMITS = IngestLimits(
    max_files=4,
    max_fields=4,
    max_field_size=1024,
    max_header_size=4096,
)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def stream(
    body: bytes, size: int, *, fail_at: int | None = None, error: BaseException | None = None
) -> AsyncIterator[bytes]:
    """The body in chunks of ``size``; with ``fail_at``, ``error`` is raised at that offset."""
    end = len(body) if fail_at is None else fail_at
    for offset in range(0, end, size):
        yield body[offset : min(offset + size, end)]
        await asyncio.sleep(0)
    if fail_at is not None:
        raise error or ClientDisconnect()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "blobs", tmp_path / "tmp")


def leftovers(storage: LocalStorage) -> list[Path]:
    """Every file in the temp dir and the blob root."""
    return sorted(
        p for root in (storage.temp_dir, storage.root) for p in root.rglob("*") if p.is_file()
    )


async def read_blob(storage: LocalStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key)])


def policy_of(max_file_size: int = MAX_FILE_SIZE, **overrides: Any) -> UploadPolicy:
    return UploadPolicy(max_file_size=max_file_size, **overrides)


def receive(
    storage: LocalStorage,
    body: bytes,
    size: int,
    limits: IngestLimits = LIMITS,
    policy: UploadPolicy | None = None,
    **kw: Any,
) -> list[NewFile]:
    intake = MultipartIntake(storage, limits, policy or policy_of())
    files: list[NewFile] = run(intake.receive(MULTIPART_TYPE, stream(body, size, **kw)))
    return files


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The happy path, at every chunk size ---------------------------------------------------------

MIXED = multipart(
    Part("note", b"hello \xe2\x9c\x93"),
    Part("file", PNG, filename="../../photos/pic.png", headers=("Content-Type: image/jpeg",)),
    Part("file", TRICKY, filename="C:\\Users\\me\\notes.txt"),
    Part("empty", b""),
    Part("file", b"", filename="empty.bin"),
    Part("file", b"%PDF-1.4\n" + b"x" * 100, filename="\u202egnp.exe"),
    epilogue=b"ignored trailing bytes",
)
EXPECTED = [
    ("pic.png", "image/png", PNG),
    ("notes.txt", "text/plain", TRICKY),
    ("empty.bin", "application/x-empty", b""),
    ("gnp.exe", "application/pdf", b"%PDF-1.4\n" + b"x" * 100),
]


@pytest.mark.parametrize("size", [1, 7, 64, 4096, len(MIXED)])
def test_any_chunking_gives_the_same_files(storage: LocalStorage, size: int) -> None:
    files = receive(storage, MIXED, size)
    got = [(f.filename, f.content_type, f.size, f.sha256) for f in files]
    assert got == [(name, ctype, len(data), sha(data)) for name, ctype, data in EXPECTED]
    for item, (_, _, data) in zip(files, EXPECTED, strict=True):
        assert item.storage_key == f"originals/{item.id[:2]}/{item.id}"
        assert run(read_blob(storage, item.storage_key)) == data
    assert len({f.id for f in files}) == len(EXPECTED)
    assert list(storage.temp_dir.iterdir()) == [], "temp files were moved into place"


def test_a_large_file_is_written_through(storage: LocalStorage) -> None:
    data = secrets.token_bytes(3 * 1024 * 1024 + 123)
    body = multipart(Part("file", data, filename="big.bin"))
    (item,) = receive(storage, body, 65536)
    assert (item.size, item.sha256) == (len(data), sha(data))
    assert run(read_blob(storage, item.storage_key)) == data


def test_a_file_exactly_at_the_limit_is_accepted(storage: LocalStorage) -> None:
    limits = replace(LIMITS, max_field_size=5)
    body = multipart(Part("f", b"12345"), Part("file", b"y" * 100, filename="a"))
    files = receive(storage, body, 33, limits, policy_of(max_file_size=100))
    assert [f.size for f in files] == [100]


@pytest.mark.parametrize(
    ("disposition", "filename"),
    [
        ('form-data; name="file"; filename="plain.txt"; filename*=UTF-8\'\'other.txt', "plain.txt"),
        ('form-data; name="file"; filename*=UTF-8\'\'other.txt; filename="plain.txt"', "plain.txt"),
        ('form-data; name="file"; filename="caf\u00e9.txt"', "caf\u00e9.txt"),
        ('form-data; name="file"; filename="a\\"b.txt"', 'a"b.txt'),
        ('form-data; name="file"; filename=""', "upload"),
        ('FORM-DATA; NAME="file"; filename="upper.txt"', "upper.txt"),
    ],
)
def test_the_plain_filename_is_used(storage: LocalStorage, disposition: str, filename: str) -> None:
    body = multipart(Part("file", b"data", disposition=disposition))
    (item,) = receive(storage, body, 5)
    assert item.filename == filename


def test_filename_star_alone_does_not_make_a_file(storage: LocalStorage) -> None:
    body = multipart(
        Part("extended", b"value", disposition="form-data; name=\"extended\"; filename*=UTF-8''x"),
        Part("file", b"data", filename="real.txt"),
    )
    files = receive(storage, body, 10)
    assert [f.filename for f in files] == ["real.txt"]


# Refusals leave nothing behind -----------------------------------------------------------------

FILE = Part("file", b"x" * 2000, filename="ok.bin")

REFUSALS: dict[str, tuple[bytes, IngestLimits, dict[str, Any], type[UploadsError]]] = {
    "too-many-files": (multipart(FILE, FILE, FILE), replace(LIMITS, max_files=2), {}, TooManyParts),
    "too-many-fields": (
        multipart(FILE, Part("a", b"1"), Part("b", b"2"), Part("c", b"3")),
        replace(LIMITS, max_fields=2),
        {},
        TooManyParts,
    ),
    "field-too-large": (
        multipart(FILE, Part("big", b"z" * 11)),
        replace(LIMITS, max_field_size=10),
        {},
        FieldTooLarge,
    ),
    "file-too-large": (
        multipart(Part("file", b"x" * 101, filename="big.bin")),
        LIMITS,
        {"max_file_size": 100},
        PayloadTooLarge,
    ),
    "second-file-too-large": (
        multipart(FILE, Part("file", b"x" * 2001, filename="big.bin")),
        LIMITS,
        {"max_file_size": 2000},
        PayloadTooLarge,
    ),
    "no-closing-boundary": (multipart(FILE, FILE, close=False), LIMITS, {}, MalformedMultipart),
    "truncated-in-a-file": (multipart(FILE, FILE)[:-300], LIMITS, {}, MalformedMultipart),
    "no-content-disposition": (
        multipart(FILE, Part("x", b"data")).replace(
            b'Content-Disposition: form-data; name="x"\r\n', b"Content-Type: text/plain\r\n"
        ),
        LIMITS,
        {},
        MalformedMultipart,
    ),
    "not-form-data": (
        multipart(FILE, Part("x", b"data", disposition='attachment; filename="a.txt"')),
        LIMITS,
        {},
        MalformedMultipart,
    ),
    "header-too-long": (
        multipart(FILE, Part("x", b"data", headers=("X-Padding: " + "p" * 5000,))),
        LIMITS,
        {},
        MalformedMultipart,
    ),
    "too-many-headers": (
        multipart(FILE, Part("x", b"data", headers=tuple(f"X-H{i}: v" for i in range(20)))),
        LIMITS,
        {},
        MalformedMultipart,
    ),
    "garbage-after-boundary": (
        b"--" + BOUNDARY.encode() + b"garbage\r\n" + multipart(FILE),
        LIMITS,
        {},
        MalformedMultipart,
    ),
    "only-fields": (multipart(Part("a", b"1"), Part("b", b"2")), LIMITS, {}, NoFiles),
    "empty-body": (b"", LIMITS, {}, MalformedMultipart),
    "type-not-allowed": (
        multipart(Part("file", PNG, filename="a.png"), FILE),
        LIMITS,
        {"allowed_types": ("image/*",)},
        UnsupportedMediaType,
    ),
    "checksum-mismatch": (
        multipart(FILE, Part("sha256", b"0" * 64), FILE),
        LIMITS,
        {},
        ChecksumMismatch,
    ),
    "quota-files": (
        multipart(FILE, FILE),
        LIMITS,
        {"quota": Quota(owner=None, max_bytes=None, max_files=3), "used_files": 2},
        QuotaExceeded,
    ),
    "quota-bytes": (
        multipart(FILE, FILE),
        LIMITS,
        {"quota": Quota(owner=None, max_bytes=10_000, max_files=None), "used_bytes": 7000},
        QuotaExceeded,
    ),
}


@pytest.mark.parametrize("size", [7, 4096, 1 << 20])
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_raise_the_right_error_and_leave_nothing(
    storage: LocalStorage, case: str, size: int
) -> None:
    body, limits, policy, error = REFUSALS[case]
    with pytest.raises(error) as caught:
        receive(storage, body, size, limits, policy_of(**policy))
    assert type(caught.value) is error
    assert 400 <= http_status(caught.value) < 500
    assert leftovers(storage) == []


# The refusals one file part causes name it: its index among the file parts, its name.
PART_AT_FAULT = {
    "file-too-large": (0, "big.bin"),
    "second-file-too-large": (1, "big.bin"),
    "type-not-allowed": (1, "ok.bin"),
    "checksum-mismatch": (1, "ok.bin"),
}


@pytest.mark.parametrize("size", [7, 1 << 20])
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refusal_caused_by_one_file_part_names_it(
    storage: LocalStorage, case: str, size: int
) -> None:
    body, limits, policy, error = REFUSALS[case]
    with pytest.raises(error) as caught:
        receive(storage, body, size, limits, policy_of(**policy))
    named = {k: v for k, v in caught.value.extra.items() if k in ("part", "filename")}
    if case in PART_AT_FAULT:
        part, filename = PART_AT_FAULT[case]
        assert named == {"part": part, "filename": filename}
    else:
        assert named == {}, "only a refusal caused by one file part names it"


def test_a_matching_checksum_marks_the_file_verified(storage: LocalStorage) -> None:
    data = b"checked bytes"
    body = multipart(
        Part("sha256", sha(data).upper().encode()),
        Part("file", data, filename="a.txt"),
        Part("file", data, filename="b.txt"),
    )
    first, second = receive(storage, body, 5)
    assert (first.verified, first.sha256) == (True, sha(data))
    assert not second.verified, "the checksum covers only the next file part"


DISCONNECT_BODY = multipart(
    Part("file", secrets.token_bytes(50_000), filename="a.bin"),
    Part("field", b"v"),
    Part("file", secrets.token_bytes(50_000), filename="b.bin"),
)


@pytest.mark.parametrize("fail_at", [0, 100, 25_000, 50_300, 75_000, len(DISCONNECT_BODY) - 10])
def test_a_disconnect_mid_body_leaves_nothing(storage: LocalStorage, fail_at: int) -> None:
    with pytest.raises(ClientDisconnect):
        receive(storage, DISCONNECT_BODY, 1000, fail_at=fail_at)
    assert leftovers(storage) == []


def test_a_storage_error_mid_body_leaves_nothing(storage: LocalStorage) -> None:
    with pytest.raises(OSError, match="socket reset"):
        receive(storage, DISCONNECT_BODY, 1000, fail_at=60_000, error=OSError("socket reset"))
    assert leftovers(storage) == []


def test_a_cancelled_request_leaves_nothing(storage: LocalStorage) -> None:
    hang = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield DISCONNECT_BODY[:60_000]
        hang.set()
        await asyncio.sleep(3600)
        yield b""

    async def main() -> None:
        intake = MultipartIntake(storage, LIMITS, policy_of())
        job = asyncio.create_task(intake.receive(MULTIPART_TYPE, body()))
        await asyncio.wait_for(hang.wait(), 10)
        # The first file is on disk; the second, not past its first write buffer, is still
        # in memory (a temp file is made by the first write).
        for _ in range(1000):
            if list(storage.temp_dir.iterdir()):
                break
            await asyncio.sleep(0.01)
        assert len(list(storage.temp_dir.iterdir())) == 1
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    run(main())
    assert leftovers(storage) == []


class FullDisk(LocalStorage):
    """The disk fills up after ``room`` bytes."""

    def __init__(self, root: Path, temp_dir: Path, room: int) -> None:
        super().__init__(root, temp_dir)
        self.room = room

    async def open_writer(self, key: str) -> Any:
        writer = await super().open_writer(key)
        write = writer.write

        async def limited(*chunks: bytes | memoryview) -> None:
            size = sum(len(chunk) for chunk in chunks)
            if size > self.room:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.room -= size
            await write(*chunks)

        writer.write = limited  # type: ignore[method-assign]
        return writer


def test_a_full_disk_is_insufficient_storage_and_leaves_nothing(tmp_path: Path) -> None:
    storage = FullDisk(tmp_path / "blobs", tmp_path / "tmp", room=1_500_000)
    body = multipart(
        Part("file", b"a" * 1_200_000, filename="fits.bin"),
        Part("file", b"b" * 1_200_000, filename="does-not.bin"),
    )
    with pytest.raises(InsufficientStorage):
        receive(storage, body, 65536)
    assert leftovers(storage) == []


# boundary_of -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ('multipart/form-data; boundary="a b:c"', b"a b:c"),
        ("Multipart/Form-Data; charset=utf-8; boundary=xyz", b"xyz"),
        ("multipart/form-data; boundary=" + "b" * 200, b"b" * 200),
    ],
)
def test_boundary_of(content_type: str, boundary: bytes) -> None:
    assert boundary_of(content_type) == boundary


@pytest.mark.parametrize(
    ("content_type", "error"),
    [
        (None, UnsupportedMediaType),
        ("", UnsupportedMediaType),
        ("text/plain", UnsupportedMediaType),
        ("application/octet-stream; boundary=abc", UnsupportedMediaType),
        ("multipart/mixed; boundary=abc", UnsupportedMediaType),
        ("multipart/form-data", MalformedMultipart),
        ("multipart/form-data; charset=utf-8", MalformedMultipart),
        ("multipart/form-data; boundary=", MalformedMultipart),
        ('multipart/form-data; boundary=""', MalformedMultipart),
        ("multipart/form-data; boundary=" + "b" * 201, MalformedMultipart),
    ],
)
def test_boundary_of_refuses(content_type: str | None, error: type[UploadsError]) -> None:
    with pytest.raises(error) as caught:
        boundary_of(content_type)
    assert type(caught.value) is error


def test_a_bad_content_type_is_refused_before_reading(storage: LocalStorage) -> None:
    read = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        read = True
        yield multipart(FILE)

    with pytest.raises(UnsupportedMediaType):
        run(MultipartIntake(storage, LIMITS, policy_of()).receive("application/json", body()))
    assert not read
    assert leftovers(storage) == []


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
