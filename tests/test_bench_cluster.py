"""`python -m bench.cluster --quick` runs end to end as a real process: three hub nodes on one
Redis and one PostgreSQL trace, calls within a node and across nodes, one JSON line per phase
and a summary last, and nothing of the run left in Redis or PostgreSQL afterwards."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis import Redis

from bench.cluster import (
    GOAL,
    NODES,
    PHASE_NUMBER_KEYS,
    PHASES,
    QUICK,
    Group,
    client_specs,
    cluster_agreed,
    groups_for,
)
from signalling.cluster.keys import ClusterKeys

ROOT = Path(__file__).resolve().parent.parent
QUICK_BUDGET_S = 45.0
COURTS = ("P", "P01", "P02", "P0101", "P0102", "P0201")
SUMMARY_NUMBER_KEYS = (
    "same_node_ring_p99_ms",
    "cross_node_ring_p99_ms",
    "ratio",
    "redis_ops_per_call",
    "calls",
)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _schema_exists(dsn: str, schema: str) -> bool:
    async def query() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            found = await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema
            )
            return bool(found)
        finally:
            await conn.close()

    return asyncio.run(query())


@pytest.mark.cluster
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(QUICK_BUDGET_S + 45.0)
def test_quick_cluster_benchmark_measures_both_phases_and_leaves_nothing_behind() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cluster", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=QUICK_BUDGET_S + 30.0,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed < QUICK_BUDGET_S
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    by_phase = {line["phase"]: line for line in lines}
    assert lines[0]["phase"] == "start"
    assert {"servers_ready", "cluster", *PHASES, "trace", "cleanup"} <= set(by_phase)
    assert by_phase["cluster"]["authority"] in NODES
    for phase in PHASES:
        line = by_phase[phase]
        not_numbers = {k: line.get(k) for k in PHASE_NUMBER_KEYS if not _is_number(line.get(k))}
        assert not_numbers == {}, line
        for key in ("ring_p50_ms", "ring_p90_ms", "ring_p99_ms"):
            assert _is_number(line[key]), line
            assert line[key] > 0, line
        # Every call placed rang its court's operators and was answered, on any node.
        assert line["placed"] > 0, line
        assert line["rang"] == line["answered"] == line["placed"], line
        assert line["errors"] == 0, line
        assert set(line["server_cpu_pct"]) == set(NODES), line
        assert line["authority"] == by_phase["cluster"]["authority"]
        for group in line["groups"]:
            assert group["officers_on"] in NODES, group
            assert group["operators_on"] in NODES, group
            assert _is_number(group["ring_p99_ms"]), group
        assert sum(group["rang"] for group in line["groups"]) == line["rang"]
    summary = lines[-1]
    assert summary["phase"] == "summary"
    not_numbers = {k: summary.get(k) for k in SUMMARY_NUMBER_KEYS if not _is_number(summary.get(k))}
    assert not_numbers == {}, summary
    assert summary["goal"] == GOAL
    assert isinstance(summary["pass"], bool)
    assert summary["calls"] == sum(by_phase[p]["placed"] for p in PHASES)
    # Recorded once each, by the authority, wherever the parties were connected.
    assert summary["trace_calls_created"] == summary["calls"]
    # Cleaned up: no key under the run's prefix, no schema.
    start = lines[0]
    redis = Redis.from_url(start["settings"]["redis_url"])
    try:
        left = list(redis.scan_iter(match=ClusterKeys(start["key_prefix"]).all_pattern()))
    finally:
        redis.close()
    assert left == []
    assert not _schema_exists(start["settings"]["postgres_dsn"], start["schema"])


def test_same_node_places_each_court_on_one_node_and_cross_node_on_every_ordered_pair() -> None:
    same = groups_for("same_node", COURTS)
    assert [(g.officers_on, g.operators_on) for g in same] == [(n, n) for n in NODES]
    cross = groups_for("cross_node", COURTS)
    pairs = {(g.officers_on, g.operators_on) for g in cross}
    assert pairs == {(a, b) for a in NODES for b in NODES if a != b}
    assert len({g.court for g in cross}) == len(cross)


def test_client_specs_connect_each_court_s_officers_and_operators_to_their_own_nodes() -> None:
    ports = {node: 9000 + i for i, node in enumerate(NODES)}
    groups = (Group("P", "n1", "n2"), Group("P01", "n2", "n1"))
    specs = client_specs("cross_node", groups, ports, "secret", QUICK)
    # Operators' connections come first, so they are on the roster when officers sign in.
    roles = [{u.role for u in spec.users} for spec in specs]
    assert roles == [{"operator"}, {"operator"}, {"officer"}, {"officer"}]
    placed = {(u.court, u.role): spec.port for spec in specs for u in spec.users}
    assert placed == {
        ("P", "officer"): ports["n1"],
        ("P", "operator"): ports["n2"],
        ("P01", "officer"): ports["n2"],
        ("P01", "operator"): ports["n1"],
    }
    users = [u.user for spec in specs for u in spec.users]
    assert (
        len(users) == len(set(users)) == 2 * (QUICK.operators_per_court + QUICK.officers_per_court)
    )


def _health(role: str, authority: str | None, nodes: int = 3, redis: str = "ok") -> Any:
    return {
        "status": "ok",
        "cluster": {"role": role, "authority": authority, "nodes": nodes, "redis": redis},
    }


def test_cluster_is_agreed_only_when_every_node_names_one_live_authority() -> None:
    agreed = {
        "n1": _health("gateway", "n2"),
        "n2": _health("authority", "n2"),
        "n3": _health("gateway", "n2"),
    }
    assert cluster_agreed(agreed) == "n2"
    assert cluster_agreed({**agreed, "n3": _health("gateway", None)}) is None
    assert cluster_agreed({**agreed, "n3": _health("gateway", "n1")}) is None
    assert cluster_agreed({**agreed, "n3": _health("gateway", "n2", nodes=2)}) is None
    assert cluster_agreed({**agreed, "n3": _health("gateway", "n2", redis="unreachable")}) is None
    assert cluster_agreed({**agreed, "n1": _health("authority", "n2")}) is None
    assert cluster_agreed({**agreed, "n3": {"status": "ok"}}) is None
