"""Reading a whole bounded body: a request's, or a response's of a server we call.

`StreamReader.read(n)` answers as soon as *some* bytes are there, up to `n`: a body that
arrives in several segments (a loaded network, a large CSV import) was cut at the first one
and read as if it were whole. `read_at_most` reads to the end, but never more than one byte
past `limit`, so each caller still tells "too large" by the length.
"""

from __future__ import annotations

from aiohttp import StreamReader


async def read_at_most(stream: StreamReader, limit: int) -> bytes:
    """The body to its end, or its first `limit + 1` bytes if it is longer."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


__all__ = ["read_at_most"]
