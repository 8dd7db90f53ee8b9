"""Hostile requests over real sockets: broken multipart, lying lengths, request smuggling,
checksums, and hostile file names. Each request is refused with the right problem (or its
names made harmless), nothing of a refused request is kept, and the server answers
``/healthz`` at once afterwards."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import Server, ServerFactory
from tests.helpers import (
    BOUNDARY,
    MULTIPART_TYPE,
    Part,
    assert_healthy,
    assert_nothing_stored,
    assert_problem,
    blob_files,
    exchange,
    file_part,
    multipart,
    request_head,
    sha256,
)

pytestmark = pytest.mark.e2e

UVICORN_400 = b"Invalid HTTP request received."


def post_multipart(
    client: httpx.Client, *parts: Part, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(
        "/v1/files",
        content=multipart(*parts),
        headers={"Content-Type": MULTIPART_TYPE, **(headers or {})},
    )


# Servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(module_server_factory: ServerFactory) -> Server:
    """Refusals only: nothing may ever be stored on this server."""
    return module_server_factory(body_timeout=2)


# Refusals: one table, each case checked the same way -----------------------------------------


@dataclass(frozen=True)
class Refusal:
    head: bytes
    body: bytes
    status: int
    code: str | None  # None: uvicorn refuses the HTTP itself, before the app sees it
    within: float = 1.0  # seconds to the answer
    extra: dict[str, Any] = field(default_factory=dict)


def _post(
    body: bytes, *, content_type: str = MULTIPART_TYPE, length: int | None = None, **kw: Any
) -> bytes:
    return request_head(
        "POST",
        "/v1/files",
        content_type=content_type,
        length=len(body) if length is None else length,
        **kw,
    )


def _put(name: str, body: bytes, *, length: int | None = None, **kw: Any) -> bytes:
    return request_head(
        "PUT",
        f"/v1/files/{name}",
        content_type="application/octet-stream",
        length=len(body) if length is None else length,
        **kw,
    )


SMALL = multipart(file_part())
TRUNCATED = multipart(file_part(b"x" * 5000, "cut.bin"), file_part(b"y" * 5000, "b.bin"))[:7000]
JUNK = b"junk " * (800 * 1024) + SMALL  # 4 MB before the first boundary
MANY_FILES = multipart(*(file_part(b"x", f"f{i}.txt") for i in range(1001)))
MANY_FIELDS = multipart(*(Part(f"f{i}", b"v") for i in range(5000)), file_part())
BIG_FIELD = multipart(file_part(), Part("big", b"z" * (50 * 1024 * 1024)))
MANY_HEADERS = multipart(
    Part("file", b"x", "a.txt", headers=tuple(f"X-H{i}: v" for i in range(50)))
)
BIG_HEADER = multipart(Part("file", b"x", "a.txt", headers=("X-Big: " + "b" * 20_000,)))
NO_HEADERS = f"--{BOUNDARY}\r\n\r\nhello\r\n--{BOUNDARY}--\r\n".encode()
DATA = b"0123456789" * 100
CHUNKED = b"%x\r\n" % len(DATA) + DATA + b"\r\n0\r\n\r\n"
WRONG_DIGEST = "sha-256=:" + base64.b64encode(hashlib.sha256(b"other").digest()).decode() + ":"
FULL_DIGEST = "sha-256=:" + base64.b64encode(hashlib.sha256(DATA).digest()).decode() + ":"
SHA_FIELD_MISMATCH = multipart(Part("sha256", b"0" * 64), file_part(b"the real bytes"))


def _redos(backslashes: int) -> str:
    return 'multipart/form-data; boundary="' + "\\" * backslashes + "a"


REFUSALS: dict[str, Refusal] = {
    # 1. A boundary built to make a backtracking parser spin.
    "boundary-redos": Refusal(
        _post(SMALL, content_type=_redos(40)), SMALL, 400, "malformed-multipart"
    ),
    "boundary-redos-long": Refusal(
        _post(SMALL, content_type=_redos(4000)), SMALL, 400, "malformed-multipart"
    ),
    # 2. Refused at the first bytes, without reading the megabytes.
    "junk-before-first-boundary": Refusal(_post(JUNK), JUNK, 400, "malformed-multipart"),
    # 3.
    "too-many-part-headers": Refusal(_post(MANY_HEADERS), MANY_HEADERS, 400, "malformed-multipart"),
    "oversized-part-header": Refusal(_post(BIG_HEADER), BIG_HEADER, 400, "malformed-multipart"),
    # 5.
    "1001-file-parts": Refusal(
        _post(MANY_FILES), MANY_FILES, 400, "too-many-parts", extra={"limit": 100}
    ),
    "5000-tiny-fields": Refusal(
        _post(MANY_FIELDS), MANY_FIELDS, 400, "too-many-parts", extra={"limit": 1000}
    ),
    "50mb-field": Refusal(
        _post(BIG_FIELD), BIG_FIELD, 413, "field-too-large", extra={"limit": 64 * 1024}
    ),
    # 6.
    "missing-boundary": Refusal(
        _post(SMALL, content_type="multipart/form-data"), SMALL, 400, "malformed-multipart"
    ),
    "missing-closing-delimiter": Refusal(
        _post(SMALL[: -len(f"--{BOUNDARY}--\r\n")]),
        SMALL[: -len(f"--{BOUNDARY}--\r\n")],
        400,
        "malformed-multipart",
    ),
    "truncated-body": Refusal(_post(TRUNCATED), TRUNCATED, 400, "malformed-multipart"),
    "part-without-headers": Refusal(_post(NO_HEADERS), NO_HEADERS, 400, "malformed-multipart"),
    "not-multipart": Refusal(
        _post(b'{"a": 1}', content_type="application/json"),
        b'{"a": 1}',
        415,
        "unsupported-media-type",
    ),
    # 13. Content-Length lies. What uvicorn (httptools) does, precisely:
    # - keep-alive, body longer than announced: the surplus is parsed as the next request,
    #   uvicorn answers its own text/plain 400 and closes; the upload sees a disconnect.
    "multipart-length-shorter-keep-alive": Refusal(
        _post(SMALL, length=len(SMALL) - 20) + SMALL, b"", 400, None
    ),
    "put-length-shorter-keep-alive": Refusal(
        _put("short.bin", DATA, length=500) + DATA, b"", 400, None
    ),
    # - Connection: close, multipart: the app reads the announced bytes, which lack the
    #   closing boundary.
    "multipart-length-shorter-close": Refusal(
        _post(SMALL, length=len(SMALL) - 20, headers=("Connection: close",)),
        SMALL,
        400,
        "malformed-multipart",
    ),
    # - Connection: close, raw PUT: only a Content-Digest can tell (see the test below).
    "put-length-shorter-close-with-digest": Refusal(
        _put(
            "short.bin",
            DATA,
            length=500,
            headers=("Connection: close", f"Content-Digest: {FULL_DIGEST}"),
        ),
        DATA,
        400,
        "checksum-mismatch",
    ),
    # - body shorter than announced: the app waits for the rest until the body timeout.
    "put-length-longer": Refusal(
        _put("long.bin", DATA, length=len(DATA) * 5), DATA, 408, "body-timeout", within=4
    ),
    # - Content-Length and Transfer-Encoding together (request smuggling): uvicorn's 400.
    "put-length-and-chunked": Refusal(
        _put("te.bin", CHUNKED, length=len(DATA), headers=("Transfer-Encoding: chunked",)),
        CHUNKED,
        400,
        None,
    ),
    "post-length-and-chunked": Refusal(
        _post(SMALL, headers=("Transfer-Encoding: chunked",)),
        b"%x\r\n" % len(SMALL) + SMALL + b"\r\n0\r\n\r\n",
        400,
        None,
    ),
    # 14. A client checksum that does not match.
    "put-content-digest-mismatch": Refusal(
        _put("a.bin", DATA, headers=(f"Content-Digest: {WRONG_DIGEST}",)),
        DATA,
        400,
        "checksum-mismatch",
    ),
    "multipart-sha256-field-mismatch": Refusal(
        _post(SHA_FIELD_MISMATCH), SHA_FIELD_MISMATCH, 400, "checksum-mismatch"
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_hostile_requests_are_refused_and_leave_nothing(hostile: Server, case: str) -> None:
    refusal = REFUSALS[case]
    response = exchange(hostile, refusal.head, refusal.body)
    assert response.elapsed < refusal.within, f"answered after {response.elapsed:.2f}s"
    if refusal.code is None:
        # Refused by the HTTP layer: plain text, and the connection is closed.
        assert response.status_code == refusal.status
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["connection"] == "close"
        assert response.content == UVICORN_400
    else:
        problem = assert_problem(response, refusal.status, refusal.code)
        for name, value in refusal.extra.items():
            assert problem[name] == value
    assert_nothing_stored(hostile)
    assert_healthy(hostile)


def test_a_shorter_content_length_on_a_raw_put_is_only_caught_by_a_digest(
    accepting: Server, http: httpx.Client
) -> None:
    """A known limit: with ``Connection: close`` the server reads the announced bytes and
    cannot know more were meant. It stores exactly those, never the surplus; the
    ``Content-Digest`` case above is refused."""
    head = _put("short.bin", DATA, length=500, headers=("Connection: close",))
    response = exchange(accepting, head, DATA)
    assert response.status_code == 201, response.content
    record = response.json()
    assert (record["size"], record["sha256"]) == (500, sha256(DATA[:500]))
    assert http.get(record["links"]["content"]).content == DATA[:500]
    assert_healthy(accepting)


# Names ---------------------------------------------------------------------------------------


def test_a_5000_character_filename_is_cut_to_255_bytes(
    accepting: Server, http: httpx.Client
) -> None:
    name = "\u00e9" * 4995 + ".jpeg"  # two bytes per character: 9,995 bytes
    response = post_multipart(http, Part("file", b"long name", name))
    assert response.status_code == 201, response.text
    (record,) = response.json()["files"]
    cleaned = record["filename"]
    assert len(cleaned.encode()) <= 255
    assert cleaned.endswith(".jpeg") and set(cleaned[:-5]) == {"\u00e9"}
    assert len(cleaned.encode()) > 240, "cut close to the limit, not emptied"
    disposition = http.get(record["links"]["content"]).headers["content-disposition"]
    assert f"filename*=UTF-8''{quote(cleaned, safe='')}" in disposition
    assert_healthy(accepting)


@pytest.mark.parametrize(
    "disposition",
    [
        'form-data; name="file"; filename="safe.jpg"; filename*=UTF-8\'\'evil.php',
        'form-data; name="file"; filename*=UTF-8\'\'evil.php; filename="safe.jpg"',
    ],
    ids=["filename-first", "filename-star-first"],
)
def test_the_plain_filename_wins_over_filename_star(
    accepting: Server, http: httpx.Client, disposition: str
) -> None:
    response = post_multipart(http, Part("file", b"<?php echo 1; ?>", disposition=disposition))
    assert response.status_code == 201, response.text
    (record,) = response.json()["files"]
    assert record["filename"] == "safe.jpg"
    download = http.get(record["links"]["content"])
    assert "evil" not in download.headers["content-disposition"]
    assert_healthy(accepting)


MULTIPART_NAMES = {
    "dot-dot-slash": ("../../etc/passwd", "passwd"),
    "absolute-path": ("/etc/passwd", "passwd"),
    "windows-path": ("C:\\Windows\\System32\\evil.dll", "evil.dll"),
    "nul": ("a\x00b.txt", "ab.txt"),
    "line-feed": ("line\nbreak.txt", "linebreak.txt"),
    "right-to-left-override": ("\u202egpj.exe", "gpj.exe"),
    "only-dots": ("....", "upload"),
    "windows-device": ("CON", "_CON"),
    "windows-device-with-extension": ("LPT1.txt", "_LPT1.txt"),
}
PUT_NAMES = {
    "put-crlf-header-injection": ("a%0D%0ASet-Cookie:%20x=1.txt", "aSet-Cookie: x=1.txt"),
    "put-nul": ("a%00b.txt", "ab.txt"),
    "put-right-to-left-override": ("%E2%80%AEgpj.exe", "gpj.exe"),
    "put-only-dots": ("...", "upload"),
    "put-windows-device": ("nul.txt", "_nul.txt"),
    "put-quote-and-backslash": ("q%22uo%5Cte.txt", "te.txt"),
}


def _assert_safe_download(
    server: Server, http: httpx.Client, record: dict[str, Any], name: str
) -> None:
    file_id = record["id"]
    assert record["filename"] == name
    # Stored under the server's id, never under anything the client said.
    blob = server.data_dir / "blobs" / "originals" / file_id[:2] / file_id
    assert blob.is_file()
    assert not any(p.name in ("passwd", "evil.dll") for p in server.data_dir.rglob("*"))
    download = http.get(record["links"]["content"])
    raw = dict(download.headers.raw)[b"content-disposition"]
    assert all(0x20 <= byte < 0x7F for byte in raw), raw
    ascii_name = raw.split(b'filename="', 1)[1].split(b'"', 1)[0]
    assert raw.startswith(b'attachment; filename="')
    assert b"\\" not in ascii_name
    assert raw.endswith(b"filename*=UTF-8''" + quote(name, safe="").encode())
    assert download.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("case", list(MULTIPART_NAMES))
def test_hostile_multipart_names_are_cleaned(
    accepting: Server, http: httpx.Client, case: str
) -> None:
    raw_name, cleaned = MULTIPART_NAMES[case]
    response = post_multipart(http, Part("file", b"named", raw_name))
    assert response.status_code == 201, response.text
    _assert_safe_download(accepting, http, response.json()["files"][0], cleaned)
    assert_healthy(accepting)


@pytest.mark.parametrize("case", list(PUT_NAMES))
def test_hostile_raw_put_names_are_cleaned(
    accepting: Server, http: httpx.Client, case: str
) -> None:
    raw_name, cleaned = PUT_NAMES[case]
    head = _put(raw_name, b"named", headers=("Connection: close",))
    response = exchange(accepting, head, b"named")
    assert response.status_code == 201, response.content
    _assert_safe_download(accepting, http, response.json(), cleaned)
    assert_healthy(accepting)


@pytest.mark.parametrize("path", ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a%2F..%2Fb"])
def test_a_slash_in_a_raw_put_name_matches_no_route(
    accepting: Server, http: httpx.Client, path: str
) -> None:
    before = len(blob_files(accepting))
    head = _put(path, b"x", headers=("Connection: close",))
    assert_problem(exchange(accepting, head, b"x"), 404, "not-found")
    assert len(blob_files(accepting)) == before
    assert accepting.temp_files() == []
    assert_healthy(accepting)


# Checksums -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["put-content-digest", "multipart-sha256-field"])
def test_a_matching_checksum_is_verified(accepting: Server, http: httpx.Client, how: str) -> None:
    data = b"bytes the client hashed first\n" * 100
    if how == "put-content-digest":
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        response = http.put(
            "/v1/files/checked.txt", content=data, headers={"Content-Digest": f"sha-256=:{digest}:"}
        )
        assert response.status_code == 201, response.text
        record = response.json()
    else:
        response = post_multipart(
            http, Part("sha256", sha256(data).encode()), file_part(data, "checked.txt")
        )
        assert response.status_code == 201, response.text
        (record,) = response.json()["files"]
    assert (record["checksum_verified"], record["sha256"]) == (True, sha256(data))
    unchecked = http.put("/v1/files/plain.txt", content=data).json()
    assert unchecked["checksum_verified"] is False
    assert_healthy(accepting)
