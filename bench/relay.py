"""Media relay benchmark: `python -m bench.relay [--quick] [options]`.

One publisher sends synthetic 640x480@30 VP8 (about 1 Mbit/s, 110 packets/s; encoded once,
then looped as packets: see bench/_media.py) to N subscribers, N = 1, 2, 4, 8, 16, 32, through
each target in turn:

- `commandcenter`: our server (`python -m commandcenter serve` on embedded defaults, a fresh
  data directory, media as configured by default, ICE on the test address). The officer
  calls the center and publishes; the operator accepts and subscribes; supervisors join the
  call (`join_call`) and subscribe.
- `mediarelay`: aiortc's MediaRelay (bench/media_baseline.py), which decodes the publisher's
  video once and encodes it once per subscriber. It saturates this machine's two cores long
  before N = 32, so it is measured up to `--relay-max-n` (8) only.
- `janus`: Janus's VideoRoom (Debian package `janus` 1.1.2, installed with apt-get when
  missing) over its HTTP API, with its default of one thread per handle; `janus_loops2` the
  same with `event_loops = 2`.

Subscribers live in processes of their own (up to 8 per process) and count the video frames
they receive without decoding them. N grows by adding subscribers to the same call or room;
after all of them receive video, `--warmup` s pass, then over `--seconds` s of steady state
the benchmark reads the server's CPU time (utime + stime of all its threads, from
/proc/<pid>/stat), the frames each subscriber received (`fps_min`, `fps_mean`) and the
server's RSS. One JSON line per target and N (`cpu_s_per_s`: cores the server used;
`cpu_ms_per_frame`: its CPU per frame delivered, comparable where a server saturates;
`client_cpu_s_per_s` and `others_cpu_pct`: what the clients and the rest of the machine
took meanwhile). The last line is the summary, with the least-squares slope of server CPU
over N for each target (`cpu_per_subscriber` is ours) and the issue's goals:
`cpu_per_subscriber` at most 0.004 core and below Janus's in the same run, every subscriber
at 29 fps or more at N = 16. A default run takes about 5 minutes.

Janus never gathers ICE candidates on loopback interfaces, so the benchmark re-executes
itself in a network namespace of its own (`unshare --net`, in a PID namespace so that every
server dies with it), with `lo` up and a veth pair carrying 10.99.0.1/24 (servers) and
10.99.0.2/24 (clients). Every target runs there, so all are measured alike, and nothing
leaves the namespace: HTTP and WebSocket on 127.0.0.1, media between the two test
addresses. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from bench._common import (
    BenchError,
    MachineMeter,
    ServerProcess,
    Worker,
    cpu_seconds,
    emit,
    family_cpu_seconds,
    free_port,
    raise_nofile_limit,
    rounded,
    rss_mb,
    with_children,
)
from bench._media import SUBSCRIBERS_PER_PROCESS, ClientProcess, TargetKind, TargetSpec
from bench._netns import CLIENT_ADDRESS, SERVER_ADDRESS, enter_namespace
from bench.janus import janus_server

TARGETS: Final = ("commandcenter", "mediarelay", "janus", "janus_loops2")
QUICK_TARGETS: Final = ("commandcenter", "mediarelay", "janus")
SIZES: Final = (1, 2, 4, 8, 16, 32)
QUICK_SIZES: Final = (1, 2)
GOAL_CPU_PER_SUBSCRIBER: Final = 0.004
GOAL_FPS: Final = 29.0
GOAL_FPS_N: Final = 16
# Other processes using more than this much of a core during a window make the run contended.
CONTENDED_PCT: Final = 20.0

SUMMARY_KEYS: Final = (
    "cpu_per_subscriber",
    "fps_min_n16",
    "relay_cpu_per_subscriber",
    "janus_cpu_per_subscriber",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = SIZES
    seconds: float = 8.0
    warmup_s: float = 1.5
    targets: tuple[str, ...] = TARGETS
    relay_max_n: int = 8
    join_timeout_s: float = 30.0
    quick: bool = False


QUICK: Final = Settings(sizes=QUICK_SIZES, seconds=2.0, warmup_s=0.5, targets=QUICK_TARGETS)


def parse_args(argv: Sequence[str] | None) -> Settings:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m bench.relay",
        description="Benchmark the media relay against aiortc's MediaRelay and Janus; "
        "prints JSON lines, the last a summary.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="N = 1, 2 for 2 s each against commandcenter, mediarelay and janus (smoke test)",
    )
    add_run_options(parser, d.sizes, d.seconds, d.warmup_s, TARGETS, "subscriber")
    parser.add_argument(
        "--relay-max-n",
        type=int,
        help=f"largest N for mediarelay, which saturates the CPU ({d.relay_max_n})",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else d
    changes = run_option_changes(parser, args, TARGETS)
    if args.relay_max_n is not None:
        changes["relay_max_n"] = args.relay_max_n
    return dataclasses.replace(base, **changes)


def add_run_options(
    parser: argparse.ArgumentParser,
    sizes: Sequence[int],
    seconds: float,
    warmup_s: float,
    targets: Sequence[str],
    what: str,
) -> None:
    """The options a media benchmark shares with this one (after `--quick`): `--sizes` (of
    `what`), `--seconds`, `--warmup`, `--targets`; the defaults are for the help."""
    parser.add_argument(
        "--sizes", help=f"comma-separated {what} counts ({','.join(map(str, sizes))})"
    )
    parser.add_argument("--seconds", type=float, help=f"measured seconds per N ({seconds:g})")
    parser.add_argument(
        "--warmup", type=float, help=f"seconds after all receive, not measured ({warmup_s:g})"
    )
    parser.add_argument("--targets", help=f"comma-separated, of {','.join(targets)} (all)")


def run_option_changes(
    parser: argparse.ArgumentParser, args: argparse.Namespace, targets: Sequence[str]
) -> dict[str, Any]:
    """The settings `add_run_options`' options (and `--quick`) change, checked."""
    changes: dict[str, Any] = {"quick": args.quick}
    if args.sizes:
        sizes = tuple(sorted({int(x) for x in args.sizes.split(",") if x.strip()}))
        if not sizes or sizes[0] < 1:
            parser.error("--sizes: positive integers")
        changes["sizes"] = sizes
    if args.targets:
        chosen = tuple(t.strip() for t in args.targets.split(",") if t.strip())
        unknown = sorted(set(chosen) - set(targets))
        if unknown or not chosen:
            parser.error(f"--targets: unknown {unknown}; choose from {', '.join(targets)}")
        changes["targets"] = chosen
    if args.seconds is not None:
        changes["seconds"] = args.seconds
    if args.warmup is not None:
        changes["warmup_s"] = args.warmup
    return changes


def progress(message: str) -> None:
    print(f"[bench.relay] {message}", file=sys.stderr, flush=True)


# ---- one target ---------------------------------------------------------------------------


def _kind(target: str) -> TargetKind:
    if target == "commandcenter":
        return "commandcenter"
    if target == "mediarelay":
        return "mediarelay"
    return "janus"


# Settings a run may choose from its environment: which fan-out forwards (media.fanout, "c" or
# "python"), to compare the two.
PASSED_SETTINGS: Final = frozenset({"COMMANDCENTER_MEDIA_FANOUT"})


def _server(target: str, workdir: Path, secret: str) -> ServerProcess:
    port = free_port()
    log = workdir / f"{target}.log"
    if target == "commandcenter":
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("COMMANDCENTER_") or k in PASSED_SETTINGS
        }
        data_dir = workdir / "commandcenter-data"
        data_dir.mkdir(exist_ok=True)
        env.update(
            {
                "COMMANDCENTER_SERVER_DATA_DIR": str(data_dir),
                "COMMANDCENTER_AUTH_JWT_SECRET": secret,
                "COMMANDCENTER_LOGGING_LEVEL": "warning",
                "COMMANDCENTER_MEDIA_ICE_ADDRESSES": SERVER_ADDRESS,
            }
        )
        argv = [sys.executable, "-m", "commandcenter", "serve", "--host", "127.0.0.1"]
        return ServerProcess([*argv, "--port", str(port)], port=port, env=env, log_path=log)
    if target == "mediarelay":
        argv = [sys.executable, "-m", "bench.media_baseline", "--port", str(port)]
        argv += ["--ice-address", SERVER_ADDRESS]
        return ServerProcess(argv, port=port, env=dict(os.environ), log_path=log)
    loops = 2 if target == "janus_loops2" else 0
    return janus_server(workdir, http_port=port, ice_address=SERVER_ADDRESS, event_loops=loops)


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


class TargetRun:
    """One target's server, publisher and subscriber processes, grown N by N."""

    def __init__(self, target: str, settings: Settings, workdir: Path) -> None:
        self.target = target
        self.settings = settings
        self.workdir = workdir
        self.secret = secrets.token_urlsafe(32)
        self.server = _server(target, workdir, self.secret)
        self.spec: TargetSpec | None = None
        self.publisher: Worker | None = None
        self.workers: list[Worker] = []
        self.published: dict[str, Any] = {}
        self.subscribers = 0
        self.clip_kbit_s = 0
        # The workers' replies to the last `counts`, for counters beyond the frames.
        self.count_replies: list[dict[str, Any]] = []

    def start(self) -> None:
        self.server.start()
        self.spec = TargetSpec(
            kind=_kind(self.target),
            port=self.server.port,
            ice_address=CLIENT_ADDRESS,
            secret=self.secret,
        )
        self.publisher = ClientProcess(f"{self.target}-publisher", self.spec, counting=False)
        if self.spec.kind == "commandcenter":
            # The operator is signed in before the officer calls, answers, and subscribes.
            self._worker(0).call(
                "subscribe", 30.0, self.server.check_alive, indexes=[0], published=None
            )
            self.subscribers = 1
        reply = self.publisher.call("publish", 90.0, self.server.check_alive)
        self.published = reply["published"]
        self.clip_kbit_s = reply["clip_kbit_s"]

    def new_worker(self, name: str) -> Worker:
        """A process for subscribers (bench.conference's sites are other processes)."""
        assert self.spec is not None
        return ClientProcess(name, self.spec, counting=True)

    def _worker(self, index: int) -> Worker:
        while len(self.workers) <= index:
            name = f"{self.target}-subscribers-{len(self.workers)}"
            self.workers.append(self.new_worker(name))
        return self.workers[index]

    def grow(self, n: int) -> None:
        """Add subscribers up to `n` (each process holds up to SUBSCRIBERS_PER_PROCESS)."""
        by_worker: dict[int, list[int]] = {}
        for index in range(self.subscribers, n):
            by_worker.setdefault(index // SUBSCRIBERS_PER_PROCESS, []).append(index)
        # All processes negotiate at once; then every reply is collected.
        for w, indexes in by_worker.items():
            self._worker(w).send("subscribe", indexes=indexes, published=self.published)
        for w in by_worker:
            self._worker(w).result(90.0, self.server.check_alive)
        self.subscribers = max(self.subscribers, n)

    def counts(self) -> tuple[dict[str, tuple[float, int]], list[str]]:
        """Per subscriber, (when its process read the count, frames received so far); and
        the clients' errors."""
        for worker in self.workers:
            worker.send("counts")
        frames: dict[str, tuple[float, int]] = {}
        errors: list[str] = []
        self.count_replies = [w.result(30.0, self.server.check_alive) for w in self.workers]
        for reply in self.count_replies:
            frames.update({k: (reply["t"], v) for k, v in reply["frames"].items()})
            errors += reply["errors"]
        return frames, errors

    def wait_receiving(self) -> float:
        """Wait until every subscriber has received video; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + self.settings.join_timeout_s
        while True:
            frames, errors = self.counts()
            now = time.monotonic()
            silent = sorted((k for k, (_, v) in frames.items() if v == 0), key=int)
            if len(frames) == self.subscribers and not silent:
                return now - started
            if now > deadline:
                raise BenchError(
                    f"{self.target}: subscribers {silent} received no video within "
                    f"{self.settings.join_timeout_s:g} s; client errors: {errors[:5]}; "
                    f"server log: {self.server.log_tail(1500)}"
                )
            time.sleep(0.1)

    def client_pids(self) -> list[int]:
        procs = [*self.workers, *([self.publisher] if self.publisher else [])]
        return [p.pid for p in procs]

    def measure(self, n: int, join_s: float) -> dict[str, Any]:
        time.sleep(self.settings.warmup_s)
        pid = self.server.pid
        clients = self.client_pids()
        machine = MachineMeter([*with_children(pid), *clients])
        machine.start()
        # With its media worker processes (the call or conference runs on one of them).
        cpu0, t0 = family_cpu_seconds(pid), time.monotonic()
        client0 = sum(_cpu_or_zero(p) for p in clients)
        frames0, _ = self.counts()
        time.sleep(self.settings.seconds)
        frames1, errors = self.counts()
        cpu1, t1 = family_cpu_seconds(pid), time.monotonic()
        client1 = sum(_cpu_or_zero(p) for p in clients)
        use = machine.stop()
        wall = t1 - t0
        fps = [
            (count - frames0[k][1]) / (t - frames0[k][0])
            for k, (t, count) in frames1.items()
            if k in frames0
        ]
        delivered = sum(fps)
        assert self.publisher is not None
        pub = self.publisher.call("stats", 30.0, self.server.check_alive)
        return {
            "phase": "size",
            "target": self.target,
            "n": n,
            "cpu_s_per_s": round((cpu1 - cpu0) / wall, 4),
            "cpu_per_subscriber_avg": round((cpu1 - cpu0) / wall / n, 5),
            "fps_min": rounded(min(fps), 2),
            "fps_mean": rounded(delivered / len(fps), 2),
            # Server CPU per frame delivered to a subscriber: comparable even where a server
            # saturates and delivers fewer frames than asked.
            "cpu_ms_per_frame": rounded(1000.0 * (cpu1 - cpu0) / wall / delivered, 4)
            if delivered > 0
            else None,
            "rss_mb": round(sum(rss_mb(p) for p in with_children(pid)), 1),
            "threads": _threads(pid),
            "join_s": round(join_s, 2),
            "window_s": round(wall, 2),
            "client_cpu_s_per_s": round((client1 - client0) / wall, 3),
            "clip_kbit_s": self.clip_kbit_s,
            "keyframe_requests": pub["keyframe_requests"],
            "client_errors": (errors + pub["errors"])[:5],
            **use,
        }

    def stop(self) -> None:
        for proc in [*self.workers, *([self.publisher] if self.publisher else [])]:
            with contextlib.suppress(Exception):
                proc.stop()
        self.server.stop()


def _cpu_or_zero(pid: int) -> float:
    with contextlib.suppress(OSError):
        return cpu_seconds(pid)
    return 0.0


def sizes_for(target: str, settings: Settings) -> tuple[int, ...]:
    if target == "mediarelay":
        return tuple(n for n in settings.sizes if n <= settings.relay_max_n)
    return settings.sizes


def run_target(target: str, settings: Settings, workdir: Path) -> Iterator[dict[str, Any]]:
    """One JSON line per N for `target`."""
    run = TargetRun(target, settings, workdir)
    try:
        progress(f"{target}: starting the server and the publisher")
        run.start()
        for n in sizes_for(target, settings):
            progress(f"{target}: N = {n}: joining")
            run.grow(n)
            join_s = run.wait_receiving()
            progress(f"{target}: N = {n}: all receive after {join_s:.1f} s; measuring")
            yield run.measure(n, join_s)
    finally:
        run.stop()


# ---- the summary ----------------------------------------------------------------------------


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx


def summarize(lines: Sequence[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    def slope_of(target: str) -> float | None:
        value = slope([(ln["n"], ln["cpu_s_per_s"]) for ln in lines if ln["target"] == target])
        return None if value is None else round(value, 5)

    ours = slope_of("commandcenter")
    janus = slope_of("janus")
    at16 = [ln for ln in lines if ln["target"] == "commandcenter" and ln["n"] == GOAL_FPS_N]
    fps16 = at16[0]["fps_min"] if at16 else None
    cpu_pass = ours is not None and ours <= GOAL_CPU_PER_SUBSCRIBER
    cpu_pass = cpu_pass and janus is not None and ours is not None and ours < janus
    fps_pass = fps16 is not None and fps16 >= GOAL_FPS
    relay_sizes = sizes_for("mediarelay", settings) if "mediarelay" in settings.targets else ()
    others = max((ln.get("others_cpu_pct", 0.0) for ln in lines), default=0.0)
    return {
        "phase": "summary",
        "cpu_per_subscriber": ours,
        "fps_min_n16": fps16,
        "relay_cpu_per_subscriber": slope_of("mediarelay"),
        "janus_cpu_per_subscriber": janus,
        "janus_loops2_cpu_per_subscriber": slope_of("janus_loops2"),
        "sizes": list(settings.sizes),
        "relay_sizes": list(relay_sizes),
        "relay_note": (
            f"mediarelay measured up to N = {settings.relay_max_n} only: it decodes once and "
            "encodes once per subscriber, and saturates the machine's cores beyond that"
        ),
        "goals": {
            "cpu_per_subscriber": {
                "goal": f"<= {GOAL_CPU_PER_SUBSCRIBER} and < janus_cpu_per_subscriber",
                "pass": cpu_pass,
            },
            "fps_n16": {
                "goal": f"every subscriber >= {GOAL_FPS:g} fps at N = 16",
                "pass": fps_pass,
            },
        },
        "pass": cpu_pass and fps_pass,
        # The most CPU other processes took during a window, % of one core: figures from a
        # busy machine are noisier and favour no target.
        "max_others_cpu_pct": others,
        "contended": others > CONTENDED_PCT,
    }


def emit_lines(target: str, run: Iterator[dict[str, Any]], kept: list[dict[str, Any]]) -> bool:
    """Print `target`'s lines as they come (without the keys starting with `_`) and keep
    them in `kept`; False, with an error line, if the run failed."""
    try:
        for line in run:
            emit({k: v for k, v in line.items() if not k.startswith("_")})
            kept.append(line)
    except BenchError as exc:
        progress(f"{target}: FAILED: {exc}")
        emit({"phase": "error", "target": target, "error": str(exc)[-3000:]})
        return False
    return True


# ---- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    settings = parse_args(args)
    enter_namespace("bench.relay", args, janus=any(t.startswith("janus") for t in settings.targets))
    raise_nofile_limit()
    emit(
        {
            "phase": "start",
            "targets": list(settings.targets),
            "sizes": list(settings.sizes),
            "seconds": settings.seconds,
            "warmup_s": settings.warmup_s,
            "subscribers_per_process": SUBSCRIBERS_PER_PROCESS,
            "addresses": {"servers": SERVER_ADDRESS, "clients": CLIENT_ADDRESS},
            "cores": os.cpu_count(),
        }
    )
    lines: list[dict[str, Any]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        for target in settings.targets:
            if not emit_lines(target, run_target(target, settings, Path(tmp)), lines):
                failed = True
    emit(summarize(lines, settings))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
