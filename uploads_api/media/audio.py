"""Audio facts and cover-art thumbnails, read with mutagen (which finds the format from
the content, so a blob needs no file extension).

Runs in the pool's worker processes only (see the package docstring), on untrusted bytes.
mutagen parses headers and tags and never decodes audio, so reading is cheap; but it reads
a whole tag block into memory, pictures included. So a leading ID3 tag too large for any
acceptable cover is refused from its header, unread; in other containers (FLAC, MP4, Ogg,
WAV's ID3 chunk) a cover is loaded, then refused before it is decoded or written.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import math
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from PIL import Image

from uploads_api.media.errors import DECODE_ERRORS, detail
from uploads_api.media.images import ImageError, Rendition, make_thumbnails

MAX_TAG_CHARS = 500  # longer values are cut: they are shown in lists, not read

_ID3_OTHER_FRAMES = 1024 * 1024  # room in an ID3 tag beside the cover: lyrics, a 2nd picture

_FRONT_COVER = 3  # the picture type (ID3 APIC, FLAC PICTURE) of the front cover

# Our name: (ID3 frame, Vorbis comment, MP4 atom). mutagen reads ID3v2.3 TYER and ID3v1
# as TDRC, and ID3v2.2 PIC as APIC, so one name per field is enough.
_FIELDS = {
    "title": ("TIT2", "title", "©nam"),
    "artist": ("TPE1", "artist", "©ART"),
    "album": ("TALB", "album", "©alb"),
    "track": ("TRCK", "tracknumber", "trkn"),
    "year": ("TDRC", "date", "©day"),
    "genre": ("TCON", "genre", "©gen"),
}

_TRACK = re.compile(r"(\d{1,6})\s*(?:/\s*\d{0,6})?")  # "3", "03", "3/12"
_YEAR = re.compile(r"(\d{4})(?!\d)")  # "2019", "2019-05-01", "2019-05-01T12:00"
# PostgreSQL refuses NUL in text and jsonb; other controls only garble a listing.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")


class AudioError(Exception):
    """The file cannot be read as audio, or its cover art cannot be used: not audio in a
    known format, corrupt, truncated, or a cover too large or of a refused image format.
    Retrying will not help; ``str(exc)`` is readable by users."""


class NoCover(AudioError):
    """The audio has no embedded cover art, so there is nothing to make thumbnails of.
    Not a fault of the file: the task records the step as skipped."""


def read_audio_metadata(src: str) -> dict[str, Any]:
    """Stream facts and the common tags, JSON-ready, without decoding any audio.

    Returns ``duration`` (seconds, 2 decimals), ``bit_rate`` (bit/s), ``sample_rate``
    (Hz) and ``channels``, each ``None`` when the container does not say, and ``tags``:
    those of title, artist, album, track, year and genre that are present, as strings
    of at most ``MAX_TAG_CHARS``, except ``track`` ("3/12" -> 3) and ``year``
    ("2019-05-01" -> 2019) as ints when they parse. Raises ``AudioError``.
    """
    audio = _load(src)
    return {**_stream_facts(audio.info), "tags": _tags(audio.tags)}


def make_audio_thumbnails(
    src: str,
    out_dir: str,
    sizes: Sequence[int],
    fmt: str,
    allowed_formats: Collection[str],
    max_pixels: int,
    max_cover_bytes: int = 20 * 1024 * 1024,
) -> list[Rendition]:
    """Thumbnails of the embedded front cover (else the first picture), by
    ``images.make_thumbnails`` under an uploaded image's rules: never upscaled, only
    ``allowed_formats`` decoded, never more than ``max_pixels``.

    Raises ``NoCover`` when there is none, and ``AudioError`` for an unreadable file or an
    unusable cover: over ``max_cover_bytes``, corrupt, or refused by ``images`` (its
    ``ImageError`` is translated, so callers catch one family).
    """
    _refuse_large_id3(src, max_cover_bytes)
    covers = _covers(_load(src))
    if not covers:
        raise NoCover("no cover art")
    cover = min(covers, key=lambda c: c.kind != _FRONT_COVER)  # first front cover, or first
    if cover.size > max_cover_bytes:
        limit = f"over the limit of {max_cover_bytes} bytes"
        raise AudioError(f"cover art is too large: {cover.size} bytes, {limit}")
    try:
        data = cover.load()
    except _mutagen_errors() as exc:
        raise AudioError(f"cover art is corrupt: {detail(exc)}") from exc
    # make_thumbnails takes a path; a dot name keeps it apart from the thumbnails.
    fd, path = tempfile.mkstemp(dir=out_dir, prefix=".cover.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with _pixel_limit(max_pixels):
            return make_thumbnails(path, out_dir, sizes, fmt, allowed_formats)
    except ImageError as exc:
        raise AudioError(f"cover art is unusable: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# --- reading ----------------------------------------------------------------------------

# mutagen is imported on first use: the server process imports this module (for its
# errors) but never reads audio, and mutagen would add some 4 MiB to it (as pypdfium2
# would). It ships py.typed but leaves most methods untyped: hence casts to Any.


@functools.cache
def _mutagen_errors() -> tuple[type[BaseException], ...]:
    from mutagen import MutagenError

    # Like Pillow, mutagen has no single error for hostile input: besides its own, its
    # parsers let index, arithmetic and recursion errors (deeply nested MP4 atoms) out.
    return (MutagenError, *DECODE_ERRORS, LookupError, ArithmeticError, RecursionError)


def _load(src: str) -> Any:
    """mutagen's view of ``src``: its ``info`` (stream facts) and ``tags``."""
    import mutagen

    # Opened here, not by mutagen: it would turn a missing file (a machine problem, for a
    # retry) into a MutagenError, which reads as a bad file.
    with open(src, "rb") as fp:
        try:
            audio = mutagen.File(fp)
        except MemoryError as exc:
            raise AudioError("audio file needs too much memory to read") from exc
        except _mutagen_errors() as exc:
            # mutagen often wraps a bare OSError from a short read: no message at all.
            reason = f": {exc}" if str(exc) else ""
            raise AudioError(f"audio file is truncated or corrupt{reason}") from exc
    if audio is None:
        raise AudioError("file is not audio in a known format")
    return audio


def _stream_facts(info: Any) -> dict[str, Any]:
    from mutagen.oggopus import OggOpusInfo

    length = getattr(info, "length", None)
    if not (isinstance(length, int | float) and math.isfinite(length) and length > 0):
        length = None
    # Opus always decodes at 48 kHz (RFC 7845); mutagen reports no rate for it.
    rate = 48_000 if isinstance(info, OggOpusInfo) else getattr(info, "sample_rate", None)
    return {
        "duration": None if length is None else round(float(length), 2),
        "bit_rate": _count(getattr(info, "bitrate", None)),
        "sample_rate": _count(rate),
        "channels": _count(getattr(info, "channels", None)),
    }


def _count(value: object) -> int | None:
    """A positive int, or ``None``: mutagen reports 0 for what the container omits."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# --- tags -------------------------------------------------------------------------------


def _tags(tags: Any) -> dict[str, str | int]:
    """The ``_FIELDS`` present, from whichever tag format the container carries."""
    from mutagen._vorbis import VCommentDict  # documented as such in mutagen.flac
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    out: dict[str, str | int] = {}
    for name, (id3_frame, comment, atom) in _FIELDS.items():
        values: Sequence[object] = ()
        if isinstance(tags, ID3):
            frames = cast(Any, tags).getall(id3_frame)
            if frames:
                # TCON "(13)" -> "Pop"; TDRC holds ID3TimeStamp objects, not strings.
                found = frames[0].genres if id3_frame == "TCON" else frames[0].text
                values = [str(v) for v in found]
        elif isinstance(tags, VCommentDict):
            values = cast(Sequence[object], tags[comment]) if comment in tags else ()
        elif isinstance(tags, MP4Tags):
            values = cast(Any, tags).get(atom, ())
        value = _normalise(name, values[0]) if values else None
        if value is not None:
            out[name] = value
    return out


def _normalise(name: str, value: object) -> str | int | None:
    if name == "track" and isinstance(value, tuple) and value:
        value = str(value[0])  # MP4 trkn: (track, total)
    # Binary data or another type where text belongs is ignored, as is empty text.
    if not isinstance(value, str) or not (text := _clean(value)):
        return None
    if name == "track" and (track := _TRACK.fullmatch(text)):
        return int(track.group(1))
    if name == "year" and (year := _YEAR.match(text)):
        return int(year.group(1))
    return text


def _clean(value: str) -> str:
    text = _CONTROLS.sub(" ", value[: MAX_TAG_CHARS * 2]).strip()[:MAX_TAG_CHARS]
    # A lone surrogate (from a bad UTF-16 tag) cannot be stored as UTF-8: make it "?".
    return text.encode("utf-8", "replace").decode("utf-8")


# --- cover art --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cover:
    """An embedded picture: its type, size (for Ogg, a bound: still base64) and bytes."""

    kind: int
    size: int
    load: Callable[[], bytes]


def _covers(audio: Any) -> list[_Cover]:
    """Every embedded picture, in file order: ID3 APIC (MP3, WAV, AIFF), FLAC PICTURE
    blocks, MP4 covr, and Ogg METADATA_BLOCK_PICTURE comments (base64 PICTURE blocks)."""
    from mutagen._vorbis import VCommentDict
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    tags = audio.tags
    covers = [_picture(p.type, p.data) for p in getattr(audio, "pictures", ())]  # FLAC
    if isinstance(tags, ID3):
        covers += [_picture(frame.type, frame.data) for frame in cast(Any, tags).getall("APIC")]
    elif isinstance(tags, MP4Tags):
        covers += [_picture(_FRONT_COVER, c) for c in cast(Any, tags).get("covr", ())]
    elif isinstance(tags, VCommentDict) and "metadata_block_picture" in tags:
        blocks = cast(list[object], tags["metadata_block_picture"])
        covers += [_ogg_picture(b) for b in blocks if isinstance(b, str)]
    return covers


def _picture(kind: object, data: object) -> _Cover:
    blob = data if isinstance(data, bytes) else b""  # an MP4Cover is bytes too
    return _Cover(int(cast(int, kind)), len(blob), lambda: blob)


def _ogg_picture(block: str) -> _Cover:
    """Size and type read without decoding the picture: the type is the block's first 4
    bytes, so its first 8 base64 characters."""
    from mutagen.flac import Picture

    try:
        kind = int.from_bytes(base64.b64decode(block[:8])[:4], "big")
    except ValueError:
        kind = 0  # corrupt: load() reports it, if this picture is the one chosen

    def load() -> bytes:
        return cast(bytes, cast(Any, Picture)(base64.b64decode(block)).data)

    return _Cover(kind, len(block) * 3 // 4, load)


def _refuse_large_id3(src: str, max_cover_bytes: int) -> None:
    """Refuse a leading ID3 tag too large to hold an acceptable cover, from its header
    (size: 4 bytes of 7 bits), before mutagen reads the whole tag into memory."""
    with open(src, "rb") as fp:
        header = fp.read(10)
    if len(header) < 10 or not header.startswith(b"ID3") or any(b & 0x80 for b in header[6:]):
        return
    size = 10 + ((header[6] << 21) | (header[7] << 14) | (header[8] << 7) | header[9])
    if size > max_cover_bytes + _ID3_OTHER_FRAMES:
        limit = f"over the limit of {max_cover_bytes} bytes"
        raise AudioError(f"cover art is too large: its ID3 tag is {size} bytes, {limit}")


@contextlib.contextmanager
def _pixel_limit(max_pixels: int) -> Iterator[None]:
    """Hold Pillow's pixel limit, which ``images`` enforces, to ``max_pixels`` for one call:
    ``worker.configure_worker`` set it in a pool worker, and this makes the argument hold
    anywhere. A pool worker runs one call at a time, so no other decode sees the change."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels if previous is None else min(previous, max_pixels)
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous
