"""ThumbHash placeholders: decodable, and true to the image's colour and shape."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import thumbhash
from PIL import Image

from uploads_api.media.placeholders import thumbhash_of


@pytest.mark.parametrize(
    ("colour", "size"),
    [((220, 20, 30), (256, 128)), ((20, 200, 40), (100, 300)), ((30, 40, 210), (64, 64))],
)
def test_thumbhash_keeps_colour_and_aspect(
    tmp_path: Path, colour: tuple[int, int, int], size: tuple[int, int]
) -> None:
    path = tmp_path / "thumb.webp"
    Image.new("RGB", size, colour).save(path, "WEBP", quality=90)
    digest = list(base64.b64decode(thumbhash_of(str(path))))
    assert 5 <= len(digest) <= 40
    red, green, blue, alpha = thumbhash.thumb_hash_to_average_rgba(digest)
    assert [round(c * 255) for c in (red, green, blue)] == pytest.approx(list(colour), abs=12)
    assert alpha == 1
    ratio = thumbhash.thumb_hash_to_approximate_aspect_ratio(digest)
    assert ratio == pytest.approx(size[0] / size[1], rel=0.25)


def test_transparent_areas_are_painted_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    image = Image.new("RGBA", (80, 80), (255, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 40, 80))  # left half red, right half clear
    image.save(path)
    digest = list(base64.b64decode(thumbhash_of(str(path))))
    red, green, blue, alpha = thumbhash.thumb_hash_to_average_rgba(digest)
    assert alpha == 1
    assert red > 0.9 and 0.3 < green < 0.7 and 0.3 < blue < 0.7, "half red, half white"
