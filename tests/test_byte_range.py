"""The `Range` header of an evidence download, parsed without a server
(commandcenter/byte_range.py): one range of the kinds RFC 9110 names, cut to the file, and
every other header either ignored (another unit) or refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commandcenter.byte_range import ByteRange, parse_range
from sessions.evidence import RangeNotSatisfiable


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-499", 0, 499),
        ("bytes=500-", 500, 999),
        ("bytes=-100", 900, 999),
        ("bytes=900-5000", 900, 999),  # an end past the file is cut to its last byte
        ("bytes=-5000", 0, 999),  # a suffix longer than the file is the whole file
        ("BYTES = 10-10", 10, 10),
    ],
)
def test_one_range_is_the_bytes_it_names(header: str, start: int, end: int) -> None:
    part = parse_range(header, 1000)
    assert part == ByteRange(start, end, 1000)
    assert part.content_range() == f"bytes {start}-{end}/1000"
    assert part.length == end - start + 1


@pytest.mark.parametrize("header", [None, "items=0-1", "0-1"])
def test_no_header_or_another_unit_is_the_whole_file(header: str | None) -> None:
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("bytes=0-1,5-6", "one range at a time"),
        ("bytes=abc", "a range is bytes=START-END, START- or -LENGTH"),
        ("bytes=-", "a range is bytes=START-END, START- or -LENGTH"),
        ("bytes=1-2-3", "a range is bytes=START-END, START- or -LENGTH"),
        ("bytes=" + "9" * 19 + "-", "a range is bytes=START-END, START- or -LENGTH"),
        ("bytes=10-5", "the range ends before it starts"),
        ("bytes=1000-", "the range starts past the end (1000 bytes)"),
        ("bytes=-0", "the range holds no byte of the file"),
    ],
)
def test_a_range_not_served_is_refused_with_a_reason(header: str, reason: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as refused:
        parse_range(header, 1000)
    assert (refused.value.reason, refused.value.size, refused.value.field) == (
        reason,
        1000,
        "range",
    )


def test_an_empty_file_has_no_range() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


@given(header=st.text(max_size=40), size=st.integers(min_value=0, max_value=10**12))
def test_any_header_is_a_range_within_the_file_none_or_a_refusal(header: str, size: int) -> None:
    try:
        part = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if part is not None:
        assert 0 <= part.start <= part.end < size
        assert part.size == size
