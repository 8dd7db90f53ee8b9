"""uploads_api.media.pdf on PDFs written here with pypdf: facts, first-page thumbnails,
and hostile files that must fail cleanly and fast."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from PIL import Image
from pypdf import PdfWriter
from pypdf.generic import ContentStream

from uploads_api.media.images import Rendition
from uploads_api.media.pdf import (
    MAX_TEXT,
    DocumentError,
    EncryptedDocument,
    make_pdf_thumbnails,
    read_pdf_metadata,
)

A4 = (595, 842)
BLUE_BOX = b"0 0 1 rg 0 0 300 200 re f"  # a blue 300 x 200 pt box in the bottom left corner
RED_PAGE = b"1 0 0 rg 0 0 5000 5000 re f"
BLUE, RED, WHITE = (0, 0, 255), (255, 0, 0), (255, 255, 255)
SIZES = (256, 1024)
MAX_PIXELS = 50_000_000
NOTHING = {"title": None, "author": None, "created": None}


@dataclass(frozen=True)
class Page:
    width: float = A4[0]
    height: float = A4[1]
    content: bytes = BLUE_BOX
    rotate: int = 0


def write_pdf(
    path: Path,
    pages: Sequence[Page] = (Page(),),
    info: dict[str, str] | None = None,
    user_password: str | None = None,
    owner_password: str | None = None,
) -> Path:
    writer = PdfWriter()
    for page in pages:
        blank = writer.add_blank_page(page.width, page.height)
        stream = ContentStream(None, writer)
        stream.set_data(page.content)
        blank.replace_contents(stream)
        if page.rotate:
            blank.rotate(page.rotate)
    if info:
        writer.add_metadata(info)
    if user_password is not None:
        writer.encrypt(user_password, owner_password, algorithm="AES-256")
    with path.open("wb") as fp:
        writer.write(fp)
    return path


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def thumbnails(src: Path, out_dir: Path, max_pixels: int = MAX_PIXELS) -> list[Rendition]:
    return make_pdf_thumbnails(str(src), str(out_dir), SIZES, "webp", max_pixels)


def sizes_of(renditions: list[Rendition]) -> list[tuple[int, int]]:
    found = []
    for rendition in renditions:
        with Image.open(rendition.path) as img:
            assert img.size == (rendition.thumbnail.width, rendition.thumbnail.height)
            found.append(img.size)
    return found


def colour_at(rendition: Rendition, x: float, y: float) -> tuple[int, int, int]:
    """The colour at a fraction of the width and height, from the top left."""
    with Image.open(rendition.path) as img:
        rgb = img.convert("RGB")
        pixel = rgb.getpixel((int(x * rgb.width), int(y * rgb.height)))
        return cast(tuple[int, int, int], pixel)  # an RGB image gives three bands


def near(found: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 24 for a, b in zip(found, expected, strict=True))


# --- metadata ---------------------------------------------------------------------------


def test_metadata(tmp_path: Path) -> None:
    info = {"/Title": "Annual report", "/Author": "Ada", "/CreationDate": "D:20081022162839+02'00'"}
    assert read_pdf_metadata(str(write_pdf(tmp_path / "a.pdf", info=info))) == {
        "pages": 1,
        "title": "Annual report",
        "author": "Ada",
        "created": "2008-10-22T16:28:39+02:00",
        "page_size": [595, 842],
        "encrypted": False,
    }


def test_metadata_without_info(tmp_path: Path) -> None:
    meta = read_pdf_metadata(str(write_pdf(tmp_path / "a.pdf", [Page(612.4, 791.6)])))
    assert meta == {**NOTHING, "pages": 1, "page_size": [612, 792], "encrypted": False}


def test_text_is_cleaned_and_capped(tmp_path: Path) -> None:
    info = {"/Title": " Q3\treport\n\x07\u202eevil " + "x" * 1000, "/Author": "\x01\x02 "}
    meta = read_pdf_metadata(str(write_pdf(tmp_path / "a.pdf", info=info)))
    assert meta["title"] == ("Q3 report evil " + "x" * 1000)[:MAX_TEXT]
    assert meta["author"] is None


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("D:20081022162839+02'00'", "2008-10-22T16:28:39+02:00"),
        ("D:20081022162839-05'30", "2008-10-22T16:28:39-05:30"),
        ("D:20081022162839Z", "2008-10-22T16:28:39+00:00"),
        ("D:20081022162839Z00'00'", "2008-10-22T16:28:39+00:00"),
        ("D:20081022162839", "2008-10-22T16:28:39"),
        ("D:200810", "2008-10-01T00:00:00"),
        ("20081022", "2008-10-22T00:00:00"),
        ("D:20081322", None),
        ("D:20081022162839+24'00'", None),
        ("D:20081022162839+02'99'", None),
        ("last Tuesday", None),
    ],
)
def test_creation_date(tmp_path: Path, raw: str, iso: str | None) -> None:
    src = write_pdf(tmp_path / "a.pdf", info={"/CreationDate": raw})
    assert read_pdf_metadata(str(src))["created"] == iso


# --- thumbnails -------------------------------------------------------------------------


def test_a4_thumbnails(tmp_path: Path, out_dir: Path) -> None:
    renditions = thumbnails(write_pdf(tmp_path / "a.pdf"), out_dir)
    assert [r.path for r in renditions] == [str(out_dir / "256.webp"), str(out_dir / "1024.webp")]
    assert sizes_of(renditions) == [(181, 256), (724, 1024)]
    for rendition in renditions:
        assert near(colour_at(rendition, 0.05, 0.95), BLUE)
        assert near(colour_at(rendition, 0.95, 0.05), WHITE)


def test_only_the_first_page_is_rendered(tmp_path: Path, out_dir: Path) -> None:
    src = write_pdf(tmp_path / "a.pdf", [Page(), *[Page(842, 595, RED_PAGE)] * 19])
    assert read_pdf_metadata(str(src))["pages"] == 20
    renditions = thumbnails(src, out_dir)
    assert sizes_of(renditions)[1] == (724, 1024)
    assert near(colour_at(renditions[1], 0.05, 0.95), BLUE)
    assert not any(near(colour_at(renditions[1], x, 0.5), RED) for x in (0.1, 0.5, 0.9))


@pytest.mark.parametrize(
    ("page", "blue_corner"),
    [(Page(842, 595), (0.05, 0.95)), (Page(rotate=90), (0.05, 0.05))],
    ids=["landscape", "rotate-90"],
)
def test_landscape_pages(
    tmp_path: Path, out_dir: Path, page: Page, blue_corner: tuple[float, float]
) -> None:
    src = write_pdf(tmp_path / "a.pdf", [page])
    assert read_pdf_metadata(str(src))["page_size"] == [842, 595]
    renditions = thumbnails(src, out_dir)
    assert sizes_of(renditions) == [(256, 181), (1024, 724)]
    # Turned a quarter clockwise, the bottom left corner of the page comes to the top left.
    assert near(colour_at(renditions[1], *blue_corner), BLUE)


def test_password_protected(tmp_path: Path, out_dir: Path) -> None:
    src = write_pdf(tmp_path / "a.pdf", info={"/Title": "Secret"}, user_password="open sesame")
    assert read_pdf_metadata(str(src)) == {
        **NOTHING,
        "pages": None,
        "page_size": None,
        "encrypted": True,
    }
    with pytest.raises(EncryptedDocument, match=r"^the PDF is password-protected$"):
        thumbnails(src, out_dir)
    assert list(out_dir.iterdir()) == []


def test_encrypted_with_an_empty_user_password(tmp_path: Path, out_dir: Path) -> None:
    src = write_pdf(
        tmp_path / "a.pdf", info={"/Title": "Open"}, user_password="", owner_password="o"
    )
    assert read_pdf_metadata(str(src)) == {
        **NOTHING,
        "pages": 1,
        "title": "Open",
        "page_size": [595, 842],
        "encrypted": True,
    }
    renditions = thumbnails(src, out_dir)
    assert near(colour_at(renditions[1], 0.05, 0.95), BLUE)


def test_bad_arguments(tmp_path: Path, out_dir: Path) -> None:
    src = str(write_pdf(tmp_path / "a.pdf"))
    with pytest.raises(ValueError, match="sizes must be positive"):
        make_pdf_thumbnails(src, str(out_dir), [], "webp", MAX_PIXELS)
    with pytest.raises(ValueError, match="unknown thumbnail format"):
        make_pdf_thumbnails(src, str(out_dir), SIZES, "gif", MAX_PIXELS)


# --- hostile files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "max_pixels", "largest"),
    [
        (Page(100_000, 100_000), MAX_PIXELS, (1024, 1024)),
        # A pixel short of the cap: PDFium rounds each edge up, and the scale allows for it.
        (Page(100_000, 100_000), 250_000, (499, 499)),
        (Page(100_000, 10), 1_000, (916, 1)),
        (Page(1, 1), MAX_PIXELS, (1024, 1024)),
    ],
    ids=["huge", "huge-capped", "sliver-capped", "tiny"],
)
def test_page_size_does_not_decide_the_cost(
    tmp_path: Path, out_dir: Path, page: Page, max_pixels: int, largest: tuple[int, int]
) -> None:
    src = write_pdf(tmp_path / "a.pdf", [page])
    started = time.perf_counter()
    renditions = thumbnails(src, out_dir, max_pixels)
    assert time.perf_counter() - started < 2
    width, height = sizes_of(renditions)[1]
    assert (width, height) == largest
    assert width * height <= max_pixels


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _random_bytes(path: Path) -> Path:
    path.write_bytes(random.Random(7).randbytes(4096))
    return path


def _header_only(path: Path) -> Path:
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    return path


def _truncated(path: Path) -> Path:
    whole = write_pdf(path, [Page()] * 20).read_bytes()
    path.write_bytes(whole[: len(whole) // 3])
    return path


def _png(path: Path) -> Path:
    Image.new("RGB", (64, 64), BLUE).save(path, format="PNG")
    return path


@pytest.mark.parametrize("make", [_empty, _random_bytes, _header_only, _truncated, _png])
@pytest.mark.parametrize("read", ["metadata", "thumbnails"])
def test_unreadable(tmp_path: Path, out_dir: Path, make: Callable[[Path], Path], read: str) -> None:
    src = make(tmp_path / "bad.pdf")
    call: Callable[[], Any] = {
        "metadata": lambda: read_pdf_metadata(str(src)),
        "thumbnails": lambda: thumbnails(src, out_dir),
    }[read]
    with pytest.raises(DocumentError, match=r"^PDF is unreadable: not a PDF, or truncated") as info:
        call()
    assert not isinstance(info.value, EncryptedDocument)
    assert list(out_dir.iterdir()) == []


def test_missing_file_is_not_a_document_error(tmp_path: Path) -> None:
    # A problem of the machine, not of the file: the task must retry, not give up.
    with pytest.raises(FileNotFoundError):
        read_pdf_metadata(str(tmp_path / "gone.pdf"))
