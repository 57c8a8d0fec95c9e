"""Evidence upload benchmark: `python -m bench.evidence [--size-mb N] [--rounds R] [--dir D]`.

Writes a `--size-mb` (1024) file of random bytes, starts the server (`python -m commandcenter
serve`, a child process, its data dir in the same directory, so on the same file system) and
then, `--rounds` (3) times in turn:

- copy (`copy_mb_s`): a plain copy of the file, `shutil.copyfile` then fsync of the copy,
  timed end to end. The fsync is included because an upload is not acknowledged before its
  bytes are on disk either.
- upload (`upload_mb_s`): the server receives the file over loopback HTTP as one `POST
  /api/evidence`, timed from the first byte sent until the whole 201 response, which the
  server gives only after hashing, fsync, linking into place and recording the item. The
  client is a bare HTTP/1.1 request whose body goes out with sendfile(2), so it takes next to
  no CPU from the cores it shares with the server. Before each round the file's first bytes
  are restamped, so every upload is new content, not a copy the server already holds.

Each round also reports `server_cpu_s`, the server's CPU time (all threads) for the upload:
on a machine shared with other work the rates swing with the neighbours' load, the CPU cost
much less. The summary compares the medians of the rounds and gives the median CPU.
`rss_growth_mb` is the server's peak RSS (VmHWM) after the last upload minus its RSS before
the first: the body must stream, not sit in memory. One JSON line per phase; the LAST line
is the summary, with the issue's goals (upload at least half the copy rate, RSS growth under
50 MB) and a pass/fail for each.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench._common import (
    BenchError,
    ServerProcess,
    cpu_seconds,
    emit,
    free_port,
    peak_rss_mb,
    rounded,
    rss_mb,
)
from commandcenter.auth import Role, issue_token

GOAL_RATIO: Final = 0.5
GOAL_RSS_GROWTH_MB: Final = 50.0
READ_CHUNK: Final = 1 << 20
MB: Final = 1 << 20


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.evidence",
        description="Evidence upload throughput against a plain file copy; JSON lines.",
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (1024)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="copy-then-upload rounds; medians compared (3)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help="directory to work in (default: a temporary directory, removed afterwards)",
    )
    args = parser.parse_args(argv)
    if args.size_mb <= 0 or args.rounds <= 0:
        parser.error("--size-mb and --rounds must be positive")
    return args


def write_source(path: Path, size: int) -> None:
    """A file of `size` random bytes."""
    # One random block repeated: cheap to make, and nothing could compress it anyway.
    block = os.urandom(READ_CHUNK)
    with open(path, "wb") as fh:
        left = size
        while left:
            left -= fh.write(block[: min(left, len(block))])
        fh.flush()
        os.fsync(fh.fileno())


def time_copy(src: Path, dst: Path, *, fsync: bool) -> float:
    start = time.perf_counter()
    shutil.copyfile(src, dst)
    if fsync:
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    elapsed = time.perf_counter() - start
    dst.unlink()
    return elapsed


def upload(port: int, token: str, path: Path, sha256: str, case: str) -> tuple[float, Any]:
    """POST `path` as one evidence item; returns the seconds from the first byte sent to the
    whole response, and the response body.

    A plain HTTP/1.1 client on a socket that sends the body with sendfile(2): it costs the
    shared cores next to nothing, so what is measured is the server's receiving.
    """
    size = path.stat().st_size
    query = urllib.parse.urlencode(
        {
            "case": case,
            "kind": "video",
            "sha256": sha256,
            "device": "bench-device",
            "capture_time": str(int(time.time() * 1000)),
            "file_name": path.name,
        }
    )
    head = (
        f"POST /api/evidence?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: video/mp4\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=300) as sock, open(path, "rb") as fh:
        start = time.perf_counter()
        sock.sendall(head)
        sock.sendfile(fh, 0, size)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
        elapsed = time.perf_counter() - start
    status_line, _, rest = response.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    if b" 201 " not in status_line:
        raise BenchError(f"upload answered {status_line.decode(errors='replace')}: {body[:300]!r}")
    return elapsed, json.loads(body)


def restamp(path: Path, round_no: int, size: int) -> str:
    """Make the file's first bytes unique to this round, so every round stores new content
    (not a copy the server already holds); returns the file's new SHA-256."""
    with open(path, "r+b") as fh:
        fh.write(f"round {round_no:08d}".encode())
        fh.flush()
        fh.seek(0)
        return hashlib.file_digest(fh, "sha256").hexdigest()


def run(work: Path, size_mb: int, rounds: int) -> dict[str, Any]:
    size = size_mb * MB
    src = work / "source.bin"
    write_source(src, size)
    emit({"phase": "source", "size_mb": size_mb, "rounds": rounds})

    secret = secrets.token_urlsafe(48)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")},
        "COMMANDCENTER_SERVER_DATA_DIR": str(work / "var"),
        "COMMANDCENTER_AUTH_JWT_SECRET": secret,
        "COMMANDCENTER_LOGGING_LEVEL": "warning",
    }
    argv = [sys.executable, "-m", "commandcenter", "serve", "--port", str(port)]
    token = issue_token(
        secret,
        user="bench-officer",
        role=Role.OFFICER,
        court="P0101",
        name="Bench",
        ttl_s=3600,
        now=time.time(),
    )
    copies: list[float] = []
    uploads: list[float] = []
    cpus: list[float] = []
    with ServerProcess(argv, port=port, env=env, log_path=work / "server.log") as server:
        rss_before = rss_mb(server.pid)
        # Copy and upload take turns, so a neighbour's load or the page cache's state
        # weighs on both alike; the medians are compared.
        for round_no in range(1, rounds + 1):
            sha256 = restamp(src, round_no, size)
            copy_s = time_copy(src, work / "copy.bin", fsync=True)
            cpu0 = cpu_seconds(server.pid)
            upload_s, body = upload(port, token, src, sha256, f"BENCH-{round_no}")
            server_cpu_s = cpu_seconds(server.pid) - cpu0
            server.check_alive()
            if body.get("sha256") != sha256 or body.get("size") != size:
                raise BenchError(f"the server recorded a different item: {body}")
            copies.append(size_mb / copy_s)
            uploads.append(size_mb / upload_s)
            cpus.append(server_cpu_s)
            emit(
                {
                    "phase": "round",
                    "round": round_no,
                    "copy_mb_s": round(copies[-1], 1),
                    "upload_mb_s": round(uploads[-1], 1),
                    # Server CPU (all threads) per upload: what the upload costs, whatever
                    # the neighbours on the machine are doing.
                    "server_cpu_s": round(server_cpu_s, 2),
                    "server_peak_rss_mb": round(peak_rss_mb(server.pid), 1),
                }
            )
        peak = peak_rss_mb(server.pid)
    upload_mb_s = statistics.median(uploads)
    copy_mb_s = statistics.median(copies)
    growth = peak - rss_before
    ratio = upload_mb_s / copy_mb_s
    goals = {
        "throughput": {
            "goal": f"upload_mb_s >= {GOAL_RATIO:g} x copy_mb_s",
            "pass": ratio >= GOAL_RATIO,
        },
        "memory": {
            "goal": f"rss_growth_mb < {GOAL_RSS_GROWTH_MB:g}",
            "pass": growth < GOAL_RSS_GROWTH_MB,
        },
    }
    return {
        "phase": "summary",
        "size_mb": size_mb,
        "rounds": rounds,
        "upload_mb_s": round(upload_mb_s, 1),
        "copy_mb_s": round(copy_mb_s, 1),
        "ratio": rounded(ratio, 3),
        "server_cpu_s": round(statistics.median(cpus), 2),
        "rss_growth_mb": round(growth, 1),
        "server_rss_before_mb": round(rss_before, 1),
        "server_peak_rss_mb": round(peak, 1),
        "goals": goals,
        "pass": all(g["pass"] for g in goals.values()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.dir is not None:
            args.dir.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="bench-evidence-", dir=args.dir))
        else:
            work = Path(tempfile.mkdtemp(prefix="bench-evidence-"))
        try:
            summary = run(work, args.size_mb, args.rounds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except BenchError as exc:
        emit({"phase": "error", "error": str(exc)})
        return 1
    emit(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
