"""Media in worker processes (media.pool): real worker processes started by the real app,
real aiortc peers on 127.0.0.1. Calls flow through a worker, their evidence and trace events
reach the server, calls spread over workers, a killed worker's calls recover, and workers
never outlive the server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis
from structlog.testing import capture_logs

from bench._common import ServerProcess, free_port
from commandcenter.app import MEDIA_WORKER_COMMAND, create_app
from commandcenter.keys import TRACE, WORKERS
from media import ice
from media import worker_wire as w
from media.evidence_sink import CALL_EVIDENCE
from media.pool import WorkerPool
from media.service import VIDEO_WATCHED
from sessions.recorder import MemoryRecorder
from signalling.cluster.keys import ClusterKeys
from signalling.cluster.nodes import NodeStatus
from tests.clusterhelpers import REDIS_URL, keys
from tests.conftest import TEST_SECRET, Serve, make_config
from tests.mediahelpers import Member, count_frames, media_call
from tests.polling import wait_until
from tests.test_hub_conferences import meeting
from tests.test_media_conference import lineup, media_of
from tests.wsclient import Server

CASE = "(2026)苏0102执77号"
MEDIA = {"ice_addresses": ("127.0.0.1",), "workers": 2}

__all__ = ["keys"]
# Worker processes start in each test (seconds of their own): not in `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture
async def durable_server(aiohttp_client: AiohttpClient, tmp_path: Path) -> AsyncIterator[Server]:
    """The app with two media workers, its own SQLite trace and evidence store."""
    ice.use_addresses(["127.0.0.1"])
    config = make_config(tmp_path / "var", media=MEDIA)
    http = await aiohttp_client(create_app(config))
    server = Server(http, config, MemoryRecorder())
    # The app serves while its workers start; these tests begin once they are up.
    assert await pool_of(server).ready()
    yield server
    ice.use_addresses([])


def pool_of(server: Server) -> WorkerPool:
    pool: WorkerPool = server.http.app[WORKERS]
    return pool


async def trace_of(server: Server, kind: str, call_id: str) -> list[dict[str, Any]]:
    records = await server.http.app[TRACE].find(kinds=[kind], data_equals={"call": call_id})
    return [r.data for r in records]


async def call_between(server: Server, officer: str, operator: str) -> tuple[Member, Member, str]:
    officer_ws = await server.connect(officer, "officer", "P0101")
    operator_ws = await server.connect(operator, "operator", "P0101")
    return await media_call(officer_ws, operator_ws, case_number=CASE)


def video_of(member: Member, owner: str) -> Any:
    return next(t for t in member.media.tracks[owner] if t.kind == "video")


async def test_a_call_through_a_worker_flows_both_ways_and_its_evidence_reaches_the_server(
    durable_server: Server,
) -> None:
    """Media both ways through a worker process; the snapshot and the recordings are filed
    by the server (items and `call_evidence` in its trace), `video_watched` recorded too."""
    pool = pool_of(durable_server)
    assert pool.started
    assert len(pool.workers) == 2
    officer, operator, call_id = await call_between(durable_server, "o-1", "op-1")
    try:
        assert call_id in pool.home
        await count_frames(video_of(operator, "o-1"), 10)
        await count_frames(officer.media.tracks["op-1"][0], 10)
        taken = await operator.ws.request("snapshot", reply="snapshot_taken", call_id=call_id)
        assert taken["of"] == "o-1"
        await operator.ws.request("hangup", call_id=call_id)

        async def filed() -> bool:
            # The snapshot and three recordings (the officer's audio and video, the
            # operator's audio).
            return len(await trace_of(durable_server, CALL_EVIDENCE, call_id)) == 4

        await wait_until(filed, within=15.0, what="snapshot and recordings filed")
    finally:
        await officer.close()
        await operator.close()
    linked = await trace_of(durable_server, CALL_EVIDENCE, call_id)
    assert taken["evidence_id"] in {e["evidence_id"] for e in linked}
    assert sorted(e["media"] for e in linked) == ["recording"] * 3 + ["snapshot"]
    for entry in linked:
        stored = Path(durable_server.config.server.data_dir) / "evidence" / entry["sha256"]
        assert stored.stat().st_size == entry["size"]
    watched = await trace_of(durable_server, VIDEO_WATCHED, call_id)
    assert {(e["user"], e["owner"]) for e in watched} >= {("op-1", "o-1")}


async def test_two_calls_are_placed_on_two_workers(durable_server: Server) -> None:
    """Placement: the second call goes to the worker without peers; each worker reports
    one room of its own."""
    pool = pool_of(durable_server)
    first = await call_between(durable_server, "o-1", "op-1")
    second = await call_between(durable_server, "o-2", "op-2")
    members = [first[0], first[1], second[0], second[1]]
    try:
        assert {pool.home[first[2]], pool.home[second[2]]} == {0, 1}

        def one_room_each() -> bool:
            workers = pool.health()["media_workers"]
            assert isinstance(workers, list)
            return [(x["rooms"], x["peers"]) for x in workers] == [(1, 2), (1, 2)]

        await wait_until(one_room_each, within=5.0, what="each worker reports its call")
        pids = {worker.pid for worker in pool.workers}
        assert len(pids) == 2
        assert os.getpid() not in pids
    finally:
        for member in members:
            await member.close()


async def rejoin(member: Member) -> None:
    """What a client does on `media_restart`: a new peer connection, offered again."""
    restart = await member.ws.expect("media_restart", 10.0, call_id=member.call_id)
    assert restart["call_id"] == member.call_id
    sdp = await member.media.restart()
    answer = await member.ws.request("offer", reply="answer", call_id=member.call_id, sdp=sdp)
    await member.media.accept_answer(answer["sdp"])


async def test_a_killed_worker_is_restarted_and_its_call_recovers_on_another(
    durable_server: Server,
) -> None:
    """SIGKILL the call's worker: it is started again, the call moves to the live worker,
    both members are told `media_restart`, offer again and receive media again."""
    pool = pool_of(durable_server)
    officer, operator, call_id = await call_between(durable_server, "o-1", "op-1")
    try:
        await count_frames(video_of(operator, "o-1"), 5)
        dead = pool.home[call_id]
        pid = pool.workers[dead].pid
        assert pid is not None
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        await asyncio.gather(rejoin(officer), rejoin(operator))
        assert pool.home[call_id] != dead
        await operator.renegotiate()
        await officer.renegotiate()
        await wait_until(lambda: "o-1" in operator.media.tracks, within=10.0, what="tracks")
        await count_frames(video_of(operator, "o-1"), 5)
        await count_frames(officer.media.tracks["op-1"][0], 5)
        recovered_s = time.monotonic() - killed_at
        print(json.dumps({"measure": "worker_kill_to_media_s", "value": round(recovered_s, 3)}))
        assert recovered_s < 30.0
        await wait_until(lambda: pool.started, within=15.0, what="the killed worker restarted")
        assert pool.workers[dead].restarts == 1
        assert pool.workers[dead].pid not in (None, pid)
    finally:
        await officer.close()
        await operator.close()


def fake_worker(tmp_path: Path, frames: list[bytes]) -> list[str]:
    """A worker process that writes `frames` raw to its socket, then waits for its end."""
    script = tmp_path / "fake_worker.py"
    script.write_text(
        "import os, socket, sys, time\n"
        "fd = int(sys.argv[sys.argv.index('--fd') + 1])\n"
        "sock = socket.socket(fileno=fd)\n"
        f"for frame in {frames!r}:\n"
        "    sock.sendall(frame)\n"
        "sock.settimeout(30)\n"
        "while sock.recv(65536):\n"
        "    pass\n"
    )
    return [sys.executable, str(script)]


async def test_a_bad_frame_from_a_worker_is_refused_and_logged(tmp_path: Path) -> None:
    """An undecodable record and one of an unknown type are refused, each logged; the pool
    reads on (the worker's `ready` behind them is taken)."""
    ready = w.frame(w.Ready(worker=0, pid=1))
    garbage = b"\x00\x00\x00\x03abc"
    body = b"\x81\xa4type\xa3bad"  # {"type": "bad"}
    unknown = w.HEADER.pack(len(body)) + body
    config = make_config(tmp_path, media=MEDIA).media
    pool = WorkerPool(
        config=config,
        count=1,
        command=fake_worker(tmp_path, [garbage, unknown, ready]),
        clock=time.time,
    )
    with capture_logs() as logs:
        await pool.start(lambda user, message: None)
        try:
            assert await pool.ready(10.0)
            assert pool.refused_frames == 2
        finally:
            await pool.stop()
    refused = [e for e in logs if e["event"] == "bad frame from media worker refused"]
    assert len(refused) == 2
    assert all(e["log_level"] == "error" for e in refused)


async def test_a_frame_over_the_limit_replaces_the_worker(tmp_path: Path) -> None:
    """A length over the limit leaves the stream unreadable: the worker is killed and
    started again (and again: this fake one always does it)."""
    huge = w.HEADER.pack(w.MAX_FRAME_BYTES + 1)
    config = make_config(tmp_path, media=MEDIA).media
    pool = WorkerPool(
        config=config, count=1, command=fake_worker(tmp_path, [huge]), clock=time.time
    )
    with capture_logs() as logs:
        await pool.start(lambda user, message: None)
        try:
            await wait_until(lambda: pool.workers[0].restarts >= 1, within=10.0, what="restart")
        finally:
            await pool.stop()
    assert any(e["event"] == "media worker stream broken" for e in logs)
    assert any(e["event"] == "media worker died" for e in logs)


TOKEN = "metrics-token-for-the-worker-test"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    """`commandcenter serve` with two media workers, ready (/readyz: every worker up)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env |= {
        "COMMANDCENTER_SERVER_DATA_DIR": str(tmp_path / "var"),
        "COMMANDCENTER_AUTH_JWT_SECRET": TEST_SECRET,
        "COMMANDCENTER_LOGGING_LEVEL": "warning",
        "COMMANDCENTER_MEDIA_WORKERS": "2",
        "COMMANDCENTER_MEDIA_ICE_ADDRESSES": "127.0.0.1",
        "COMMANDCENTER_METRICS_TOKEN": TOKEN,
    }
    argv = [sys.executable, "-m", "commandcenter", "serve", "--port", str(port)]
    proc = ServerProcess(
        argv, port=port, env=env, log_path=tmp_path / "server.log", ready_path="/readyz"
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def get(server: ServerProcess, path: str, **headers: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=5.0) as resp:
        body: bytes = resp.read()
        return body.decode()


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie has stopped running)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("\nPPid:\t", 1)[1].split("\n", 1)[0])


def worker_pids(server: ServerProcess) -> list[int]:
    """The workers /healthz reports, each checked to be up and the server's child."""
    workers = json.loads(get(server, "/healthz"))["media_workers"]
    assert [x["worker"] for x in workers] == [0, 1]
    assert all(x["up"] for x in workers)
    pids = [int(x["pid"]) for x in workers]
    assert all(parent_of(pid) == server.pid for pid in pids)
    return pids


async def test_serve_starts_its_workers_reports_them_and_stops_them(
    served: ServerProcess,
) -> None:
    """`commandcenter serve` starts the workers (ready when all are up), reports their CPU
    in /metrics, and leaves none behind when it stops."""
    assert json.loads(get(served, "/readyz"))["checks"]["media"] == "ok"
    pids = worker_pids(served)
    metrics = get(served, "/metrics", Authorization=f"Bearer {TOKEN}")
    for index in (0, 1):
        assert f'commandcenter_worker_cpu_seconds_total{{worker="media-{index}"}}' in metrics
    served.stop()
    await wait_until(lambda: not any(alive(pid) for pid in pids), what="workers gone")


async def test_a_killed_server_leaves_no_worker_behind(served: ServerProcess) -> None:
    """SIGKILL runs no shutdown handler: the workers die with their parent (PDEATHSIG)."""
    pids = worker_pids(served)
    os.kill(served.pid, signal.SIGKILL)
    await wait_until(lambda: not any(alive(pid) for pid in pids), what="workers gone")


async def test_recordings_of_a_call_live_at_stop_are_filed_through_the_server(
    durable_server: Server,
) -> None:
    """Stopping the pool stops each worker, which finishes its recordings and has the
    server file them before it exits."""
    pool = pool_of(durable_server)
    officer, operator, call_id = await call_between(durable_server, "o-1", "op-1")
    try:
        await count_frames(video_of(operator, "o-1"), 10)
        await pool.stop()
    finally:
        await officer.close()
        await operator.close()
    linked = await trace_of(durable_server, CALL_EVIDENCE, call_id)
    assert sorted(e["media"] for e in linked) == ["recording"] * 3
    assert all(not worker.proc or worker.proc.returncode == 0 for worker in pool.workers)


async def test_a_conference_spreads_over_the_workers_and_its_spotlight_reaches_each(
    serve: Serve,
) -> None:
    """A conference's sites are placed round-robin over the workers (`conference_placement`
    tells each where everyone is); the spotlight's video crosses from the worker that
    terminates its publisher to the sites on the other (media.fabric, media.span)."""
    ice.use_addresses(["127.0.0.1"])
    try:
        server = await serve(media=MEDIA | {"record": False})
        pool = pool_of(server)
        assert await pool.ready()
        host_ws, consoles, cid = await meeting(server)
        async with media_of(cid, host_ws, consoles["op1"]) as (_, op1):
            where = pool.where[cid]
            assert set(where.values()) == {0, 1}, where
            assert where[host_ws.user] != where["op1"], where
            await wait_until(lambda: "spotlight" in op1.media.tracks, what="op1's spotlight")
            await count_frames(op1.media.tracks["spotlight"][0], 5)
    finally:
        ice.use_addresses([])


async def test_workers_log_json_lines_naming_their_worker(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A worker's lines are JSON (as the server's in production), with `worker` and
    `node_id`; its settings (TURN password included) are never logged."""
    config = make_config(tmp_path, media=MEDIA | {"turn_password": "s3cret-turn"}).media
    pool = WorkerPool(
        config=config,
        count=1,
        command=MEDIA_WORKER_COMMAND,
        clock=time.time,
        log_format="json",
        log_level="info",
        node_id="node-7",
    )
    await pool.start(lambda user, message: None)
    try:
        assert await pool.ready()
    finally:
        await pool.stop()
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    ready = [line for line in lines if line.get("event") == "media worker ready"]
    assert ready
    assert (ready[0]["worker"], ready[0]["node_id"]) == (0, "node-7")
    assert "s3cret-turn" not in err


async def test_a_call_shown_to_a_conference_stays_on_its_worker_and_reaches_every_site(
    serve: Serve,
) -> None:
    """A call shared to a conference spread over both workers stays where it is (its members
    are told nothing): its worker exports the officer's tracks to the conference's router,
    and the sites on both workers see the officer. When the call's worker dies the call
    moves, and the sites see the officer again from its new worker."""
    ice.use_addresses(["127.0.0.1"])
    try:
        server = await serve(media=MEDIA | {"record": False})
        pool = pool_of(server)
        assert await pool.ready()
        host_ws, consoles, cid = await meeting(server)
        op1_ws, op3_ws = consoles["op1"], consoles["op3"]
        async with media_of(cid, host_ws, op3_ws) as (host, op3):
            # Sites on both workers.
            assert set(pool.where[cid].values()) == {0, 1}
            officer_ws = await server.connect("o-1", "officer", "P0101")
            officer, operator, call_id = await media_call(officer_ws, op1_ws)
            try:
                worker = pool.home[call_id]
                # At least one of the two sites with media sees it from another worker.
                assert {pool.where[cid]["sup0"], pool.where[cid]["op3"]} != {worker}
                await op1_ws.request("share_call", conference_id=cid, call_id=call_id)
                for ws in (op3_ws, host_ws):
                    await lineup(ws, cid, spotlight="o-1")
                assert pool.home[call_id] == worker
                assert pool.feeds[cid] == {"o-1": worker}
                for site in (host, op3):
                    await wait_until(lambda s=site: "spotlight" in s.media.tracks, what="spot")  # type: ignore[misc]
                    frames = await count_frames(site.media.tracks["spotlight"][0], 10)
                    assert frames[-1].width == 640
                for member in (officer, operator):
                    again = [
                        m
                        for m in member.ws.unread()
                        if m["type"] == "media_restart" and m["call_id"] == call_id
                    ]
                    assert again == []
                # The call's worker dies: the call moves (its members offer again), so do
                # the conference's sites there; the others keep their connections.
                lost = [s for s in (host, op3) if pool.where[cid].get(s.ws.user) == worker]
                pid = pool.workers[worker].pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                await asyncio.gather(*(rejoin(m) for m in (officer, operator, *lost)))
                assert pool.home[call_id] != worker
                await wait_until(
                    lambda: pool.feeds[cid] == {"o-1": pool.home[call_id]}, what="refed"
                )
                await asyncio.gather(*(m.renegotiate() for m in (officer, operator, *lost)))
                for site in (host, op3):
                    await wait_until(lambda s=site: "spotlight" in s.media.tracks, what="spot")  # type: ignore[misc]
                    await count_frames(site.media.tracks["spotlight"][-1], 10)
                # Unshared: no worker exports it any more.
                await op1_ws.request("unshare_call", conference_id=cid, call_id=call_id)
                await lineup(op3_ws, cid, spotlight="sup0")
                assert pool.feeds[cid] == {}
            finally:
                await officer.close()
                await operator.close()
    finally:
        ice.use_addresses([])


@pytest.mark.cluster
async def test_a_cluster_node_publishes_its_workers_in_its_status(
    aiohttp_client: AiohttpClient, tmp_path: Path, keys: ClusterKeys
) -> None:
    """With `[redis] url` the node is still one media node: its status names its workers,
    and its CPU counts theirs (the authority keeps busy nodes from new calls by it)."""
    config = make_config(
        tmp_path / "var",
        media=MEDIA,
        # Before redis: each section is checked as it is set.
        recorder={"backend": "memory"},
        redis={"url": REDIS_URL, "key_prefix": keys.prefix, "heartbeat_s": 0.2},
    )
    http = await aiohttp_client(create_app(config, recorder=MemoryRecorder()))
    assert await http.app[WORKERS].ready()
    redis = Redis.from_url(REDIS_URL)
    try:

        async def published() -> bool:
            raw = await redis.hget(keys.nodes, "test-node")
            if raw is None:
                return False
            assert isinstance(raw, bytes)
            status = msgspec.msgpack.decode(raw, type=NodeStatus)
            return status.load.media_workers == 2

        await wait_until(published, within=10.0, what="the node's status names two workers")
    finally:
        await redis.aclose()


@pytest.mark.parametrize("killed", ["a_site_worker", "the_router_worker"])
async def test_a_killed_worker_of_a_spread_conference_costs_only_its_own_sites(
    serve: Serve, killed: str
) -> None:
    """Two sites on two workers, the host's video in the spotlight. SIGKILL the worker of the
    site that is not the router's (or the router's worker itself): the dead worker's site is
    told `media_restart`, offers again on the live worker and sees the spotlight again; the
    other site keeps its peer connection (no `media_restart`) and its stream; a killed
    router's conference moves home to the live worker, its state (the stage) from the core."""
    ice.use_addresses(["127.0.0.1"])
    try:
        server = await serve(media=MEDIA | {"record": False})
        pool = pool_of(server)
        assert await pool.ready()
        host_ws, consoles, cid = await meeting(server)
        async with media_of(cid, host_ws, consoles["op1"]) as members:
            host, op1 = members
            await wait_until(lambda: "spotlight" in op1.media.tracks, what="op1's spotlight")
            await count_frames(op1.media.tracks["spotlight"][0], 5)
            home = pool.home[cid]
            where = dict(pool.where[cid])
            assert where[host.ws.user] != where["op1"], where
            dead = (
                home
                if killed == "the_router_worker"
                else next(i for i in where.values() if i != home)
            )
            lost = next(m for m in members if where[m.ws.user] == dead)
            kept = next(m for m in members if m is not lost)
            pid = pool.workers[dead].pid
            assert pid is not None
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            await rejoin(lost)
            assert pool.where[cid][lost.ws.user] != dead
            assert pool.home[cid] != dead
            await lost.renegotiate()
            # op1 sees the host in the spotlight again: over its new peer connection if its
            # worker died, over the one it kept (the stream going on) if the host's did.
            await wait_until(
                lambda: "spotlight" in op1.media.tracks, within=10, what="a spotlight again"
            )
            # More frames than a receiver ever holds queued: these came after the kill.
            await count_frames(op1.media.tracks["spotlight"][0], 45, 15.0)
            recovery = round(time.monotonic() - killed_at, 3)
            print(
                json.dumps({"measure": f"spread_conference_{killed}_recovery_s", "value": recovery})
            )
            assert time.monotonic() - killed_at < 5.0 * 3  # generous under a loaded CI
            await kept.ws.assert_no("media_restart", within=0.5)
    finally:
        ice.use_addresses([])


async def test_a_bad_frame_from_the_server_is_refused_by_the_worker(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The worker logs it and goes on: it reports its load after it, and is not restarted."""
    config = make_config(tmp_path, media=MEDIA).media
    pool = WorkerPool(config=config, count=1, command=MEDIA_WORKER_COMMAND, clock=time.time)
    await pool.start(lambda user, message: None)
    try:
        assert await pool.ready()
        worker = pool.workers[0]
        assert worker.writer is not None
        worker.writer.write(w.HEADER.pack(3) + b"abc")
        worker.load = None
        worker.send(w.LoadQuery())
        await wait_until(lambda: worker.load is not None, what="the worker answers")
        assert worker.restarts == 0
    finally:
        await pool.stop()
    refused = [
        json.loads(line)
        for line in capfd.readouterr().err.splitlines()
        if "bad frame from the server refused" in line
    ]
    assert len(refused) == 1
    assert refused[0]["worker"] == 0
