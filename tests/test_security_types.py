"""Files that are not what their name and type say, over a real server: the type is sniffed
from the bytes, only formats on the allowlist reach a decoder, and an empty file is never
decoded. Each is stored as what it is, never thumbnailed as what it claimed to be, and the
server answers ``/healthz`` at once afterwards."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, ServerFactory
from tests.helpers import assert_healthy, assert_problem, blob_files, task_of, wait_done
from tests.security_helpers import assert_no_thumbnail, pillow_bytes, upload_as_png
from uploads_api.config import DEFAULT_IMAGE_FORMATS
from uploads_api.media import images

pytestmark = pytest.mark.e2e


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


SPOOFED = {
    "php": (b"<?php system($_GET['c']); ?>\n", "text/plain"),
    "html": (b"<!doctype html><html><script>alert(1)</script></html>", "text/html"),
    "svg": (
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "image/svg+xml",
    ),
}
UNLISTED_FORMATS: dict[str, tuple[Callable[[], bytes], str]] = {
    "eps": (lambda: pillow_bytes("EPS"), "text/plain"),  # PostScript is text
    "psd": (_psd, "image/vnd.adobe.photoshop"),
    "fits": (_fits, "image/fits"),
    "jpeg-2000": (lambda: pillow_bytes("JPEG2000"), "image/jp2"),
}


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
    record = wait_done(http, upload_as_png(http, pillow_bytes("TIFF"))["id"])
    assert record["content_type"] == "image/tiff"
    assert record["status"] == "ready"
    assert record["metadata"]["image"]["format"] == "TIFF"
    assert [t["size"] for t in record["thumbnails"]] == [256, 1024]


@pytest.mark.parametrize(
    ("make", "allowed", "name"),
    [
        (_psd, DEFAULT_IMAGE_FORMATS, "PSD"),
        (lambda: pillow_bytes("JPEG2000"), DEFAULT_IMAGE_FORMATS, "JPEG2000"),
        (lambda: pillow_bytes("TIFF"), ("JPEG", "PNG"), "TIFF"),
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
        tiff = pillow_bytes("TIFF")
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


# Empty files ---------------------------------------------------------------------------------


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
