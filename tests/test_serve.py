"""`commandcenter serve` as a real process: it answers /healthz, accepts a token made by
`commandcenter token` from the same data directory, and exits cleanly on SIGTERM even with
a WebSocket open; a graceful stop (SIGTERM) stops accepting, tells WebSocket clients to
reconnect (1001), lets an upload in progress finish and be recorded, and exits 0; a second
SIGTERM does not cut the drain short."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from commandcenter import __version__
from tests.polling import wait_until

SCRIPT = Path(sys.executable).parent / "commandcenter"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of both commands: one private data dir, no other overrides."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    clean["COMMANDCENTER_SERVER_DATA_DIR"] = str(tmp_path / "var")
    return clean


@pytest.fixture
def server_process(
    tmp_path: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        log.close()


async def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> dict[str, str]:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.poll() is not None:
                output = await asyncio.to_thread(log.read_text, errors="replace")
                raise AssertionError(f"server exited: {output}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        body: dict[str, str] = await resp.json()
                        return body
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy"
            await asyncio.sleep(0.05)


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while (code := proc.poll()) is None:
        assert time.monotonic() < deadline, "server did not exit after SIGTERM"
        await asyncio.sleep(0.05)
    return code


async def test_serve_answers_health_accepts_a_cli_token_and_exits_cleanly_on_sigterm(
    server_process: tuple[subprocess.Popen[bytes], int], env: dict[str, str], tmp_path: Path
) -> None:
    proc, port = server_process
    log = tmp_path / "server.log"
    health = await wait_healthy(proc, port, log)
    assert health["status"] == "ok"
    assert health["version"] == __version__
    assert health["node_id"]

    made = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *("token", "--user", "o1", "--role", "officer", "--court", "P0101"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(made.communicate(), 60)
    assert (made.returncode, err) == (0, b"")
    token = out.decode().strip()

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{port}/ws", params={"token": token}) as ws,
    ):
        welcome = json.loads(await ws.receive_str(timeout=5))
        assert welcome["type"] == "welcome"
        assert welcome["user"]["id"] == "o1"
        assert welcome["node_id"] == health["node_id"]

        proc.send_signal(signal.SIGTERM)
        closing = await ws.receive(timeout=STOP_TIMEOUT_S)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert (closing.data, closing.extra) == (1001, "server shutting down")
        assert await wait_exit(proc) == 0
    output = await asyncio.to_thread(log.read_text, errors="replace")
    assert "Traceback" not in output
    # One info line for the sign-in, none for its WebSocket's end or its HTTP upgrade.
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    about_o1 = [
        line["event"]
        for line in lines
        if line["level"] == "info" and (line.get("user_id") == "o1" or line.get("path") == "/ws")
    ]
    assert about_o1 == ["connected"]


async def test_readyz_is_ready_with_trace_and_media(
    server_process: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    """The real server on embedded defaults (SQLite trace, media in worker processes): it
    serves at once, and is ready once its media workers are up."""
    proc, port = server_process
    await wait_healthy(proc, port, tmp_path / "server.log")
    seen: list[tuple[int, dict[str, object]]] = []

    async def ready() -> bool:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/readyz") as resp,
        ):
            seen.append((resp.status, await resp.json()))
            return resp.status == 200

    await wait_until(ready, within=30.0, what="ready with its media workers up")
    assert seen[-1][1]["checks"] == {"accepting": "ok", "core": "ok", "trace": "ok", "media": "ok"}
    # Before, only media could have been failing: the workers were starting.
    for status, body in seen[:-1]:
        assert status == 503, body
        assert body["checks"] == {**seen[-1][1]["checks"], "media": "failing"}, body
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc) == 0


DRAIN_CASE = "(2025)P0101执12号"
CHUNK = 64 * 1024
CHUNKS = 24
PAUSE_S = 0.1


async def cli_token(env: dict[str, str], cwd: Path, user: str, role: str) -> str:
    made = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *("token", "--user", user, "--role", role, "--court", "P0101"),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(made.communicate(), 60)
    assert (made.returncode, err) == (0, b"")
    return out.decode().strip()


async def test_sigterm_drains_uploads_and_websockets_then_exits(
    server_process: tuple[subprocess.Popen[bytes], int],
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    proc, port = server_process
    await wait_healthy(proc, port, tmp_path / "server.log")
    token = await cli_token(env, tmp_path, "o1", "officer")
    body = os.urandom(CHUNK * CHUNKS)
    started = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        for i in range(CHUNKS):
            yield body[i * CHUNK : (i + 1) * CHUNK]
            if i == 2:
                started.set()
            await asyncio.sleep(PAUSE_S)

    base = f"http://127.0.0.1:{port}"
    params = {
        "case": DRAIN_CASE,
        "kind": "video",
        "sha256": hashlib.sha256(body).hexdigest(),
        "device": "cam-1",
        "capture_time": str(int(time.time() * 1000) - 60_000),
        "file_name": "clip.mp4",
    }
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"ws://127.0.0.1:{port}/ws", params={"token": token})
        assert json.loads(await ws.receive_str(timeout=5))["type"] == "welcome"
        upload = asyncio.create_task(
            session.post(
                f"{base}/api/evidence",
                params=params,
                data=trickle(),
                headers={**auth, "Content-Type": "video/mp4"},
            )
        )
        await asyncio.wait_for(started.wait(), 10)
        proc.send_signal(signal.SIGTERM)

        closing = await ws.receive(timeout=10)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == 1001

        # Not accepting any more: a new connection is refused while the upload goes on.
        await asyncio.sleep(0.3)
        assert not upload.done()
        refused = False
        try:
            async with aiohttp.ClientSession() as other:
                await other.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=2))
        except (TimeoutError, aiohttp.ClientConnectionError):
            refused = True
        assert refused, "a new connection was served during the drain"
        # A second SIGTERM (an impatient operator) does not cut the upload off.
        proc.send_signal(signal.SIGTERM)

        resp = await asyncio.wait_for(upload, 30)
        stored = await resp.json()
        assert resp.status == 201, stored
        assert stored["sha256"] == hashlib.sha256(body).hexdigest()
        resp.release()
    assert await wait_exit(proc) == 0
    output = (tmp_path / "server.log").read_text(errors="replace")
    assert "Traceback" not in output
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert "draining" in events
    assert events.index("draining") < events.index("drained")

    # The upload is in the trace the drained server left.
    audit = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *("audit", "verify"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(audit.communicate(), 60)
    assert audit.returncode == 0, (out, err)
