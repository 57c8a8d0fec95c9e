"""The `Range` header of a request for an evidence original (RFC 9110, section 14): one byte
range, so that a browser's <video> can seek in a recording without downloading it whole.

Pure: the header and the original's size in, the bytes to send out. No header, or a unit
other than `bytes` (which RFC 9110 says to ignore), is the whole file. One range only
(`bytes=0-499`, `bytes=500-`, `bytes=-500`): several ranges at once, a malformed header and a
range that starts past the end are each refused `RangeNotSatisfiable` with a reason, answered
416 with `Content-Range: bytes */<size>`. An end past the file is cut to its last byte, and a
suffix longer than the file is the whole file, as the RFC has it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sessions.evidence import RangeNotSatisfiable

# Offsets of at most 18 digits: below 2**63, and far above any evidence file.
_SPEC: Final = re.compile(r"(\d{1,18})?-(\d{1,18})?")


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start` to `end`, both included, of a file of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range asked for in a file of `size` bytes; None for the whole file."""
    if header is None:
        return None
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = [p.strip() for p in specs.split(",")]
    if len(parts) != 1:
        raise RangeNotSatisfiable("one range at a time", size)
    found = _SPEC.fullmatch(parts[0])
    if found is None or (found.group(1) is None and found.group(2) is None):
        raise RangeNotSatisfiable("a range is bytes=START-END, START- or -LENGTH", size)
    first, last = found.group(1), found.group(2)
    if first is None:
        # A suffix: the last N bytes.
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable("the range holds no byte of the file", size)
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    end = size - 1 if last is None else min(int(last), size - 1)
    if last is not None and int(last) < start:
        raise RangeNotSatisfiable("the range ends before it starts", size)
    if start >= size:
        raise RangeNotSatisfiable(f"the range starts past the end ({size} bytes)", size)
    return ByteRange(start, end, size)


__all__ = ["ByteRange", "parse_range"]
