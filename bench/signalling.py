"""Signalling benchmark: `python -m bench.signalling [--quick] [options]`.

Starts the hub (`python -m commandcenter serve`) as its own process on loopback, loads it
from separate client processes, and prints one JSON line per phase; the LAST line is the
summary, with the issue's goals and a pass/fail for each.

Workload (defaults are the issue's goals; every size is a flag):

- connections: `--connections` (10,000) in total. A *workload* process holds the measured
  users, `--operators-per-court` operators (8) and `--callers-per-court` officers (50) in
  each of the six default courts; `--idle-procs` *idle* processes (2) hold the remaining
  officers, spread over the courts, and only read. Operators connect first, so every
  officer's sign-in fans a roster_update out to its court's operators, as in service.
  `rss_mb` is the server's VmRSS once all are connected and settled.
- calls: for `--duration` s (15) the workload places `--rate` calls/s (50), round-robin
  over the courts, each from a free officer: `call_center` -> the court's free operators
  receive `call_ringing` -> the first operator to receive it sends `accept` at once -> the
  officer receives `call_answered`, holds `--hold` s (0.3) and hangs up. With one call per
  court every 120 ms and calls ringing for a few ms, a call finds its court's operators free
  and rings at once; `calls_queued` counts the calls that had to wait (a court rings one
  normal call at a time, see signalling/core/dispatch.py). `ring_*_ms`: per call, from
  `call_center` sent until the last operator it rang has received `call_ringing` (the max
  over its operators; a queued call's wait is included). `answer_p99_ms`: from `accept`
  sent until the officer has `call_answered`. Both are taken in the one workload process
  with `time.perf_counter`.
- relay (`msgs_per_s`): the same officers each keep `--window` (2) `position` messages in
  flight (closed loop: every reply lets the officer send the next). The hub acks each one
  and, with presence.position_interval_s set to 0 for this benchmark, fans a roster_update
  out to the officer's court's operators: 1 frame in, 1 + operators frames out (and, as in
  service, one `position` record in the trace per published position). Measured as frames
  received by the clients per second over `--relay-duration` s (5), after `--warmup` s
  (1), with all 10,000 connections still open.
- baseline (`baseline_msgs_per_s`): `bench.ws_relay`, a bare aiohttp WebSocket server started
  the same way, takes the same workload users (in a process of their own, no idle
  connections) and the same frames: it acks each position and forwards it unchanged to
  the court's operators. Hub and baseline run `--rounds` (3) rounds each, alternating which
  goes first, while both servers are up; the summary takes the median of each, so a
  change in the machine's load during the run hits both alike. Each round also reports
  `msgs_per_server_cpu_s`, frames delivered per CPU second the server used: the summary's
  `relay_ratio_per_cpu` compares the two servers' efficiency whatever CPU they were left.

The hub runs on embedded defaults (its trace in SQLite, synced at every commit, in a
throw-away data directory unless `--data-dir` or `--recorder` say otherwise), with
environment overrides for a random JWT secret, logging at warning, message rate limits far
above the benchmark's rates, position_interval_s 0 and a ring timeout of 10 s. Server CPU is
read from /proc/<pid>/stat, memory from /proc/<pid>/status. The machine's cores are shared
by the servers and the clients: `client_cpu_pct` next to `server_cpu_pct` shows which side
of the relay was the bottleneck, and `others_cpu_pct` how much CPU processes outside the
benchmark took meanwhile (`contended` in the summary: figures from a busy machine).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench._clients import ClientSpec, User, idle_main, workload_main
from bench._common import (
    BenchError,
    CpuMeter,
    MachineMeter,
    ServerProcess,
    Worker,
    emit,
    free_port,
    open_fds,
    peak_rss_mb,
    percentile,
    raise_nofile_limit,
    rounded,
    rss_mb,
)
from commandcenter.config import Config

# The goals.
GOAL_CONNECTIONS: Final = 10_000
GOAL_RSS_MB: Final = 1024.0
GOAL_RING_P99_MS: Final = 20.0
GOAL_CALL_RATE: Final = 50.0
GOAL_RELAY_RATIO: Final = 0.5
# Other processes using more than this much of a core during a phase make the run contended.
CONTENDED_PCT: Final = 20.0

SUMMARY_KEYS: Final = (
    "connections",
    "rss_mb",
    "ring_p50_ms",
    "ring_p99_ms",
    "answer_p99_ms",
    "msgs_per_s",
    "baseline_msgs_per_s",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    connections: int = GOAL_CONNECTIONS
    operators_per_court: int = 8
    callers_per_court: int = 50
    idle_procs: int = 2
    rate: float = GOAL_CALL_RATE
    duration_s: float = 15.0
    hold_s: float = 0.3
    relay_duration_s: float = 5.0
    rounds: int = 3
    warmup_s: float = 1.0
    window: int = 2
    ring_timeout_s: float = 10.0
    # Empty: the server's default (SQLite in its data directory).
    recorder: str = ""
    # Empty: a temporary directory; else a fresh directory is made inside this one.
    data_dir: str = ""
    quick: bool = False


QUICK: Final = Settings(
    connections=300,
    operators_per_court=4,
    callers_per_court=10,
    idle_procs=1,
    duration_s=3.0,
    relay_duration_s=2.0,
    rounds=1,
    warmup_s=0.5,
    quick=True,
)


def parse_args(argv: Sequence[str] | None) -> Settings:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m bench.signalling",
        description="Benchmark the signalling hub; prints JSON lines, the last a summary.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small run (300 connections, 3 s of calls) for smoke tests; other flags still apply",
    )
    parser.add_argument("--connections", type=int, help=f"total connections ({d.connections})")
    parser.add_argument(
        "--operators-per-court", type=int, help=f"operators per court ({d.operators_per_court})"
    )
    parser.add_argument(
        "--callers-per-court",
        type=int,
        help=f"measured officers per court ({d.callers_per_court})",
    )
    parser.add_argument(
        "--idle-procs", type=int, help=f"processes holding idle connections ({d.idle_procs})"
    )
    parser.add_argument("--rate", type=float, help=f"calls per second ({d.rate:g})")
    parser.add_argument("--duration", type=float, help=f"seconds of calls ({d.duration_s:g})")
    parser.add_argument("--hold", type=float, help=f"seconds a call lasts ({d.hold_s:g})")
    parser.add_argument(
        "--relay-duration", type=float, help=f"seconds per relay round ({d.relay_duration_s:g})"
    )
    parser.add_argument(
        "--rounds", type=int, help=f"relay rounds, hub and baseline alternating ({d.rounds})"
    )
    parser.add_argument(
        "--recorder",
        choices=("sqlite", "memory"),
        help="the hub's recorder.backend (default: the server's own default)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="make the hub's data directory (its trace file) inside DIR (default: a temp dir)",
    )
    parser.add_argument("--warmup", type=float, help=f"relay seconds not counted ({d.warmup_s:g})")
    parser.add_argument("--window", type=int, help=f"positions in flight per officer ({d.window})")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else d
    flags = {
        "connections": args.connections,
        "operators_per_court": args.operators_per_court,
        "callers_per_court": args.callers_per_court,
        "idle_procs": args.idle_procs,
        "rate": args.rate,
        "duration_s": args.duration,
        "hold_s": args.hold,
        "relay_duration_s": args.relay_duration,
        "rounds": args.rounds,
        "recorder": args.recorder,
        "data_dir": args.data_dir,
        "warmup_s": args.warmup,
        "window": args.window,
    }
    settings = dataclasses.replace(base, **{k: v for k, v in flags.items() if v is not None})
    positive = {
        "--connections": settings.connections,
        "--operators-per-court": settings.operators_per_court,
        "--callers-per-court": settings.callers_per_court,
        "--idle-procs": settings.idle_procs,
        "--rate": settings.rate,
        "--duration": settings.duration_s,
        "--relay-duration": settings.relay_duration_s,
        "--rounds": settings.rounds,
        "--window": settings.window,
    }
    for flag, value in positive.items():
        if not value > 0:
            parser.error(f"{flag} must be positive")
    if settings.hold_s < 0 or settings.warmup_s < 0:
        parser.error("--hold and --warmup must not be negative")
    return settings


# ---- who connects -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Population:
    operators: tuple[User, ...]
    callers: tuple[User, ...]
    idle: tuple[tuple[User, ...], ...]  # one share per idle process

    @property
    def measured(self) -> tuple[User, ...]:
        return self.operators + self.callers

    def total(self) -> int:
        return len(self.measured) + sum(len(share) for share in self.idle)


def population(s: Settings, courts: Sequence[str]) -> Population:
    operators = tuple(
        User(f"op-{c}-{i}", "operator", c) for c in courts for i in range(s.operators_per_court)
    )
    callers = tuple(
        User(f"of-{c}-{i}", "officer", c) for c in courts for i in range(s.callers_per_court)
    )
    spare = s.connections - len(operators) - len(callers)
    if spare < 0:
        raise BenchError(
            f"--connections {s.connections} is fewer than the {len(operators) + len(callers)} "
            "operators and measured officers"
        )
    idle = [
        User(f"id-{courts[i % len(courts)]}-{i}", "officer", courts[i % len(courts)])
        for i in range(spare)
    ]
    shares = tuple(tuple(idle[k :: s.idle_procs]) for k in range(s.idle_procs))
    return Population(operators, callers, tuple(share for share in shares if share))


def server_env(data_dir: str, secret: str, s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env.update(
        {
            "COMMANDCENTER_SERVER_DATA_DIR": data_dir,
            "COMMANDCENTER_AUTH_JWT_SECRET": secret,
            "COMMANDCENTER_LOGGING_LEVEL": "warning",
            # Far above what any one benchmark client sends: the hub, not its limiter, is
            # what is measured.
            "COMMANDCENTER_LIMITS_MESSAGES_PER_S": "100000",
            "COMMANDCENTER_LIMITS_MESSAGE_BURST": "100000",
            "COMMANDCENTER_CALLS_RING_TIMEOUT_S": f"{s.ring_timeout_s:g}",
            # Every position fans out, so the relay phase is a relay.
            "COMMANDCENTER_PRESENCE_POSITION_INTERVAL_S": "0",
            # Every simulated client comes from 127.0.0.1: no per-address cap (its default
            # of 1000 would refuse most of a 10,000-connection run).
            "COMMANDCENTER_SERVER_MAX_CONNECTIONS_PER_ADDRESS": "0",
        }
    )
    if s.recorder:
        env["COMMANDCENTER_RECORDER_BACKEND"] = s.recorder
    return env


# ---- the run ------------------------------------------------------------------------------


def _ms(value: float) -> float | None:
    return rounded(value, 3)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


class Bench:
    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.s = settings
        self.tmp = tmp
        self.secret = secrets.token_urlsafe(36)  # 48 characters
        courts = [c.code for c in Config().courts]
        self.pop = population(settings, courts)
        self.workers: list[Worker] = []
        self.servers: list[ServerProcess] = []
        # CPU other processes took during each measured phase, % of one core.
        self.others: list[float] = []
        self.started = time.monotonic()

    def _emit(self, record: dict[str, Any]) -> None:
        emit({**record, "t_s": round(time.monotonic() - self.started, 2)})

    def _worker(self, name: str, main: Any, spec: ClientSpec) -> Worker:
        worker = Worker(name, main, spec)
        self.workers.append(worker)
        return worker

    def _stop_workers(self) -> None:
        workers, self.workers = self.workers, []
        for worker in workers:
            worker.send_stop()
        for worker in workers:
            worker.stop()

    def _pids(self) -> list[int]:
        pids = [os.getpid()]
        pids += [w.pid for w in self.workers]
        pids += [srv.pid for srv in self.servers if srv.running]
        return pids

    def _alive(self) -> None:
        for server in self.servers:
            server.check_alive()

    def run(self) -> dict[str, Any]:
        s = self.s
        self._emit(
            {
                "phase": "start",
                "settings": dataclasses.asdict(s),
                "courts": len({u.court for u in self.pop.operators}),
                "operators": len(self.pop.operators),
                "callers": len(self.pop.callers),
                "idle": sum(len(x) for x in self.pop.idle),
            }
        )
        with contextlib.ExitStack() as stack:
            hub = self._server(
                "hub",
                [sys.executable, "-m", "commandcenter", "serve", "--host", "127.0.0.1"],
                server_env(str(self.data_dir(stack)), self.secret, s),
                port_flag=True,
            )
            relay = self._server(
                "relay", [sys.executable, "-m", "bench.ws_relay"], dict(os.environ), port_flag=True
            )
            for server in (hub, relay):
                stack.enter_context(server)
                self.servers.append(server)
            # Registered last, so run first: clients leave before the servers stop.
            stack.callback(self._stop_workers)
            self._emit(
                {
                    "phase": "servers_ready",
                    "hub_pid": hub.pid,
                    "hub_rss_mb": _mb(rss_mb(hub.pid)),
                    "relay_pid": relay.pid,
                    "relay_rss_mb": _mb(rss_mb(relay.pid)),
                }
            )
            out: dict[str, Any] = {}
            hub_workers = self._connect(hub, out)
            self._calls(hub, hub_workers[0], out)
            baseline = self._worker(
                "baseline", workload_main, ClientSpec(relay.port, "relay", self.pop.measured)
            )
            connected = baseline.call("connect", 120.0, self._alive)
            if connected["failed"]:
                raise BenchError(f"baseline clients failed to connect: {connected['failures']}")
            hub_rounds: list[float] = []
            base_rounds: list[float] = []
            for r in range(1, s.rounds + 1):
                # Alternating which goes first cancels a drift in the machine's load.
                order = [("hub", hub, hub_workers[0]), ("baseline", relay, baseline)]
                if r % 2 == 0:
                    order.reverse()
                for target, server, worker in order:
                    result = self._relay_round(worker, server.pid)
                    self._emit({"phase": "relay", "target": target, "round": r, **result})
                    self.others.append(result.get("others_cpu_pct", 0.0))
                    (hub_rounds if target == "hub" else base_rounds).append(result["msgs_per_s"])
                    out.setdefault(f"{target}_cpu", []).append(result["server_cpu_pct"])
                    out.setdefault(f"{target}_per_cpu", []).append(result["msgs_per_server_cpu_s"])
            still_open = self._open_connections(hub_workers)
            out["connections_lost"] = out["connections"] - still_open
            out["peak_rss_mb"] = peak_rss_mb(hub.pid)
            out["msgs_per_s"] = _median(hub_rounds)
            out["baseline_msgs_per_s"] = _median(base_rounds)
            self._emit(
                {
                    "phase": "hub_done",
                    "connections_open": still_open,
                    "connections_lost": out["connections_lost"],
                    "rss_mb": _mb(rss_mb(hub.pid)),
                    "peak_rss_mb": _mb(out["peak_rss_mb"]),
                }
            )
        return self._summary(out)

    def data_dir(self, stack: contextlib.ExitStack) -> Path:
        if not self.s.data_dir:
            return self.tmp / "var"
        made = Path(tempfile.mkdtemp(prefix="bench-signalling-", dir=self.s.data_dir))
        stack.callback(shutil.rmtree, made, ignore_errors=True)
        return made

    def _server(
        self, name: str, argv: list[str], env: dict[str, str], *, port_flag: bool
    ) -> ServerProcess:
        port = free_port()
        return ServerProcess(
            [*argv, "--port", str(port)] if port_flag else argv,
            port=port,
            env=env,
            log_path=self.tmp / f"{name}.log",
        )

    def _connect(self, hub: ServerProcess, out: dict[str, Any]) -> list[Worker]:
        """Operators and measured officers first, then everybody else."""
        pid = hub.pid
        workload = self._worker(
            "workload", workload_main, ClientSpec(hub.port, "hub", self.pop.measured, self.secret)
        )
        cpu = CpuMeter(pid)
        machine = MachineMeter(self._pids())
        cpu.start()
        machine.start()
        started = time.monotonic()
        first = workload.call("connect", 120.0, self._alive)
        idle = [
            self._worker(f"idle{k}", idle_main, ClientSpec(hub.port, "hub", share, self.secret))
            for k, share in enumerate(self.pop.idle)
        ]
        for worker in idle:
            worker.send("connect")
        replies = [first] + [w.result(300.0, self._alive) for w in idle]
        seconds = time.monotonic() - started
        server_cpu = cpu.stop()
        machine_use = machine.stop()
        # Let the sign-in fan-out and its recording drain before the memory is read.
        time.sleep(1.0)
        workers = [workload, *idle]
        connections = self._open_connections(workers)
        out["connections"] = connections
        out["rss_mb"] = rss_mb(pid)
        self._emit(
            {
                "phase": "connected",
                "connections": connections,
                "failed": sum(r["failed"] for r in replies),
                "failures": [f for r in replies for f in r["failures"]][:5],
                "seconds": round(seconds, 2),
                "per_s": round(connections / seconds, 1) if seconds > 0 else None,
                "server_cpu_pct": server_cpu,
                **machine_use,
                "rss_mb": _mb(out["rss_mb"]),
                "kb_per_connection": round(out["rss_mb"] * 1024 / max(connections, 1), 1),
                "server_fds": open_fds(pid),
            }
        )
        return workers

    def _calls(self, hub: ServerProcess, workload: Worker, out: dict[str, Any]) -> None:
        s = self.s
        cpu = CpuMeter(hub.pid)
        machine = MachineMeter(self._pids())
        cpu.start()
        machine.start()
        calls = workload.call(
            "calls",
            s.duration_s + s.ring_timeout_s + 60.0,
            self._alive,
            rate=s.rate,
            duration_s=s.duration_s,
            hold_s=s.hold_s,
            drain_s=s.ring_timeout_s + s.hold_s + 5.0,
        )
        server_cpu = cpu.stop()
        machine_use = machine.stop()
        ring_ms: list[float] = calls.pop("ring_ms")
        answer_ms: list[float] = calls.pop("answer_ms")
        if not calls["error_samples"]:
            del calls["error_samples"]
        out["calls"] = calls
        out["ring_p50_ms"] = percentile(ring_ms, 50)
        out["ring_p99_ms"] = percentile(ring_ms, 99)
        out["answer_p99_ms"] = percentile(answer_ms, 99)
        self.others.append(machine_use.get("others_cpu_pct", 0.0))
        self._emit(
            {
                "phase": "calls",
                "rate": s.rate,
                **calls,
                "ring_p50_ms": _ms(out["ring_p50_ms"]),
                "ring_p90_ms": _ms(percentile(ring_ms, 90)),
                "ring_p99_ms": _ms(out["ring_p99_ms"]),
                "ring_max_ms": _ms(max(ring_ms, default=math.nan)),
                "answer_p50_ms": _ms(percentile(answer_ms, 50)),
                "answer_p99_ms": _ms(out["answer_p99_ms"]),
                "answer_max_ms": _ms(max(answer_ms, default=math.nan)),
                "server_cpu_pct": server_cpu,
                **machine_use,
                "rss_mb": _mb(rss_mb(hub.pid)),
            }
        )

    def _relay_round(self, workload: Worker, pid: int) -> dict[str, Any]:
        s = self.s
        reply = workload.call(
            "relay",
            s.warmup_s + s.relay_duration_s + 60.0,
            self._alive,
            duration_s=s.relay_duration_s,
            warmup_s=s.warmup_s,
            window=s.window,
            drain_s=10.0,
            server_pid=pid,
            watch_pids=self._pids(),
        )
        if not reply.get("error_samples"):
            reply.pop("error_samples", None)
        reply["rss_mb"] = _mb(rss_mb(pid))
        return reply

    def _open_connections(self, workers: list[Worker]) -> int:
        total = 0
        for worker in workers:
            status = worker.call("status", 30.0, self._alive)
            total += int(status["open"])
        return total

    def _summary(self, out: dict[str, Any]) -> dict[str, Any]:
        s = self.s
        connections = int(out["connections"])
        rss = float(out["rss_mb"])
        ring_p99 = float(out["ring_p99_ms"])
        calls = out["calls"]
        msgs = float(out["msgs_per_s"])
        base = float(out["baseline_msgs_per_s"])
        ratio = msgs / base if base > 0 else math.nan
        per_cpu = _median(out["hub_per_cpu"])
        base_per_cpu = _median(out["baseline_per_cpu"])
        goals = {
            "connections": {
                "goal": f">= {GOAL_CONNECTIONS} connections in one process, rss_mb < "
                f"{GOAL_RSS_MB:g}",
                "pass": connections >= GOAL_CONNECTIONS
                and rss < GOAL_RSS_MB
                and out["connections_lost"] == 0,
            },
            "ring_p99": {
                "goal": f"ring_p99_ms < {GOAL_RING_P99_MS:g} at >= {GOAL_CALL_RATE:g} calls/s",
                "pass": s.rate >= GOAL_CALL_RATE
                and ring_p99 < GOAL_RING_P99_MS
                and calls["rang"] == calls["placed"] > 0,
            },
            "relay": {
                "goal": f"msgs_per_s >= {GOAL_RELAY_RATIO:g} x baseline_msgs_per_s",
                "pass": ratio >= GOAL_RELAY_RATIO,
            },
        }
        return {
            "phase": "summary",
            "quick": s.quick,
            "connections": connections,
            "rss_mb": _mb(rss),
            "peak_rss_mb": _mb(out["peak_rss_mb"]),
            "ring_p50_ms": _ms(out["ring_p50_ms"]),
            "ring_p99_ms": _ms(ring_p99),
            "answer_p99_ms": _ms(out["answer_p99_ms"]),
            "msgs_per_s": msgs,
            "baseline_msgs_per_s": base,
            "relay_ratio": rounded(ratio, 3),
            "msgs_per_server_cpu_s": per_cpu,
            "baseline_msgs_per_server_cpu_s": base_per_cpu,
            # The same comparison per CPU second each server used: what the ratio would be
            # with a core to itself, and the fairer one on a contended machine.
            "relay_ratio_per_cpu": rounded(per_cpu / base_per_cpu, 3) if base_per_cpu else None,
            "call_rate": s.rate,
            "calls": calls["placed"],
            "calls_queued": calls["queued"],
            "calls_unanswered": calls["placed"] - calls["answered"],
            "hub_cpu_pct_relay": _median(out["hub_cpu"]),
            "baseline_cpu_pct": _median(out["baseline_cpu"]),
            "goals": goals,
            "pass": all(g["pass"] for g in goals.values()),
            # Other processes on the machine while measuring: figures taken with more than
            # CONTENDED_PCT of a core used elsewhere are not this server's alone.
            "others_cpu_pct_max": max(self.others, default=0.0),
            "contended": max(self.others, default=0.0) > CONTENDED_PCT,
            "seconds": round(time.monotonic() - self.started, 1),
        }


def _mb(value: float) -> float:
    return round(value, 1)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    raise_nofile_limit()
    with tempfile.TemporaryDirectory(prefix="bench-signalling-") as tmp:
        try:
            summary = Bench(settings, Path(tmp)).run()
        except BenchError as exc:
            emit({"phase": "error", "error": str(exc)})
            return 1
    emit(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
