"""Which sniffed types are handed to which decoder. Everything else is stored as an opaque
file."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

# Sniffed MIME type -> Pillow format name, as listed in UPLOADS_IMAGE_FORMATS.
DECODABLE = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/avif": "AVIF",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
    "image/tiff": "TIFF",
    "image/bmp": "BMP",
}


def decoder_format(content_type: str, allowed: Collection[str]) -> str | None:
    """The Pillow format to decode this file as, or ``None`` if it must not be decoded."""
    fmt = DECODABLE.get(content_type)
    return fmt if fmt is not None and fmt in allowed else None


# Sniffed MIME type -> container name, as listed in UPLOADS_VIDEO_FORMATS.
VIDEO_CONTAINERS = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
    "video/x-matroska": "mkv",
    "video/x-msvideo": "avi",
}
# Audio is read for its tags and cover art only (mutagen); no samples are decoded.
AUDIO_TYPES = frozenset({"audio/mpeg", "audio/flac", "audio/ogg", "audio/mp4", "audio/wav"})


def video_container(content_type: str, allowed: Collection[str]) -> str | None:
    """The container to open this file as, or ``None`` if it must not be opened."""
    container = VIDEO_CONTAINERS.get(content_type)
    return container if container is not None and container in allowed else None


@dataclass(frozen=True)
class Decoders:
    """What this server hands to a decoder, from ``UPLOADS_IMAGE_FORMATS`` and
    ``UPLOADS_VIDEO_FORMATS``."""

    image_formats: Collection[str]
    video_formats: Collection[str]

    def kind_of(self, content_type: str) -> str | None:
        """``"image"``, ``"video"``, ``"audio"`` or ``"pdf"``: the decoder this file goes
        to; ``None`` if it is stored as it is and never decoded."""
        if decoder_format(content_type, self.image_formats) is not None:
            return "image"
        if video_container(content_type, self.video_formats) is not None:
            return "video"
        if content_type in AUDIO_TYPES:
            return "audio"
        if content_type == "application/pdf":
            return "pdf"
        return None
