"""A conference of hundreds of sites on this machine: `python -m bench.conference --sites 300`
(`make bench-conference-300`; issue 13's headline benchmark; docs/media.md, *300 sites*).

One conference in floor mode on our server with its defaults (`media.workers = "auto"`: two
media workers here, the sites spread over them as the server spreads them): a moderator
(publishing nothing) and one speaker publishing bench._media's 640x480@30 VP8 clip (about
1 Mbit/s, 110 packets/s) and Opus (50 packets/s), granted the floor, so that every site gets
one video (the spotlight) and one audio stream. Of the `--sites` sites:

- `--real` (32) are aiortc clients (bench._sites: 8 per process) that join through the hub as
  any site does and count frames without decoding them: `fps_min`, first frames, recovery.
- the others are pre-keyed SRTP sinks (media.sink; bench._sinks): the server is started with
  the bench-only `media.bench_sink_socket`, through which this benchmark adds each sink to the
  conference with an address on the clients' side and an SRTP key of its own. The pool places
  sinks over the workers serving the conference in turn, and the workers fill their slots
  as a real site's: the same Subscriptions, switched by the same stage, carried by the same C
  fan-out (renumber, protect with the sink's own libsrtp session, `sendto` from a socket of
  its own). Only the keying differs (no ICE, no DTLS), so a sink has no RTCP: it sends no
  NACKs or receiver reports, and is sent no sender reports. That per-connection cost is
  in the real clients' share of the same run.

Phases, in one run:

1. *Join storm*: the `--sites` sites join within `--storm` s (30), real joins spread evenly
   among the sinks' (each real join goes through the hub and its join pace, each sink is
   added over the socket). Per site, join to first frame (a real site's first counted
   frame; a sink's first video packet, which the server sends from a keyframe's start only):
   `join_storm_first_frame_p95_ms`. The speaker's client notes every keyframe request (PLI
   or FIR) it receives: `publisher_pli_per_s_max` is the most within any 1-second window of
   the storm (from the first join to `STORM_TAIL_S` after the last). The server's roll-in asks
   the speaker for a keyframe every `ROLLIN_KEYFRAME_S` (1.5 s; its default, 2.5 s, makes a
   joiner wait up to 2.5 s) and holds the joiners' own requests for it.
2. *Steady state* at each of `--slope-sizes` sites (300, 200, 100: sinks removed between
   them): after `--warmup` s, over `--seconds` s, the CPU (user + system, /proc) of the server
   and its worker processes (`server_cpu_cores`), every real client's fps, and each sink's
   delivery: packets received over the advance of the RTP sequence numbers sent to it (the
   server numbers without gaps) (`delivery_min`: the worst sink's); `delivery_vs_sent` is
   the sinks' packets received over those the server's counters say it sent them, all sinks
   together. `cpu_per_subscriber` is the least-squares slope of the server's CPU over the
   sites at those sizes: cores per added site, which gets one video AND one audio stream.
3. *Worker kill*: SIGKILL the media worker that does not hold the speaker (it holds sites,
   real ones among them); `worker_kill_recovery_s` is from the kill to the last of its real
   sites' first frame on the new peer connection it offers on `media_restart`.
4. *Janus*: Janus's VideoRoom (`janus_loops2`: `event_loops = 2`, the tuned setting) with one
   publisher (the same clip, video only) and real aiortc subscribers at `--janus-sizes`
   (16, 32, 64), as bench.relay measures it: `janus_cpu_per_subscriber` is the slope of its
   CPU over the subscribers. Janus has no pre-keyed input and 300 aiortc receivers do not
   fit this machine next to it, so its figure is per real video subscriber, ours per sink
   site with video and audio.

The last line is the summary, with each target's pass or fail: 300 sites at <= 0.6 core of
server CPU, every real client >= 29 fps, delivery >= 0.995, cpu_per_subscriber <= 0.0013 and
below Janus's, at most one keyframe request per second at the publisher during the storm,
first frame p95 < 2 s. `contended` says whether other processes took more than 20 % of a core
during a measured window (the machine is shared: figures then are noisier). `--quick` (12
sites, 2 real, a 3-second storm, Janus at 1 and 2 subscribers) takes under a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench._common import (
    BenchError,
    MachineMeter,
    Reply,
    Worker,
    cpu_seconds,
    emit,
    family_cpu_seconds,
    percentile,
    raise_nofile_limit,
    rounded,
    rss_mb,
    with_children,
)
from bench._media import SUBSCRIBERS_PER_PROCESS, TargetSpec
from bench._netns import CLIENT_ADDRESS, SERVER_ADDRESS, enter_namespace
from bench._sinks import SinkProcess
from bench._sites import SPEAKER, ChairProcess, SitesProcess, site_user
from bench.relay import CONTENDED_PCT, GOAL_FPS, _server, run_target, slope
from bench.relay import Settings as RelaySettings

JANUS_TARGET: Final = "janus_loops2"
GOAL_SERVER_CPU: Final = 0.6
GOAL_DELIVERY: Final = 0.995
GOAL_CPU_PER_SUBSCRIBER: Final = 0.0013
GOAL_PLI_PER_S: Final = 1
GOAL_FIRST_FRAME_P95_MS: Final = 2000.0
# Joins whose first frame comes this long after the storm's last join still count for it.
STORM_TAIL_S: Final = 3.0
# The server's sink socket, under the run's directory.
SINK_SOCKET: Final = "sinks.sock"
# The roll-in's keyframe period (media.conference_rollin_keyframe_s, default 2.5 s): a joiner
# waits up to one period for its first picture, so a p95 under 2 s needs a shorter one; 1.5 s
# is still at most one request a second at the publisher.
ROLLIN_KEYFRAME_S: Final = 1.5
SERVER_SETTINGS: Final = {
    "COMMANDCENTER_MEDIA_CONFERENCE_ROLLIN_KEYFRAME_S": str(ROLLIN_KEYFRAME_S)
}

SUMMARY_KEYS: Final = (
    "sites",
    "real_clients",
    "server_processes",
    "server_cpu_cores",
    "cpu_per_subscriber",
    "janus_cpu_per_subscriber",
    "fps_min",
    "delivery_min",
    "join_storm_first_frame_p95_ms",
    "publisher_pli_per_s_max",
    "worker_kill_recovery_s",
    "contended",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    sites: int = 300
    real: int = 32
    slope_sizes: tuple[int, ...] = (100, 200, 300)
    storm_s: float = 30.0
    seconds: float = 10.0
    warmup_s: float = 3.0
    janus_sizes: tuple[int, ...] = (16, 32, 64)
    janus: bool = True
    kill: bool = True
    join_timeout_s: float = 60.0
    quick: bool = False


QUICK: Final = Settings(
    sites=12,
    real=2,
    slope_sizes=(4, 8, 12),
    storm_s=3.0,
    seconds=2.0,
    warmup_s=1.0,
    janus_sizes=(1, 2),
    join_timeout_s=30.0,
    quick=True,
)


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(x) for x in text.split(",") if x.strip()}))


def parse_args(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m bench.conference --sites N",
        description="One conference of N sites (real aiortc clients and pre-keyed SRTP "
        "sinks) on our server, and Janus's per-subscriber cost; JSON lines, the last a "
        "summary.",
    )
    parser.add_argument("--sites", type=int, required=True, help="sites in the conference")
    parser.add_argument("--quick", action="store_true", help="a small run, under a minute")
    parser.add_argument("--real", type=int, help="real aiortc sites among them (32)")
    parser.add_argument("--slope-sizes", help="site counts measured (N/3, 2N/3, N)")
    parser.add_argument("--storm", type=float, help="seconds the joins are spread over (30)")
    parser.add_argument("--seconds", type=float, help="measured seconds per size (10)")
    parser.add_argument("--warmup", type=float, help="seconds before each measurement (3)")
    parser.add_argument("--janus-sizes", help="Janus subscriber counts (16,32,64)")
    parser.add_argument("--no-janus", action="store_true", help="skip Janus")
    parser.add_argument("--no-kill", action="store_true", help="skip the worker kill")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else Settings()
    sites = args.sites
    real = args.real if args.real is not None else min(base.real, sites)
    changes: dict[str, Any] = {"sites": sites, "real": real}
    if sites < 2 or not 1 <= real <= sites:
        parser.error("--sites: at least 2; --real: from 1 to --sites")
    sizes = (
        _sizes(args.slope_sizes)
        if args.slope_sizes
        else tuple(sorted({max(real, round(sites * k / 3)) for k in (1, 2, 3)}))
    )
    if not sizes or sizes[-1] != sites or sizes[0] < real or len(sizes) < 2:
        parser.error("--slope-sizes: at least two, from --real up to --sites, ending at it")
    changes["slope_sizes"] = sizes
    for option, key in (("storm", "storm_s"), ("seconds", "seconds"), ("warmup", "warmup_s")):
        value = getattr(args, option)
        if value is not None:
            if value <= 0:
                parser.error(f"--{option}: positive")
            changes[key] = value
    if args.janus_sizes:
        changes["janus_sizes"] = _sizes(args.janus_sizes)
        if len(changes["janus_sizes"]) < 2 or changes["janus_sizes"][0] < 1:
            parser.error("--janus-sizes: at least two positive counts")
    changes["janus"] = not args.no_janus
    changes["kill"] = not args.no_kill
    return dataclasses.replace(base, **changes)


def progress(message: str) -> None:
    print(f"[bench.conference] {message}", file=sys.stderr, flush=True)


def sink_name(index: int) -> str:
    return f"sink-{index}"


def storm_order(sites: int, real: int) -> list[bool]:
    """Which of `sites` joins, in order, are real ones (True): spread evenly among the
    sinks', the first join real."""
    due = {math.floor(k * sites / real) for k in range(real)}
    return [i in due for i in range(sites)]


def max_in_window(times: Sequence[float], start: float, end: float, width: float = 1.0) -> int:
    """The most of `times` within `[start, end]` that fall in any `width`-long window."""
    inside = sorted(t for t in times if start <= t <= end)
    most = 0
    first = 0
    for last, t in enumerate(inside):
        while t - inside[first] >= width:
            first += 1
        most = max(most, last - first + 1)
    return most


class SinkSocket:
    """The server's bench-only sink socket (media.sink_control), one request at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._buffer = b""

    def request(self, message: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(timeout_s)
            self._sock.connect(str(self.path))
        self._sock.sendall(json.dumps(message).encode() + b"\n")
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise BenchError("the server closed its sink socket")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise BenchError(f"sink request {message['type']} refused: {answer.get('error')}")
        return answer

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class LargeRun:
    """Our server, the chair (moderator and speaker), the real sites' processes and the
    sinks' process, for one run."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.secret = secrets.token_urlsafe(32)
        self.server = _server("commandcenter", workdir, self.secret)
        self.sink_path = workdir / SINK_SOCKET
        self.server.env["COMMANDCENTER_MEDIA_BENCH_SINK_SOCKET"] = str(self.sink_path)
        self.server.env.update(SERVER_SETTINGS)
        self.control = SinkSocket(self.sink_path)
        self.spec: TargetSpec | None = None
        self.chair: ChairProcess | None = None
        self.site_procs: list[SitesProcess] = []
        self.sinks: SinkProcess | None = None
        self.published: dict[str, Any] = {}
        self.conference_id = ""
        # Sinks opened (name -> port and key), added (name -> when), in the conference now.
        self.opened: dict[str, dict[str, Any]] = {}
        self.added_at: dict[str, float] = {}
        self.present: list[str] = []

    # ---- processes ----------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        self.spec = TargetSpec(
            kind="commandcenter",
            port=self.server.port,
            ice_address=CLIENT_ADDRESS,
            secret=self.secret,
        )
        self.chair = ChairProcess("conference-chair", self.spec)
        reply = self.chair.call("publish", 90.0, self.server.check_alive, sites=self.settings.real)
        self.published = reply["published"]
        self.conference_id = self.published["conference_id"]
        self.sinks = SinkProcess("conference-sinks", CLIENT_ADDRESS)
        names = [sink_name(i) for i in range(self.settings.sites - self.settings.real)]
        self.opened = self.sinks.call("open", 60.0, names=names)["opened"]
        processes = math.ceil(self.settings.real / SUBSCRIBERS_PER_PROCESS)
        self.site_procs = [
            SitesProcess(f"conference-sites-{i}", self.spec) for i in range(processes)
        ]

    def pids(self) -> list[int]:
        procs: list[Worker] = [*self.site_procs]
        procs += [p for p in (self.chair, self.sinks) if p is not None]
        return [p.pid for p in procs]

    def bench_pids(self) -> dict[str, int]:
        pids = {f"real_sites_{i}": p.pid for i, p in enumerate(self.site_procs)}
        if self.sinks is not None:
            pids["sinks"] = self.sinks.pid
        if self.chair is not None:
            pids["chair"] = self.chair.pid
        return pids

    def stop(self) -> None:
        self.control.close()
        procs: list[Worker] = [*self.site_procs]
        procs += [p for p in (self.chair, self.sinks) if p is not None]
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.stop()
        self.server.stop()

    # ---- the sites ----------------------------------------------------------------------

    def join_real(self, indexes: Sequence[int]) -> None:
        by_proc: dict[int, list[int]] = {}
        for i in indexes:
            by_proc.setdefault(i % len(self.site_procs), []).append(i)
        for p, batch in by_proc.items():
            self.site_procs[p].call(
                "join", 30.0, self.server.check_alive, indexes=batch, published=self.published
            )

    def add_sinks(self, names: Sequence[str]) -> None:
        sinks = [
            {"name": n, "host": CLIENT_ADDRESS, "port": self.opened[n]["port"]}
            | {"key": self.opened[n]["key"]}
            for n in names
        ]
        now = time.monotonic()
        self.control.request({"type": "add", "conference_id": self.conference_id, "sinks": sinks})
        for n in names:
            self.added_at[n] = now
        self.present += names

    def remove_sinks(self, count: int) -> None:
        gone, self.present = self.present[-count:], self.present[:-count]
        self.control.request({"type": "remove", "conference_id": self.conference_id, "names": gone})

    def site_counts(self) -> list[Reply]:
        for proc in self.site_procs:
            proc.send("counts")
        return [proc.result(30.0, self.server.check_alive) for proc in self.site_procs]

    def sink_counts(self) -> Reply:
        assert self.sinks is not None
        return self.sinks.call("counts", 30.0, self.server.check_alive)

    def sink_status(self) -> tuple[Reply, dict[str, Any], dict[str, float]]:
        """The sinks' counts, the server's status, and what each sink had received when
        the server said what it had sent it (the mean of two readings around it)."""
        before = self.sink_counts()
        status = self.status()
        after = self.sink_counts()
        around = {
            name: (before["sinks"][name]["received"] + c["received"]) / 2
            for name, c in after["sinks"].items()
        }
        return before, status, around

    def status(self) -> dict[str, Any]:
        return self.control.request({"type": "status", "conference_id": self.conference_id})

    def chair_stats(self) -> Reply:
        assert self.chair is not None
        return self.chair.call("stats", 30.0, self.server.check_alive)

    # ---- phases -------------------------------------------------------------------------

    def storm(self) -> dict[str, Any]:
        """Every site joins within `storm_s`; then wait until each receives video."""
        s = self.settings
        order = storm_order(s.sites, s.real)
        step = s.storm_s / s.sites
        real_next, sink_next = 0, 0
        started = time.monotonic()
        i = 0
        while i < len(order):
            now = time.monotonic()
            due = min(len(order), int((now - started) / step) + 1)
            real_batch: list[int] = []
            sink_batch: list[str] = []
            for j in range(i, due):
                if order[j]:
                    real_batch.append(real_next)
                    real_next += 1
                else:
                    sink_batch.append(sink_name(sink_next))
                    sink_next += 1
            i = due
            if real_batch:
                self.join_real(real_batch)
            if sink_batch:
                self.add_sinks(sink_batch)
            if i < len(order):
                time.sleep(max(0.0, started + i * step - time.monotonic()))
        last_join = time.monotonic()
        receiving_s = self.wait_receiving(started)
        stats = self.chair_stats()
        times: list[float] = stats["keyframe_request_times"]
        window_end = last_join + STORM_TAIL_S
        firsts = self.first_frames()
        return {
            "phase": "storm",
            "sites": s.sites,
            "real": s.real,
            "storm_s": round(last_join - started, 2),
            "all_receiving_s": round(receiving_s, 2),
            "first_frame_p50_ms": _ms(list(firsts.values()), 50),
            "first_frame_p95_ms": _ms(list(firsts.values()), 95),
            "first_frame_max_ms": _ms(list(firsts.values()), 100),
            "real_first_frame_p95_ms": _ms(
                [v for k, v in firsts.items() if not k.startswith("sink")], 95
            ),
            "sink_first_frame_p95_ms": _ms(
                [v for k, v in firsts.items() if k.startswith("sink")], 95
            ),
            "publisher_pli_per_s_max": max_in_window(times, started, window_end),
            "publisher_pli_total": len([t for t in times if started <= t <= window_end]),
            # When each came, from the first join (the first 60): the roll-in's cadence.
            "publisher_pli_at_s": [round(t - started, 2) for t in times][:60],
            "publisher_keyframes_sent": stats["keyframes_sent"],
        }

    def wait_receiving(self, since: float) -> float:
        deadline = time.monotonic() + self.settings.join_timeout_s
        while True:
            sites = self.site_counts()
            sinks = self.sink_counts()["sinks"]
            silent = [k for r in sites for k, v in r["frames"].items() if v == 0]
            silent += [n for n in self.present if sinks[n]["video"] == 0]
            joined = sum(len(r["frames"]) for r in sites)
            if joined == self.settings.real and not silent:
                return time.monotonic() - since
            if time.monotonic() > deadline:
                errors = [e for r in sites for e in r["errors"]]
                raise BenchError(
                    f"sites {silent[:10]} (of {len(silent)}) received no video within "
                    f"{self.settings.join_timeout_s:g} s; {joined} real sites joined; client "
                    f"errors: {errors[:5]}; server log: {self.server.log_tail(1500)}"
                )
            time.sleep(0.25)

    def first_frames(self) -> dict[str, float]:
        """Per site, from its join (a sink's add) to its first frame, seconds."""
        for proc in self.site_procs:
            proc.send("timings")
        firsts: dict[str, float] = {}
        for proc in self.site_procs:
            reply = proc.result(30.0, self.server.check_alive)
            for k, v in reply["join_s"].items():
                if v is not None:
                    firsts[site_user(int(k))] = v
        for name, c in self.sink_counts()["sinks"].items():
            if c["first_video_at"] is not None and name in self.added_at:
                firsts[name] = c["first_video_at"] - self.added_at[name]
        return firsts

    def measure(self, sites: int) -> dict[str, Any]:
        """One steady-state window at `sites` sites."""
        time.sleep(self.settings.warmup_s)
        pid = self.server.pid
        machine = MachineMeter([*with_children(pid), *self.pids()])
        machine.start()
        watched = {"server": pid, **self.bench_pids()}
        for i, child in enumerate(with_children(pid)[1:]):
            watched[f"server_child_{i}"] = child
        each0 = {name: _cpu(p) for name, p in watched.items()}
        cpu0, t0 = family_cpu_seconds(pid), time.monotonic()
        sites0, (sinks0, status0, around0) = self.site_counts(), self.sink_status()
        time.sleep(self.settings.seconds)
        sites1, (sinks1, status1, around1) = self.site_counts(), self.sink_status()
        cpu1, t1 = family_cpu_seconds(pid), time.monotonic()
        each1 = {name: _cpu(p) for name, p in watched.items()}
        use = machine.stop()
        wall = t1 - t0
        fps = _fps(sites0, sites1)
        delivery: dict[str, float] = {}
        received = 0.0
        sent = 0
        decrypted = failed = 0
        for name in self.present:
            a, b = sinks0["sinks"][name], sinks1["sinks"][name]
            expected = b["expected"] - a["expected"]
            got = b["received"] - a["received"]
            delivery[name] = got / expected if expected > 0 else 0.0
            received += around1[name] - around0[name]
            sent += status1["sinks"][name]["sent"] - status0["sinks"][name]["sent"]
            decrypted += b["decrypted"]
            failed += b["decrypt_failed"]
        errors = [e for r in sites1 for e in r["errors"]]
        processes = with_children(pid)
        return {
            "phase": "size",
            "target": "commandcenter",
            "sites": sites,
            "n": sites,
            "real": self.settings.real,
            "sinks": len(self.present),
            "server_processes": len(processes),
            "cpu_s_per_s": round((cpu1 - cpu0) / wall, 4),
            "cpu_per_site_avg": round((cpu1 - cpu0) / wall / sites, 5),
            "fps_min": rounded(min(fps.values(), default=math.nan), 2),
            "fps_mean": rounded(sum(fps.values()) / len(fps) if fps else math.nan, 2),
            # How many real sites were under the goal (a client starved of CPU by the
            # machine's other work falls behind, then catches up: fps above 30 after).
            "fps_below_goal": sum(1 for v in fps.values() if v < GOAL_FPS),
            "delivery_min": rounded(min(delivery.values(), default=math.nan), 5),
            "delivery_mean": rounded(
                sum(delivery.values()) / len(delivery) if delivery else math.nan, 5
            ),
            "delivery_vs_sent": rounded(received / sent if sent else math.nan, 5),
            "sink_pps": round(received / wall, 1),
            "sink_samples_decrypted": decrypted,
            "sink_samples_failed": failed,
            "rss_mb": round(sum(rss_mb(p) for p in processes), 1),
            "window_s": round(wall, 2),
            # Cores each process used: the server and its workers; the sinks' process, the
            # chair's (moderator and speaker) and the real sites' processes.
            "cpu_by_process": {k: round((each1[k] - each0[k]) / wall, 3) for k in watched},
            "client_errors": errors[:5],
            **use,
        }

    def kill_worker(self) -> dict[str, Any]:
        """SIGKILL the worker that does not hold the speaker; until its real sites have
        video again on their new peer connections."""
        status = self.status()
        where: dict[str, int] = status["where"]
        speaker = where.get(SPEAKER)
        home = status["home"]
        candidates = sorted({i for u, i in where.items() if i != speaker and u.startswith("site-")})
        if not candidates:
            return {"phase": "kill", "skipped": "no worker holds real sites without the speaker"}
        dead = candidates[0]
        lost = sorted(u for u, i in where.items() if i == dead and u.startswith("site-"))
        pid = next(w["pid"] for w in status["workers"] if w["index"] == dead)
        sinks_lost = sum(1 for s in status["sinks"].values() if s["worker"] == dead)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        deadline = killed_at + self.settings.join_timeout_s
        while True:
            replies = self.site_counts()
            first = {site_user(int(k)): v for r in replies for k, v in r["first_frame_at"].items()}
            restarted = {
                site_user(int(k)): v for r in replies for k, v in r["restarted_at"].items()
            }
            back = [u for u in lost if restarted.get(u) is not None and first.get(u) is not None]
            if len(back) == len(lost):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"after the kill, {sorted(set(lost) - set(back))} got no video")
            time.sleep(0.05)
        recovered = [first[u] - killed_at for u in lost]
        told = [restarted[u] - killed_at for u in lost if restarted[u] is not None]
        return {
            "phase": "kill",
            "worker": dead,
            "was_home": dead == home,
            "real_sites_lost": len(lost),
            "sinks_lost": sinks_lost,
            "told_max_s": round(max(told), 3),
            "recovery_s": round(max(recovered), 3),
            "recovery_p50_s": round(percentile(recovered, 50), 3),
        }


def _cpu(pid: int) -> float:
    with contextlib.suppress(OSError, BenchError):
        return cpu_seconds(pid)
    return 0.0


def _fps(first: Sequence[Reply], last: Sequence[Reply]) -> dict[str, float]:
    before = {k: (r["t"], v) for r in first for k, v in r["frames"].items()}
    return {
        k: (v - before[k][1]) / (r["t"] - before[k][0])
        for r in last
        for k, v in r["frames"].items()
        if k in before
    }


def _ms(values: Sequence[float], q: float) -> float | None:
    return rounded(1000.0 * percentile(values, q), 1)


def run_ours(settings: Settings, workdir: Path, lines: list[dict[str, Any]]) -> None:
    run = LargeRun(settings, workdir)
    try:
        progress("commandcenter: starting the server (media workers auto), chair and speaker")
        run.start()
        progress(f"commandcenter: {settings.sites} sites join within {settings.storm_s:g} s")
        line = run.storm()
        _keep(line, lines)
        for size in sorted(settings.slope_sizes, reverse=True):
            extra = len(run.present) - (size - settings.real)
            if extra > 0:
                run.remove_sinks(extra)
            progress(f"commandcenter: {size} sites: measuring")
            _keep(run.measure(size), lines)
        if settings.kill:
            progress("commandcenter: killing a media worker")
            _keep(run.kill_worker(), lines)
    finally:
        run.stop()


def run_janus(settings: Settings, workdir: Path, lines: list[dict[str, Any]]) -> None:
    relay = RelaySettings(
        sizes=settings.janus_sizes,
        seconds=settings.seconds,
        warmup_s=settings.warmup_s,
        targets=(JANUS_TARGET,),
        join_timeout_s=settings.join_timeout_s,
        quick=settings.quick,
    )
    for line in run_target(JANUS_TARGET, relay, workdir):
        _keep(line, lines)


def _keep(line: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    emit(line)
    lines.append(line)


def summarize(lines: Sequence[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    ours = [ln for ln in lines if ln.get("phase") == "size" and ln["target"] == "commandcenter"]
    janus = [ln for ln in lines if ln.get("phase") == "size" and ln["target"] == JANUS_TARGET]
    storm = next((ln for ln in lines if ln.get("phase") == "storm"), {})
    kill = next((ln for ln in lines if ln.get("phase") == "kill"), {})
    top = next((ln for ln in ours if ln["sites"] == settings.sites), None)

    def slope_of(rows: Sequence[dict[str, Any]]) -> float | None:
        value = slope([(ln["n"], ln["cpu_s_per_s"]) for ln in rows])
        return None if value is None else round(value, 6)

    cpu_slope = slope_of(ours)
    janus_slope = slope_of(janus)
    server_cpu = top["cpu_s_per_s"] if top else None
    fps = [ln["fps_min"] for ln in ours if ln["fps_min"] is not None]
    fps_min = min(fps) if len(fps) == len(ours) and fps else None
    deliveries = [ln["delivery_min"] for ln in ours if ln["delivery_min"] is not None]
    delivery_min = min(deliveries) if len(deliveries) == len(ours) and deliveries else None
    p95 = storm.get("first_frame_p95_ms")
    pli = storm.get("publisher_pli_per_s_max")
    recovery = kill.get("recovery_s")
    others = max((ln.get("others_cpu_pct", 0.0) for ln in [*ours, *janus]), default=0.0)
    goals = {
        "server_cpu": {
            "goal": f"{settings.sites} sites at <= {GOAL_SERVER_CPU} core of server CPU",
            "pass": server_cpu is not None and server_cpu <= GOAL_SERVER_CPU,
        },
        "fps": {
            "goal": f"every real client >= {GOAL_FPS:g} fps",
            "pass": fps_min is not None and fps_min >= GOAL_FPS,
        },
        "delivery": {
            "goal": f"every sink receives >= {GOAL_DELIVERY} of what it was sent",
            "pass": delivery_min is not None and delivery_min >= GOAL_DELIVERY,
        },
        "cpu_per_subscriber": {
            "goal": f"<= {GOAL_CPU_PER_SUBSCRIBER} core and below janus_cpu_per_subscriber",
            "pass": cpu_slope is not None
            and cpu_slope <= GOAL_CPU_PER_SUBSCRIBER
            and janus_slope is not None
            and cpu_slope < janus_slope,
        },
        "publisher_pli": {
            "goal": f"at most {GOAL_PLI_PER_S} keyframe request per second at the publisher "
            "during the join storm",
            "pass": pli is not None and pli <= GOAL_PLI_PER_S,
        },
        "first_frame": {
            "goal": f"join storm first frame p95 < {GOAL_FIRST_FRAME_P95_MS:g} ms",
            "pass": p95 is not None and p95 < GOAL_FIRST_FRAME_P95_MS,
        },
    }
    return {
        "phase": "summary",
        "sites": settings.sites,
        "real_clients": settings.real,
        "sinks": settings.sites - settings.real,
        "slope_sizes": list(settings.slope_sizes),
        "server_processes": top["server_processes"] if top else None,
        "server_cpu_cores": server_cpu,
        "cpu_per_subscriber": cpu_slope,
        "janus_cpu_per_subscriber": janus_slope,
        "janus_sizes": list(settings.janus_sizes) if settings.janus else [],
        "fps_min": fps_min,
        "delivery_min": delivery_min,
        "delivery_vs_sent": top["delivery_vs_sent"] if top else None,
        "join_storm_first_frame_p95_ms": p95,
        "publisher_pli_per_s_max": pli,
        "worker_kill_recovery_s": recovery,
        "cpu_note": "cpu_per_subscriber: server cores per added site (one video and one audio "
        "stream, sinks: no RTCP); janus_cpu_per_subscriber: Janus (event_loops=2) cores per "
        "added real aiortc video subscriber",
        "goals": goals,
        "pass": all(goal["pass"] for goal in goals.values()),
        "max_others_cpu_pct": others,
        "contended": others > CONTENDED_PCT,
    }


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    settings = parse_args(args)
    enter_namespace("bench.conference", args, janus=settings.janus)
    raise_nofile_limit()
    emit(
        {
            "phase": "start",
            "sites": settings.sites,
            "real": settings.real,
            "slope_sizes": list(settings.slope_sizes),
            "storm_s": settings.storm_s,
            "seconds": settings.seconds,
            "warmup_s": settings.warmup_s,
            "janus_sizes": list(settings.janus_sizes) if settings.janus else [],
            # Beside the embedded defaults (media.workers "auto", the C fan-out).
            "server_settings": SERVER_SETTINGS,
            "addresses": {"servers": SERVER_ADDRESS, "clients": CLIENT_ADDRESS},
            "cores": os.cpu_count(),
        }
    )
    lines: list[dict[str, Any]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-conference-sites-") as tmp:
        for name, run in (("commandcenter", run_ours), (JANUS_TARGET, run_janus)):
            if name == JANUS_TARGET and not settings.janus:
                continue
            try:
                run(settings, Path(tmp), lines)
            except BenchError as exc:
                failed = True
                progress(f"{name}: FAILED: {exc}")
                emit({"phase": "error", "target": name, "error": str(exc)[-3000:]})
    emit(summarize(lines, settings))
    return 1 if failed else 0


__all__ = ["QUICK", "SUMMARY_KEYS", "Settings", "main", "max_in_window", "parse_args"]
