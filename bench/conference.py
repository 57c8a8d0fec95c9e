"""Conference benchmark: `python -m bench.conference [--quick] [options]`.

A provincial video conference on one server process: one speaker and N receive-only sites,
N = 16, 32, 64, all aiortc clients (bench/_sites.py), against:

- `commandcenter`: our server (`python -m commandcenter serve` on embedded defaults, a fresh
  data directory, ICE on the test address, `conferences.revoke_grace_s` = 0.3 s so that the
  floor can be cycled quickly). A moderator (a supervisor of P01, publishing nothing) creates
  the conference inviting the speaker and the sites, joins as its chair and grants the
  speaker the floor; the speaker publishes 640x480@30 VP8 (bench/_media.py's synthetic clip,
  encoded once and looped as packets, about 1 Mbit/s) and Opus. Every site thus gets the
  speaker's video in its `spotlight` slot and its audio in an audio slot (docs/protocol.md,
  *Conference media*).
- `janus`: Janus's VideoRoom with one publisher and N subscribers, exactly as `bench.relay`
  measures it (its `janus` target: video only, the same clip).

N grows by adding sites to the same conference (or subscribers to the same room). Per N,
once every site receives video and `--warmup` s have passed, over `--seconds` s the
benchmark reads the server's CPU time (/proc), the video frames each site counted without
decoding them (`fps_min`, `fps_mean`) and the audio packets each site received per second
against those the speaker's RTP sender sent per second (`audio_delivery_min`: the worst
site's fraction; a reading's noise is about 1 % on a busy machine). Beside it,
`audio_seq_delivery_min` counts each site's packets against the advance of the RTP
sequence numbers it was sent (the speaker's plus an offset): exact whatever the processes'
reading times, but blind to what the server drops on a full socket, which it renumbers
over. Then, with all N sites joined, the moderator revokes the speaker's floor and grants
it again `--cycles` times; each grant is followed at every site by a talk burst, and
`grant_to_audio` is the time from sending `grant_floor` to the burst's first audio packet
at the site (RTP arrival, no jitter buffer), over every (site, grant): p50 and p99. `join`
is, per site, from sending `join_conference` to its first video frame (`join_p95_ms`).

One JSON line per target and N (as bench.relay's, plus the conference's figures for
`commandcenter`); the last line is the summary: `sites`, `fps_min` and `audio_delivery_min`
per N, `server_cpu_per_site` and `janus_cpu_per_site` (least-squares slopes of the servers'
CPU over N, cores), `join_p95_ms`, `grant_to_audio_p99_ms`, and the goals: every site at
29 fps or more and audio delivery at least 0.99 at N = 32, grant to audio p99 at most
150 ms, server CPU per site no more than bench.relay's per-subscriber figure (0.00194 core).
A default run takes about 5 minutes. Like bench.relay it runs in a network namespace of
its own (bench/_netns.py); progress goes to stderr.

`--sites N` (with `--quick` and its own options) runs instead one conference of N sites,
most of them pre-keyed SRTP sinks, with a join storm, a worker kill and Janus's slope:
bench/conference_sites.py says how.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from bench import conference_sites
from bench._common import (
    Reply,
    Worker,
    emit,
    percentile,
    raise_nofile_limit,
    rounded,
)
from bench._media import SUBSCRIBERS_PER_PROCESS, TargetSpec
from bench._netns import CLIENT_ADDRESS, SERVER_ADDRESS, enter_namespace
from bench._sites import ChairProcess, SitesProcess
from bench.relay import (
    CONTENDED_PCT,
    GOAL_FPS,
    TargetRun,
    add_run_options,
    emit_lines,
    run_option_changes,
    run_target,
    slope,
)
from bench.relay import Settings as RelaySettings

TARGETS: Final = ("commandcenter", "janus")
SIZES: Final = (16, 32, 64)
QUICK_SIZES: Final = (2, 4)
GOAL_N: Final = 32
GOAL_AUDIO_DELIVERY: Final = 0.99
GOAL_GRANT_TO_AUDIO_MS: Final = 150.0
# bench.relay's per-subscriber CPU on this machine (cores): a conference site must cost no
# more than a call's subscriber.
GOAL_CPU_PER_SITE: Final = 0.00194
REVOKE_GRACE_S: Final = 0.3

SUMMARY_KEYS: Final = (
    "sites",
    "fps_min",
    "audio_delivery_min",
    "server_cpu_per_site",
    "janus_cpu_per_site",
    "join_p95_ms",
    "grant_to_audio_p99_ms",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = SIZES
    seconds: float = 8.0
    warmup_s: float = 1.5
    targets: tuple[str, ...] = TARGETS
    # Revoke-and-grant cycles per N, the silence before each grant, the talk after it.
    cycles: int = 10
    quiet_s: float = 0.6
    talk_s: float = 0.6
    join_timeout_s: float = 60.0
    quick: bool = False

    def relay(self) -> RelaySettings:
        """The same run as bench.relay's settings, for its machinery."""
        return RelaySettings(
            sizes=self.sizes,
            seconds=self.seconds,
            warmup_s=self.warmup_s,
            targets=tuple(t for t in self.targets if t == "janus"),
            join_timeout_s=self.join_timeout_s,
            quick=self.quick,
        )


QUICK: Final = Settings(sizes=QUICK_SIZES, seconds=2.0, warmup_s=0.5, cycles=3)


def parse_args(argv: Sequence[str] | None) -> Settings:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m bench.conference",
        description="Benchmark a conference's media (one speaker, N receive-only sites) "
        "against Janus's VideoRoom; prints JSON lines, the last a summary.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"N = {', '.join(map(str, QUICK.sizes))} for {QUICK.seconds:g} s each against "
        "both targets, 3 floor cycles (smoke test)",
    )
    add_run_options(parser, d.sizes, d.seconds, d.warmup_s, TARGETS, "site")
    parser.add_argument("--cycles", type=int, help=f"floor revoke/grant cycles per N ({d.cycles})")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else d
    changes = run_option_changes(parser, args, TARGETS)
    if args.cycles is not None:
        if args.cycles < 1:
            parser.error("--cycles: at least 1")
        changes["cycles"] = args.cycles
    return dataclasses.replace(base, **changes)


def progress(message: str) -> None:
    print(f"[bench.conference] {message}", file=sys.stderr, flush=True)


# ---- the conference -------------------------------------------------------------------------


class ConferenceRun(TargetRun):
    """bench.relay's run of our server, with a conference in place of a call: the chair
    process (moderator and speaker) as its publisher, processes of sites as its
    subscribers; audio counted beside the frames."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        super().__init__("commandcenter", settings.relay(), workdir)
        self.conference = settings
        self.server.env["COMMANDCENTER_CONFERENCES_REVOKE_GRACE_S"] = str(REVOKE_GRACE_S)
        # While measuring: at each `counts`, the sites' replies and the speaker's counters.
        self.audio_marks: list[tuple[list[Reply], Reply]] | None = None

    def start(self) -> None:
        self.server.start()
        self.spec = TargetSpec(
            kind="commandcenter",
            port=self.server.port,
            ice_address=CLIENT_ADDRESS,
            secret=self.secret,
        )
        self.publisher = ChairProcess("conference-chair", self.spec)
        sites = max(self.conference.sizes)
        reply = self.publisher.call("publish", 90.0, self.server.check_alive, sites=sites)
        self.published = reply["published"]
        self.clip_kbit_s = reply["clip_kbit_s"]

    def new_worker(self, name: str) -> Worker:
        assert self.spec is not None
        return SitesProcess(name.replace("subscribers", "sites"), self.spec)

    def _chair(self) -> Worker:
        assert self.publisher is not None
        return self.publisher

    def counts(self) -> tuple[dict[str, tuple[float, int]], list[str]]:
        result = super().counts()
        if self.audio_marks is not None:
            stats = self._chair().call("stats", 30.0, self.server.check_alive)
            self.audio_marks.append((self.count_replies, stats))
        return result

    def measure(self, n: int, join_s: float) -> dict[str, Any]:
        """bench.relay's line for N, with the audio each site received over the same
        window against what the speaker sent."""
        self.audio_marks = []
        try:
            line = super().measure(n, join_s)
            marks = self.audio_marks
        finally:
            self.audio_marks = None
        # The first and the last `counts` of the measurement bracket its window.
        (sites0, sent0), (sites1, sent1) = marks[0], marks[-1]
        seq_delivery = audio_seq_delivery(sites0, sites1)
        pps = (sent1["audio_sent"] - sent0["audio_sent"]) / (sent1["t"] - sent0["t"])
        rates = audio_rates(sites0, sites1)
        delivery = {site: rate / pps for site, rate in rates.items()} if pps > 0 else {}
        return {
            **line,
            "sites": n,
            "audio_delivery_min": rounded(min(delivery.values(), default=math.nan), 4),
            "audio_delivery_mean": rounded(
                sum(delivery.values()) / len(delivery) if delivery else math.nan, 4
            ),
            "audio_seq_delivery_min": rounded(min(seq_delivery.values(), default=math.nan), 4),
            "audio_pps_sent": round(pps, 1),
            "audio_pps_received_min": rounded(min(rates.values(), default=math.nan), 1),
        }

    def cycle(self) -> list[float]:
        """Revoke and grant the speaker's floor `cycles` times; when each grant was sent."""
        c = self.conference
        timeout = 30.0 + c.cycles * (REVOKE_GRACE_S + c.quiet_s + c.talk_s + 5.0)
        reply = self._chair().call(
            "cycle",
            timeout,
            self.server.check_alive,
            times=c.cycles,
            quiet_s=c.quiet_s,
            talk_s=c.talk_s,
        )
        grants: list[float] = reply["grants"]
        return grants

    def timings(self) -> tuple[dict[str, float | None], dict[str, list[float]]]:
        """Per site, join to first frame (s), and when each of its talk bursts began."""
        for worker in self.workers:
            worker.send("timings")
        joins: dict[str, float | None] = {}
        bursts: dict[str, list[float]] = {}
        for worker in self.workers:
            reply = worker.result(30.0, self.server.check_alive)
            joins.update(reply["join_s"])
            bursts.update(reply["bursts"])
        return joins, bursts


def audio_seq_delivery(first: Sequence[Reply], last: Sequence[Reply]) -> dict[str, float]:
    """Per site, the audio packets it received between two `counts` as a fraction of those
    sent to it meanwhile: the speaker's packets, numbered by its RTP sequence numbers (an
    offset apart at the site), which does not depend on when each process read its counters;
    blind, though, to packets the server drops on a full socket (it renumbers over them)."""
    before = {k: (v, r["audio_expected"][k]) for r in first for k, v in r["audio"].items()}
    delivery: dict[str, float] = {}
    for reply in last:
        for site, count in reply["audio"].items():
            if site not in before:
                continue
            count0, expected0 = before[site]
            expected = reply["audio_expected"][site] - expected0
            delivery[site] = (count - count0) / expected if expected > 0 else 0.0
    return delivery


def audio_rates(first: Sequence[Reply], last: Sequence[Reply]) -> dict[str, float]:
    """Per site, the audio packets it received per second between two `counts`."""
    before = {k: (r["t"], v) for r in first for k, v in r["audio"].items()}
    return {
        site: (count - before[site][1]) / (reply["t"] - before[site][0])
        for reply in last
        for site, count in reply["audio"].items()
        if site in before
    }


def grant_delays(
    grants: Sequence[float], bursts: dict[str, list[float]], sites: Sequence[str]
) -> tuple[list[float], int]:
    """For each grant and site, from the grant to the first talk burst the site heard after
    it (before the next grant); and how many (site, grant) pairs heard none."""
    delays: list[float] = []
    missing = 0
    for i, grant in enumerate(grants):
        until = grants[i + 1] if i + 1 < len(grants) else math.inf
        for site in sites:
            heard = [s for s in bursts.get(site, []) if grant <= s < until]
            if heard:
                delays.append(heard[0] - grant)
            else:
                missing += 1
    return delays, missing


def _ms(values: Sequence[float], q: float) -> float | None:
    return rounded(1000.0 * percentile(values, q), 1)


def run_conference(settings: Settings, workdir: Path) -> Iterator[dict[str, Any]]:
    """One JSON line per N for our server."""
    run = ConferenceRun(settings, workdir)
    joined = 0
    try:
        progress("commandcenter: starting the server, the moderator and the speaker")
        run.start()
        for n in settings.sizes:
            progress(f"commandcenter: N = {n}: joining")
            run.grow(n)
            join_s = run.wait_receiving()
            progress(f"commandcenter: N = {n}: all receive after {join_s:.1f} s; measuring")
            line = run.measure(n, join_s)
            progress(f"commandcenter: N = {n}: {settings.cycles} floor cycles")
            grants = run.cycle()
            joins, bursts = run.timings()
            new = [str(i) for i in range(joined, n)]
            join_ms = [joins[k] for k in new if joins.get(k) is not None]
            delays, missing = grant_delays(grants, bursts, [str(i) for i in range(n)])
            joined = n
            yield {
                **line,
                "join_p95_ms": _ms([j for j in join_ms if j is not None], 95),
                "join_max_ms": _ms([j for j in join_ms if j is not None], 100),
                "joined": len(new),
                "grant_to_audio_p50_ms": _ms(delays, 50),
                "grant_to_audio_p99_ms": _ms(delays, 99),
                "grant_to_audio_max_ms": _ms(delays, 100),
                "grant_samples": len(delays),
                "grant_missing": missing,
                # Kept for the summary's percentiles over every N; dropped before printing.
                "_join_s": [j for j in join_ms if j is not None],
                "_delays_s": delays,
            }
    finally:
        run.stop()


# ---- the summary ----------------------------------------------------------------------------


def summarize(lines: Sequence[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    ours = [ln for ln in lines if ln["target"] == "commandcenter"]

    def slope_of(target: str) -> float | None:
        value = slope([(ln["n"], ln["cpu_s_per_s"]) for ln in lines if ln["target"] == target])
        return None if value is None else round(value, 5)

    fps = {str(ln["n"]): ln["fps_min"] for ln in ours}
    audio = {str(ln["n"]): ln["audio_delivery_min"] for ln in ours}
    joins = [j for ln in ours for j in ln.get("_join_s", [])]
    delays = [d for ln in ours for d in ln.get("_delays_s", [])]
    missing = sum(ln.get("grant_missing", 0) for ln in ours)
    cpu = slope_of("commandcenter")
    p99 = _ms(delays, 99)
    at_goal = str(GOAL_N)
    fps_pass = fps.get(at_goal) is not None and fps[at_goal] >= GOAL_FPS
    audio_pass = audio.get(at_goal) is not None and audio[at_goal] >= GOAL_AUDIO_DELIVERY
    grant_pass = p99 is not None and p99 <= GOAL_GRANT_TO_AUDIO_MS and missing == 0
    cpu_pass = cpu is not None and cpu <= GOAL_CPU_PER_SITE
    others = max((ln.get("others_cpu_pct", 0.0) for ln in lines), default=0.0)
    return {
        "phase": "summary",
        "sites": list(settings.sizes),
        "fps_min": fps,
        "audio_delivery_min": audio,
        "server_cpu_per_site": cpu,
        "janus_cpu_per_site": slope_of("janus"),
        "join_p95_ms": _ms(joins, 95),
        "grant_to_audio_p50_ms": _ms(delays, 50),
        "grant_to_audio_p99_ms": p99,
        "grant_samples": len(delays),
        "grant_missing": missing,
        "janus_note": "Janus relays video only (bench.relay's publisher); our server also "
        "forwards the speaker's Opus to every site",
        "goals": {
            "fps_n32": {
                "goal": f"every site >= {GOAL_FPS:g} fps at N = {GOAL_N}",
                "pass": fps_pass,
            },
            "audio_n32": {
                "goal": f"every site >= {GOAL_AUDIO_DELIVERY} of the audio at N = {GOAL_N}",
                "pass": audio_pass,
            },
            "grant_to_audio": {
                "goal": f"p99 <= {GOAL_GRANT_TO_AUDIO_MS:g} ms, every site hears every grant",
                "pass": grant_pass,
            },
            "cpu_per_site": {"goal": f"<= {GOAL_CPU_PER_SITE} core", "pass": cpu_pass},
        },
        "pass": fps_pass and audio_pass and grant_pass and cpu_pass,
        # The most CPU other processes took during a window, % of one core.
        "max_others_cpu_pct": others,
        "contended": others > CONTENDED_PCT,
    }


# ---- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--sites" or a.startswith("--sites=") for a in args):
        # One conference of hundreds of sites, sinks among them (bench.conference_sites).
        return conference_sites.main(args)
    settings = parse_args(args)
    enter_namespace("bench.conference", args, janus="janus" in settings.targets)
    raise_nofile_limit()
    emit(
        {
            "phase": "start",
            "targets": list(settings.targets),
            "sizes": list(settings.sizes),
            "seconds": settings.seconds,
            "warmup_s": settings.warmup_s,
            "cycles": settings.cycles,
            "revoke_grace_s": REVOKE_GRACE_S,
            "sites_per_process": SUBSCRIBERS_PER_PROCESS,
            "addresses": {"servers": SERVER_ADDRESS, "clients": CLIENT_ADDRESS},
            "cores": os.cpu_count(),
        }
    )
    lines: list[dict[str, Any]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-conference-") as tmp:
        for target in settings.targets:
            runs = (
                run_conference(settings, Path(tmp))
                if target == "commandcenter"
                else run_target(target, settings.relay(), Path(tmp))
            )
            if not emit_lines(target, runs, lines):
                failed = True
    emit(summarize(lines, settings))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
