"""Pillow work: decode, orient and resize images, read EXIF, count PDF pages.

Everything here is synchronous and CPU-bound. It runs in process-pool workers set up by
``configure_worker``, never in the server process: decoding then cannot block the event
loop, and a hostile file can at worst take down one worker.

Errors::

    ImageError      the file cannot be decoded as an accepted image (permanent)
    DocumentError   the file cannot be read as a PDF (permanent)

Anything else (a missing source file, a full disk) is a problem of the machine, not of
the file, and propagates unchanged so that the task can be retried.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import math
import multiprocessing
import numbers
import os
import re
import struct
import tempfile
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from PIL import (
    ExifTags,
    Image,
    ImageCms,
    ImageFile,
    PngImagePlugin,
    UnidentifiedImageError,
    features,
)


class ImageError(Exception):
    """The file cannot be decoded as an accepted image: corrupt, truncated, too large or
    of a refused format. Retrying will not help; ``str(exc)`` is readable by users."""


class DocumentError(Exception):
    """The file cannot be read as a PDF. Retrying will not help; ``str(exc)`` is readable."""


@dataclass(frozen=True)
class _Output:
    pil_format: str
    ext: str
    content_type: str
    alpha: bool
    options: Mapping[str, Any] = field(default_factory=dict)


_OUTPUTS = {
    # method 1: a quarter of the CPU time of the default 4, for sizes within a few percent
    # either way and the same PSNR at quality 80 (bench/README.md, S5).
    "webp": _Output("WEBP", "webp", "image/webp", True, {"quality": 80, "method": 1}),
    "jpeg": _Output("JPEG", "jpg", "image/jpeg", False, {"quality": 85, "optimize": True}),
    # zlib level 3: a third of the time of the default 6 for about 8% more bytes.
    "png": _Output("PNG", "png", "image/png", True, {"compress_level": 3}),
    "avif": _Output("AVIF", "avif", "image/avif", True, {"quality": 60, "speed": 8}),
}

# What Pillow raises on hostile input; it has no single base class. TypeError is among
# them: TIFF raises it for an IFD without dimensions (corpus: crash-2020-10-test.tif).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    TypeError,
)
_TOO_LARGE = (Image.DecompressionBombError, Image.DecompressionBombWarning)
# EXIF is best-effort, so parsing it may fail more ways, including Pillow's "corrupt EXIF"
# UserWarning when warnings are errors.
_EXIF_ERRORS: tuple[type[BaseException], ...] = (
    *_DECODE_ERRORS,
    KeyError,
    IndexError,
    ZeroDivisionError,
    UserWarning,
)

# An MPO is a JPEG with more pictures appended; phones write them (Ultra HDR gain maps).
_FORMAT_ALIASES = {"MPO": "JPEG"}

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})

_SRGB = ImageCms.createProfile("sRGB")
# Pool workers run at this niceness (0 is normal, 19 the lowest priority).
WORKER_NICENESS = 10


def configure_worker(max_pixels: int) -> None:
    """Pool initializer: set the pixel limit and register the HEIF and AVIF decoders.
    In a pool worker process, also lower its CPU priority.

    Safe to call more than once.
    """
    # Imported here, not at the top: the server process imports this module but never
    # decodes, and the HEIF plugin and pypdf would add some 20 MiB to it.
    import pillow_heif

    Image.MAX_IMAGE_PIXELS = max_pixels
    # A truncated file must fail rather than give a half-grey thumbnail.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    pillow_heif.register_heif_opener()
    if features.check_module("avif"):
        importlib.import_module("PIL.AvifImagePlugin")  # registers itself on import
    else:
        register_avif = getattr(pillow_heif, "register_avif_opener", None)
        if register_avif is not None:
            register_avif()
    if multiprocessing.parent_process() is not None:
        _lower_priority()


def _lower_priority() -> None:
    """Decoding is batch work: when the cores are busy, the server's event loop should run
    first, or every request waits behind a decode (S7 in bench/README.md)."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current < WORKER_NICENESS:
            os.setpriority(os.PRIO_PROCESS, 0, WORKER_NICENESS)
    except OSError:
        pass  # not allowed here: run at the same priority


def make_thumbnails(
    src: str,
    out_dir: str,
    sizes: Sequence[int],
    fmt: str,
    allowed_formats: Collection[str],
) -> list[dict[str, Any]]:
    """Decode ``src`` once and write one thumbnail per size to ``out_dir/<size>.<ext>``.

    A size is the long edge in pixels; an image smaller than a size is written at its own
    size, never upscaled. EXIF orientation is applied, colours are converted to sRGB,
    and no metadata is written. Returns ``{"size", "width", "height", "content_type",
    "path"}`` per size, in the order of ``sizes``. Raises ``ImageError`` for a bad file and
    ``ValueError`` for a bad ``fmt`` or size.
    """
    output = _OUTPUTS.get(fmt)
    if output is None:
        raise ValueError(f"unknown thumbnail format {fmt!r}")
    if not sizes or any(size < 1 for size in sizes):
        raise ValueError(f"thumbnail sizes must be positive, got {list(sizes)}")
    largest = max(sizes)
    with open(src, "rb") as fp, _image_errors():
        img = _open_checked(fp, allowed_formats)
        # JPEG (and HEIF with embedded thumbnails) can decode straight to a smaller size.
        # The box is the largest thumbnail as stored (a long edge is a long edge in either
        # orientation), so a 6000x4000 photo decodes at 1/4 for 1024 px, not at 1/2.
        img.draft("RGB", _fit(img.size, largest))
        orientation = _orientation(_exif(img))
        img.load()
        colour = functools.partial(_to_rgb, icc=img.info.get("icc_profile"))
        thumbs = _cascade(_resizable(img), sizes, orientation, colour)
    written = {size: _write(im, out_dir, size, output) for size, im in thumbs.items()}
    return [written[size] for size in sizes]


def read_image_metadata(src: str, allowed_formats: Collection[str]) -> dict[str, Any]:
    """Header information about an image, without decoding its pixels.

    ``width`` and ``height`` are as displayed (swapped for EXIF orientations 5-8).
    ``exif`` holds the common camera fields that are present, JSON-ready; a broken EXIF
    block gives an empty ``exif`` rather than an error.
    """
    with open(src, "rb") as fp, _image_errors():
        img = _open_checked(fp, allowed_formats)
        exif = _exif(img)
        orientation = _orientation(exif)
        width, height = img.size
        if orientation in _SWAPS_AXES:
            width, height = height, width
        return {
            "format": _format_name(img),
            "width": width,
            "height": height,
            "mode": img.mode,
            "frames": int(getattr(img, "n_frames", 1)),
            "has_alpha": img.has_transparency_data,
            "orientation": orientation,
            "exif": _exif_fields(exif),
        }


def read_pdf_metadata(src: str) -> dict[str, Any]:
    """``{"pages": n}`` for a PDF. Raises ``DocumentError`` if it cannot be read."""
    from pypdf import PdfReader  # imported on first use: see configure_worker
    from pypdf.errors import PyPdfError

    pdf_errors: tuple[type[BaseException], ...] = (PyPdfError, *_DECODE_ERRORS)
    with open(src, "rb") as fp:
        try:
            reader = PdfReader(fp)
            if reader.is_encrypted and not reader.decrypt(""):
                raise DocumentError("PDF is password-protected")
            return {"pages": len(reader.pages)}
        except DocumentError:
            raise
        except pdf_errors as exc:
            raise DocumentError(f"PDF is unreadable: {_detail(exc)}") from exc


# --- decoding ---------------------------------------------------------------------------


@contextlib.contextmanager
def _image_errors() -> Iterator[None]:
    """Translate what Pillow raises on a bad file into ``ImageError``."""
    try:
        yield
    except ImageError:
        raise
    except _TOO_LARGE as exc:
        raise ImageError(_too_large(str(exc))) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("file is not an image in a known format") from exc
    except MemoryError as exc:
        raise ImageError("image needs too much memory to decode") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"image is truncated or corrupt: {_detail(exc)}") from exc


def _detail(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _too_large(pillow_message: str) -> str:
    # Pillow reports the pixel count but its limit is doubled for the error case.
    found = re.search(r"\((\d+) pixels\)", pillow_message)
    pixels = f"{found.group(1)} pixels" if found else "it"
    return f"image is too large: {pixels} exceeds the limit of {Image.MAX_IMAGE_PIXELS}"


def _open_checked(fp: io.BufferedReader, allowed_formats: Collection[str]) -> ImageFile.ImageFile:
    """Open (headers only) and refuse formats not accepted or images over the pixel limit."""
    img = Image.open(fp)
    name = _format_name(img)
    if name not in {f.upper() for f in allowed_formats}:
        raise ImageError(f"format {name} is not accepted for decoding")
    # Pillow only warns between the limit and twice the limit; without configure_worker
    # that warning would not stop us.
    limit = Image.MAX_IMAGE_PIXELS
    pixels = img.width * img.height
    if limit is not None and pixels > limit:
        raise ImageError(f"image is too large: {pixels} pixels exceeds the limit of {limit}")
    return img


def _format_name(img: Image.Image) -> str:
    name = (img.format or "UNKNOWN").upper()
    return _FORMAT_ALIASES.get(name, name)


def _exif(img: Image.Image) -> Image.Exif:
    """The image's EXIF, or an empty one if it is broken. Never decodes pixels."""
    try:
        if isinstance(img, PngImagePlugin.PngImageFile) and "exif" not in img.info:
            # PNG's getexif() decodes the whole image to look for an eXIf chunk after the
            # pixels; read only what precedes them (and XMP orientation).
            return Image.Image.getexif(img)
        return img.getexif()
    except _EXIF_ERRORS:
        return Image.Exif()


def _orientation(exif: Image.Exif) -> int | None:
    value = exif.get(ExifTags.Base.Orientation)
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _resizable(img: Image.Image) -> Image.Image:
    """``img`` in a mode that resizes well: 8 bits per band, palettes expanded, any
    transparency as an alpha band. Colour spaces (CMYK, LAB...) are left for ``_to_rgb``."""
    img = _to_eight_bit(img)
    if img.has_transparency_data and img.mode not in ("LA", "RGBA"):
        return img.convert("RGBA")
    if img.mode == "P":
        return img.convert("RGB")
    if img.mode == "1":
        return img.convert("L")  # resized to greys rather than picked nearest
    return img


def _to_rgb(img: Image.Image, icc: object) -> Image.Image:
    """``img`` as RGB or RGBA in sRGB. Run on the largest thumbnail, not the full image:
    an ICC transform costs some 20 ms per megapixel."""
    alpha = None
    if img.mode in ("LA", "RGBA"):
        alpha = img.getchannel("A")
        img = img.convert(img.mode[:-1])
    rgb = _to_srgb(img, icc) or img.convert("RGB")
    if alpha is not None:
        rgb.putalpha(alpha)
    return rgb


def _to_eight_bit(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I;16"):
        # Scale the 16-bit range; a plain convert would clip everything above 255 to white.
        return img.convert("I").point(lambda v: v / 257).convert("L")
    if img.mode in ("I", "F"):
        # No nominal range for 32-bit data: stretch what is there.
        low, high = cast(tuple[float, float], img.getextrema())  # one band
        scale = 255 / (high - low) if high > low else 0
        return img.point(lambda v: (v - low) * scale).convert("L")
    return img


def _to_srgb(img: Image.Image, icc: object) -> Image.Image | None:
    """Colour-convert with the embedded profile; ``None`` when there is nothing to do or
    the profile is unusable (then a plain conversion is the best we can do)."""
    try:
        if isinstance(icc, bytes) and icc:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if ImageCms.getProfileDescription(profile).strip().startswith("sRGB"):
                return None
        elif img.mode == "LAB":
            profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
        else:
            return None
        return ImageCms.profileToProfile(img, profile, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


# --- resizing and writing ---------------------------------------------------------------


def _cascade(
    base: Image.Image,
    sizes: Sequence[int],
    orientation: int | None,
    finish: Callable[[Image.Image], Image.Image],
) -> dict[int, Image.Image]:
    """One image per size, largest first, each resized from the previous one.

    Only the largest is made from ``base``; it alone is transposed and passed through
    ``finish``, which is cheaper than doing either on the full image.
    """
    method = _TRANSPOSE.get(orientation or 1)
    swap = orientation in _SWAPS_AXES
    displayed = (base.height, base.width) if swap else base.size
    out: dict[int, Image.Image] = {}
    current: Image.Image | None = None
    for size in sorted(set(sizes), reverse=True):
        target = _fit(displayed, size)
        if current is None:
            current = _resize(base, (target[1], target[0]) if swap else target)
            if method is not None:
                current = current.transpose(method)
            current = finish(current)
        else:
            current = _resize(current, target)
        out[size] = current
    return out


def _fit(size: tuple[int, int], long_edge: int) -> tuple[int, int]:
    width, height = size
    if long_edge >= max(width, height):
        return size
    if width >= height:
        return long_edge, max(1, round(height * long_edge / width))
    return max(1, round(width * long_edge / height)), long_edge


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    if img.size == size:
        return img
    # Pillow's own thumbnail() settings. reducing_gap first box-reduces by a whole factor
    # (1024 -> 256 px: reduce by 2, then resample 2x). Bicubic costs two thirds of
    # Lanczos for 2000 -> 1024 px (32 ms against 49) and lands within 0.2 dB PSNR of it.
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _write(img: Image.Image, out_dir: str, size: int, output: _Output) -> dict[str, Any]:
    """Write via a temporary name so a crash never leaves a partial file at the final path.

    Not fsynced: this is scratch space. Storage makes the file durable when the task
    moves it into place (``put_file``), and after a crash the task runs again. An fsync
    here would hold a decoding process idle for every thumbnail while the disk is busy.
    """
    if img.mode == "RGBA" and not output.alpha:
        flat = Image.new("RGB", img.size, "white")
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    img.info = {}  # Some encoders copy ICC and XMP from info; the thumbnail is plain sRGB.
    final = os.path.join(out_dir, f"{size}.{output.ext}")
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{size}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            img.save(f, format=output.pil_format, exif=b"", **output.options)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return {
        "size": size,
        "width": img.width,
        "height": img.height,
        "content_type": output.content_type,
        "path": final,
    }


# --- EXIF -------------------------------------------------------------------------------


def _exif_fields(exif: Image.Exif) -> dict[str, Any]:
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
        "datetime_original": _text(details.get(tags.DateTimeOriginal)),
        "exposure_time": _number(details.get(tags.ExposureTime)),
        "f_number": _number(details.get(tags.FNumber)),
        "iso": _integer(details.get(tags.ISOSpeedRatings)),
        "focal_length": _number(details.get(tags.FocalLength)),
        "gps": gps,
    }
    return {key: value for key, value in fields.items() if value is not None}


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
