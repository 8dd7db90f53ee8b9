"""Client file names, cleaned for display. Storage never uses them: blobs live under ids."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

MAX_NAME_BYTES = 255
FALLBACK_NAME = "upload"
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def clean_filename(raw: str | None) -> str:
    """The last path segment, NFC-normalised, without control or bidi-override characters,
    no leading/trailing dots or spaces, not a Windows device name, at most 255 UTF-8 bytes."""
    if not raw:
        return FALLBACK_NAME
    name = unicodedata.normalize("NFC", raw)
    name = re.split(r"[/\\]", name)[-1]
    # Cc: control characters (NUL, CR, LF); Cf: format characters such as U+202E.
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf"))
    name = name.strip(" .\t")
    if not name:
        return FALLBACK_NAME
    if _WINDOWS_RESERVED.match(name):
        name = "_" + name
    # Cutting may expose a trailing dot or space again.
    return _truncate(name).rstrip(" .\t") or FALLBACK_NAME


def _truncate(name: str) -> str:
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = MAX_NAME_BYTES - len(suffix.encode())
    # Cut the bytes once; "ignore" drops a character split in half at the cut.
    stem = stem.encode()[:budget].decode("utf-8", "ignore")
    return stem + suffix


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the exact name in RFC 6266 ``filename*``."""
    ascii_name = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
