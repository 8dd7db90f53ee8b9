"""Streaming multipart intake into a real local storage: the same files at every chunk
size, the names kept from each part, and the boundary read from the content type."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest

from tests.helpers import BOUNDARY, Part, multipart
from tests.intake_helpers import LIMITS, PNG, policy_of, read_blob, receive, run, sha
from uploads_api.errors import MalformedMultipart, UnsupportedMediaType, UploadsError
from uploads_api.ingest.multipart import boundary_of
from uploads_api.storage.local import LocalStorage

# Bytes that look like the start of a boundary must stay data.
TRICKY = b"line one\r\n--" + BOUNDARY[:-3].encode() + b"\r\n--\r\n\r\nend " * 20


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
