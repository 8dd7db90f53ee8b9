"""The page's thumbhash decoder (``web/thumbhash.js``) in a real Chromium, against the
reference encoder: a hash turns back into a blurred copy of the image, in its proportions,
with its average colour and alpha."""

from __future__ import annotations

import base64
import random
from typing import TYPE_CHECKING

import pytest
import thumbhash
from PIL import Image

from tests.page_helpers import open_static

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

DECODE = """async hash => {
    const m = await import("/static/thumbhash.js");
    const bytes = m.base64ToBytes(hash);
    const { w, h, rgba } = m.thumbHashToRGBA(bytes);
    return { w, h, rgba: Array.from(rgba), ratio: m.thumbHashToApproximateAspectRatio(bytes) };
}"""


def decode_in_page(page: Page, raw: list[int]) -> tuple[Image.Image, float]:
    decoded = page.evaluate(DECODE, base64.b64encode(bytes(raw)).decode())
    size = (decoded["w"], decoded["h"])
    return Image.frombytes("RGBA", size, bytes(decoded["rgba"])), decoded["ratio"]


def halves(size: tuple[int, int]) -> Image.Image:
    """Red on the left, blue on the right."""
    img = Image.new("RGB", size, (220, 30, 30))
    img.paste((30, 40, 220), (size[0] // 2, 0, *size))
    return img


@pytest.mark.parametrize(
    ("source", "limit"),
    [
        (halves((96, 64)), 35),
        (halves((64, 64)), 35),
        (Image.linear_gradient("L").resize((48, 96)).convert("RGB"), 20),
    ],
    ids=["landscape", "square", "portrait"],
)
def test_thumbhash_decoder_paints_the_image(page: Page, source: Image.Image, limit: float) -> None:
    """web/thumbhash.js turns a hash made by the reference encoder back into a blurred
    copy of the image, in the image's proportions."""
    open_static(page)
    raw = list(thumbhash.rgba_to_thumb_hash(*source.size, list(source.convert("RGBA").tobytes())))
    decoded, ratio = decode_in_page(page, raw)
    assert ratio == pytest.approx(thumbhash.thumb_hash_to_approximate_aspect_ratio(raw))
    assert max(decoded.size) == 32
    assert decoded.width / decoded.height == pytest.approx(ratio, abs=0.05)
    extrema = decoded.getextrema()
    assert len(extrema) == 4  # one (min, max) per band
    assert extrema[3] == (255, 255), "opaque images decode opaque"
    reference = source.resize(decoded.size, Image.Resampling.BOX)
    pairs = zip(decoded.convert("RGB").tobytes(), reference.tobytes(), strict=True)
    diffs = [abs(a - b) for a, b in pairs]
    assert sum(diffs) / len(diffs) < limit


def test_thumbhash_decoder_keeps_average_colour_and_alpha(page: Page) -> None:
    """Every AC term sums to zero over the sampled grid, so the mean of the decoded pixels
    is the DC term: the average colour (and alpha) the reference reads from the header.
    Mid-grey DC terms and AC nibbles of 7 or 8 (about 0) keep every pixel clear of
    clamping, whose rounding would move the mean."""
    open_static(page)
    rng = random.Random(7)
    for alpha in (0, 1):
        for landscape in (0, 1):
            header24 = 32 | 35 << 6 | 27 << 12 | 4 << 18 | alpha << 23
            header16 = 4 | 5 << 3 | 6 << 9 | landscape << 15
            raw = [header24 & 255, header24 >> 8 & 255, header24 >> 16, header16 & 255]
            raw += [header16 >> 8] + ([9 | 3 << 4] if alpha else [])
            raw += [rng.choice((7, 8)) | rng.choice((7, 8)) << 4 for _ in range(30)]
            decoded, ratio = decode_in_page(page, raw)
            assert (decoded.width > decoded.height) == bool(landscape)
            assert decoded.width / decoded.height == pytest.approx(ratio, abs=0.05)
            expected = [255 * c for c in thumbhash.thumb_hash_to_average_rgba(raw)]
            pixels = decoded.width * decoded.height
            means = [sum(band.tobytes()) / pixels for band in decoded.split()]
            assert means == pytest.approx(expected, abs=1.5)
            if alpha:
                extrema = decoded.getextrema()
                assert len(extrema) == 4  # one (min, max) per band
                assert extrema[3][0] < extrema[3][1] < 255
