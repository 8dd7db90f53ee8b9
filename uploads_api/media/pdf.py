"""PDF facts, read with pypdf: for now, the page count."""

from __future__ import annotations

from typing import Any

from uploads_api.media.errors import DECODE_ERRORS, detail


class DocumentError(Exception):
    """The file cannot be read as a PDF. Retrying will not help; ``str(exc)`` is readable."""


def read_pdf_metadata(src: str) -> dict[str, Any]:
    """``{"pages": n}`` for a PDF. Raises ``DocumentError`` if it cannot be read."""
    # Imported on first use: the server process imports this module but never reads a PDF,
    # and pypdf would add to its memory (as pillow-heif would: see worker.configure_worker).
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    pdf_errors: tuple[type[BaseException], ...] = (PyPdfError, *DECODE_ERRORS)
    with open(src, "rb") as fp:
        try:
            reader = PdfReader(fp)
            if reader.is_encrypted and not reader.decrypt(""):
                raise DocumentError("PDF is password-protected")
            return {"pages": len(reader.pages)}
        except DocumentError:
            raise
        except pdf_errors as exc:
            raise DocumentError(f"PDF is unreadable: {detail(exc)}") from exc
