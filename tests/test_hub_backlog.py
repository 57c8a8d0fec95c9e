"""A client that stops reading: what is queued for it is bounded in bytes, and it is closed.

The stuck client is a real WebSocket whose socket has a 4 KiB receive buffer and which never
reads, so the server's writes back up into its own queue, as with a console whose browser
tab froze."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp

from commandcenter.keys import HUB
from tests.conftest import Serve

LIMIT = 65536


def _small_receive_buffer(addr_info: Any) -> socket.socket:
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_a_client_that_stops_reading_is_bounded_in_bytes_and_closed(serve: Serve) -> None:
    server = await serve(
        limits={"max_backlog_bytes": LIMIT, "messages_per_s": 10000.0, "message_burst": 10000}
    )
    hub = server.http.app[HUB]
    # A roster of 40 officers with long names: each reply is ~10 KB.
    for i in range(40):
        await server.connect(f"o{i}", "officer", "P0101", name=f"officer-{i:02d}-" + "x" * 50)
    token = server.token("sv", "supervisor", "P01")
    connector = aiohttp.TCPConnector(socket_factory=_small_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = server.http.make_url("/ws")
        ws = await session.ws_connect(url, params={"token": token}, max_msg_size=0)
        requests = 1500  # about 15 MB of replies, far beyond any socket buffer
        largest = 0
        for i in range(requests):
            await ws.send_str(json.dumps({"type": "get_roster", "id": f"r{i}"}))
            await asyncio.sleep(0)
            largest = max(largest, hub.largest_backlog_bytes())
            if not hub.is_live("sv"):
                break
        deadline = time.monotonic() + 20.0
        while hub.is_live("sv"):
            largest = max(largest, hub.largest_backlog_bytes())
            assert time.monotonic() < deadline, "the stuck client was never closed"
            await asyncio.sleep(0.05)
        assert 0 < largest <= LIMIT
        assert hub.largest_backlog_bytes() <= LIMIT
        await ws.close()
    # The others were not affected.
    assert hub.is_live("o0")
