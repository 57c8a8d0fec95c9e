"""Private PostgreSQL and Redis servers a benchmark (or a test) starts, restarts and stops.

`bench.soak --chaos` restarts the trace database and Redis under load. The machine's own
servers (5432, 6379) serve every other test and benchmark on it, so they are never touched:
each run gets a PostgreSQL cluster made with `initdb` under its temporary directory and a
`redis-server`, each on a free loopback port of its own, gone with the directory.

PostgreSQL refuses to run as root: when the benchmark runs as root, the cluster is made and
run as the `postgres` system user (`setpriv`), in a directory of its own under the system's
temporary directory handed to that user (a pytest or benchmark temporary directory is
root's, mode 0700, at every level), removed by `stop`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from redis import Redis
from redis.exceptions import RedisError

from bench._common import BenchError, free_port

POLL_S: Final = 0.1
# Where Debian keeps PostgreSQL's server programs when they are not on PATH.
_PG_BIN_DIRS: Final = (
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/14/bin",
)
# The system user PostgreSQL runs as when we are root.
_PG_USER: Final = "postgres"


def _pg_program(name: str) -> str:
    found = shutil.which(name)
    if found is not None:
        return found
    for directory in _PG_BIN_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    raise BenchError(f"no {name} on PATH or in {', '.join(_PG_BIN_DIRS)}: install postgresql")


class PrivatePostgres:
    """A PostgreSQL cluster of our own in a fresh temporary directory, on a free loopback port.

    `start` makes it (first time) and starts it; `restart` is `pg_ctl restart -m fast`
    (every connection dropped, as on a real restart); `freeze`/`thaw` stop and continue
    every process of it (a server that keeps its sockets open and answers nothing, as one
    behind a cut network does)."""

    def __init__(self, *, fsync: bool = True) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cc-private-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.fsync = fsync
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._user: tuple[int, int] | None = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_PG_USER)
            self._user = (entry.pw_uid, entry.pw_gid)

    def _run(self, argv: Sequence[str], timeout_s: float = 60.0) -> None:
        prefix: list[str] = []
        if self._user is not None:
            uid, gid = self._user
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        proc = subprocess.run(
            [*prefix, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=self.root,
        )
        if proc.returncode != 0:
            raise BenchError(
                f"{Path(argv[0]).name} failed ({proc.returncode}): "
                f"{(proc.stdout + proc.stderr)[-1500:]} {self.log_tail()}"
            )

    def log_tail(self, chars: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def _options(self) -> str:
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.root}",
            "-c max_connections=200",
        ]
        if not self.fsync:
            options.append("-c fsync=off")
        return " ".join(options)

    def start(self) -> None:
        if not self.data.exists():
            if self._user is not None:
                uid, gid = self._user
                os.chown(self.root, uid, gid)
            self._run(
                [
                    _pg_program("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            )
        self._pg_ctl("start")

    def _pg_ctl(self, *action: str) -> None:
        self._run(
            [
                _pg_program("pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log_path),
                "-o",
                self._options(),
                "-w",
                "-t",
                "60",
                *action,
            ],
            timeout_s=90.0,
        )

    def restart(self) -> None:
        """Stop (fast: every session terminated) and start again on the same port."""
        self._pg_ctl("-m", "fast", "restart")

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if (self.data / "postmaster.pid").exists():
            self.thaw()
            with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
                self._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def pids(self) -> list[int]:
        """The postmaster and every backend (their parent is the postmaster)."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        children = []
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{postmaster}/task").iterdir():
                text = (task / "children").read_text()
                children += [int(pid) for pid in text.split()]
        return [postmaster, *children]

    def freeze(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 19)  # SIGSTOP

    def thaw(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 18)  # SIGCONT


NO_PERSISTENCE: Final = ("--save", "", "--appendonly", "no")


class PrivateRedis:
    """A redis-server of our own on a free loopback port, without persistence (what its
    counters say is the benchmark's alone, and nothing of it outlives the run); `restart`
    kills it and starts a fresh one on the same port (everything in it is lost, as when a
    Redis without persistence restarts). bench.cluster (--private-redis) and bench.soak
    (--chaos) run theirs through it."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = tmp / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("no redis-server on PATH")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
                cwd=self.log_path.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = Redis(port=self.port, socket_connect_timeout=1.0, socket_timeout=1.0)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self._proc.poll() is not None:
                    raise BenchError(f"redis-server exited: {self.log_path.read_text()[-1000:]}")
                with contextlib.suppress(RedisError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise BenchError(f"redis-server not answering after {timeout_s:g} s")
                time.sleep(POLL_S)
        finally:
            client.close()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BenchError("redis-server is not running")
        return self._proc.pid

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


__all__ = ["PrivatePostgres", "PrivateRedis"]
