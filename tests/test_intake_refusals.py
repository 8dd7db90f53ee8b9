"""Multipart bodies that are refused or cut short, fed chunk by chunk into a real local
storage: each raises the right error, names the part at fault, and leaves nothing behind, as
do a disconnect, a cancelled request, a full disk and a content type refused before
reading."""

from __future__ import annotations

import asyncio
import errno
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from tests.helpers import BOUNDARY, MULTIPART_TYPE, Part, multipart
from tests.intake_helpers import LIMITS, PNG, leftovers, policy_of, receive, run, sha
from uploads_api.api.problems import http_status
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
from uploads_api.ingest.multipart import MultipartIntake
from uploads_api.storage.local import LocalStorage

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
