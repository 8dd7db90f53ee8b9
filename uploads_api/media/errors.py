"""What decoders raise on hostile input, shared by the modules that translate it into
their own permanent errors (``ImageError``, ``DocumentError``)."""

from __future__ import annotations

import struct

# What Pillow raises on hostile input; it has no single base class. TypeError is among
# them: TIFF raises it for an IFD without dimensions (corpus: crash-2020-10-test.tif).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    TypeError,
)


def detail(exc: BaseException) -> str:
    """The exception's message, or its type's name when it has none."""
    return str(exc) or type(exc).__name__
