"""Thumbnail and variant outputs: the formats they may be written in, their encoder
settings and file extensions, and ``Thumbnail``, what is recorded of each thumbnail.

The one owner of these facts: the pool writes thumbnails and variants with them, the task
and the variant service store them under their extension, and the routes find them again
by it. Plain data with no other
imports from uploads_api, so the database and web layers can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Output:
    """How to write one thumbnail format with Pillow."""

    pil_format: str
    extension: str
    content_type: str
    alpha: bool
    options: Mapping[str, Any] = field(default_factory=dict)


# Keyed by the names UPLOADS_THUMBNAIL_FORMAT takes.
OUTPUTS = {
    # method 1: a quarter of the CPU time of the default 4, for sizes within a few percent
    # either way and the same PSNR at quality 80 (bench/README.md, S5).
    "webp": Output("WEBP", "webp", "image/webp", True, {"quality": 80, "method": 1}),
    "jpeg": Output("JPEG", "jpg", "image/jpeg", False, {"quality": 85, "optimize": True}),
    # zlib level 3: a third of the time of the default 6 for about 8% more bytes.
    "png": Output("PNG", "png", "image/png", True, {"compress_level": 3}),
    "avif": Output("AVIF", "avif", "image/avif", True, {"quality": 60, "speed": 8}),
}

# Part of every variant's ETag and storage key: bump it when a change here or in the
# pool's variant code changes the bytes a spec gives, so that caches take the new ones.
VARIANT_ENCODER_VERSION = 1


def variant_output(fmt: str, quality: int) -> Output:
    """How a variant in ``fmt`` is written: the thumbnail settings with the spec's quality
    (PNG, lossless, has none)."""
    output = OUTPUTS[fmt]
    if "quality" not in output.options:
        return output
    return replace(output, options={**output.options, "quality": quality})


_EXTENSIONS = {output.content_type: output.extension for output in OUTPUTS.values()}
# WebP is the default thumbnail format: the extension to try for a type not listed here.
_DEFAULT_EXTENSION = OUTPUTS["webp"].extension


def extension_of(content_type: str) -> str:
    """The file extension thumbnails of this type are stored under ("image/jpeg" -> "jpg")."""
    return _EXTENSIONS.get(content_type, _DEFAULT_EXTENSION)


@dataclass(frozen=True)
class Thumbnail:
    """One thumbnail of a file. ``size`` is the configured long edge it was made for;
    ``width`` and ``height`` are what was written (smaller for a small image). ``version``
    changes on every run, so browsers never show a stale cached thumbnail."""

    size: int
    width: int
    height: int
    content_type: str
    version: str = ""

    @property
    def extension(self) -> str:
        return extension_of(self.content_type)

    def to_json(self) -> dict[str, Any]:
        """The shape stored in the database and returned by the API."""
        return {
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "content_type": self.content_type,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Thumbnail:
        # Rows written before thumbnails were versioned have no "version".
        return cls(
            size=int(data["size"]),
            width=int(data["width"]),
            height=int(data["height"]),
            content_type=str(data["content_type"]),
            version=str(data.get("version", "")),
        )
