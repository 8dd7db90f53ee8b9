"""Helpers for the imaging tests: the image formats they accept, and this process set up as
an image pool worker is."""

from __future__ import annotations

import pytest
from PIL import Image, ImageFile

from uploads_api.media.worker import configure_worker

ALL_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "AVIF", "HEIF", "TIFF", "BMP"})
MAX_PIXELS = 50_000_000


def as_a_pool_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set up this process as a pool worker would be; the pixel limit is put back after."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    configure_worker(max_pixels=MAX_PIXELS)
