"""GET /metrics on the real app: refused without the scrape token (404 when none is
configured), Prometheus's text format with every family when it is given, and the figures
moving as clients sign in, call, send media and get errors."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.config import ConfigError, load_config, replace_section
from commandcenter.connection_gate import TOO_MANY, ConnectionGate
from commandcenter.metrics import METRICS
from media import ice
from sessions.recorder import MemoryRecorder
from sessions.timings import Timings
from signalling.cluster.keys import ClusterKeys
from tests.clusterhelpers import REDIS_URL, keys
from tests.conftest import make_config
from tests.mediahelpers import media_call
from tests.polling import wait_until
from tests.test_serve import SCRIPT, free_port, wait_exit, wait_healthy
from tests.wsclient import Server

TOKEN = "scrape-" + secrets.token_hex(16)
MEDIA = {"ice_addresses": ("127.0.0.1",), "record": False}
FAMILIES = {
    "commandcenter_connections",
    "commandcenter_sign_ins",
    "commandcenter_calls",
    "commandcenter_ring_latency_seconds",
    "commandcenter_media_forwarded_packets",
    "commandcenter_media_forwarded_bytes",
    "commandcenter_media_layer_dropped_packets",
    "commandcenter_worker_cpu_seconds",
    "commandcenter_trace_append_seconds",
    "commandcenter_errors",
}

__all__ = ["keys"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def metered(aiohttp_client: AiohttpClient, tmp_path: Path) -> AsyncIterator[Server]:
    """The app with a scrape token, its durable trace (SQLite) and media on loopback."""
    ice.use_addresses(["127.0.0.1"])
    config = make_config(tmp_path / "var", metrics={"token": TOKEN}, media=MEDIA)
    http = await aiohttp_client(create_app(config))
    # The trace here is the app's own SQLite store; this recorder is not used.
    yield Server(http, config, MemoryRecorder())
    ice.use_addresses([])


async def scrape(server: Server) -> Samples:
    """Every sample of a scrape, by name and labels."""
    async with server.http.get("/metrics", headers=_bearer(TOKEN)) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---- access ----------------------------------------------------------------------------------


async def test_metrics_are_not_served_when_no_token_is_configured(server: Server) -> None:
    async with server.http.get("/metrics", headers=_bearer(TOKEN)) as resp:
        assert resp.status == 404


@pytest.mark.parametrize(
    "headers",
    [{}, _bearer("wrong-" + TOKEN), {"Authorization": TOKEN}, _bearer(TOKEN + "x")],
    ids=["missing", "wrong", "not-bearer", "longer"],
)
async def test_a_scrape_without_the_token_is_refused_401_and_not_counted_as_an_error(
    metered: Server, headers: dict[str, str]
) -> None:
    def errors(samples: Samples) -> Samples:
        return {k: v for k, v in samples.items() if k[0] == "commandcenter_errors_total"}

    # Before and after: the WebSocket error counts are per process, so earlier tests in the
    # same process may have left some.
    before = errors(await scrape(metered))
    async with metered.http.get("/metrics", headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "unauthorized"
    assert errors(await scrape(metered)) == before


async def test_a_user_token_does_not_open_the_metrics(metered: Server) -> None:
    user = metered.token("au1", "auditor", "P")
    async with metered.http.get("/metrics", headers=_bearer(user)) as resp:
        assert resp.status == 401


async def test_a_scrape_is_prometheus_text_with_every_family(metered: Server) -> None:
    async with metered.http.get("/metrics", headers=_bearer(TOKEN)) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) >= FAMILIES
    assert families["commandcenter_ring_latency_seconds"].type == "histogram"
    assert families["commandcenter_trace_append_seconds"].type == "histogram"
    assert families["commandcenter_errors"].type == "counter"
    states = {s.labels["state"] for s in families["commandcenter_calls"].samples}
    assert states == {"queued", "ringing", "active"}
    cpu = families["commandcenter_worker_cpu_seconds"].samples
    assert [s.labels for s in cpu] == [{"worker": "server"}]
    assert cpu[0].value > 0


# ---- the figures move ------------------------------------------------------------------------


async def test_sign_ins_and_a_call_move_connections_calls_and_latencies(metered: Server) -> None:
    before = await scrape(metered)
    op = await metered.connect("op1", "operator", "P0101")
    officer = await metered.connect("o1", "officer", "P0101")
    placed = await officer.request("call_center", reply="call_placed")
    call_id = placed["call_id"]
    await op.expect("call_ringing")
    ringing = await scrape(metered)
    assert value(ringing, "commandcenter_connections", kind="websocket") == 2
    assert value(ringing, "commandcenter_sign_ins_total") == (
        value(before, "commandcenter_sign_ins_total") + 2
    )
    assert value(ringing, "commandcenter_calls", state="ringing") == 1
    assert value(ringing, "commandcenter_calls", state="active") == 0
    await op.request("accept", call_id=call_id)
    await officer.expect("call_answered")
    answered = await scrape(metered)
    assert value(answered, "commandcenter_calls", state="ringing") == 0
    assert value(answered, "commandcenter_calls", state="active") == 1
    assert value(answered, "commandcenter_ring_latency_seconds_count") == 1
    assert 0 < value(answered, "commandcenter_ring_latency_seconds_sum") < 5
    assert value(answered, "commandcenter_ring_latency_seconds_bucket", le="+Inf") == 1
    # Sign-ins, the call placed, rung and answered: committed to the trace, each timed.
    appends = value(answered, "commandcenter_trace_append_seconds_count")
    assert appends > value(before, "commandcenter_trace_append_seconds_count")
    assert value(answered, "commandcenter_trace_append_seconds_sum") > 0
    await op.request("hangup", call_id=call_id)
    await officer.expect("call_ended")
    ended = await scrape(metered)
    assert value(ended, "commandcenter_calls", state="active") == 0


async def test_media_forwarded_counts_packets_and_bytes(metered: Server) -> None:
    before = await scrape(metered)
    officer_ws = await metered.connect("o-1", "officer", "P0101")
    operator_ws = await metered.connect("op-1", "operator", "P0101")
    officer, operator, _ = await media_call(officer_ws, operator_ws)
    try:

        async def forwarded() -> bool:
            now = await scrape(metered)
            packets = value(now, "commandcenter_media_forwarded_packets_total")
            return packets >= value(before, "commandcenter_media_forwarded_packets_total") + 50

        await wait_until(forwarded, within=10, what="50 packets forwarded")
        after = await scrape(metered)
        packets = value(after, "commandcenter_media_forwarded_packets_total") - value(
            before, "commandcenter_media_forwarded_packets_total"
        )
        octets = value(after, "commandcenter_media_forwarded_bytes_total") - value(
            before, "commandcenter_media_forwarded_bytes_total"
        )
        # Every RTP packet has at least its 12-byte header.
        assert octets >= 12 * packets
    finally:
        await officer.close()
        await operator.close()


async def test_errors_answered_to_clients_are_counted_by_edge_and_code(metered: Server) -> None:
    before = await scrape(metered)
    async with metered.http.get("/api/stats") as resp:
        assert resp.status == 401
    officer_token = metered.token("o9", "officer", "P0101")
    async with metered.http.get("/api/stats", headers=_bearer(officer_token)) as resp:
        assert resp.status == 403
    async with metered.http.get("/no/such/path") as resp:
        assert resp.status == 404
    client = await metered.connect("o1", "officer", "P0101")
    await client.send_raw("{not json")
    assert (await client.expect("error"))["code"] == "invalid_message"
    unknown = await client.send("accept", call_id="c-0000000000000000")
    assert (await client.error_for(unknown))["code"] == "not_found"
    refused = await metered.open("x", token="not-a-jwt")
    await refused.expect_close(4401)
    after = await scrape(metered)

    def grew(edge: str, code: str) -> float:
        name = "commandcenter_errors_total"
        return value(after, name, edge=edge, code=code) - value(before, name, edge=edge, code=code)

    assert grew("http", "unauthorized") == 1
    assert grew("http", "forbidden") == 1
    assert grew("http", "http_404") == 1
    assert grew("websocket", "invalid_message") == 1
    assert grew("websocket", "not_found") == 1
    assert grew("websocket_close", "4401") == 1


async def test_connection_gate_figures_appear_once_served_through_a_gate(metered: Server) -> None:
    """`commandcenter serve` hands its gate to the metrics: its open connections and its
    503 refusals (by reason) are reported."""
    gate = ConnectionGate(total=1, per_address=0)
    metered.http.app[METRICS].gate = gate
    assert gate.admit("10.0.0.1") is None
    assert gate.admit("10.0.0.2") == TOO_MANY
    samples = await scrape(metered)
    assert value(samples, "commandcenter_connections", kind="tcp") == 1
    assert value(samples, "commandcenter_errors_total", edge="http", code=TOO_MANY) == 1


# ---- the real server -------------------------------------------------------------------------


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`commandcenter serve` with the scrape token from the environment (no media)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env |= {
        "COMMANDCENTER_SERVER_DATA_DIR": str(tmp_path / "var"),
        "COMMANDCENTER_MEDIA_ENABLED": "false",
        "COMMANDCENTER_METRICS_TOKEN": TOKEN,
    }
    with (tmp_path / "server.log").open("wb") as out:
        proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc, port
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


async def test_commandcenter_serve_reports_its_tcp_connections_and_never_logs_the_token(
    serving: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    """`commandcenter serve` hands its connection gate to the metrics: a scrape counts its own
    connection among the TCP ones. The token, from the environment, is in no log line."""
    proc, port = serving
    log = tmp_path / "server.log"
    await wait_healthy(proc, port, log)
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url, headers=_bearer(TOKEN)) as resp:
        assert resp.status == 200
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    kinds = {s.labels["kind"]: s.value for s in families["commandcenter_connections"].samples}
    assert kinds["tcp"] >= 1
    assert kinds["websocket"] == 0
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc) == 0
    assert TOKEN not in log.read_text(errors="replace")


# ---- configuration ---------------------------------------------------------------------------


def test_the_scrape_token_must_be_long_enough(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with pytest.raises(ConfigError, match=r"metrics\.token: must be at least 16 bytes"):
        replace_section(config, "metrics", token="short")
    assert replace_section(config, "metrics", token="x" * 16).metrics.token == "x" * 16


def test_the_scrape_token_may_come_from_the_environment() -> None:
    config = load_config(environ={"COMMANDCENTER_METRICS_TOKEN": TOKEN})
    assert config.metrics.token == TOKEN
    assert load_config(environ={}).metrics.token == ""


# ---- Redis -----------------------------------------------------------------------------------


@pytest.mark.cluster
async def test_a_clustered_node_reports_its_redis_round_trip(
    aiohttp_client: AiohttpClient, tmp_path: Path, keys: ClusterKeys
) -> None:
    """A scrape of a node with Redis PINGs it and reports how long that took."""
    prefix = keys.prefix
    sections: dict[str, Any] = {
        "metrics": {"token": TOKEN},
        "media": {"enabled": False},
        # Before redis: a config with Redis and the default SQLite trace is refused.
        "recorder": {"backend": "memory"},
        "redis": {"url": REDIS_URL, "key_prefix": prefix},
    }
    config = make_config(tmp_path / "var", **sections)
    http = await aiohttp_client(create_app(config, recorder=MemoryRecorder()))
    server = Server(http, config, MemoryRecorder())
    samples = await scrape(server)
    rtt = value(samples, "commandcenter_redis_round_trip_seconds")
    assert 0 < rtt < 1


# ---- the plain histogram the layers keep -----------------------------------------------------


def test_timings_count_each_duration_under_its_least_upper_bound() -> None:
    timings = Timings((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0):
        timings.observe(seconds)
    snap = timings.snapshot()
    assert snap.buckets == ((0.1, 2), (1.0, 3), (float("inf"), 4))
    assert snap.count == 4
    assert snap.sum == pytest.approx(3.65)
    with pytest.raises(ValueError, match="increasing"):
        Timings((1.0, 0.5))
