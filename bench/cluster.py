"""Cluster benchmark: `python -m bench.cluster [--quick] [options]`.

What a call costs when the officer and the operators it rings are on different nodes, next to
when they share one. Starts three hub processes (`python -m commandcenter serve`, nodes n1, n2,
n3, each on its own loopback port) that share one Redis (a key prefix of this run's own) and
one PostgreSQL trace (a schema of this run's own), waits until all three report the same
authority and three live nodes on /healthz, then measures two phases and prints one JSON line
for each; the LAST line is the summary, with the goal and its pass/fail.

- same_node: one court per node, its `--operators-per-court` operators (2) and
  `--officers-per-court` officers (1,000) all connected to that node; the calls go round-robin
  over the three courts, so each node takes a third of them.
- cross_node: one court per ordered pair (A, B) of different nodes (six pairs, six courts),
  its officers connected to A and its operators to B.

A phase line gives the latencies of all its calls and, under `groups`, of each court's
(so of each placement: a same_node court on the authority needs no Redis hop, one on a
gateway does; `authority` names the node).

Each phase runs in a client process of its own (one event loop, one clock, so ring latencies
are measured like `bench.signalling`'s), opened to every node it needs. It first holds all
its connections for `--duration` s (10) with no calls (the idle interval), then for
`--duration` s places `--rate` calls/s (10): `call_center` -> the court's free operators get
`call_ringing` -> the first of them sends `accept` -> the officer gets `call_answered`, holds
`--hold` s (0.2) and hangs up. `ring_*_ms`: per call, from `call_center` sent until the last
operator it rang has `call_ringing`; `answer_*_ms`: from `accept` sent until the officer has
`call_answered`. Users are distinct per phase and the hub runs with presence.grace_s 0, so a
phase's users are gone from the roster (and ring nowhere) once it disconnects.

`redis_ops_per_call`: the commands of the call path (PUBLISH to the inbox and the node
channels, HSET/HDEL of the authority's journal, MGET of presence), from `INFO commandstats`
read before and after each interval, the idle interval's (scaled) subtracted, divided by the
calls placed. `redis_all_ops_per_call` does the same with every command
(`total_commands_processed`): it includes the background's (heartbeats, lease renewals,
presence upkeep), whose rate swings with how many of its ticks fall in each interval, so with
thousands of connections it is noise. Both counters are the whole Redis server's: on the
shared Redis, whatever other clients send meanwhile is counted too, so the figures are
approximate. `--private-redis` runs a redis-server of the benchmark's own (no
persistence, stopped at the end) instead, whose counters are the nodes' alone.

The summary's goal: `cross_node_ring_p99_ms < 2 * same_node_ring_p99_ms`, every placed call
of both phases having rung. It also says how much CPU each node took per phase (from
/proc/<pid>/stat), what the trace holds (counted in PostgreSQL: each call recorded once, by
the authority), and whether processes outside the benchmark took CPU meanwhile (`contended`).

The hubs run with the overrides `bench.signalling` uses (random JWT secret, logging at
warning, message rate limits far above the benchmark's, a 10 s ring timeout), plus the
cluster's: heartbeat 2 s, node timeout 5 s, lease TTL 5 s. Whatever happens (a failure,
Ctrl-C, SIGTERM), the servers are stopped, every Redis key under the run's prefix is deleted
(SCAN MATCH + DEL) and the schema is dropped.

`--single` runs the same_node phase on three nodes that each run alone (no `[redis] url`;
the trace still shared in PostgreSQL): the one-node baseline the cluster's figures compare
with. There is no cross_node phase then (a call cannot cross nodes that do not know each
other), so its summary does not pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import os
import secrets
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import asyncpg
import msgspec
from redis import Redis
from redis.exceptions import RedisError

from bench._clients import (
    MAX_SAMPLES,
    OFFICER,
    OPERATOR,
    ClientSpec,
    Peer,
    Pool,
    User,
    Workload,
    _command_loop,
)
from bench._common import (
    BenchError,
    CpuMeter,
    MachineMeter,
    Reply,
    ServerProcess,
    Worker,
    emit,
    free_port,
    percentile,
    raise_nofile_limit,
    rounded,
    sigterm_unwinds,
)
from bench._services import PrivateRedis
from bench.signalling import CONTENDED_PCT, server_env
from bench.signalling import Settings as SignallingSettings
from commandcenter.config import Config, RedisConfig
from sessions.facets import CALL_CREATED
from sessions.postgres_store import TABLE
from signalling.cluster.keys import ClusterKeys

NODES: Final = ("n1", "n2", "n3")
SERVE: Final = (sys.executable, "-m", "commandcenter", "serve", "--host", "127.0.0.1")
GOAL: Final = "cross_node_ring_p99_ms < 2 * same_node_ring_p99_ms"
GOAL_FACTOR: Final = 2.0
# The cluster's timings for this benchmark (the defaults, written out so a change of the
# defaults does not silently change what is measured).
CLUSTER_TIMINGS: Final = {"heartbeat_s": "2", "node_timeout_s": "5", "lease_ttl_s": "5"}
PHASES: Final = ("same_node", "cross_node")
# Keys every phase line carries as numbers (the smoke test checks them).
PHASE_NUMBER_KEYS: Final = (
    "placed",
    "rang",
    "answered",
    "errors",
    "connections",
    "idle_s",
    "calls_s",
    "redis_ops",
    "redis_idle_ops",
)
# Commands listed per call in a phase line, the most frequent first.
TOP_COMMANDS: Final = 8
# The commands a call makes the nodes send: publications (inbox, node channels) and the
# authority's journal. The background (registry, lease, presence upkeep) uses others.
CALL_PATH_COMMANDS: Final = ("publish", "hset", "hdel", "mget")
POLL_S: Final = 0.1
# Seconds after which nodes whose /healthz has no "cluster" object at all are taken for a hub
# that does not run as a cluster.
NO_CLUSTER_S: Final = 5.0


@dataclasses.dataclass(frozen=True)
class Settings:
    rate: float = 10.0
    duration_s: float = 10.0
    hold_s: float = 0.2
    operators_per_court: int = 2
    # Enough connections that per-connection upkeep (presence keys) shows in the latencies:
    # 3,000 on the nodes in the same_node phase, 6,000 in the cross_node one.
    officers_per_court: int = 1000
    ring_timeout_s: float = 10.0
    # Longest wait for the three nodes to agree on an authority, seconds.
    cluster_timeout_s: float = 30.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/test"
    # Start a redis-server of the run's own rather than use `redis_url`.
    private_redis: bool = False
    single: bool = False
    quick: bool = False


QUICK: Final = Settings(duration_s=2.0, officers_per_court=5, quick=True)


def parse_args(argv: Sequence[str] | None) -> Settings:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster",
        description="Benchmark calls across three hub nodes sharing one Redis; prints JSON "
        "lines, the last a summary.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 s intervals, for smoke tests; other flags apply"
    )
    parser.add_argument("--rate", type=float, help=f"calls per second ({d.rate:g})")
    parser.add_argument(
        "--duration", type=float, help=f"seconds of each interval ({d.duration_s:g})"
    )
    parser.add_argument("--hold", type=float, help=f"seconds a call lasts ({d.hold_s:g})")
    parser.add_argument(
        "--operators-per-court", type=int, help=f"operators per court ({d.operators_per_court})"
    )
    parser.add_argument(
        "--officers-per-court", type=int, help=f"officers per court ({d.officers_per_court})"
    )
    parser.add_argument(
        "--cluster-timeout",
        type=float,
        help=f"seconds to wait for the nodes to form a cluster ({d.cluster_timeout_s:g})",
    )
    parser.add_argument("--redis-url", help=f"the shared Redis ({d.redis_url})")
    parser.add_argument(
        "--private-redis",
        action="store_true",
        help="run a redis-server of the benchmark's own (exact command counts) instead",
    )
    parser.add_argument("--postgres-dsn", help=f"the shared trace database ({d.postgres_dsn})")
    parser.add_argument(
        "--single",
        action="store_true",
        help="baseline: each node alone (no Redis), same_node phase only",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else d
    flags = {
        "rate": args.rate,
        "duration_s": args.duration,
        "hold_s": args.hold,
        "operators_per_court": args.operators_per_court,
        "officers_per_court": args.officers_per_court,
        "cluster_timeout_s": args.cluster_timeout,
        "redis_url": args.redis_url,
        "postgres_dsn": args.postgres_dsn,
        "private_redis": args.private_redis or None,
        "single": args.single or None,
    }
    settings = dataclasses.replace(base, **{k: v for k, v in flags.items() if v is not None})
    positive = {
        "--rate": settings.rate,
        "--duration": settings.duration_s,
        "--operators-per-court": settings.operators_per_court,
        "--officers-per-court": settings.officers_per_court,
        "--cluster-timeout": settings.cluster_timeout_s,
    }
    for flag, value in positive.items():
        if not value > 0:
            parser.error(f"{flag} must be positive")
    if settings.hold_s < 0:
        parser.error("--hold must not be negative")
    return settings


# ---- who connects where ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Group:
    """One court of a phase: its officers connect to one node, its operators to another."""

    court: str
    officers_on: str
    operators_on: str


def groups_for(phase: str, courts: Sequence[str]) -> tuple[Group, ...]:
    """A court per node (same_node) or per ordered pair of nodes (cross_node), so that no two
    placements of a phase share a court and its queue."""
    if phase == "same_node":
        pairs = [(n, n) for n in NODES]
    else:
        pairs = list(itertools.permutations(NODES, 2))
    if len(courts) < len(pairs):
        raise BenchError(f"{phase} needs {len(pairs)} courts, the configuration has {len(courts)}")
    return tuple(Group(c, a, b) for c, (a, b) in zip(courts, pairs, strict=False))


def users_of(phase: str, group: Group, s: Settings) -> tuple[tuple[User, ...], tuple[User, ...]]:
    """(operators, officers) of one group; ids carry the phase so no phase meets another's."""
    tag = "s" if phase == "same_node" else "x"
    c = group.court
    operators = tuple(User(f"{tag}-op-{c}-{i}", OPERATOR, c) for i in range(s.operators_per_court))
    officers = tuple(User(f"{tag}-of-{c}-{i}", OFFICER, c) for i in range(s.officers_per_court))
    return operators, officers


def client_specs(
    phase: str, groups: Sequence[Group], ports: Mapping[str, int], secret: str, s: Settings
) -> tuple[ClientSpec, ...]:
    """One spec per (node, role) with users there: operators' first, so they are in the roster
    before any officer signs in."""
    operators: dict[str, list[User]] = {}
    officers: dict[str, list[User]] = {}
    for group in groups:
        ops, ofs = users_of(phase, group, s)
        operators.setdefault(group.operators_on, []).extend(ops)
        officers.setdefault(group.officers_on, []).extend(ofs)
    return tuple(
        ClientSpec(ports[node], "hub", tuple(users), secret)
        for by_node in (operators, officers)
        for node, users in sorted(by_node.items())
    )


# ---- the client process ---------------------------------------------------------------------


class _Pools(Pool):
    """Several pools, each to its own node, that `Workload` sees as one: the same `Peer`s, so
    the operators' frames and the officers' are handled on one loop with one clock."""

    def __init__(
        self,
        specs: Sequence[ClientSpec],
        on_frame: Callable[[Peer, str], Coroutine[Any, Any, None]],
    ) -> None:
        super().__init__(dataclasses.replace(specs[0], users=()), on_frame)
        self.members = [Pool(spec, on_frame) for spec in specs]
        self.peers = [peer for pool in self.members for peer in pool.peers]

    async def connect(self) -> Reply:
        replies = [await pool.connect() for pool in self.members]
        self.failed = sum(int(r["failed"]) for r in replies)
        self.failures = [f for r in replies for f in r["failures"]][:MAX_SAMPLES]
        return {
            "connected": sum(int(r["connected"]) for r in replies),
            "failed": self.failed,
            "failures": self.failures,
            "seconds": round(sum(float(r["seconds"]) for r in replies), 3),
        }

    async def close(self) -> None:
        for pool in self.members:
            await pool.close()


class ClusterWorkload(Workload):
    """`bench._clients.Workload` with its users spread over the nodes."""

    def __init__(self, specs: Sequence[ClientSpec]) -> None:
        super().__init__(specs[0])
        self.pools = _Pools(specs, self._on_frame)
        self.pool = self.pools

    async def run(self, cmd: str, args: dict[str, Any]) -> Reply:
        if cmd == "status":
            closed = sum(pool.closed_early for pool in self.pools.members)
            return {"open": self.pool.open_count(), "closed_early": closed}
        return await super().run(cmd, args)

    async def run_calls(
        self, rate: float, duration_s: float, hold_s: float, drain_s: float
    ) -> Reply:
        """`Workload.run_calls`, its ring latencies also given per court (each court is one
        placement of officers and operators on nodes)."""
        reply = await super().run_calls(rate, duration_s, hold_s, drain_s)
        by_court: dict[str, list[float]] = {}
        for trace in [*self.done, *self.active.values()]:
            if trace.rings:
                ring_ms = (max(trace.rings) - trace.t_sent) * 1000.0
                by_court.setdefault(trace.officer.user.court, []).append(ring_ms)
        return {**reply, "ring_ms_by_court": by_court}


def cluster_workload_main(conn: Connection, specs: tuple[ClientSpec, ...]) -> None:
    raise_nofile_limit()
    asyncio.run(_command_loop(conn, ClusterWorkload(specs)))


# ---- Redis, PostgreSQL, /healthz ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RedisCount:
    total: int
    by_command: dict[str, int]


def redis_count(redis: Redis) -> RedisCount:
    """Commands the Redis server has processed since it started (all clients), in total and
    per command, in one INFO call."""
    info: dict[str, Any] = redis.info("stats", "commandstats")
    by_command = {
        key.removeprefix("cmdstat_"): int(value["calls"])
        for key, value in info.items()
        if key.startswith("cmdstat_") and isinstance(value, dict)
    }
    return RedisCount(int(info["total_commands_processed"]), by_command)


def delete_prefix(redis: Redis, keys: ClusterKeys) -> int:
    """Delete every key under the run's prefix; returns how many there were."""
    found = list(redis.scan_iter(match=keys.all_pattern(), count=1000))
    for start in range(0, len(found), 1000):
        redis.delete(*found[start : start + 1000])
    return len(found)


async def _pg(dsn: str, statement: str) -> list[Any]:
    conn = await asyncpg.connect(dsn, timeout=10.0)
    try:
        rows: list[Any] = await conn.fetch(statement)
        return rows
    finally:
        await conn.close()


def pg(dsn: str, statement: str) -> list[Any]:
    try:
        return asyncio.run(_pg(dsn, statement))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise BenchError(f"postgresql {dsn}: {exc!r}") from exc


def healthz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2.0) as resp:
        body: dict[str, Any] = json.loads(resp.read())
        return body


def cluster_agreed(healths: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The authority all nodes name, when every node reports the whole cluster live and
    exactly that node says it is the authority; else None."""
    clusters = {node: h.get("cluster") for node, h in healths.items()}
    if not all(isinstance(c, dict) for c in clusters.values()):
        return None
    views = [c for c in clusters.values() if isinstance(c, dict)]
    authorities = {v.get("authority") for v in views}
    if len(authorities) != 1:
        return None
    (authority,) = authorities
    if not isinstance(authority, str) or authority not in healths:
        return None
    if any(v.get("nodes") != len(healths) or v.get("redis") != "ok" for v in views):
        return None
    roles = {node: v.get("role") for node, v in zip(clusters, views, strict=True)}
    expected = {node: "authority" if node == authority else "gateway" for node in healths}
    return authority if roles == expected else None


# ---- the run ------------------------------------------------------------------------------


def _ms(value: float) -> float | None:
    return rounded(value, 3)


def _per_call(ops: float, calls: int) -> float | None:
    # + 0.0: no "-0.0" when the background estimate cancels the phase's commands exactly.
    return round(ops / calls, 1) + 0.0 if calls > 0 else None


class Bench:
    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.s = settings
        self.tmp = tmp
        self.secret = secrets.token_urlsafe(36)
        self.run_id = secrets.token_hex(6)
        self.keys = ClusterKeys(f"bench-cluster-{self.run_id}:")
        self.schema = f"bench_cluster_{self.run_id}"
        self.courts = [c.code for c in Config().courts]
        self.servers: dict[str, ServerProcess] = {}
        self.workers: list[Worker] = []
        # The shared Redis, or one of the run's own (--private-redis); the client is made in
        # `run`, once the URL is known.
        self.redis_url = settings.redis_url
        self.redis: Redis
        self.redis_server: PrivateRedis | None = None
        # The node all others agreed holds the lease (None with --single).
        self.authority: str | None = None
        self.others: list[float] = []
        # Records in the trace by kind, read once the servers have stopped.
        self.trace: dict[str, int] = {}
        self.started = time.monotonic()

    def _emit(self, record: dict[str, Any]) -> None:
        emit({**record, "t_s": round(time.monotonic() - self.started, 2)})

    def _alive(self) -> None:
        for server in self.servers.values():
            server.check_alive()

    def _pids(self) -> list[int]:
        pids = [os.getpid(), *(w.pid for w in self.workers)]
        pids += [srv.pid for srv in self.servers.values() if srv.running]
        return pids if self.redis_server is None else [*pids, self.redis_server.pid]

    def _hold(self, seconds: float) -> None:
        """Let `seconds` pass (a measured interval), checking that the servers live on."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._alive()
            time.sleep(min(POLL_S, left))

    def node_env(self, node: str, data_dir: Path) -> dict[str, str]:
        s = self.s
        env = server_env(
            str(data_dir), self.secret, SignallingSettings(ring_timeout_s=s.ring_timeout_s)
        )
        env.update(
            {
                "COMMANDCENTER_SERVER_NODE_ID": node,
                "COMMANDCENTER_REDIS_URL": self.redis_url,
                "COMMANDCENTER_REDIS_KEY_PREFIX": self.keys.prefix,
                "COMMANDCENTER_RECORDER_BACKEND": "postgres",
                "COMMANDCENTER_RECORDER_POSTGRES_DSN": s.postgres_dsn,
                "COMMANDCENTER_RECORDER_POSTGRES_SCHEMA": self.schema,
                # A phase's users leave the roster as soon as they disconnect.
                "COMMANDCENTER_PRESENCE_GRACE_S": "0",
            }
        )
        if s.single:
            # Each node alone, as without [redis] url: the baseline a cluster is held to.
            del env["COMMANDCENTER_REDIS_URL"], env["COMMANDCENTER_REDIS_KEY_PREFIX"]
            return env
        # Only the settings this hub knows: it refuses unknown COMMANDCENTER_ variables.
        known = {f.name for f in msgspec.structs.fields(RedisConfig)}
        for key, value in CLUSTER_TIMINGS.items():
            if key in known:
                env[f"COMMANDCENTER_REDIS_{key.upper()}"] = value
        return env

    def run(self) -> dict[str, Any]:
        s = self.s
        self._emit(
            {
                "phase": "start",
                "settings": dataclasses.asdict(s),
                "nodes": list(NODES),
                "key_prefix": self.keys.prefix,
                "schema": self.schema,
            }
        )
        pg(s.postgres_dsn, "SELECT 1")
        results: dict[str, dict[str, Any]] = {}
        with contextlib.ExitStack() as stack:
            if s.private_redis:
                self.redis_server = server = PrivateRedis(self.tmp)
                stack.callback(server.stop)
                server.start()
                self.redis_url = server.url
            self.redis = Redis.from_url(self.redis_url, socket_timeout=10.0)
            stack.callback(self.redis.close)
            try:
                self.redis.ping()
            except RedisError as exc:
                raise BenchError(f"redis {self.redis_url}: {exc!r}") from exc
            self._emit({"phase": "redis", "url": self.redis_url, "private": s.private_redis})
            # Run last: the keys and the schema go once no node can write them again.
            stack.callback(self._drop_schema)
            stack.callback(self._delete_keys)
            # Once the servers have stopped, so every record they took is in.
            stack.callback(self._read_trace)
            self._start_servers(stack)
            # Registered last, so run first: clients leave before the servers stop.
            stack.callback(self._stop_workers)
            if not s.single:
                self._wait_for_cluster()
            for phase in PHASES if not s.single else PHASES[:1]:
                results[phase] = self._phase(phase)
        return self._summary(results)

    def _start_servers(self, stack: contextlib.ExitStack) -> None:
        for node in NODES:
            data_dir = self.tmp / node
            data_dir.mkdir()
            port = free_port()
            server = ServerProcess(
                [*SERVE, "--port", str(port)],
                port=port,
                env=self.node_env(node, data_dir),
                log_path=self.tmp / f"{node}.log",
            )
            self.servers[node] = server
            stack.callback(server.stop)
        started = time.monotonic()
        # Together: three starts in a row would take three times as long.
        with ThreadPoolExecutor(len(NODES)) as pool:
            for future in [pool.submit(srv.start) for srv in self.servers.values()]:
                future.result()
        self._emit(
            {
                "phase": "servers_ready",
                "seconds": round(time.monotonic() - started, 2),
                "pids": {node: srv.pid for node, srv in self.servers.items()},
                "ports": {node: srv.port for node, srv in self.servers.items()},
            }
        )

    def _wait_for_cluster(self) -> None:
        started = time.monotonic()
        deadline = started + self.s.cluster_timeout_s
        healths: dict[str, dict[str, Any]] = {}
        while True:
            self._alive()
            for node, server in self.servers.items():
                try:
                    healths[node] = healthz(server.port)
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    healths[node] = {"unreachable": repr(exc)}
            self.authority = authority = cluster_agreed(healths)
            if authority is not None:
                break
            # A hub that runs as a cluster says so from its first /healthz on; one that does
            # not never will, so that is known well before the deadline.
            silent = not any("cluster" in h for h in healths.values())
            now = time.monotonic()
            if now > deadline or (silent and now > started + NO_CLUSTER_S):
                raise BenchError(self._no_cluster(healths))
            time.sleep(POLL_S)
        self._emit(
            {
                "phase": "cluster",
                "authority": authority,
                "nodes": len(healths),
                "seconds": round(time.monotonic() - started, 2),
            }
        )

    def _no_cluster(self, healths: Mapping[str, Mapping[str, Any]]) -> str:
        seen = {node: h.get("cluster", h) for node, h in healths.items()}
        message = (
            f"the nodes did not agree on one authority with {len(NODES)} live nodes within "
            f"{self.s.cluster_timeout_s:g} s; last /healthz: {json.dumps(seen)}"
        )
        if not any("cluster" in h for h in healths.values()):
            message += (
                " (no node reports a 'cluster' object: this hub does not run as a cluster "
                "yet; --single measures the same_node phase alone)"
            )
        return message

    def _stop_workers(self) -> None:
        workers, self.workers = self.workers, []
        for worker in workers:
            worker.send_stop()
        for worker in workers:
            worker.stop()

    def _phase(self, phase: str) -> dict[str, Any]:
        s = self.s
        groups = groups_for(phase, self.courts)
        ports = {node: srv.port for node, srv in self.servers.items()}
        worker = Worker(
            phase, cluster_workload_main, client_specs(phase, groups, ports, self.secret, s)
        )
        self.workers.append(worker)
        connected = worker.call("connect", 60.0, self._alive)
        if connected["failed"]:
            raise BenchError(f"{phase}: clients failed to connect: {connected['failures']}")

        # Idle: every client connected, no calls; what the cluster does by itself.
        cpu = {node: CpuMeter(srv.pid) for node, srv in self.servers.items()}
        for meter in cpu.values():
            meter.start()
        idle0 = redis_count(self.redis)
        t0 = time.monotonic()
        self._hold(s.duration_s)
        idle1 = redis_count(self.redis)
        idle_s = time.monotonic() - t0
        idle_cpu = {node: meter.stop() for node, meter in cpu.items()}

        # The Redis server's CPU only when it is the run's own: the shared one serves others.
        redis_cpu = None if self.redis_server is None else CpuMeter(self.redis_server.pid)
        for meter in [*cpu.values(), *([redis_cpu] if redis_cpu else [])]:
            meter.start()
        machine = MachineMeter(self._pids())
        machine.start()
        calls0 = redis_count(self.redis)
        t1 = time.monotonic()
        calls = worker.call(
            "calls",
            s.duration_s + s.ring_timeout_s + 60.0,
            self._alive,
            rate=s.rate,
            duration_s=s.duration_s,
            hold_s=s.hold_s,
            drain_s=s.ring_timeout_s + s.hold_s + 5.0,
        )
        calls1 = redis_count(self.redis)
        calls_s = time.monotonic() - t1
        calls_cpu = {node: meter.stop() for node, meter in cpu.items()}
        redis_pct = None if redis_cpu is None else redis_cpu.stop()
        machine_use = machine.stop()
        self.others.append(machine_use.get("others_cpu_pct", 0.0))
        status = worker.call("status", 30.0, self._alive)
        worker.stop()
        self.workers.remove(worker)

        # The idle interval's background, scaled to the calls interval's length.
        scale = calls_s / idle_s
        ops = calls1.total - calls0.total
        idle_ops = idle1.total - idle0.total
        placed = int(calls["placed"])
        excess = ops - idle_ops * scale
        by_command = {
            cmd: (n - calls0.by_command.get(cmd, 0))
            - (idle1.by_command.get(cmd, 0) - idle0.by_command.get(cmd, 0)) * scale
            for cmd, n in calls1.by_command.items()
        }
        top = sorted(by_command.items(), key=lambda kv: -kv[1])[:TOP_COMMANDS]
        # What calls themselves cost, free of the background's noise (see the docstring).
        call_path = sum(by_command.get(cmd, 0) for cmd in CALL_PATH_COMMANDS)
        ring_ms: list[float] = calls.pop("ring_ms")
        by_court: dict[str, list[float]] = calls.pop("ring_ms_by_court")
        answer_ms: list[float] = calls.pop("answer_ms")
        if not calls["error_samples"]:
            del calls["error_samples"]
        record: dict[str, Any] = {
            "phase": phase,
            "authority": self.authority,
            "groups": [
                {
                    **dataclasses.asdict(g),
                    "rang": len(by_court.get(g.court, [])),
                    "ring_p50_ms": _ms(percentile(by_court.get(g.court, []), 50)),
                    "ring_p99_ms": _ms(percentile(by_court.get(g.court, []), 99)),
                }
                for g in groups
            ],
            "rate": s.rate,
            "connections": int(connected["connected"]),
            "connections_lost": int(connected["connected"]) - int(status["open"]),
            **calls,
            "ring_p50_ms": _ms(percentile(ring_ms, 50)),
            "ring_p90_ms": _ms(percentile(ring_ms, 90)),
            "ring_p99_ms": _ms(percentile(ring_ms, 99)),
            "ring_max_ms": _ms(max(ring_ms, default=math.nan)),
            "answer_p50_ms": _ms(percentile(answer_ms, 50)),
            "answer_p99_ms": _ms(percentile(answer_ms, 99)),
            "idle_s": round(idle_s, 3),
            "calls_s": round(calls_s, 3),
            "redis_ops": ops,
            "redis_idle_ops": idle_ops,
            "redis_idle_ops_per_s": round(idle_ops / idle_s, 1),
            "redis_ops_per_call": _per_call(call_path, placed),
            "redis_all_ops_per_call": _per_call(excess, placed),
            "redis_ops_per_call_by_command": {cmd: _per_call(n, placed) for cmd, n in top if n > 0},
            "server_cpu_pct": calls_cpu,
            "redis_cpu_pct": redis_pct,
            "idle_server_cpu_pct": idle_cpu,
            **machine_use,
        }
        self._emit(record)
        return {**record, "ring_ms": ring_ms, "redis_call_path_ops": call_path}

    def _read_trace(self) -> None:
        """The trace's records by kind, as the nodes left them in PostgreSQL."""
        try:
            rows = pg(
                self.s.postgres_dsn,
                f'SELECT kind, count(*) AS n FROM "{self.schema}".{TABLE} GROUP BY kind',
            )
        except BenchError as exc:
            self._emit({"phase": "trace", "error": str(exc)})
            return
        self.trace = {str(row["kind"]): int(row["n"]) for row in rows}
        self._emit({"phase": "trace", "records": self.trace})

    def _summary(self, results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        s = self.s
        p99 = {
            phase: percentile(list(results[phase]["ring_ms"]), 99) if phase in results else math.nan
            for phase in PHASES
        }
        same, cross = p99["same_node"], p99["cross_node"]
        ratio = cross / same if same > 0 else math.nan
        placed = sum(int(r["placed"]) for r in results.values())
        all_rang = all(r["rang"] == r["placed"] > 0 for r in results.values())
        call_path = sum(float(r["redis_call_path_ops"]) for r in results.values())
        return {
            "phase": "summary",
            "quick": s.quick,
            "single": s.single,
            "nodes": len(NODES),
            "rate": s.rate,
            "calls": placed,
            "same_node_ring_p99_ms": _ms(same),
            "cross_node_ring_p99_ms": _ms(cross),
            "ratio": rounded(ratio, 3),
            "redis_ops_per_call": _per_call(call_path, placed),
            **{
                f"{phase}_redis_ops_per_call": results[phase]["redis_ops_per_call"]
                for phase in results
            },
            "server_cpu_pct": {phase: r["server_cpu_pct"] for phase, r in results.items()},
            # Each call placed is created once in the trace, whichever node its parties use.
            "trace_calls_created": self.trace.get(CALL_CREATED, 0),
            "goal": GOAL,
            "pass": bool(not math.isnan(ratio) and cross < GOAL_FACTOR * same and all_rang),
            "others_cpu_pct_max": max(self.others, default=0.0),
            "contended": max(self.others, default=0.0) > CONTENDED_PCT,
            "seconds": round(time.monotonic() - self.started, 1),
        }

    def _delete_keys(self) -> None:
        try:
            deleted = delete_prefix(self.redis, self.keys)
        except RedisError as exc:
            self._emit({"phase": "cleanup", "error": f"redis keys not deleted: {exc!r}"})
            return
        self._emit({"phase": "cleanup", "redis_keys_deleted": deleted})

    def _drop_schema(self) -> None:
        try:
            pg(self.s.postgres_dsn, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        except BenchError as exc:
            self._emit({"phase": "cleanup", "error": f"schema not dropped: {exc}"})
            return
        self._emit({"phase": "cleanup", "schema_dropped": self.schema})


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    raise_nofile_limit()
    with sigterm_unwinds(), tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        try:
            summary = Bench(settings, Path(tmp)).run()
        except BenchError as exc:
            emit({"phase": "error", "error": str(exc)})
            return 1
        except KeyboardInterrupt:
            emit({"phase": "error", "error": "interrupted"})
            return 130
    emit(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
