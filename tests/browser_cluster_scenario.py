"""The browser scenarios against three nodes, run inside a network namespace by
tests/test_browser_cluster.py:

    unshare -n -- python -m tests.browser_cluster_scenario

Inside the namespace nothing of the machine is reachable, the shared Redis and PostgreSQL
included, so it starts a redis-server of its own on the namespace's loopback and three
nodes on it (the trace in memory, each node's own: the trace across nodes is tested against
PostgreSQL in tests/test_cluster_hub.py). The officer's page connects to one node, the
operator's to another and the supervisor's to the third; then the phases of
tests/browser_scenario.py run as they do against one node: sign-in and a call answered,
video and audio both ways, the supervisor joining mid-call. Prints ONE JSON line.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import aiohttp

from commandcenter.auth import Role
from tests.browser import ServerProcess, until
from tests.browser_scenario import (
    COURT,
    OFFICER,
    OPERATOR,
    SUPERVISOR,
    SUPERVISOR_COURT,
    drive,
)
from tests.clusterhelpers import PrivateRedis

PHASES = ("signalling", "media", "join")
NODES = ("n1", "n2", "n3")
FORM_S = 20.0


async def formed(servers: list[ServerProcess]) -> str:
    """Wait until every node names the same authority and sees all three alive."""

    async def agree() -> str | None:
        async with aiohttp.ClientSession() as http:
            views = []
            for server in servers:
                async with http.get(f"{server.base}/healthz") as resp:
                    views.append((await resp.json())["cluster"])
        authorities = {v["authority"] for v in views}
        if (
            len(authorities) == 1
            and None not in authorities
            and all(v["nodes"] == 3 for v in views)
        ):
            return str(authorities.pop())
        return None

    return await until(agree, within=FORM_S, what="the three nodes formed one cluster")


async def run(workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"phases": list(PHASES)}
    started = time.monotonic()
    redis = PrivateRedis()
    servers: list[ServerProcess] = []
    try:
        await redis.start()
        for node in NODES:
            env = {
                "COMMANDCENTER_SERVER_NODE_ID": node,
                "COMMANDCENTER_REDIS_URL": redis.url,
                "COMMANDCENTER_RECORDER_BACKEND": "memory",
                "COMMANDCENTER_REDIS_HEARTBEAT_S": "0.5",
            }
            (workdir / node).mkdir()
            servers.append(ServerProcess(workdir / node, extra_env=env))
        for server in servers:
            await server.wait_healthy()
            await server.check_app()
        result["authority"] = await formed(servers)
        users = [
            (OFFICER, Role.OFFICER, COURT, servers[0].base),
            (OPERATOR, Role.OPERATOR, COURT, servers[1].base),
            (SUPERVISOR, Role.SUPERVISOR, SUPERVISOR_COURT, servers[2].base),
        ]
        await drive(users, PHASES, result)
        result["media_rooms"] = await media_rooms(servers)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=4)
    finally:
        for server in servers:
            server.stop()
        await redis.kill()
        if "error" in result:
            result["server_log_tails"] = {s.base: s.log_tail() for s in servers}
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


async def media_rooms(servers: list[ServerProcess]) -> dict[str, int]:
    """How many calls each node relays (the call's one media node shows 1)."""
    rooms = {}
    async with aiohttp.ClientSession() as http:
        for node, server in zip(NODES, servers, strict=True):
            async with http.get(f"{server.base}/healthz") as resp:
                rooms[node] = int((await resp.json())["media_rooms"])
    return rooms


def main() -> int:
    # The namespace starts with `lo` down: nothing, not even 127.0.0.1, would answer.
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-browser-cluster-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
