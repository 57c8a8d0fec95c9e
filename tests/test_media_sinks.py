"""The benchmark's pre-keyed SRTP sinks (media.sink, media.sink_control): with
`media.bench_sink_socket` a real server with two media workers takes sinks over its 0600 Unix
socket, fills their slots as a site's (the chair's spotlight video and voice, through the C
fan-out) and they decrypt with the key they were given; a default server has none of it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

import pytest

from commandcenter.app import create_app
from commandcenter.config import ConfigError
from media import ice
from media.sink import PAYLOAD_TYPES, inbound_session
from tests.conftest import Serve, make_config
from tests.polling import wait_until
from tests.test_hub_conferences import meeting
from tests.test_media_conference import media_of
from tests.test_media_workers import MEDIA, pool_of

pytestmark = pytest.mark.slow

KEY = bytes(range(100, 130))


async def control(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        answer: dict[str, Any] = json.loads(await reader.readline())
        return answer
    finally:
        writer.close()


def drain(sock: socket.socket, into: list[bytes]) -> None:
    while True:
        try:
            into.append(sock.recv(2048))
        except BlockingIOError:
            return


def listening_unix_inodes() -> set[int]:
    """The inodes of the listening Unix sockets of this network namespace."""
    inodes: set[int] = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        # Flags 00010000: __SO_ACCEPTCON, a listening socket.
        if int(fields[3], 16) & 0x10000:
            inodes.add(int(fields[6]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


async def test_sinks_get_a_sites_slots_through_the_fanout_and_decrypt_with_their_key(
    serve: Serve, tmp_path: Path
) -> None:
    """Two sinks added over the socket are placed one per worker serving the conference; each
    gets the chair's spotlight video and voice, SRTP that its key decrypts, and the status
    counts what each was sent; a removed sink gets nothing more."""
    path = tmp_path / "sinks.sock"
    ice.use_addresses(["127.0.0.1"])
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        server = await serve(
            media=MEDIA | {"record": False, "bench_sink_socket": str(path)},
        )
        pool = pool_of(server)
        assert await pool.ready()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        host_ws, consoles, cid = await meeting(server)
        async with media_of(cid, host_ws, consoles["op1"]):
            for rx in receivers:
                rx.bind(("127.0.0.1", 0))
                rx.setblocking(False)
            sinks = [
                {"name": f"sink-{i}", "host": "127.0.0.1", "port": rx.getsockname()[1]}
                | {"key": KEY.hex()}
                for i, rx in enumerate(receivers)
            ]
            added = await control(path, {"type": "add", "conference_id": cid, "sinks": sinks})
            assert added["ok"], added
            assert sorted(added["placed"].values()) == [0, 1]
            got: list[list[bytes]] = [[], []]

            def both_have_video_and_audio() -> bool:
                for rx, packets in zip(receivers, got, strict=True):
                    drain(rx, packets)
                types = [{p[1] & 0x7F for p in packets} for packets in got]
                return all(set(PAYLOAD_TYPES.values()) <= t for t in types)

            await wait_until(both_have_video_and_audio, within=15, what="video and audio")
            session = inbound_session(KEY)
            for packets in got:
                # The first of each SSRC, in order: the replay window takes them all.
                firsts = {struct.unpack_from("!I", p, 8)[0]: p for p in reversed(packets)}
                for packet in firsts.values():
                    plain = session.unprotect(packet)
                    assert len(plain) == len(packet) - 10
            # A wrong key does not decrypt them.
            with pytest.raises(Exception):  # noqa: B017, PT011 - pylibsrtp's Error
                inbound_session(bytes(30)).unprotect(got[0][-1])
            status = await control(path, {"type": "status", "conference_id": cid})
            assert status["ok"], status
            assert {s["worker"] for s in status["sinks"].values()} == {0, 1}
            assert all(s["sent"] > 0 for s in status["sinks"].values()), status
            assert len(status["workers"]) == 2
            removed = await control(
                path, {"type": "remove", "conference_id": cid, "names": ["sink-0"]}
            )
            assert removed["ok"], removed
            # The worker answered after its last send to it (on loopback, already queued).
            drain(receivers[0], [])
            late: list[bytes] = []
            more: list[bytes] = []

            def the_other_got_fifty_more() -> bool:
                drain(receivers[0], late)
                drain(receivers[1], more)
                return len(more) >= 50

            await wait_until(the_other_got_fifty_more, within=10, what="sink-1's packets")
            assert late == []
            again = await control(path, {"type": "add", "conference_id": cid, "sinks": sinks[1:]})
            assert again == {"ok": False, "error": "sink names must be new and distinct"}
            refused = await control(path, {"type": "add", "conference_id": "nope", "sinks": []})
            assert refused == {"ok": False, "error": "no such conference with media on this server"}
            bad = await control(path, {"type": "add", "conference_id": cid, "sinks": [{}]})
            assert bad["ok"] is False
            assert "bad request" in bad["error"]
    finally:
        for rx in receivers:
            rx.close()
        ice.use_addresses([])
    await server.http.close()
    assert not path.exists()


async def test_a_default_server_has_no_sink_socket_record_or_route(serve: Serve) -> None:
    """Off by default: no control socket, no listening Unix socket in the server or its
    workers, no HTTP route; and the setting needs media workers."""
    server = await serve(media=MEDIA | {"record": False})
    pool = pool_of(server)
    assert await pool.ready()
    assert server.config.media.bench_sink_socket == ""
    assert pool.sink_control is None
    listening = listening_unix_inodes()
    pids = [os.getpid(), *(w.pid for w in pool.workers if w.pid is not None)]
    assert len(pids) == 3
    for pid in pids:
        assert socket_inodes(pid) & listening == set(), pid
    routes = server.http.app.router.routes()
    paths = [route.resource.canonical for route in routes if route.resource is not None]
    assert not [p for p in paths if "sink" in p]


def test_the_sink_socket_needs_media_workers(tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "var", media={"workers": 0, "bench_sink_socket": str(tmp_path / "s")}
    )
    with pytest.raises(ConfigError, match="bench_sink_socket"):
        create_app(config)
