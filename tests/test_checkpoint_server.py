"""Checkpoints written by the running server: one at start, then periodically while the head
moves (not while it stands still), one at the stop on the app's cleanup; a real
`commandcenter serve` process stopped with SIGTERM leaves a stop checkpoint at the trace's
final head, which `audit verify` accepts; a tail cut below the last checkpoint is never
signed over; a stop after a drain that timed out promises no quiet."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import structlog.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.checkpoints import CHECKPOINTER
from commandcenter.config import audit_key_path
from commandcenter.keys import TRACE
from commandcenter.stores import sqlite_path
from sessions.checkpoint import Checkpoint, signature_ok
from sessions.checkpoint_files import load_public_key, public_key_path
from sessions.checkpointer import Checkpointer
from sessions.recorder import TraceEvent
from sessions.sqlite_store import SqliteTraceStore
from tests.conftest import TEST_SECRET, make_config
from tests.polling import wait_until
from tests.test_serve import SCRIPT, free_port, wait_exit, wait_healthy
from tests.wsclient import token_for


async def stored_checkpoints(path: Path) -> list[Checkpoint]:
    store = await SqliteTraceStore.open(path, readonly=True)
    try:
        return await store.checkpoints()
    finally:
        await store.close()


async def test_the_app_checkpoints_at_start_periodically_and_at_its_cleanup(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    log = tmp_path / "audit-log" / "checkpoints.jsonl"
    config = make_config(
        tmp_path / "var",
        audit={"checkpoint_interval_s": 0.1, "checkpoint_log": str(log)},
        media={"enabled": False},
    )
    app = create_app(config)
    client = await aiohttp_client(app)
    trace = app[TRACE]
    checkpointer = app[CHECKPOINTER]

    async def has(reason: str, seq: int) -> bool:
        return any(c.reason == reason and c.seq == seq for c in await trace.checkpoints())

    start_head = await trace.head()
    await wait_until(lambda: has("start", start_head.seq), what="the start checkpoint")
    await trace.append([TraceEvent("position", time.time(), {"user": "o1"})])
    moved = await trace.head()
    await wait_until(lambda: has("periodic", moved.seq), what="a periodic checkpoint")
    # A head that stands still is not signed again and again.
    settled = len(await trace.checkpoints())
    assert await checkpointer.checkpoint("periodic") is None
    assert len(await trace.checkpoints()) == settled

    key = audit_key_path(config)
    assert not str(key).startswith(config.server.data_dir + os.sep)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    public = load_public_key(public_key_path(key))
    await client.close()

    final = await stored_checkpoints(sqlite_path(config))
    assert final[-1].reason == "stop"
    assert checkpointer.last == final[-1]
    store = await SqliteTraceStore.open(sqlite_path(config), readonly=True)
    try:
        assert final[-1].head == await store.head()
    finally:
        await store.close()
    assert all(signature_ok(c, public) for c in final)
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["seq"] for c in logged] == [c.seq for c in final]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    clean["COMMANDCENTER_SERVER_DATA_DIR"] = str(tmp_path / "var")
    clean["COMMANDCENTER_AUTH_JWT_SECRET"] = TEST_SECRET
    clean["COMMANDCENTER_MEDIA_ENABLED"] = "false"
    return clean


@pytest.fixture
def served(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    with (tmp_path / "server.log").open("wb") as log:
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
                proc.wait(timeout=10)


async def test_a_served_process_stopped_with_sigterm_leaves_a_stop_checkpoint_at_its_head(
    served: tuple[subprocess.Popen[bytes], int], env: dict[str, str], tmp_path: Path
) -> None:
    proc, port = served
    await wait_healthy(proc, port, tmp_path / "server.log")
    token = token_for(make_config(tmp_path / "var"), "o1", "officer", "P0101")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{port}/ws", params={"token": token}) as ws,
    ):
        welcome = json.loads(await ws.receive_str(timeout=5))
        assert welcome["type"] == "welcome"
        proc.send_signal(signal.SIGTERM)
        # o1's sign-out is recorded in the drain, before the stop checkpoint.
        closing = await ws.receive(timeout=10)
        assert closing.type is aiohttp.WSMsgType.CLOSE
    assert await wait_exit(proc) == 0
    path = tmp_path / "var" / "trace.sqlite3"
    store = await SqliteTraceStore.open(path, readonly=True)
    try:
        head = await store.head()
        kinds = [r.kind for r in await store.records()]
        checkpoints = await store.checkpoints()
    finally:
        await store.close()
    assert kinds[-1] == "sign_out"
    assert checkpoints[-1].reason == "stop"
    assert checkpoints[-1].head == head
    assert checkpoints[0].reason == "start"

    verify = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "audit",
        "verify",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(verify.communicate(), 60)
    summary = json.loads(stdout)
    assert (verify.returncode, stderr) == (0, b"")
    assert summary["checkpoint"]["status"] == "ok"
    assert summary["checkpoint"]["reason"] == "stop"
    assert summary["checkpoint"]["seq"] == head.seq


async def test_a_tail_cut_below_the_last_checkpoint_is_never_signed_over(tmp_path: Path) -> None:
    """The checkpointer raises the alarm instead of signing the shorter trace as good."""
    path = tmp_path / "trace.sqlite3"
    store = await SqliteTraceStore.open(path)
    try:
        await store.append([TraceEvent("position", 1.0 + i, {"i": i}) for i in range(6)])
        checkpointer = Checkpointer(
            store,
            Ed25519PrivateKey.generate(),
            node="n1",
            clock=time.time,
            interval_s=60.0,
            alone=True,
        )
        assert await checkpointer.checkpoint("periodic") is not None
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM trace WHERE seq >= 5")
        db.close()
        await store.append([TraceEvent("position", 9.0, {"forged": True})])
        with structlog.testing.capture_logs() as logs:
            assert await checkpointer.checkpoint("periodic") is None
        (alarm,) = [e for e in logs if e.get("alarm")]
        assert (alarm["checkpoint_seq"], alarm["seq"]) == (6, 6)
        assert len(await store.checkpoints()) == 1
    finally:
        await store.close()


async def test_a_stop_after_a_timed_out_drain_promises_no_quiet(tmp_path: Path) -> None:
    store = await SqliteTraceStore.open(tmp_path / "trace.sqlite3")
    try:
        checkpointer = Checkpointer(
            store,
            Ed25519PrivateKey.generate(),
            node="n1",
            clock=time.time,
            interval_s=60.0,
            alone=True,
        )
        checkpointer.start()
        final = await checkpointer.stop(quiet=False)
        assert final is not None
        assert final.reason == "node_stop"
        # Once only: a second stop (the app's cleanup) returns the same checkpoint.
        assert await checkpointer.stop() is final
        assert [c.reason for c in await store.checkpoints()][-1] == "node_stop"
    finally:
        await store.close()


async def test_a_restarted_checkpointer_resumes_from_the_highest_checkpoint_read_alone(
    tmp_path: Path,
) -> None:
    """A checkpointer starting on a trace with thousands of checkpoints reads one of them,
    the highest, to resume from: an unmoved head then gets no new periodic checkpoint, and
    a moved one is checked from there and signed."""
    path = tmp_path / "trace.sqlite3"
    key = Ed25519PrivateKey.generate()
    store = await SqliteTraceStore.open(path)
    try:
        await store.append([TraceEvent("position", 1.0 + i, {"i": i}) for i in range(6)])
        first = Checkpointer(store, key, node="n1", clock=time.time, interval_s=60.0, alone=True)
        assert await first.checkpoint("periodic") is not None
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        for _ in range(12):
            db.execute(
                "INSERT INTO checkpoints (seq, hash, at_us, node, reason, key_id, signature)"
                " SELECT seq, hash, at_us, node, reason, key_id, signature FROM checkpoints"
            )
    db.close()
    store = await SqliteTraceStore.open(path)
    try:
        again = Checkpointer(store, key, node="n1", clock=time.time, interval_s=60.0, alone=True)
        assert await again.checkpoint("periodic") is None
        assert store.checkpoint_rows_read == 1
        await store.append([TraceEvent("position", 10.0, {"i": 6})])
        moved = await again.checkpoint("periodic")
        assert moved is not None
        assert moved.seq == 7
        assert store.checkpoint_rows_read == 1
    finally:
        await store.close()
