"""HTTP ``Range`` for downloads: one byte range is served; several are answered with the
whole file, which RFC 9110 allows and which costs nothing to compute."""

from __future__ import annotations

import re

from uploads_api.errors import RangeNotSatisfiable

_SINGLE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` for one satisfiable range, ``None`` to send everything."""
    if not header or len(header) > 200 or size == 0:
        return None
    match = _SINGLE.match(header.strip())
    if match is None:
        return None  # several ranges or an odd unit: send the whole file
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable("the range is empty", size=size)
        return max(0, size - length), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or start >= end:
        raise RangeNotSatisfiable(f"the range starts beyond the {size}-byte file", size=size)
    return start, end
