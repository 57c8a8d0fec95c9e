"""`python -m commandcenter.media_worker --fd N --parent PID`: a media worker process, as the
server starts it (media.pool); not run by hand.

It dies with the server: the kernel sends it SIGKILL when its parent exits
(PR_SET_PDEATHSIG), and it stops at the end of its socket. It ignores SIGINT and SIGTERM,
which a terminal or a service manager sends the whole group: the server stops it. Whatever a
killed worker was recording is filed by the worker started in its place (media.worker).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import socket
import sys
from typing import Final

from commandcenter.config import LoggingConfig
from commandcenter.logs import configure_logging
from media import worker
from media.worker_wire import Start

PR_SET_PDEATHSIG: Final = 1


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when the thread that started it exits; exit now if the parent
    is already gone (it may have died before the request was made)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        sys.exit(0)


def configure(start: Start) -> None:
    levels = ("debug", "info", "warning", "error", "critical")
    level = start.log_level if start.log_level.lower() in levels else "info"
    fmt = start.log_format if start.log_format in ("json", "console") else "json"
    configure_logging(LoggingConfig(level=level, format=fmt))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="commandcenter.media_worker")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the server")
    parser.add_argument("--parent", type=int, required=True, help="the server's process id")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    # Ctrl-C in a terminal reaches the whole process group, and a service manager's SIGTERM
    # the whole control group: the server stops its workers itself (they finish and file
    # their recordings), or they die with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    asyncio.run(worker.run(sock, configure))


if __name__ == "__main__":
    main()
