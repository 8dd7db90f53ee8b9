"""Direct uploads in the Python client, before any request: the parts' arithmetic, which
files go direct, and a plan whose parts do not cover the file."""

from __future__ import annotations

import httpx
import pytest

from tests.direct_uploads_fake import BUCKET, UPLOAD_ID
from uploads_api.client import UploadsClientError
from uploads_api.client.direct import DirectOffer, Part, parse_plan, part_ranges


@pytest.mark.parametrize(
    ("size", "part_size", "ranges"),
    [
        (1, 40, [(0, 1)]),
        (40, 40, [(0, 40)]),
        (41, 40, [(0, 40), (40, 41)]),
        (100, 40, [(0, 40), (40, 80), (80, 100)]),
        (120, 40, [(0, 40), (40, 80), (80, 120)]),
    ],
)
def test_part_k_holds_its_slice_of_the_file(
    size: int, part_size: int, ranges: list[tuple[int, int]]
) -> None:
    assert part_ranges(size, part_size) == ranges


def test_parts_cover_the_file_once_in_order_and_are_read_in_chunks() -> None:
    size, part_size = 40 * 1024 * 1024 + 3, 8 * 1024 * 1024
    ranges = part_ranges(size, part_size)
    assert len(ranges) == 6
    assert [start for start, _ in ranges] == [end for _, end in [(0, 0), *ranges[:-1]]]
    assert ranges[-1] == (5 * part_size, size)
    spans = list(Part(6, "u", *ranges[-1]).chunks())
    assert spans == [(5 * part_size, 3)]
    spans = list(Part(1, "u", *ranges[0]).chunks())
    assert len(spans) == 8 and all(length == 1024 * 1024 for _, length in spans)
    with pytest.raises(ValueError):
        part_ranges(0, part_size)


def test_files_from_min_size_up_go_direct() -> None:
    offer = DirectOffer(min_size=100, part_size=40, max_parts=10, expires_in=60)
    assert [offer.takes(size) for size in (1, 99, 100, 10**12)] == [False, False, True, True]
    # A server that says 0 still never gets an empty file as a direct upload.
    assert not DirectOffer(0, 40, 10, 60).takes(0)


@pytest.mark.parametrize("numbers", [[1, 2], [1, 2, 3, 4], [0, 1, 2], [1, 2, 2]])
def test_a_plan_whose_parts_do_not_cover_the_file_is_refused(numbers: list[int]) -> None:
    parts = [{"number": n, "url": f"https://{BUCKET}/{n}"} for n in numbers]
    body = {"id": UPLOAD_ID, "part_size": 40, "parts": parts, "expires_at": "2026-01-01T00:00:00Z"}
    with pytest.raises(UploadsClientError, match="plan"):
        parse_plan(httpx.Response(201, json=body), 100)
