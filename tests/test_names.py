"""Client file names: cleaning for display, and the Content-Disposition of downloads."""

from __future__ import annotations

import re
import time
import unicodedata
from urllib.parse import unquote

import pytest

from uploads_api.ingest.names import (
    FALLBACK_NAME,
    MAX_NAME_BYTES,
    clean_filename,
    content_disposition,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\a.jpg", "a.jpg"),
        ("dir/sub\\mixed/name.png", "name.png"),
        ("a\x00b.txt", "ab.txt"),
        ("a\r\nb.txt", "ab.txt"),
        ("tab\there.txt", "tabhere.txt"),
        ("\x1b[31mred.txt", "[31mred.txt"),
        ("\u202egnp.exe", "gnp.exe"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("zero\u200bwidth.txt", "zerowidth.txt"),
        ("...", FALLBACK_NAME),
        (". . .", FALLBACK_NAME),
        ("  .hidden  ", "hidden"),
        ("trailing.", "trailing"),
        ("", FALLBACK_NAME),
        (None, FALLBACK_NAME),
        ("/", FALLBACK_NAME),
        ("a/", FALLBACK_NAME),
        ("\x00\r\n", FALLBACK_NAME),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("LPT1.jpg", "_LPT1.jpg"),
        ("nul.tar.gz", "_nul.tar.gz"),
        ("com9", "_com9"),
        ("console.txt", "console.txt"),
        ("aux_file.txt", "aux_file.txt"),
        ("élan.txt", "élan.txt"),
        ("写真.jpg", "写真.jpg"),
    ],
)
def test_clean_filename(raw: str | None, expected: str) -> None:
    assert clean_filename(raw) == expected


def test_clean_filename_normalises_to_nfc() -> None:
    decomposed = "e\u0301te\u0301.txt"  # "été" with combining accents, as macOS sends it
    cleaned = clean_filename(decomposed)
    assert cleaned == "\u00e9t\u00e9.txt"
    assert unicodedata.is_normalized("NFC", cleaned)


@pytest.mark.parametrize(
    ("raw", "extension"),
    [
        ("a" * 5000 + ".jpg", ".jpg"),
        ("é" * 5000 + ".jpeg", ".jpeg"),
        ("写" * 3000 + ".png", ".png"),
        ("😀" * 2000 + ".gif", ".gif"),
        ("x" * 300 + ".tar.gz", ".gz"),
    ],
)
def test_long_names_are_cut_to_255_bytes_keeping_the_extension(raw: str, extension: str) -> None:
    cleaned = clean_filename(raw)
    assert len(cleaned.encode()) <= MAX_NAME_BYTES
    assert len(cleaned.encode()) > MAX_NAME_BYTES - 4, "cut no more than needed"
    assert cleaned.endswith(extension)
    stem = cleaned[: -len(extension)]
    assert stem, "some of the name is kept"
    assert raw.startswith(stem)


@pytest.mark.parametrize("char", ["é", "写", "😀", "a"])
@pytest.mark.parametrize("extension", ["", ".a-very-long-extension-over-16-bytes"])
def test_multibyte_names_are_cut_on_character_boundaries(char: str, extension: str) -> None:
    raw = char * 400 + extension
    cleaned = clean_filename(raw)
    encoded = cleaned.encode()  # would raise on a broken character
    assert len(encoded) <= MAX_NAME_BYTES
    assert len(encoded) > MAX_NAME_BYTES - len(char.encode())
    assert set(cleaned) <= set(raw)
    assert raw.startswith(cleaned)


@pytest.mark.parametrize("name", ["a" * 255, "é" * 127 + "a", "a" * 251 + ".jpg"])
def test_names_within_the_limit_are_kept(name: str) -> None:
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert clean_filename(name) == name


@pytest.mark.parametrize("raw", ["a" * 254 + " b", "a" * 254 + ".-long-extension-not-kept"])
def test_a_cut_name_does_not_end_in_a_space_or_dot(raw: str) -> None:
    cleaned = clean_filename(raw)
    assert len(cleaned.encode()) <= MAX_NAME_BYTES
    assert cleaned == cleaned.strip(" .")


def test_cutting_a_huge_name_is_fast() -> None:
    # A raw upload takes its name from the URL path, which only the server's limits bound.
    raw = "é" * 40_000 + ".txt"
    started = time.perf_counter()
    cleaned = clean_filename(raw)
    assert len(cleaned.encode()) <= MAX_NAME_BYTES
    assert time.perf_counter() - started < 0.2


# Content-Disposition --------------------------------------------------------------------------

_HEADER = re.compile(r'^attachment; filename="([^"]*)"; filename\*=UTF-8\'\'([A-Za-z0-9%._~-]*)$')


@pytest.mark.parametrize(
    "name",
    [
        "report.pdf",
        "été 2024.jpg",
        "写真.png",
        "😀.gif",
        'quote".txt',
        "back\\slash.txt",
        "semi;colon,comma.txt",
        "percent%20sign.txt",
        "question?.txt",
        "plus+and=equals&amp.txt",
        "it's (1).txt",
        "\u202egnp.exe",
    ],
)
def test_content_disposition(name: str) -> None:
    header = content_disposition(name)
    match = _HEADER.match(header)
    assert match is not None, header
    fallback, encoded = match.groups()
    assert fallback.isascii()
    assert not set(fallback) & set('"\\\r\n')
    assert all(" " <= ch <= "~" for ch in fallback), "printable ASCII only"
    assert len(fallback) == len(name)
    assert unquote(encoded, errors="strict") == name
    header.encode("latin-1")  # a header value Starlette can send


def test_content_disposition_keeps_plain_ascii_names() -> None:
    assert content_disposition("report-2024_v2.pdf") == (
        "attachment; filename=\"report-2024_v2.pdf\"; filename*=UTF-8''report-2024_v2.pdf"
    )


@pytest.mark.parametrize("raw", ["a\r\nb.txt", "../x\x00y\u202e.txt", "é\u0301" * 200 + ".jpg"])
def test_content_disposition_of_a_cleaned_name(raw: str) -> None:
    name = clean_filename(raw)
    header = content_disposition(name)
    assert _HEADER.match(header), header
    assert unquote(header.split("''", 1)[1]) == name


@pytest.mark.parametrize("name", ["a\r\nSet-Cookie: x=1", "tab\there", "nul\x00"])
def test_content_disposition_never_emits_control_characters(name: str) -> None:
    header = content_disposition(name)
    assert all(" " <= ch <= "~" for ch in header), repr(header)
