"""Real test inputs made with Pillow: every function writes one file into ``dir`` and
returns its path. Tests build what they need instead of keeping binary fixtures."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import pillow_heif
from PIL import ExifTags, Image, TiffImagePlugin

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)

# Where each orientation's transpose goes, undone: the inverse of exif_transpose.
_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}

EIFFEL_TOWER = (48.8584, 2.2945)


def _path(dir: Path, name: str) -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    return dir / name


def _save(img: Image.Image, dir: Path, name: str, **params: Any) -> Path:
    path = _path(dir, name)
    img.save(path, **params)
    return path


def ramp(size: tuple[int, int]) -> Image.Image:
    """Greyscale, black on the left to white on the right."""
    return Image.linear_gradient("L").rotate(90).resize(size)


def gradient(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Red grows left to right, green top to bottom, blue is constant: every pixel differs."""
    down = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (ramp(size), down, Image.new("L", size, 128))).convert(mode)


def marked(size: tuple[int, int]) -> Image.Image:
    """Blue with a red top-left quadrant, to tell which way up an image is displayed."""
    img = Image.new("RGB", size, BLUE)
    img.paste(RED, (0, 0, size[0] // 2, size[1] // 2))
    return img


def jpeg_with_orientation(dir: Path, orientation: int, size: tuple[int, int] = (64, 32)) -> Path:
    """A JPEG that shows as ``marked(size)`` once its EXIF orientation is applied."""
    shown = marked(size)
    undo = _UNDO_ORIENTATION.get(orientation)
    stored = shown.transpose(undo) if undo is not None else shown
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    # Full chroma resolution keeps the quadrant edge sharp.
    return _save(stored, dir, f"orientation-{orientation}.jpg", exif=exif, subsampling=0)


def jpeg_photo(
    dir: Path,
    size: tuple[int, int] = (4000, 3000),
    exif: bool = True,
    gps: bool | tuple[float, float] = True,
) -> Path:
    """A photo-like JPEG (gradient plus noise) with camera EXIF and optionally GPS."""
    data = Image.Exif()
    if exif:
        _camera_exif(data)
    if gps:
        _gps_exif(data, *(EIFFEL_TOWER if isinstance(gps, bool) else gps))
    return _save(_photo(size), dir, "photo.jpg", exif=data, quality=90)


def _photo(size: tuple[int, int]) -> Image.Image:
    noise = Image.effect_noise(size, 24).convert("RGB")
    return Image.blend(gradient(size), noise, 0.25)


def _camera_exif(exif: Image.Exif) -> None:
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "EOS Test"
    exif[ExifTags.IFD.Exif] = {
        ExifTags.Base.LensModel: "EF50mm f/1.8 STM",
        ExifTags.Base.DateTimeOriginal: "2024:05:17 14:03:22",
        ExifTags.Base.ExposureTime: TiffImagePlugin.IFDRational(1, 250),
        ExifTags.Base.FNumber: TiffImagePlugin.IFDRational(28, 10),
        ExifTags.Base.ISOSpeedRatings: 400,
        ExifTags.Base.FocalLength: TiffImagePlugin.IFDRational(50, 1),
    }


def _gps_exif(exif: Image.Exif, latitude: float, longitude: float) -> None:
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N" if latitude >= 0 else "S",
        ExifTags.GPS.GPSLatitude: _dms(latitude),
        ExifTags.GPS.GPSLongitudeRef: "E" if longitude >= 0 else "W",
        ExifTags.GPS.GPSLongitude: _dms(longitude),
        ExifTags.GPS.GPSAltitudeRef: b"\x00",
        ExifTags.GPS.GPSAltitude: TiffImagePlugin.IFDRational(35, 1),
    }


def _dms(value: float) -> tuple[TiffImagePlugin.IFDRational, ...]:
    """Unsigned degrees, minutes, seconds, as EXIF stores them."""
    minutes_total = abs(value) * 60
    degrees, minutes = divmod(int(minutes_total), 60)
    seconds = round((minutes_total - int(minutes_total)) * 60 * 10000)
    rational = TiffImagePlugin.IFDRational
    return rational(degrees, 1), rational(minutes, 1), rational(seconds, 10000)


def cmyk_jpeg(dir: Path, size: tuple[int, int] = (200, 100)) -> Path:
    """Left half cyan, right half yellow, stored as CMYK."""
    img = Image.new("CMYK", size, (255, 0, 0, 0))
    img.paste((0, 0, 255, 0), (size[0] // 2, 0, size[0], size[1]))
    return _save(img, dir, "cmyk.jpg", quality=95)


def lab_tiff(dir: Path, size: tuple[int, int] = (64, 64)) -> Path:
    """A CIELAB TIFF of a red close to sRGB (255, 0, 0): L 53, a 80, b 67, as Pillow
    stores them (L scaled to 0-255, a and b offset by 128)."""
    return _save(Image.new("LAB", size, (135, 208, 195)), dir, "lab.tif")


def png_16bit(dir: Path, size: tuple[int, int] = (512, 64)) -> Path:
    """A 16-bit greyscale (I;16) ramp over the whole 0-65535 range, left to right."""
    wide = ramp(size).convert("I").point(lambda v: v * 257).convert("I;16")
    return _save(wide, dir, "gray16.png")


def palette_png_transparent(dir: Path, size: tuple[int, int] = (64, 64)) -> Path:
    """A palette PNG: left half transparent (index 0), right half opaque green."""
    img = Image.new("P", size, 0)
    img.putpalette([*BLUE, *GREEN])
    img.paste(1, (size[0] // 2, 0, size[0], size[1]))
    return _save(img, dir, "palette.png", transparency=0)


def rgba_png(dir: Path, size: tuple[int, int] = (64, 64)) -> Path:
    """Red with the left half fully transparent and the right half opaque."""
    img = Image.new("RGBA", size, (*RED, 255))
    img.paste((*RED, 0), (0, 0, size[0] // 2, size[1]))
    return _save(img, dir, "rgba.png")


def animated_gif(dir: Path, size: tuple[int, int] = (48, 48)) -> Path:
    """Three frames: red, green, blue."""
    first, *rest = (Image.new("RGB", size, colour) for colour in (RED, GREEN, BLUE))
    return _save(first, dir, "animated.gif", save_all=True, append_images=rest, duration=100)


def truncated_jpeg(dir: Path) -> Path:
    """A valid JPEG cut in half."""
    whole = io.BytesIO()
    _photo((256, 256)).save(whole, "JPEG")
    path = _path(dir, "truncated.jpg")
    path.write_bytes(whole.getvalue()[: whole.tell() // 2])
    return path


def decompression_bomb_png(dir: Path, size: tuple[int, int] = (20000, 20000)) -> Path:
    """A valid all-black 1-bit PNG of ``size``: tens of kilobytes on disk, hundreds of
    megapixels once decoded. Written chunk by chunk; Pillow would need the pixels."""
    width, height = size
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then packed bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data)
    path = _path(dir, "bomb.png")
    path.write_bytes(png + _chunk(b"IEND", b""))
    return path


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def not_an_image(dir: Path) -> Path:
    path = _path(dir, "notes.txt")
    path.write_text("This is a plain text file, not a picture.\n", encoding="utf-8")
    return path


def heic_image(dir: Path, size: tuple[int, int] = (128, 96)) -> Path:
    pillow_heif.register_heif_opener()
    return _save(gradient(size), dir, "image.heic", format="HEIF", quality=90)


def avif_image(dir: Path, size: tuple[int, int] = (128, 96)) -> Path:
    return _save(gradient(size), dir, "image.avif", format="AVIF", quality=90)


def webp_image(dir: Path, size: tuple[int, int] = (128, 96)) -> Path:
    return _save(gradient(size), dir, "image.webp", quality=90)


def bmp_image(dir: Path, size: tuple[int, int] = (128, 96)) -> Path:
    return _save(gradient(size), dir, "image.bmp")


def tiff_image(dir: Path, size: tuple[int, int] = (128, 96)) -> Path:
    return _save(gradient(size), dir, "image.tiff", compression="tiff_deflate")


def pdf_file(dir: Path, pages: int = 3) -> Path:
    first, *rest = (Image.new("RGB", (200, 100), (i * 60, 100, 200)) for i in range(pages))
    return _save(first, dir, "document.pdf", save_all=True, append_images=rest)
