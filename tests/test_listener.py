"""Silent and half-open connections against the real server process: closed after
`server.header_timeout_s`, while /healthz and WebSockets go on being served; the open-file
limit raised at start; the accept loop's errors logged at a bounded rate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from commandcenter.listener import AcceptErrorLog
from tests.conftest import TEST_SECRET
from tests.test_serve import SCRIPT, free_port, wait_exit, wait_healthy

SILENT = 300
HALF_OPEN = 50
LOW_SOFT_LIMIT = 256


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env |= {
        "COMMANDCENTER_SERVER_DATA_DIR": str(tmp_path / "var"),
        "COMMANDCENTER_AUTH_JWT_SECRET": TEST_SECRET,
        "COMMANDCENTER_SERVER_HEADER_TIMEOUT_S": "1.0",
    }
    port = free_port()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def low_limit() -> None:
        # A modest soft limit, as on many hosts: 350 connections would exhaust it.
        resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, hard))

    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Only setrlimit in the child, before anything else runs there.
        preexec_fn=low_limit,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except BlockingIOError:
        return False


async def test_silent_connections_are_closed_and_the_server_keeps_serving(
    server: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    proc, port = server
    await wait_healthy(proc, port, tmp_path / "server.log")
    limits = await asyncio.to_thread(Path(f"/proc/{proc.pid}/limits").read_text)
    (line,) = [row for row in limits.splitlines() if row.startswith("Max open files")]
    soft = int(line.split()[3])
    assert soft > LOW_SOFT_LIMIT, "the server raised its open-file limit"
    baseline = open_fds(proc.pid)

    token = await asyncio.to_thread(
        subprocess.check_output,
        [str(SCRIPT), "token", "--user", "o1", "--role", "officer", "--court", "P0101"],
        env={**os.environ, "COMMANDCENTER_AUTH_JWT_SECRET": TEST_SECRET},
    )
    socks: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession() as session:
            # A WebSocket that is idle longer than the header deadline stays open.
            ws = await session.ws_connect(
                f"ws://127.0.0.1:{port}/ws", params={"token": token.decode().strip()}
            )
            assert json.loads(await ws.receive_str(timeout=5))["type"] == "welcome"
            for i in range(SILENT + HALF_OPEN):
                sock = socket.create_connection(("127.0.0.1", port))
                if i >= SILENT:
                    # Headers begun and never finished: a handshake left half way.
                    sock.sendall(b"GET /ws?token=x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                sock.setblocking(False)
                socks.append(sock)
            # Served meanwhile, at once.
            began = time.monotonic()
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
            assert time.monotonic() - began < 1.0
            await asyncio.sleep(2.5)
            assert all(closed_by_peer(s) for s in socks)
            assert open_fds(proc.pid) <= baseline + 5
            await ws.send_str(json.dumps({"type": "heartbeat", "id": "h", "device_time": 1.7e12}))
            reply: dict[str, Any] = json.loads(await ws.receive_str(timeout=5))
            assert reply["type"] == "heartbeat_ack"
            await ws.close()
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc) == 0


def test_accept_errors_are_logged_at_a_bounded_rate() -> None:
    now = [0.0]
    handler = AcceptErrorLog(interval_s=10.0, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        passed: list[dict[str, Any]] = []
        loop.default_exception_handler = passed.append  # type: ignore[method-assign,assignment]
        error = {"message": "socket.accept() out of system resource", "exception": OSError(24)}
        for _ in range(100_000):
            handler(loop, error)
        assert handler.swallowed == 99_999
        now[0] = 10.0
        handler(loop, error)
        assert handler.swallowed == 0
        handler(loop, {"message": "something else"})
        assert passed == [{"message": "something else"}]
    finally:
        loop.close()
