"""Pillow work on images: decode, orient, colour-convert and resize into thumbnails and
variants; read header facts. EXIF parsing is in ``exif``; the output formats are in ``outputs``.

Runs in the pool's worker processes only (see the package docstring), on untrusted bytes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from uploads_api.media.errors import DECODE_ERRORS, detail
from uploads_api.media.exif import exif_fields, orientation_of, read_exif
from uploads_api.media.outputs import OUTPUTS, Output, Thumbnail, variant_output
from uploads_api.media.variant_spec import VariantSpec


class ImageError(Exception):
    """The file cannot be decoded as an accepted image: corrupt, truncated, too large or
    of a refused format. Retrying will not help; ``str(exc)`` is readable by users."""


@dataclass(frozen=True)
class Rendition:
    """A thumbnail just written to scratch space at ``path``, not yet stored. Its
    ``thumbnail.version`` is empty: the task sets it when it stores the files."""

    thumbnail: Thumbnail
    path: str


@dataclass(frozen=True)
class VariantImage:
    """A variant just written to scratch space at ``path``, not yet stored: its size in
    pixels and in bytes."""

    path: str
    width: int
    height: int
    length: int


_TOO_LARGE = (Image.DecompressionBombError, Image.DecompressionBombWarning)

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


def make_thumbnails(
    src: str,
    out_dir: str,
    sizes: Sequence[int],
    fmt: str,
    allowed_formats: Collection[str],
) -> list[Rendition]:
    """Decode ``src`` once and write one thumbnail per size to ``out_dir/<size>.<ext>``.

    A size is the long edge in pixels; an image smaller than a size is written at its own
    size, never upscaled. EXIF orientation is applied, colours are converted to sRGB,
    and no metadata is written. Returns one ``Rendition`` per size, in the order of
    ``sizes``. Raises ``ImageError`` for a bad file and ``ValueError`` for a bad ``fmt``
    (not a key of ``outputs.OUTPUTS``) or size.
    """
    output = _output_for(fmt, sizes)
    largest = max(sizes)
    with open(src, "rb") as fp, _image_errors():
        img = _open_checked(fp, allowed_formats)
        # JPEG (and HEIF with embedded thumbnails) can decode straight to a smaller size.
        # The box is the largest thumbnail as stored (a long edge is a long edge in either
        # orientation), so a 6000x4000 photo decodes at 1/4 for 1024 px, not at 1/2.
        img.draft("RGB", fit_within(img.size, largest))
        orientation = orientation_of(read_exif(img))
        img.load()
        colour = functools.partial(_to_rgb, icc=img.info.get("icc_profile"))
        thumbs = _cascade(_resizable(img), sizes, orientation, colour)
    written = {size: _write(im, out_dir, size, output) for size, im in thumbs.items()}
    return [written[size] for size in sizes]


def thumbnails_from(
    img: Image.Image, out_dir: str, sizes: Sequence[int], fmt: str
) -> list[Rendition]:
    """``make_thumbnails`` for a picture another decoder made (a video frame, a cover, a
    PDF page): upright already, already within the pixel cap."""
    output = _output_for(fmt, sizes)
    with _image_errors():
        colour = functools.partial(_to_rgb, icc=img.info.get("icc_profile"))
        thumbs = _cascade(_resizable(img), sizes, None, colour)
    written = {size: _write(im, out_dir, size, output) for size, im in thumbs.items()}
    return [written[size] for size in sizes]


def make_variant(
    src: str,
    out_dir: str,
    spec: VariantSpec,
    reference: tuple[int, int] | None,
    allowed_formats: Collection[str],
) -> VariantImage:
    """Decode ``src`` and write the variant ``spec`` asks for to ``out_dir/variant.<ext>``.

    ``spec.fmt`` is a format, not ``auto``. EXIF orientation is applied first; colours are
    converted to sRGB and no metadata is written, as for thumbnails. The geometry is
    worked out on ``reference``, the original's size as displayed, when ``src`` is a
    smaller copy of it (a thumbnail): the variant then has the size it would have had
    from the original. ``None``: on ``src`` itself. Raises ``ImageError`` for a bad file.
    """
    output = variant_output(spec.fmt, spec.quality)
    with open(src, "rb") as fp, _image_errors():
        img = _open_checked(fp, allowed_formats)
        orientation = orientation_of(read_exif(img))
        swap = orientation in _SWAPS_AXES
        plan = spec.geometry(reference or ((img.height, img.width) if swap else img.size))
        stored = (plan.resize[1], plan.resize[0]) if swap else plan.resize
        img.draft("RGB", stored)  # JPEG decodes at 1/2, 1/4 or 1/8 when that is enough
        img.load()
        variant = _resize(_resizable(img), stored)
        method = _TRANSPOSE.get(orientation or 1)
        if method is not None:
            variant = variant.transpose(method)
        if plan.crop is not None:
            variant = variant.crop(plan.crop)
        # After the crop: the colour transform is paid only on pixels that are kept.
        variant = _to_rgb(variant, img.info.get("icc_profile"))
    path = _save(variant, out_dir, "variant", output)
    return VariantImage(path, variant.width, variant.height, os.path.getsize(path))


def _output_for(fmt: str, sizes: Sequence[int]) -> Output:
    output = OUTPUTS.get(fmt)
    if output is None:
        raise ValueError(f"unknown thumbnail format {fmt!r}")
    if not sizes or any(size < 1 for size in sizes):
        raise ValueError(f"thumbnail sizes must be positive, got {list(sizes)}")
    return output


def read_image_metadata(src: str, allowed_formats: Collection[str]) -> dict[str, Any]:
    """Header information about an image, without decoding its pixels.

    ``width`` and ``height`` are as displayed (swapped for EXIF orientations 5-8).
    ``exif`` holds the common camera fields that are present, JSON-ready; a broken EXIF
    block gives an empty ``exif`` rather than an error.
    """
    with open(src, "rb") as fp, _image_errors():
        img = _open_checked(fp, allowed_formats)
        exif = read_exif(img)
        orientation = orientation_of(exif)
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
            "exif": exif_fields(exif),
        }


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
    except DECODE_ERRORS as exc:
        raise ImageError(f"image is truncated or corrupt: {detail(exc)}") from exc


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
        target = fit_within(displayed, size)
        if current is None:
            current = _resize(base, (target[1], target[0]) if swap else target)
            if method is not None:
                current = current.transpose(method)
            current = finish(current)
        else:
            current = _resize(current, target)
        out[size] = current
    return out


def fit_within(size: tuple[int, int], long_edge: int) -> tuple[int, int]:
    """The size of a thumbnail with this long edge: the aspect kept, never upscaled."""
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


def _write(img: Image.Image, out_dir: str, size: int, output: Output) -> Rendition:
    final = _save(img, out_dir, str(size), output)
    thumbnail = Thumbnail(size, img.width, img.height, output.content_type)
    return Rendition(thumbnail, final)


def _save(img: Image.Image, out_dir: str, stem: str, output: Output) -> str:
    """Write ``out_dir/<stem>.<ext>`` via a temporary name, so a crash never leaves a
    partial file at the final path; its path.

    Not fsynced: this is scratch space. Storage makes the file durable when the task
    moves it into place (``put_file``), and after a crash the task runs again. An fsync
    here would hold a decoding process idle for every thumbnail while the disk is busy.
    """
    if img.mode == "RGBA" and not output.alpha:
        flat = Image.new("RGB", img.size, "white")
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    img.info = {}  # Some encoders copy ICC and XMP from info; the output is plain sRGB.
    final = os.path.join(out_dir, f"{stem}.{output.extension}")
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            img.save(f, format=output.pil_format, exif=b"", **output.options)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return final
