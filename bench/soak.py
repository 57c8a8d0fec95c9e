"""Soak and chaos: `python -m bench.soak --minutes N [--chaos] [options]`.

Soak (the default): one hub (`python -m commandcenter serve`, its trace in SQLite as
shipped) under a steady load for `--minutes` (30): `--officers` officers (1,000) over the
configuration's courts, `--operators-per-court` operators (4) answering, `--rate` calls a
second (5) from free officers, each held `--hold` s (2) and hung up, and every officer
sending a position every `--position-interval` s (10). The clients (bench/_soak_clients.py)
run in one process of their own, over real WebSockets, and reconnect (resuming their
session) when a connection is closed on them.

Chaos (`--chaos`, `make bench-chaos`): the same load on three hub nodes sharing a private
redis-server and a private PostgreSQL trace (bench/_services.py: started by the benchmark
on ports of its own, never the machine's shared servers), and under it, at set fractions of
the run: a node SIGKILLed (`--kill`: a gateway, or the authority) and started again, Redis
restarted (everything in it lost), PostgreSQL restarted (`pg_ctl restart -m fast`).

Output, JSON lines: one per `--interval` s (60) with the calls placed and answered, the calls
placed and not yet answered at its end (`in_flight`), their ring p50/p99, errors and closes by
code, reconnects, positions sent and acknowledged and each server's RSS; in chaos mode one per
fault (`phase: fault`) with what the clients saw in its window (errors and closes by code,
reconnects, calls failed by how they ended), how long until calls went through again
(`recovery_s`), and what the trace holds for the window (records by kind, call ends and
sign-outs by reason); then the trace check (bench/_trace_check.py) and, LAST, the summary:
minutes, officers, calls, events_lost (answered calls missing from the trace, plus messages the
server took on an open connection and never answered; must be 0), audit_ok, trace_consistent,
rss_start_mb, rss_end_mb, rss_slope_mb_per_h (least squares over samples every 10 s, the first
interval left out as warm-up), ring_p99_ms overall and per interval, and whether processes
outside the benchmark took CPU meanwhile (`contended`).

The run ends cleanly: calls under way are let finish, clients close their connections, the
servers are stopped with SIGINT (gateways first, the authority last), and only then is the
trace read, so every sign-in must have its sign-out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench._clients import OFFICER, OPERATOR, User
from bench._common import (
    BenchError,
    MachineMeter,
    ServerProcess,
    Worker,
    emit,
    free_port,
    percentile,
    raise_nofile_limit,
    rounded,
    rss_mb,
    sigterm_unwinds,
)
from bench._services import PrivatePostgres, PrivateRedis
from bench._soak_clients import SoakSpec, soak_clients_main
from bench._trace_check import (
    ClientCall,
    TraceRecord,
    calls_of,
    check,
    counts_between,
    read_trace,
)
from bench.cluster import CLUSTER_TIMINGS, cluster_agreed, healthz
from bench.signalling import CONTENDED_PCT
from commandcenter.config import Config

SERVE: Final = (sys.executable, "-m", "commandcenter", "serve", "--host", "127.0.0.1")
GOAL_RING_P99_MS: Final = 20.0
RSS_SAMPLE_S: Final = 10.0
TICK_S: Final = 0.2
SCHEMA: Final = "soak"
# Chaos: when each fault strikes, as a fraction of the run.
FAULTS: Final = (
    ("kill_node", 0.15),
    ("node_back", 0.30),
    ("restart_redis", 0.45),
    ("restart_postgres", 0.65),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    minutes: float = 30.0
    officers: int = 1000
    operators_per_court: int = 4
    rate: float = 5.0
    hold_s: float = 2.0
    position_interval_s: float = 10.0
    interval_s: float = 60.0
    chaos: bool = False
    # Chaos: which node is killed, "gateway" or "authority".
    kill: str = "gateway"
    # Where to copy the servers' logs at the end (empty: nowhere).
    logs: str = ""


def parse_args(argv: Sequence[str] | None) -> Settings:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak (or, with --chaos, fault) the hub under a steady load; prints JSON "
        "lines, the last a summary.",
    )
    parser.add_argument("--minutes", type=float, default=d.minutes, help="length of the load")
    parser.add_argument("--officers", type=int, default=d.officers)
    parser.add_argument("--operators-per-court", type=int, default=d.operators_per_court)
    parser.add_argument("--rate", type=float, default=d.rate, help="calls per second")
    parser.add_argument("--hold", type=float, default=d.hold_s, help="seconds a call lasts")
    parser.add_argument(
        "--position-interval",
        type=float,
        default=d.position_interval_s,
        help="seconds between an officer's positions",
    )
    parser.add_argument(
        "--interval", type=float, default=d.interval_s, help="seconds per report line"
    )
    parser.add_argument(
        "--chaos",
        action="store_true",
        help="three nodes on a private Redis and PostgreSQL; kill a node, restart Redis, "
        "restart PostgreSQL under the load",
    )
    parser.add_argument("--kill", choices=("gateway", "authority"), default=d.kill)
    parser.add_argument(
        "--logs", metavar="DIR", default="", help="copy the servers' logs into DIR at the end"
    )
    args = parser.parse_args(argv)
    s = Settings(
        minutes=args.minutes,
        officers=args.officers,
        operators_per_court=args.operators_per_court,
        rate=args.rate,
        hold_s=args.hold,
        position_interval_s=args.position_interval,
        interval_s=args.interval,
        chaos=args.chaos,
        kill=args.kill,
        logs=args.logs,
    )
    for flag, value in (
        ("--minutes", s.minutes),
        ("--officers", s.officers),
        ("--operators-per-court", s.operators_per_court),
        ("--rate", s.rate),
        ("--position-interval", s.position_interval_s),
        ("--interval", s.interval_s),
    ):
        if not value > 0:
            parser.error(f"{flag} must be positive")
    if s.hold_s < 0:
        parser.error("--hold must not be negative")
    return s


def population(s: Settings, courts: Sequence[str], nodes: int) -> tuple[list[User], list[int]]:
    """Operators first (so they are on the roster when officers sign in), then officers,
    both spread round-robin over the courts and the nodes."""
    users = [
        User(f"op-{court}-{i}", OPERATOR, court)
        for court in courts
        for i in range(s.operators_per_court)
    ]
    users += [User(f"of-{i}", OFFICER, courts[i % len(courts)]) for i in range(s.officers)]
    return users, [i % nodes for i in range(len(users))]


def slope_per_hour(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per hour; NaN with fewer
    than two."""
    if len(samples) < 2:
        return math.nan
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return math.nan
    cov = sum((t - mt) * (v - mv) for t, v in samples)
    return cov / var * 3600.0


def _ms(values: Sequence[float], q: float) -> float | None:
    return rounded(percentile(values, q), 3)


class Node:
    """One hub process (restartable: a killed node starts again under the same id and
    port)."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = env
        self.log = log
        self.server: ServerProcess | None = None
        self.rss: list[tuple[float, float]] = []
        self.killed = False

    def start(self) -> None:
        self.server = ServerProcess(
            [*SERVE, "--port", str(self.port)], port=self.port, env=self.env, log_path=self.log
        )
        self.server.start(timeout_s=60.0)
        self.killed = False

    def kill(self) -> None:
        assert self.server is not None
        os.kill(self.server.pid, signal.SIGKILL)
        self.killed = True
        with contextlib.suppress(Exception):
            self.server.stop(5.0)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(30.0)

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server is not None and self.server.running else None


class Bench:
    def __init__(self, s: Settings, tmp: Path) -> None:
        self.s = s
        self.tmp = tmp
        self.secret = secrets.token_urlsafe(36)
        self.courts = [c.code for c in Config().courts]
        self.started = time.monotonic()
        self.nodes: list[Node] = []
        self.redis: PrivateRedis | None = None
        self.postgres: PrivatePostgres | None = None
        self.worker: Worker | None = None
        self.minutes: list[dict[str, Any]] = []
        self.ring_ms: list[float] = []
        self.faults: list[dict[str, Any]] = []
        self.others: list[float] = []
        self.prefix = f"soak-{secrets.token_hex(4)}:"

    def _emit(self, record: dict[str, Any]) -> None:
        emit({**record, "t_s": round(time.monotonic() - self.started, 1)})

    # ---- servers ------------------------------------------------------------------------

    def _env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
        data_dir = self.tmp / name
        data_dir.mkdir(exist_ok=True)
        env.update(
            {
                "COMMANDCENTER_SERVER_DATA_DIR": str(data_dir),
                "COMMANDCENTER_SERVER_NODE_ID": name,
                "COMMANDCENTER_AUTH_JWT_SECRET": self.secret,
                "COMMANDCENTER_LOGGING_LEVEL": "warning",
                "COMMANDCENTER_LIMITS_MESSAGES_PER_S": "100000",
                "COMMANDCENTER_LIMITS_MESSAGE_BURST": "100000",
                # Every client of the benchmark comes from 127.0.0.1.
                "COMMANDCENTER_SERVER_MAX_CONNECTIONS_PER_ADDRESS": "100000",
                # A soak's calls and positions need no media server.
                "COMMANDCENTER_MEDIA_ENABLED": "false",
            }
        )
        if self.s.chaos:
            assert self.redis is not None
            assert self.postgres is not None
            env.update(
                {
                    "COMMANDCENTER_REDIS_URL": self.redis.url,
                    "COMMANDCENTER_REDIS_KEY_PREFIX": self.prefix,
                    "COMMANDCENTER_RECORDER_BACKEND": "postgres",
                    "COMMANDCENTER_RECORDER_POSTGRES_DSN": self.postgres.dsn,
                    "COMMANDCENTER_RECORDER_POSTGRES_SCHEMA": SCHEMA,
                }
            )
            for key, value in CLUSTER_TIMINGS.items():
                env[f"COMMANDCENTER_REDIS_{key.upper()}"] = value
        return env

    def _start(self, stack: contextlib.ExitStack) -> None:
        if self.s.chaos:
            self.redis = PrivateRedis(self.tmp)
            stack.callback(self.redis.stop)
            self.redis.start()
            self.postgres = PrivatePostgres()
            stack.callback(self.postgres.stop)
            self.postgres.start()
            self._emit(
                {"phase": "services", "redis": self.redis.url, "postgres": self.postgres.dsn}
            )
        names = ["n1", "n2", "n3"] if self.s.chaos else ["n1"]
        for name in names:
            node = Node(name, self._env(name), self.tmp / f"{name}.log")
            self.nodes.append(node)
        # Stopped in reverse: the last started (and, in chaos, whoever is not the
        # authority) first; `_stop_servers` orders them properly on a clean run.
        for node in self.nodes:
            stack.callback(node.stop)
        for node in self.nodes:
            node.start()
        if self.s.chaos:
            self.authority = self._wait_for_cluster(60.0)
        self._emit(
            {
                "phase": "servers_ready",
                "nodes": {n.name: {"port": n.port, "pid": n.pid} for n in self.nodes},
                **({"authority": self.authority} if self.s.chaos else {}),
            }
        )

    def _wait_for_cluster(self, within_s: float) -> str:
        deadline = time.monotonic() + within_s
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            healths: dict[str, Any] = {}
            for node in self.nodes:
                try:
                    healths[node.name] = healthz(node.port)
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    healths[node.name] = {"unreachable": repr(exc)}
            last = healths
            agreed = cluster_agreed(healths)
            if agreed is not None:
                return agreed
            time.sleep(0.2)
        raise BenchError(f"no cluster formed within {within_s:g} s: {last}")

    def _alive(self) -> None:
        for node in self.nodes:
            if not node.killed and node.server is not None:
                node.server.check_alive()

    def _stop_servers(self) -> None:
        """Gateways first, the authority last, so the last one out signs everybody out."""
        order = list(self.nodes)
        if self.s.chaos:
            with contextlib.suppress(BenchError):
                authority = self._wait_for_cluster(30.0)
                order.sort(key=lambda n: n.name == authority)
        for node in order:
            node.stop()

    # ---- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        s = self.s
        self._emit({"phase": "start", "settings": dataclasses.asdict(s), "courts": self.courts})
        with contextlib.ExitStack() as stack:
            self._start(stack)
            users, homes = population(s, self.courts, len(self.nodes))
            spec = SoakSpec(
                tuple(n.port for n in self.nodes), tuple(users), tuple(homes), self.secret
            )
            self.worker = worker = Worker("soak-clients", soak_clients_main, spec)
            stack.callback(worker.stop)
            connected = worker.call("connect", 300.0, self._alive)
            self._emit({"phase": "connected", **connected})
            if connected["failed"]:
                raise BenchError(f"clients failed to connect: {connected['failures']}")
            worker.call(
                "start",
                30.0,
                self._alive,
                rate=s.rate,
                hold_s=s.hold_s,
                position_interval_s=s.position_interval_s,
            )
            load_started = time.time()
            self._load(worker)
            load_ended = time.time()
            final = worker.call("drain", 120.0, self._alive, wait_s=60.0)
            worker.call("close", 60.0)
            # Let the servers take the closes in before they stop.
            time.sleep(2.0)
            rss_end = {n.name: n.rss[-1][1] for n in self.nodes if n.rss}
            self._stop_servers()
            records, audit = asyncio.run(self._read_trace())
        return self._summary(final, records, audit, rss_end, load_started, load_ended)

    async def _read_trace(self) -> tuple[list[TraceRecord], dict[str, Any]]:
        if self.s.chaos:
            assert self.postgres is not None
            return await read_trace(dsn=self.postgres.dsn, schema=SCHEMA)
        return await read_trace(sqlite_path=self.tmp / "n1" / "trace.sqlite3")

    def _load(self, worker: Worker) -> None:
        s = self.s
        duration = s.minutes * 60.0
        t0 = time.monotonic()
        faults = [(name, t0 + at * duration) for name, at in FAULTS] if s.chaos else []
        next_line = t0 + s.interval_s
        next_rss = t0
        machine = MachineMeter(self._pids())
        machine.start()
        index = 0
        while True:
            now = time.monotonic()
            if now >= next_rss:
                for node in self.nodes:
                    if node.pid is not None:
                        with contextlib.suppress(OSError, BenchError):
                            node.rss.append((now - t0, rss_mb(node.pid)))
                next_rss += RSS_SAMPLE_S
            if faults and now >= faults[0][1]:
                name, _ = faults.pop(0)
                self._fault(name)
                continue
            if now >= next_line or now >= t0 + duration:
                index += 1
                use = machine.stop()
                machine = MachineMeter(self._pids())
                machine.start()
                self._line(worker, index, now - t0, use)
                next_line += s.interval_s
                if now >= t0 + duration:
                    return
            self._alive()
            time.sleep(TICK_S)

    def _pids(self) -> list[int]:
        pids = [os.getpid()]
        if self.worker is not None:
            pids.append(self.worker.pid)
        pids += [n.pid for n in self.nodes if n.pid is not None]
        if self.redis is not None:
            with contextlib.suppress(BenchError):
                pids.append(self.redis.pid)
        if self.postgres is not None:
            pids += self.postgres.pids()
        return pids

    def _line(self, worker: Worker, index: int, t: float, use: dict[str, float]) -> None:
        got = worker.call("minute", 60.0, self._alive)
        ring: list[float] = got.pop("ring_ms")
        self.ring_ms.extend(ring)
        self.others.append(use.get("others_cpu_pct", 0.0))
        rss = {n.name: round(n.rss[-1][1], 1) for n in self.nodes if n.rss and n.pid}
        line = {
            "phase": "minute",
            "minute": index,
            "load_s": round(t, 1),
            **got,
            "ring_p50_ms": _ms(ring, 50),
            "ring_p99_ms": _ms(ring, 99),
            "rss_mb": rss["n1"] if not self.s.chaos and "n1" in rss else rss,
            "others_cpu_pct": use.get("others_cpu_pct"),
            "machine_busy_pct": use.get("machine_busy_pct"),
        }
        self.minutes.append(line)
        self._emit(line)

    # ---- chaos --------------------------------------------------------------------------

    def _fault(self, name: str) -> None:
        started = time.time()
        detail: dict[str, Any] = {}
        match name:
            case "kill_node":
                authority = self._current_authority()
                if self.s.kill == "authority":
                    victim = next(n for n in self.nodes if n.name == authority)
                else:
                    victim = next(n for n in reversed(self.nodes) if n.name != authority)
                victim.kill()
                detail = {"node": victim.name, "authority_before": authority}
                self.killed = victim
            case "node_back":
                victim = self.killed
                victim.rss = []
                victim.start()
                detail = {"node": victim.name}
            case "restart_redis":
                assert self.redis is not None
                self.redis.restart()
            case "restart_postgres":
                assert self.postgres is not None
                self.postgres.restart()
        fault = {
            "fault": name,
            "at": started,
            "took_s": round(time.time() - started, 2),
            **detail,
        }
        self.faults.append(fault)
        self._emit({"phase": "fault_injected", **fault})

    def _current_authority(self) -> str | None:
        for node in self.nodes:
            if node.killed:
                continue
            with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
                cluster = healthz(node.port).get("cluster", {})
                if isinstance(cluster, dict) and cluster.get("authority"):
                    return str(cluster["authority"])
        return None

    def _fault_reports(
        self,
        calls: Sequence[ClientCall],
        events: Sequence[Sequence[Any]],
        records: Sequence[TraceRecord],
        load_ended: float,
    ) -> list[dict[str, Any]]:
        out = []
        for i, fault in enumerate(self.faults):
            start = float(fault["at"])
            end = float(self.faults[i + 1]["at"]) if i + 1 < len(self.faults) else load_ended
            window = [c for c in calls if start <= c.placed_at < end]
            failed = [c for c in window if not c.answered]
            seen = [e for e in events if start <= float(e[0]) < end]
            recovery = 0.0
            if failed:
                last_fail = max(c.placed_at for c in failed)
                after = [c.placed_at for c in window if c.answered and c.placed_at > last_fail]
                recovery = (min(after) if after else end) - start
            out.append(
                {
                    "phase": "fault",
                    **fault,
                    "window_s": round(end - start, 1),
                    "clients_saw": {
                        "errors_by_code": dict(Counter(str(e[2]) for e in seen if e[1] == "error")),
                        "closes_by_code": dict(Counter(str(e[2]) for e in seen if e[1] == "close")),
                        "reconnects": sum(1 for e in seen if e[1] == "reconnect"),
                        "reconnect_attempts_failed": sum(
                            1 for e in seen if e[1] == "reconnect_failed"
                        ),
                        "unanswered_by_kind": dict(
                            Counter(str(e[2]) for e in seen if e[1] == "unanswered")
                        ),
                        "calls_placed": len(window),
                        "calls_answered": len(window) - len(failed),
                        "calls_failed_by_end": dict(Counter(str(c.end) for c in failed)),
                    },
                    "recovery_s": round(recovery, 1),
                    "trace_holds": counts_between(records, start, end),
                }
            )
        return out

    # ---- the summary --------------------------------------------------------------------

    def _summary(
        self,
        final: dict[str, Any],
        records: list[TraceRecord],
        audit: dict[str, Any],
        rss_end: dict[str, float],
        load_started: float,
        load_ended: float,
    ) -> dict[str, Any]:
        s = self.s
        calls = calls_of(final["calls"])
        events = final["events"]
        noticed = [float(e[0]) for e in events if e[1] in ("error", "close")]
        verdict = check(records, calls, noticed)
        self._emit({"phase": "trace", **audit, **verdict})
        for report in self._fault_reports(calls, events, records, load_ended):
            self._emit(report)
        warm = s.interval_s
        slopes = {
            n.name: rounded(slope_per_hour([x for x in n.rss if x[0] >= warm]), 2)
            for n in self.nodes
            if not n.killed and len(n.rss) > 2
        }
        rss_start = {
            n.name: round(next((v for t, v in n.rss if t >= warm), n.rss[0][1]), 1)
            for n in self.nodes
            if n.rss
        }
        single = not s.chaos
        events_lost = int(verdict["calls_missing"]) + int(final["unanswered"])
        p99s = [m["ring_p99_ms"] for m in self.minutes]
        ring_p99 = _ms(self.ring_ms, 99)
        others = max(self.others, default=0.0)
        return {
            "phase": "summary",
            "mode": "chaos" if s.chaos else "soak",
            "minutes": s.minutes,
            "officers": s.officers,
            "operators": s.operators_per_court * len(self.courts),
            "nodes": len(self.nodes),
            "calls": len(calls),
            "calls_answered": sum(1 for c in calls if c.answered),
            "calls_by_end": dict(Counter(str(c.end) for c in calls)),
            "events_lost": events_lost,
            "unanswered": int(final["unanswered"]),
            "unanswered_samples": final["unanswered_samples"],
            # Replies to a call the client had given up on after a welcome that did not list it:
            # answered, so not lost, but a welcome and a reply that disagree (docs/cluster.md).
            "stale_replies": int(final.get("stale_replies", 0)),
            "stale_samples": final.get("stale_samples", []),
            "calls_missing_from_trace": verdict["calls_missing"],
            "audit_ok": audit["audit_ok"],
            "trace_records": audit["records"],
            "trace_consistent": verdict["trace_consistent"],
            "sessions_unsigned": verdict["sessions_unsigned"],
            "calls_unended": verdict["calls_unended"],
            "silent_stalls": verdict["silent_stalls"],
            "stalls": len(verdict["stalls"]),
            "rss_start_mb": rss_start.get("n1") if single else rss_start,
            "rss_end_mb": round(rss_end["n1"], 1) if single and "n1" in rss_end else rss_end,
            "rss_slope_mb_per_h": slopes.get("n1") if single else slopes,
            "ring_p50_ms": _ms(self.ring_ms, 50),
            "ring_p99_ms": ring_p99,
            "ring_p99_ms_by_minute": p99s,
            "ring_p99_goal_ms": GOAL_RING_P99_MS,
            "ring_p99_pass": ring_p99 is not None and ring_p99 < GOAL_RING_P99_MS,
            "faults": [f["fault"] for f in self.faults],
            "others_cpu_pct_max": others,
            "contended": others > CONTENDED_PCT,
            "load_s": round(load_ended - load_started, 1),
            "seconds": round(time.monotonic() - self.started, 1),
        }


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    raise_nofile_limit()
    with sigterm_unwinds(), tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        try:
            summary = Bench(settings, Path(tmp)).run()
        except BenchError as exc:
            emit({"phase": "error", "error": str(exc)})
            return 1
        except KeyboardInterrupt:
            emit({"phase": "error", "error": "interrupted"})
            return 130
        finally:
            if settings.logs:
                Path(settings.logs).mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob("*.log"):
                    shutil.copy(log, Path(settings.logs) / log.name)
    emit(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
