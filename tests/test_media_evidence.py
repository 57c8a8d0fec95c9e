"""A call's media kept as evidence: recordings registered when the call ends, snapshots on
request; both on the real trace (SQLite) and evidence store, decoded back from the store."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.keys import TRACE
from media import ice
from media.evidence_sink import CALL_EVIDENCE
from sessions import evidence as ev
from sessions.recorder import MemoryRecorder
from tests.conftest import make_config
from tests.mediahelpers import Member, count_frames, media_call
from tests.polling import wait_until
from tests.wsclient import Server

CASE = "(2026)苏0102执77号"


@pytest.fixture
async def durable_server(aiohttp_client: AiohttpClient, tmp_path: Path) -> AsyncIterator[Server]:
    ice.use_addresses(["127.0.0.1"])
    config = make_config(tmp_path / "var", media={"ice_addresses": ("127.0.0.1",)})
    http = await aiohttp_client(create_app(config))
    # The app records into its own SQLite trace; Server only needs a recorder for its
    # in-memory helpers, which these tests do not use.
    yield Server(http, config, MemoryRecorder())
    ice.use_addresses([])


async def call_with_media(server: Server) -> tuple[Member, Member, str]:
    officer_ws = await server.connect("o-1", "officer", "P0101")
    operator_ws = await server.connect("op-1", "operator", "P0101")
    return await media_call(officer_ws, operator_ws, case_number=CASE)


async def evidence_of(server: Server, call_id: str) -> list[dict[str, Any]]:
    records = await server.http.app[TRACE].find(
        kinds=[CALL_EVIDENCE], data_equals={"call": call_id}
    )
    return [r.data for r in records]


def stored_path(server: Server, sha256: str) -> Path:
    return Path(server.config.server.data_dir) / "evidence" / sha256


async def test_snapshot_is_a_jpeg_of_the_officers_video_stored_as_evidence(
    durable_server: Server,
) -> None:
    officer, operator, call_id = await call_with_media(durable_server)
    try:
        video = next(t for t in operator.media.tracks["o-1"] if t.kind == "video")
        await count_frames(video, 3)
        taken = await operator.ws.request("snapshot", reply="snapshot_taken", call_id=call_id)
        assert taken["of"] == "o-1"
        items = await durable_server.http.app[TRACE].find(
            kinds=[ev.STORED], data_equals={"evidence_id": taken["evidence_id"]}
        )
        assert len(items) == 1
        item = items[0].data
        assert (item["case_number"], item["media_type"]) == (CASE, "image/jpeg")
        assert item["sha256"] == taken["sha256"]
        linked = await evidence_of(durable_server, call_id)
        assert [e["evidence_id"] for e in linked] == [taken["evidence_id"]]
    finally:
        await officer.close()
        await operator.close()


async def test_officer_may_not_take_snapshots(durable_server: Server) -> None:
    officer, operator, call_id = await call_with_media(durable_server)
    try:
        msg_id = await officer.ws.send("snapshot", call_id=call_id)
        assert (await officer.ws.error_for(msg_id))["code"] == "forbidden"
        msg_id = await operator.ws.send("snapshot", call_id=call_id, of="someone-else")
        error = await operator.ws.error_for(msg_id)
        assert (error["code"], error["field"]) == ("not_found", "of")
        # The operator publishes no video: nothing to take a still of.
        msg_id = await officer.ws.send("snapshot", call_id=call_id, of="op-1")
        assert (await officer.ws.error_for(msg_id))["code"] == "forbidden"
    finally:
        await officer.close()
        await operator.close()


async def test_call_recordings_are_registered_when_the_call_ends_and_decode_back(
    durable_server: Server,
) -> None:
    """Each track becomes a Matroska file whose hash is the one registered and whose
    frames decode; the server's working copies are removed once registered."""
    officer, operator, call_id = await call_with_media(durable_server)
    try:
        video = next(t for t in operator.media.tracks["o-1"] if t.kind == "video")
        await count_frames(video, 30)
        await operator.ws.request("hangup", call_id=call_id)

        async def three_recordings() -> bool:
            return len(await evidence_of(durable_server, call_id)) == 3

        await wait_until(three_recordings, within=10.0, what="three recordings registered")
    finally:
        await officer.close()
        await operator.close()
    linked = await evidence_of(durable_server, call_id)
    kinds = sorted(e["media_type"] for e in linked)
    assert kinds == ["audio/x-matroska", "audio/x-matroska", "video/x-matroska"]
    for entry in linked:
        data = stored_path(durable_server, entry["sha256"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams[0]
            frames = list(container.decode(stream))
        assert frames, entry
        if entry["media_type"].startswith("video"):
            assert stream.codec_context.name in ("vp8", "libvpx")
            first = frames[0]
            assert isinstance(first, av.VideoFrame)
            assert first.width == 640
            assert len(frames) >= 20
        assert entry["case_number"] == CASE
    recordings = Path(durable_server.config.server.data_dir) / "recordings"
    assert not any(recordings.glob("*.mkv"))
