"""commandcenter/bodies.py: a body is read to its end, however it arrives, and never more
than one byte past its limit."""

from __future__ import annotations

import asyncio

from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol
from hypothesis import given
from hypothesis import strategies as st

from commandcenter.bodies import read_at_most


def stream_of(pieces: list[bytes]) -> StreamReader:
    """A real aiohttp StreamReader fed `pieces` as a connection would deliver them."""
    loop = asyncio.get_running_loop()
    stream = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    for piece in pieces:
        stream.feed_data(piece)
    stream.feed_eof()
    return stream


@given(pieces=st.lists(st.binary(min_size=1, max_size=50), max_size=20), limit=st.integers(0, 600))
def test_the_whole_body_or_one_byte_past_the_limit(pieces: list[bytes], limit: int) -> None:
    async def read() -> bytes:
        return await read_at_most(stream_of(pieces), limit)

    body = b"".join(pieces)
    got = asyncio.run(read())
    assert got == body[: limit + 1]
