"""Connection caps on the real server process: per client address and in total, with
descriptors kept in reserve, so a flood leaves room for the trace and evidence files; a
refused connection gets 503 with a reason, and the refusals are logged at a bounded rate."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from commandcenter.connection_gate import (
    TOO_MANY,
    TOO_MANY_FROM_ADDRESS,
    ConnectionGate,
    total_cap,
)
from tests.conftest import TEST_SECRET
from tests.test_serve import SCRIPT, free_port, wait_exit, wait_healthy

FLOOD = 420
LIMIT = 400  # soft and hard open-file limit of the flooded server
RESERVE = 256


def test_gate_counts_per_address_and_in_total() -> None:
    gate = ConnectionGate(total=3, per_address=2)
    assert gate.admit("a") is None
    assert gate.admit("a") is None
    assert gate.admit("a") == TOO_MANY_FROM_ADDRESS
    assert gate.admit("b") is None
    assert gate.admit("c") == TOO_MANY
    gate.leave("a")
    assert gate.admit("c") is None
    gate.leave("a")
    gate.leave("b")
    gate.leave("c")
    assert (gate.open, gate.by_address, gate.refused) == (0, {}, 2)
    assert ConnectionGate(total=0, per_address=0).admit("x") is None
    assert total_cap(0, nofile=1024, fd_reserve=256) == 768
    assert total_cap(100, nofile=1024, fd_reserve=256) == 100
    assert total_cap(5000, nofile=1024, fd_reserve=256) == 768
    assert total_cap(0, nofile=100, fd_reserve=256) == 1


def start_server(
    tmp_path: Path, extra: dict[str, str], limit: int | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env |= {
        "COMMANDCENTER_SERVER_DATA_DIR": str(tmp_path / "var"),
        "COMMANDCENTER_AUTH_JWT_SECRET": TEST_SECRET,
        "COMMANDCENTER_MEDIA_ENABLED": "false",
        **extra,
    }
    port = free_port()

    def low_limit() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=low_limit,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    yield from start_server(tmp_path, {"COMMANDCENTER_SERVER_MAX_CONNECTIONS_PER_ADDRESS": "3"})


@pytest.fixture
def flooded(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    yield from start_server(
        tmp_path,
        {
            "COMMANDCENTER_SERVER_HEADER_TIMEOUT_S": "60",
            "COMMANDCENTER_SERVER_MAX_CONNECTIONS_PER_ADDRESS": "0",
        },
        limit=LIMIT,
    )


async def get_health(port: int, local: str) -> tuple[int, dict[str, str]]:
    connector = aiohttp.TCPConnector(local_addr=(local, 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as resp,
    ):
        return resp.status, await resp.json()


async def test_connections_per_address_are_capped(
    capped: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    proc, port = capped
    await wait_healthy(proc, port, tmp_path / "server.log")
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        for _ in range(5):
            status, body = await get_health(port, "127.0.0.1")
            assert status == 503
            assert body["error"] == TOO_MANY_FROM_ADDRESS
        # Another address is not held to this one's count.
        assert (await get_health(port, "127.0.0.2"))[0] == 200
        socks.pop().close()
        await asyncio.sleep(0.2)
        assert (await get_health(port, "127.0.0.1"))[0] == 200
    finally:
        for sock in socks:
            sock.close()
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc) == 0
    lines = [
        json.loads(line)
        for line in (tmp_path / "server.log").read_text().splitlines()
        if line.startswith("{")
    ]
    refused = [line for line in lines if line["event"] == "connection refused"]
    # Five refusals, one line: the rest are counted into the next one.
    assert len(refused) == 1
    assert refused[0]["reason"] == TOO_MANY_FROM_ADDRESS


async def test_a_flood_leaves_descriptors_for_evidence(
    flooded: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    """An officer's upload on a connection opened before a flood of 420 idle connections
    still gets its partial file and its trace record: the flood is held to the open-file
    limit less the reserve, and the rest are refused 503."""
    proc, port = flooded
    await wait_healthy(proc, port, tmp_path / "server.log")
    import jwt

    token = jwt.encode(
        {
            "sub": "o1",
            "role": "officer",
            "court": "P0101",
            "name": "o1",
            "exp": int(time.time()) + 600,
        },
        TEST_SECRET,
        algorithm="HS256",
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    socks: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(FLOOD):
            sock = socket.create_connection(("127.0.0.1", port))
            socks.append(sock)
        for sock in socks:
            sock.setblocking(False)
        waiting = list(socks)
        deadline = time.monotonic() + 5
        # The admitted ones stay silent (a minute's header deadline); the others are
        # answered 503 at once.
        while time.monotonic() < deadline and refused < FLOOD - (LIMIT - RESERVE):
            for sock in list(waiting):
                with contextlib.suppress(BlockingIOError):
                    assert sock.recv(4096).startswith(b"HTTP/1.1 503")
                    refused += 1
                    waiting.remove(sock)
            await asyncio.sleep(0.1)
        assert refused >= FLOOD - (LIMIT - RESERVE), refused

        body = os.urandom(100_000)
        query = urlencode(
            {
                "case": "(2025)P0101执12号",
                "kind": "photo",
                "sha256": hashlib.sha256(body).hexdigest(),
                "device": "phone-7",
                "capture_time": str(int(time.time() * 1000) - 60_000),
                "file_name": "a.jpg",
            }
        )
        head = (
            f"POST /api/evidence?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 20)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    finally:
        writer.close()
        for sock in socks:
            sock.close()
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc) == 0
    assert "Traceback" not in (tmp_path / "server.log").read_text()
