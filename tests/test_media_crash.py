"""A server killed (SIGKILL) mid-call loses none of the call's recording: the next start
registers what was written as evidence of the call."""

from __future__ import annotations

import hashlib
import io
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from commandcenter.auth import Role
from media import ice
from tests.browser import ServerProcess, token
from tests.mediahelpers import Member, count_frames, media_call
from tests.wsclient import Client

CASE = "(2026)苏0102执88号"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    ice.use_addresses(["127.0.0.1"])
    async with aiohttp.ClientSession() as http:
        yield http
    ice.use_addresses([])


async def connect(http: aiohttp.ClientSession, base: str, user: str, role: Role) -> Client:
    ws = await http.ws_connect(f"{base}/ws", params={"token": token(user, role, "P0101", user)})
    client = Client(ws, "json", user)
    client.welcome = await client.expect("welcome")
    return client


async def case_items(http: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token('aud-1', Role.AUDITOR, 'P', 'aud-1')}"}
    async with http.get(f"{base}/api/evidence", params={"case": CASE}, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        items: list[dict[str, Any]] = (await resp.json())["items"]
        return items


async def content(http: aiohttp.ClientSession, base: str, evidence_id: str) -> bytes:
    headers = {"Authorization": f"Bearer {token('aud-1', Role.AUDITOR, 'P', 'aud-1')}"}
    async with http.get(f"{base}/api/evidence/{evidence_id}/content", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


@pytest.mark.slow
async def test_recording_of_a_killed_server_is_registered_at_the_next_start(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = ServerProcess(tmp_path)
    members: list[Member] = []
    try:
        await server.wait_healthy()
        officer_ws = await connect(session, server.base, "o-1", Role.OFFICER)
        operator_ws = await connect(session, server.base, "op-1", Role.OPERATOR)
        officer, operator, _ = await media_call(officer_ws, operator_ws, case_number=CASE)
        members += [officer, operator]
        track = next(t for t in operator.media.tracks["o-1"] if t.kind == "video")
        await count_frames(track, 60)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
    finally:
        for m in members:
            await m.close()
        server.stop()
    # Written by the call's media worker, under recordings/worker-<i> (docs/media.md).
    recordings = tmp_path / "var" / "recordings"
    assert list(recordings.glob("worker-*/*.call.json"))
    assert list(recordings.glob("worker-*/*-video.mkv"))

    again = ServerProcess(tmp_path)
    try:
        await again.wait_healthy()
        items = await case_items(session, again.base)
        video = [item for item in items if item["media_type"] == "video/x-matroska"]
        assert len(video) == 1, items
        data = await content(session, again.base, video[0]["evidence_id"])
    finally:
        again.stop()
    assert hashlib.sha256(data).hexdigest() == video[0]["sha256"]
    with av.open(io.BytesIO(data), mode="r") as container:
        frames = list(container.decode(video=0))
    # Written through as it went: all but about the last second survived the kill.
    assert len(frames) >= 20
    assert not list(recordings.glob("**/*.mkv"))
    assert not list(recordings.glob("**/*.call.json"))
