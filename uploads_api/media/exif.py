"""EXIF, best-effort: the orientation, and the common camera fields as JSON.

A broken EXIF block never fails a file: it reads as empty.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from PIL import ExifTags, Image, PngImagePlugin

from uploads_api.media.errors import DECODE_ERRORS

# EXIF is best-effort, so parsing it may fail more ways, including Pillow's "corrupt EXIF"
# UserWarning when warnings are errors.
_EXIF_ERRORS: tuple[type[BaseException], ...] = (
    *DECODE_ERRORS,
    KeyError,
    IndexError,
    ZeroDivisionError,
    UserWarning,
)


def read_exif(img: Image.Image) -> Image.Exif:
    """The image's EXIF, or an empty one if it is broken. Never decodes pixels."""
    try:
        if isinstance(img, PngImagePlugin.PngImageFile) and "exif" not in img.info:
            # PNG's getexif() decodes the whole image to look for an eXIf chunk after the
            # pixels; read only what precedes them (and XMP orientation).
            return Image.Image.getexif(img)
        return img.getexif()
    except _EXIF_ERRORS:
        return Image.Exif()


def orientation_of(exif: Image.Exif) -> int | None:
    """The EXIF orientation (1-8), or ``None`` if absent or out of range."""
    value = exif.get(ExifTags.Base.Orientation)
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def exif_fields(exif: Image.Exif) -> dict[str, Any]:
    """Common camera fields with readable keys, JSON-ready; absent fields are left out."""
    try:
        details = {**exif, **exif.get_ifd(ExifTags.IFD.Exif)}
        gps = _gps(exif.get_ifd(ExifTags.IFD.GPSInfo))
    except _EXIF_ERRORS:
        return {}
    tags = ExifTags.Base
    fields: dict[str, Any] = {
        "make": _text(details.get(tags.Make)),
        "model": _text(details.get(tags.Model)),
        "lens": _text(details.get(tags.LensModel)),
        "datetime_original": exif_datetime(
            details.get(tags.DateTimeOriginal), details.get(tags.OffsetTimeOriginal)
        ),
        "exposure_time": _number(details.get(tags.ExposureTime)),
        "f_number": _number(details.get(tags.FNumber)),
        "iso": _integer(details.get(tags.ISOSpeedRatings)),
        "focal_length": _number(details.get(tags.FocalLength)),
        "gps": gps,
    }
    return {key: value for key, value in fields.items() if value is not None}


_EXIF_DATETIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")


def exif_datetime(value: object, offset: object) -> str | None:
    """EXIF's ``2008:10:22 16:28:39`` as ISO 8601 ``2008-10-22T16:28:39``, with the offset
    (``+02:00``) when the file records one. Without one there is no ``Z``: camera clocks
    keep local time. A value of another form is kept as text."""
    text = _text(value)
    if text is None:
        return None
    match = _EXIF_DATETIME.match(text)
    if match is None:
        return text
    year, month, day, hour, minute, second = match.groups()
    iso = f"{year}-{month}-{day}T{hour}:{minute}:{second}"
    zone = _text(offset)
    return iso + zone if zone is not None and _OFFSET.match(zone) else iso


def _gps(gps: Mapping[int, Any]) -> dict[str, float | None] | None:
    tags = ExifTags.GPS
    latitude = _degrees(gps.get(tags.GPSLatitude), gps.get(tags.GPSLatitudeRef), "S")
    longitude = _degrees(gps.get(tags.GPSLongitude), gps.get(tags.GPSLongitudeRef), "W")
    if latitude is None or longitude is None or abs(latitude) > 90 or abs(longitude) > 180:
        return None
    altitude = _number(gps.get(tags.GPSAltitude))
    if altitude is not None and gps.get(tags.GPSAltitudeRef) in (1, b"\x01"):
        altitude = -altitude  # 1 means below sea level
    return {"latitude": latitude, "longitude": longitude, "altitude": altitude}


def _degrees(value: object, ref: object, negative: str) -> float | None:
    """Degrees, minutes, seconds (as many as given) to signed decimal degrees."""
    if not isinstance(value, tuple) or not 1 <= len(value) <= 3:
        return None
    parts = [_number(part) for part in value]
    if any(part is None for part in parts):
        return None
    degrees = sum(part / 60.0**i for i, part in enumerate(parts) if part is not None)
    if _text(ref) == negative:
        degrees = -degrees
    return round(degrees, 7)  # about a centimetre; hides float noise such as ...0000001


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "").strip() or None


def _number(value: object) -> float | None:
    if isinstance(value, tuple) and value:
        value = value[0]  # some writers store a list of one
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    number: float = float(value)  # an IFDRational over zero gives nan, not an error
    return number if math.isfinite(number) else None


def _integer(value: object) -> int | None:
    number = _number(value)
    return round(number) if number is not None else None
