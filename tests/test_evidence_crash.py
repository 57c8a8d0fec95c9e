"""A server killed (SIGKILL) in the middle of an upload: after a restart on the same data dir
there is no partial item, every acknowledged item is intact, and the trace chain verifies.

The server is a real child process (`python -m commandcenter serve`), so the crash is a real
one: no shutdown handler runs, the partial file stays on disk until the next start."""

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
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench._common import ServerProcess, free_port
from commandcenter.auth import Role, issue_token
from commandcenter.config import load_config
from commandcenter.stores import open_store
from sessions import evidence as ev
from sessions.evidence_store import PARTIAL_PREFIX
from sessions.store import StoredRecord
from tests.conftest import TEST_SECRET

CASE = "CRASH-1"
DEADLINE_S = 20.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    return {
        **base,
        "COMMANDCENTER_SERVER_DATA_DIR": str(tmp_path / "var"),
        "COMMANDCENTER_AUTH_JWT_SECRET": TEST_SECRET,
        "COMMANDCENTER_LOGGING_LEVEL": "warning",
    }


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def server(env: dict[str, str], port: int, tmp_path: Path) -> Iterator[ServerProcess]:
    argv = [sys.executable, "-m", "commandcenter", "serve", "--port", str(port)]
    proc = ServerProcess(argv, port=port, env=env, log_path=tmp_path / "server.log")
    try:
        yield proc
    finally:
        proc.stop()


def token() -> str:
    return issue_token(
        TEST_SECRET,
        user="o1",
        role=Role.OFFICER,
        court="P0101",
        name="o1",
        ttl_s=600,
        now=time.time(),
    )


def query(data_sha: str, name: str) -> str:
    return urllib.parse.urlencode(
        {
            "case": CASE,
            "kind": "video",
            "sha256": data_sha,
            "device": "cam-1",
            "capture_time": str(int(time.time() * 1000)),
            "file_name": name,
        }
    )


def request(port: int, path: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method="POST" if data is not None else "GET",
        headers={"Authorization": f"Bearer {token()}", "Content-Type": "video/mp4"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


def partial_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.name.startswith(PARTIAL_PREFIX)]


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_S} s: {what}")
        time.sleep(0.01)


def test_sigkill_mid_upload_leaves_no_partial_item_and_keeps_acknowledged_ones(
    server: ServerProcess, env: dict[str, str], port: int, tmp_path: Path
) -> None:
    evidence = tmp_path / "var" / "evidence"
    server.start()

    # Three acknowledged items.
    acknowledged: dict[str, bytes] = {}
    for i in range(3):
        data = os.urandom(200_000 + i)
        status, body = request(port, f"/api/evidence?{query(sha(data), f'v{i}.mp4')}", data)
        assert status == 201
        acknowledged[json.loads(body)["evidence_id"]] = data

    # A fourth upload, killed half way: 3 of its 8 MiB sent, some of them on disk.
    cut = os.urandom(8 * 1024 * 1024)
    head = (
        f"POST /api/evidence?{query(sha(cut), 'cut.mp4')} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token()}\r\n"
        f"Content-Type: video/mp4\r\nContent-Length: {len(cut)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + cut[: 3 * 1024 * 1024])
        wait_for(
            lambda: any(p.stat().st_size >= 1024 * 1024 for p in partial_files(evidence)),
            "the partial upload reaching the disk",
        )
        os.kill(server.pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(server.pid), "the server to die")
    server.stop()
    # The crash left its partial file behind: only the next start can clean it up.
    assert partial_files(evidence) != []

    server.start()
    assert partial_files(evidence) == []
    assert sorted(p.name for p in evidence.iterdir()) == sorted(
        sha(d) for d in acknowledged.values()
    )
    status, body = request(port, f"/api/evidence?case={CASE}")
    listed = json.loads(body)["items"]
    assert status == 200
    assert {i["evidence_id"] for i in listed} == set(acknowledged)
    assert ev.evidence_id_for(CASE, sha(cut)) not in {i["evidence_id"] for i in listed}
    for evidence_id, data in acknowledged.items():
        status, content = request(port, f"/api/evidence/{evidence_id}/content")
        assert status == 200
        assert sha(content) == sha(data)
    server.stop()

    verify = subprocess.run(
        [sys.executable, "-m", "commandcenter", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    result = json.loads(verify.stdout)
    assert result["ok"] is True
    records = asyncio.run(evidence_records(env))
    assert [r.kind for r in records].count(ev.STORED) == 3
    assert {r.data["evidence_id"] for r in records} == set(acknowledged)
    assert result["records"] >= len(records) == 9  # 3 stored, 3 read, 3 downloaded


async def evidence_records(env: dict[str, str]) -> list[StoredRecord]:
    store = await open_store(load_config(None, environ=env), readonly=True)
    try:
        return await store.find(kinds=ev.KINDS)
    finally:
        await store.close()


def pid_alive(pid: int) -> bool:
    try:
        # Reaped or a zombie: either way it runs no more code.
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
