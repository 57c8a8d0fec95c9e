"""Process plumbing shared by the benchmarks: file-descriptor limits, free ports, reading a
process's RSS and CPU time from /proc, starting a server child and waiting for it, and the
JSON-lines output the benchmarks speak.

Nothing here knows about the signalling protocol; `bench._clients` holds the clients.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not run to the end; the message says which step failed."""


def raise_nofile_limit() -> int:
    """Raise this process's open-file limit to the hard limit; returns the new soft limit.

    Children started afterwards inherit it, which is how the server gets it too.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` (VmRSS), in MiB."""
    return _status_kb(pid, "VmRSS") / 1024.0


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of `pid` (VmHWM), in MiB."""
    return _status_kb(pid, "VmHWM") / 1024.0


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {field}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used so far, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        stat = fh.read()
    # The command name (field 2) may hold spaces; the fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def with_children(pid: int) -> list[int]:
    """`pid` and its child processes (a server's media workers, docs/media.md)."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                children += [int(child) for child in fh.read().split()]
    return [pid, *children]


def family_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and of its live children: a server's, media workers included.
    (A child that exited takes its time with it; the benches' servers keep theirs.)"""
    total = 0.0
    for member in with_children(pid):
        with contextlib.suppress(OSError, BenchError):
            total += cpu_seconds(member)
    return total


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class CpuMeter:
    """CPU use of one process between `start()` and `stop()`, as a percentage of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu0 = 0.0
        self._wall0 = 0.0

    def start(self) -> None:
        self._cpu0 = cpu_seconds(self.pid)
        self._wall0 = time.monotonic()

    def stop(self) -> float:
        wall = time.monotonic() - self._wall0
        used = cpu_seconds(self.pid) - self._cpu0
        return round(100.0 * used / wall, 1) if wall > 0 else 0.0


def _proc_stat_cpu() -> tuple[float, float, float]:
    """(busy, interrupt, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / _CLK_TCK, (irq + softirq) / _CLK_TCK, (busy + idle + iowait) / _CLK_TCK


class MachineMeter:
    """Who used the machine's CPU between `start()` and `stop()`: the benchmark's own
    processes (`pids`), interrupt handling (loopback traffic is mostly softirq) and everyone
    else. Percentages are of one core, like `CpuMeter`'s, so they add up to 100 x cores."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._ours0 = 0.0
        self._machine0 = (0.0, 0.0, 0.0)
        self._wall0 = 0.0

    def _ours(self) -> float:
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
        return total

    def start(self) -> None:
        self._ours0 = self._ours()
        self._machine0 = _proc_stat_cpu()
        self._wall0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._wall0
        ours = self._ours() - self._ours0
        busy, intr, _ = (b - a for a, b in zip(self._machine0, _proc_stat_cpu(), strict=True))
        if wall <= 0:
            return {}
        others = max(0.0, busy - intr - ours)
        return {
            "machine_busy_pct": round(100.0 * busy / wall, 1),
            "cores": os.cpu_count() or 1,
            "bench_cpu_pct": round(100.0 * ours / wall, 1),
            "interrupts_cpu_pct": round(100.0 * intr / wall, 1),
            "others_cpu_pct": round(100.0 * others / wall, 1),
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rounded(value: float, digits: int = 3) -> float | None:
    """`value` rounded for output; None for NaN, which JSON cannot carry."""
    return None if math.isnan(value) else round(value, digits)


def emit(record: Mapping[str, Any], out: IO[str] | None = None) -> None:
    """Print one JSON line and flush it, so a reader sees progress as it happens."""
    stream = sys.stdout if out is None else out
    stream.write(json.dumps(record, separators=(", ", ": ")) + "\n")
    stream.flush()


class ServerProcess:
    """A server started as a child process (`argv`), stopped (SIGINT, then SIGKILL) on exit.

    Its stderr goes to `log_path`, whose tail is quoted when the server fails to start.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str],
        log_path: Path,
        ready_path: str = "/healthz",
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.env = dict(env)
        self.log_path = log_path
        self.ready_path = ready_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BenchError("server is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BenchError(
                    f"server exited with status {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise BenchError(f"server not ready at {url} after {timeout_s:g} s: {self.log_tail()}")

    def check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            code = None if self._proc is None else self._proc.returncode
            raise BenchError(f"server died (status {code}): {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:].strip()
        return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "BenchError",
    "CpuMeter",
    "MachineMeter",
    "ServerProcess",
    "cpu_seconds",
    "emit",
    "family_cpu_seconds",
    "free_port",
    "open_fds",
    "peak_rss_mb",
    "percentile",
    "raise_nofile_limit",
    "rounded",
    "rss_mb",
    "sigterm_unwinds",
    "with_children",
]


Reply = dict[str, Any]


class Worker:
    """The orchestrator's handle on one client process, which runs `main(conn, *args)` and
    answers each `{"cmd": ...}` it receives with one reply: `{"ok": True, ...}` or
    `{"ok": False, "error": ...}`."""

    def __init__(self, name: str, main: Callable[..., None], *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=main, args=(child, *args), name=name, daemon=True)
        self.proc.start()
        child.close()
        self._stopping = False

    @property
    def pid(self) -> int:
        pid = self.proc.pid
        assert pid is not None
        return pid

    def send(self, cmd: str, **args: Any) -> None:
        self.conn.send({"cmd": cmd, **args})

    def result(self, timeout_s: float, alive: Callable[[], None] | None = None) -> Reply:
        """The reply to the last command; `alive` is called while waiting (it raises if
        something the worker depends on, such as the server, has died)."""
        deadline = time.monotonic() + timeout_s
        while not self.conn.poll(0.2):
            if not self.proc.is_alive():
                raise BenchError(f"{self.name} exited with status {self.proc.exitcode}")
            if alive is not None:
                alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: no reply within {timeout_s:g} s")
        try:
            reply: Reply = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise BenchError(f"{self.name}: lost its pipe ({exc!r})") from None
        if not reply.pop("ok"):
            raise BenchError(f"{self.name} failed:\n{reply['error']}")
        return reply

    def call(
        self, cmd: str, timeout_s: float, alive: Callable[[], None] | None = None, **args: Any
    ) -> Reply:
        self.send(cmd, **args)
        return self.result(timeout_s, alive)

    def cpu_s(self) -> float:
        with contextlib.suppress(OSError):
            return cpu_seconds(self.pid)
        return 0.0

    def send_stop(self) -> None:
        """Ask the worker to drop its connections and exit; `stop` waits for it."""
        if not self._stopping and self.proc.is_alive():
            with contextlib.suppress(OSError):
                self.send("stop")
                self._stopping = True

    def stop(self, timeout_s: float = 15.0) -> None:
        self.send_stop()
        if self._stopping:
            with contextlib.suppress(BenchError, OSError, EOFError):
                self.result(timeout_s)
        self.proc.join(timeout_s)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C does (KeyboardInterrupt), so a benchmark's cleanup (its
    servers, its temporary directory) runs either way."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
