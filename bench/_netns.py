"""The network namespace the media benchmarks run in (`bench.relay`, `bench.conference`).

Janus never gathers ICE candidates on loopback interfaces, so a media benchmark re-executes
itself in a network namespace of its own (`unshare --net`, in a PID namespace so that every
server dies with it), with `lo` up and a veth pair carrying `SERVER_ADDRESS` (servers) and
`CLIENT_ADDRESS` (clients). Every target runs there, so all are measured alike, and nothing
leaves the namespace: HTTP and WebSocket on 127.0.0.1, media between the two test addresses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NoReturn

from bench._common import BenchError
from bench.janus import ensure_janus

# The namespace's addresses: servers on the first, clients on the second.
SERVER_ADDRESS: Final = "10.99.0.1"
CLIENT_ADDRESS: Final = "10.99.0.2"
_NETNS_ENV: Final = "COMMANDCENTER_BENCH_NETNS"
_VETH: Final = ("ccbench0", "ccbench1")


def in_namespace() -> bool:
    return os.environ.get(_NETNS_ENV) == "1"


def reexec_in_namespace(module: str, argv: Sequence[str]) -> NoReturn:
    """Run `python -m module argv` again inside a new network namespace (it replaces this
    process).

    A new PID namespace too, whose first process is the benchmark: when it ends, however it
    ends (a test's timeout kills it), the kernel kills every server it started, Janus
    included; `--kill-child` does the same if `unshare` itself is killed. /proc is mounted
    afresh so that the PIDs the benchmark reads there are its children's."""
    unshare = ["unshare", "--net", "--pid", "--kill-child", "--mount-proc"]
    if os.geteuid() != 0:
        # An unprivileged user gets the namespaces through a user namespace of its own.
        unshare.append("--map-root-user")
    env = {**os.environ, _NETNS_ENV: "1"}
    os.execvpe(unshare[0], [*unshare, "--", sys.executable, "-m", module, *argv], env)


def enter_namespace(module: str, argv: Sequence[str], *, janus: bool) -> None:
    """Make sure this is `python -m module argv` running in its namespace, set up: outside
    it, install Janus first if `janus` (apt needs the network) and re-execute."""
    if not in_namespace():
        if janus:
            print(f"[{module}] checking that Janus is installed", file=sys.stderr, flush=True)
            ensure_janus()
        reexec_in_namespace(module, argv)
    setup_namespace()


def setup_namespace() -> None:
    """`lo` up, and a veth pair with the servers' and the clients' test addresses."""
    a, b = _VETH
    for command in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "add", a, "type", "veth", "peer", "name", b],
        ["ip", "addr", "add", f"{SERVER_ADDRESS}/24", "dev", a],
        ["ip", "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", b],
        ["ip", "link", "set", a, "up"],
        ["ip", "link", "set", b, "up"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(command)}: {done.stderr.strip()}")
    # Janus's packets to the clients leave through the veth and come back in through its
    # peer with a source address of this same namespace, which Linux drops as martian
    # unless told to accept local sources (aioice's sockets send over lo instead).
    for conf in ("all", a, b):
        Path(f"/proc/sys/net/ipv4/conf/{conf}/accept_local").write_text("1\n")


__all__ = [
    "CLIENT_ADDRESS",
    "SERVER_ADDRESS",
    "enter_namespace",
    "in_namespace",
    "reexec_in_namespace",
    "setup_namespace",
]
