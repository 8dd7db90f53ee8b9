"""HTTP ``Range`` parsing for downloads."""

from __future__ import annotations

import time

import pytest

from uploads_api.api.problems import http_status
from uploads_api.api.ranges import parse_range
from uploads_api.errors import RangeNotSatisfiable

SIZE = 10


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "bytes=",
        "bytes=-",
        "bytes=0-1,3-4",
        "bytes=0-1, 5-",
        "items=0-1",
        "bytes 0-1",
        "bytes=a-b",
        "bytes=1-2-3",
        "bytes=--1",
        "bytes=+1-2",
        "bytes=0x1-2",
        "bytes=1.5-2",
    ],
)
def test_headers_that_mean_the_whole_file(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", SIZE, (0, 1)),
        ("bytes=0-9", SIZE, (0, 10)),
        ("bytes=5-", SIZE, (5, 10)),
        ("bytes=9-", SIZE, (9, 10)),
        ("bytes=-3", SIZE, (7, 10)),
        ("bytes=-10", SIZE, (0, 10)),
        ("bytes=-999", SIZE, (0, 10)),
        ("bytes=2-999", SIZE, (2, 10)),
        ("bytes=3-3", SIZE, (3, 4)),
        (" bytes=1-2 ", SIZE, (1, 3)),
        ("bytes=0-", 1, (0, 1)),
        ("bytes=0-99999999999999999999999", SIZE, (0, 10)),
    ],
)
def test_one_range(header: str, size: int, expected: tuple[int, int]) -> None:
    span = parse_range(header, size)
    assert span == expected
    start, end = expected
    assert 0 <= start < end <= size


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", SIZE),
        ("bytes=10-20", SIZE),
        ("bytes=11-", SIZE),
        ("bytes=99999999999999999999-", SIZE),
        ("bytes=-0", SIZE),
        ("bytes=5-2", SIZE),  # last before first: RFC 9110 lets a server reject it
    ],
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert http_status(caught.value) == 416
    assert caught.value.extra["size"] == size


@pytest.mark.parametrize("header", ["bytes=-5", "bytes=0-", "bytes=0-0"])
def test_a_range_on_an_empty_file_is_ignored(header: str) -> None:
    # An empty file has no byte to point at: the whole (empty) file is sent with 200.
    assert parse_range(header, 0) is None


def test_ten_thousand_ranges_are_refused_quickly() -> None:
    header = "bytes=" + ",".join(f"{i}-{i}" for i in range(10_000))
    started = time.perf_counter()
    assert parse_range(header, 100_000) is None
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize("header", ["bytes=" + "1" * 100_000 + "-", "bytes=-" + "9" * 5000])
def test_huge_numbers_are_refused_quickly(header: str) -> None:
    started = time.perf_counter()
    assert parse_range(header, SIZE) is None
    assert time.perf_counter() - started < 0.1
