"""PDF facts and first-page thumbnails, read with PDFium (pypdfium2).

PDFium is Chrome's PDF engine: written for hostile files from the open web, fuzzed
without pause, and forgiving of the damaged files real users upload. Runs in the pool's
worker processes only (see the package docstring), on untrusted bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import re
import unicodedata
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from PIL import Image

from uploads_api.media.errors import detail
from uploads_api.media.images import Rendition, thumbnails_from


class DocumentError(Exception):
    """The file cannot be read as a PDF. Retrying will not help; ``str(exc)`` is readable."""


class EncryptedDocument(DocumentError):
    """The PDF needs a password we do not have: its pages cannot be read, so no thumbnail;
    ``read_pdf_metadata`` still answers, with what is readable without it."""


# Longest title or author kept, in characters, after control characters are removed.
MAX_TEXT = 500
# A metadata string longer than this (in UTF-16 bytes) is dropped, not copied: it is no
# title, and an object stream can inflate a small upload into a huge one.
_MAX_META_BYTES = 64 * 1024

_WHITE = (255, 255, 255, 255)

# Bidi embeddings, overrides and isolates (category Cf): in a title shown in a list they
# would reorder the text around it.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# D:YYYYMMDDHHmmSSOHH'mm' (PDF 32000-1, 7.9.4); everything after the year is optional.
# Writers drop the "D:" or the apostrophes, and add digits after "Z": all are accepted.
_PDF_DATE = re.compile(
    r"(?:D:)?(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?"
    r"(?:([Zz+-])(?:(\d{2})'?(?:([0-5]\d)'?)?)?)?"
)


def read_pdf_metadata(src: str) -> dict[str, Any]:
    """Facts about a PDF, always with the same keys::

        {"pages": 3, "title": "...", "author": "...", "created": "2008-10-22T16:28:39+02:00",
         "page_size": [595, 842], "encrypted": False}

    ``page_size`` is the first page as displayed (after its rotation), in whole points.
    ``title``, ``author`` and ``created`` are ``None`` when absent or unusable. A PDF that
    needs a password gives ``encrypted: True`` and ``None`` for the rest: PDFium reads
    nothing of it without the password. Raises ``DocumentError`` if it cannot be read.
    """
    try:
        with _opened(src) as doc:
            width, height = _page_size(doc.get_page_size(0))
            return {
                "pages": len(doc),
                "title": _clean(_meta_text(doc, "Title")),
                "author": _clean(_meta_text(doc, "Author")),
                "created": _iso_date(_meta_text(doc, "CreationDate")),
                "page_size": [round(width), round(height)],
                "encrypted": _is_encrypted(doc),
            }
    except EncryptedDocument:
        keys = ("pages", "title", "author", "created", "page_size")
        return {**dict.fromkeys(keys), "encrypted": True}


def make_pdf_thumbnails(
    src: str, out_dir: str, sizes: Sequence[int], fmt: str, max_pixels: int
) -> list[Rendition]:
    """Render the first page and write one thumbnail per size, as ``images.make_thumbnails``
    does for a picture (``out_dir/<size>.<ext>``, in the order of ``sizes``).

    The page is rendered once, on white, upright (its /Rotate applied), with its long edge
    at the largest size, and never over ``max_pixels``. Raises ``EncryptedDocument`` for a
    PDF that needs a password, ``DocumentError`` for a bad file and ``ValueError`` for a
    bad ``fmt`` or size.
    """
    if not sizes or min(sizes) < 1:
        raise ValueError(f"thumbnail sizes must be positive, got {list(sizes)}")
    page = _render_first_page(src, max(sizes), max_pixels)
    return thumbnails_from(page, out_dir, sizes, fmt)


def _render_first_page(src: str, long_edge: int, max_pixels: int) -> Image.Image:
    with _opened(src) as doc:
        page = doc[0]
        try:
            width, height = _page_size(page.get_size())
            scale = _render_scale(width, height, long_edge, max_pixels)
            bitmap = page.render(scale=scale, fill_color=_WHITE, may_draw_forms=False)
            try:
                image: Image.Image = bitmap.to_pil()
                # The bitmap's memory is PDFium's and is freed on close: keep a copy.
                return image.copy()
            finally:
                bitmap.close()
        finally:
            page.close()


@contextlib.contextmanager
def _opened(src: str) -> Iterator[Any]:
    """The document at ``src``, closed on every path; PDFium's errors become ours."""
    # Imported on first use: the server process imports this module but never reads a PDF,
    # and PDFium would add to its memory (as pillow-heif would: see worker.configure_worker).
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(src)
    except pdfium.PdfiumError as exc:
        raise _load_error(exc) from exc
    try:
        yield doc
    except pdfium.PdfiumError as exc:
        raise DocumentError(f"PDF is unreadable: {detail(exc)}") from exc
    except MemoryError as exc:
        raise DocumentError("PDF needs too much memory to read") from exc
    finally:
        doc.close()


def _load_error(exc: Any) -> Exception:
    """Why PDFium refused to open the file, as the exception to raise."""
    import pypdfium2.raw as pdfium_c

    code = exc.err_code
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        return EncryptedDocument("the PDF is password-protected")
    if code == pdfium_c.FPDF_ERR_SECURITY:
        return EncryptedDocument("the PDF is encrypted with an unsupported method")
    if code == pdfium_c.FPDF_ERR_FILE:
        # The file could not be opened: a problem of the machine, so the task retries.
        return OSError(f"cannot open the PDF: {detail(exc)}")
    if code == pdfium_c.FPDF_ERR_SUCCESS:
        return DocumentError("PDF is unreadable: it has no pages")
    if code == pdfium_c.FPDF_ERR_FORMAT:
        return DocumentError("PDF is unreadable: not a PDF, or truncated or corrupt")
    if code == pdfium_c.FPDF_ERR_PAGE:
        return DocumentError("PDF is unreadable: a page is missing or damaged")
    return DocumentError(f"PDF is unreadable: {detail(exc)}")


def _page_size(size: tuple[float, float]) -> tuple[float, float]:
    width, height = size
    if not all(math.isfinite(edge) and edge > 0 for edge in (width, height)):
        raise DocumentError(f"PDF is unreadable: the first page measures {width} x {height}")
    return float(width), float(height)


def _render_scale(width: float, height: float, long_edge: int, max_pixels: int) -> float:
    """Pixels per point: the long edge at ``long_edge`` px, less if that would pass
    ``max_pixels``. Found from the page size before rendering, so that a 100,000 pt page
    costs no more memory than an A4 one."""
    # PDFium rounds each edge up to a whole pixel, so the cap is the largest s for which
    # (width*s + 1) * (height*s + 1) <= max_pixels: the positive root of that quadratic.
    area, perimeter = width * height, width + height
    cap = (math.sqrt(perimeter**2 + 4 * area * (max_pixels - 1)) - perimeter) / (2 * area)
    scale = min(long_edge / max(width, height), cap)
    pixels = (math.ceil(width * scale), math.ceil(height * scale))
    if min(pixels) < 1 or pixels[0] * pixels[1] > max_pixels:
        raise DocumentError(
            f"PDF page of {width:.0f} x {height:.0f} pt cannot be drawn in {max_pixels} pixels"
        )
    return scale


def _is_encrypted(doc: Any) -> bool:
    import pypdfium2.raw as pdfium_c

    # -1 means the document has no security handler at all.
    return int(pdfium_c.FPDF_GetSecurityHandlerRevision(doc)) != -1


def _meta_text(doc: Any, key: str) -> str:
    """A value of the document information dictionary, ``""`` when absent or oversized.

    Not pypdfium2's ``get_metadata_value``: it decodes strictly, so one unpaired surrogate
    in a title would cost the whole metadata.
    """
    import pypdfium2.raw as pdfium_c

    tag = key.encode("ascii") + b"\x00"
    size = int(pdfium_c.FPDF_GetMetaText(doc, tag, None, 0))  # bytes, with a 2-byte NUL
    if size <= 2 or size > _MAX_META_BYTES:
        return ""
    buffer = ctypes.create_string_buffer(size)
    pdfium_c.FPDF_GetMetaText(doc, tag, buffer, size)
    return buffer.raw[: size - 2].decode("utf-16-le", errors="replace")


def _clean(text: str) -> str | None:
    """``text`` fit to show: whitespace runs made one space, control characters removed,
    at most ``MAX_TEXT`` characters; ``None`` if nothing is left."""
    spaced = " ".join(text.split())
    kept = "".join(
        ch for ch in spaced if unicodedata.category(ch) != "Cc" and ch not in _BIDI_CONTROLS
    )
    return kept[:MAX_TEXT].strip() or None


def _iso_date(value: str) -> str | None:
    """A PDF date (``D:20081022162839+02'00'``) in ISO 8601 (``2008-10-22T16:28:39+02:00``).

    Fields left out take their lowest value; ``Z`` becomes ``+00:00``, and a date without
    an offset stays without one (the writer's local time). ``None`` for anything else:
    writers get dates wrong often enough that a bad one must not cost the other facts.
    """
    found = _PDF_DATE.fullmatch(value.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second, sign, off_hours, off_minutes = found.groups()
    try:
        zone = None
        if sign is not None:
            offset = timedelta(hours=int(off_hours or 0), minutes=int(off_minutes or 0))
            zone = timezone(-offset if sign == "-" else offset)  # refuses 24 h or more
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=zone,
        )
    except ValueError:
        return None
    return moment.isoformat()
