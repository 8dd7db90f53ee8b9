"""ThumbHash placeholders: a ~25-byte sketch of an image a page can paint while it loads.

Synchronous; runs in the image pool on a thumbnail that was just written, never on an
original, so it decodes a few kilobytes at most.
"""

from __future__ import annotations

import base64

import thumbhash
from PIL import Image

# ThumbHash is defined on images of at most 100x100; smaller is as good and much faster.
PLACEHOLDER_EDGE = 48


def thumbhash_of(thumbnail_path: str) -> str:
    """The image's ThumbHash, base64-encoded (as the reference JavaScript decoder expects)."""
    with Image.open(thumbnail_path) as img:
        img.draft("RGB", (PLACEHOLDER_EDGE, PLACEHOLDER_EDGE))
        rgba = img.convert("RGBA")
    rgba.thumbnail((PLACEHOLDER_EDGE, PLACEHOLDER_EDGE))
    # The encoder fails on images with transparency, so transparent areas are painted white.
    small = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    small.alpha_composite(rgba)
    width, height = small.size
    digest = thumbhash.rgba_to_thumb_hash(width, height, list(small.tobytes()))
    return base64.b64encode(bytes(digest)).decode("ascii")
