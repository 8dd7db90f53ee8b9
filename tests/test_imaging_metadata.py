"""What uploads_api.media reads from real files made by tests/imagegen.py: the size, mode,
frames and EXIF of images (as displayed), the pages of a PDF, and EXIF dates in ISO 8601.
Thumbnails and variants: test_imaging.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import imagegen
from tests.imaging_helpers import ALL_FORMATS, as_a_pool_worker
from uploads_api.media.exif import exif_datetime
from uploads_api.media.images import read_image_metadata
from uploads_api.media.pdf import DocumentError, read_pdf_metadata


@pytest.fixture(autouse=True)
def worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set up this process as a pool worker would be; the pixel limit is put back after."""
    as_a_pool_worker(monkeypatch)


# --- metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "position",
    [(48.8584, 2.2945), (-22.9519, -43.2105), (35.3606, 138.7274), (-33.8568, -70.6483)],
    ids=["N-E", "S-W", "N-E-2", "S-W-2"],
)
def test_photo_metadata(tmp_path: Path, position: tuple[float, float]) -> None:
    src = imagegen.jpeg_photo(tmp_path, size=(640, 480), gps=position)
    meta = read_image_metadata(str(src), ALL_FORMATS)
    json.dumps(meta, allow_nan=False)
    assert {k: meta[k] for k in ("format", "width", "height", "mode", "frames")} == {
        "format": "JPEG",
        "width": 640,
        "height": 480,
        "mode": "RGB",
        "frames": 1,
    }
    assert meta["has_alpha"] is False
    assert meta["orientation"] is None
    exif = meta["exif"]
    assert {k: exif[k] for k in ("make", "model", "lens", "datetime_original", "iso")} == {
        "make": "Canon",
        "model": "EOS Test",
        "lens": "EF50mm f/1.8 STM",
        "datetime_original": "2024-05-17T14:03:22",
        "iso": 400,
    }
    for key, value in [("exposure_time", 1 / 250), ("f_number", 2.8), ("focal_length", 50.0)]:
        assert isinstance(exif[key], float)
        assert exif[key] == pytest.approx(value)
    gps = exif["gps"]
    assert gps["latitude"] == pytest.approx(position[0], abs=1e-6)
    assert gps["longitude"] == pytest.approx(position[1], abs=1e-6)
    assert gps["altitude"] == pytest.approx(35.0)


def test_metadata_without_exif(tmp_path: Path) -> None:
    src = imagegen.jpeg_photo(tmp_path, size=(64, 48), exif=False, gps=False)
    meta = read_image_metadata(str(src), ALL_FORMATS)
    assert (meta["width"], meta["height"], meta["exif"]) == (64, 48, {})


@pytest.mark.parametrize("orientation", range(1, 9))
def test_metadata_size_is_as_displayed(tmp_path: Path, orientation: int) -> None:
    src = imagegen.jpeg_with_orientation(tmp_path, orientation, size=(64, 32))
    meta = read_image_metadata(str(src), ALL_FORMATS)
    assert (meta["width"], meta["height"], meta["orientation"]) == (64, 32, orientation)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (imagegen.animated_gif, {"format": "GIF", "frames": 3, "width": 48}),
        (imagegen.palette_png_transparent, {"format": "PNG", "mode": "P", "has_alpha": True}),
        (imagegen.rgba_png, {"format": "PNG", "mode": "RGBA", "has_alpha": True}),
        (imagegen.png_16bit, {"format": "PNG", "mode": "I;16", "width": 512, "height": 64}),
        (imagegen.cmyk_jpeg, {"format": "JPEG", "mode": "CMYK", "has_alpha": False}),
        (imagegen.heic_image, {"format": "HEIF", "width": 128, "height": 96, "frames": 1}),
        (imagegen.avif_image, {"format": "AVIF", "width": 128, "height": 96, "frames": 1}),
        (imagegen.tiff_image, {"format": "TIFF", "mode": "RGB"}),
    ],
)
def test_metadata_of_other_images(
    tmp_path: Path, make: Callable[[Path], Path], expected: dict[str, Any]
) -> None:
    meta = read_image_metadata(str(make(tmp_path)), ALL_FORMATS)
    json.dumps(meta, allow_nan=False)
    assert {k: meta[k] for k in expected} == expected


def test_pdf_pages(tmp_path: Path) -> None:
    assert read_pdf_metadata(str(imagegen.pdf_file(tmp_path, pages=3)))["pages"] == 3


@pytest.mark.parametrize("make", [imagegen.not_an_image, imagegen.rgba_png])
def test_unreadable_pdf(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    with pytest.raises(DocumentError, match="PDF is unreadable"):
        read_pdf_metadata(str(make(tmp_path)))


def test_truncated_pdf(tmp_path: Path) -> None:
    whole = imagegen.pdf_file(tmp_path, pages=3).read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(DocumentError):
        read_pdf_metadata(str(cut))


@pytest.mark.parametrize(
    ("value", "offset", "expected"),
    [
        ("2008:10:22 16:28:39", None, "2008-10-22T16:28:39"),
        ("2008:10:22 16:28:39", "+02:00", "2008-10-22T16:28:39+02:00"),
        ("2008:10:22 16:28:39", "-05:30", "2008-10-22T16:28:39-05:30"),
        ("2008:10:22 16:28:39", "   :  ", "2008-10-22T16:28:39"),  # blank offset field
        ("not a date", "+02:00", "not a date"),
        (None, "+02:00", None),
    ],
)
def test_exif_dates_are_iso_8601_with_the_recorded_offset_and_no_invented_zone(
    value: str | None, offset: str | None, expected: str | None
) -> None:
    assert exif_datetime(value, offset) == expected
