"""Hub processes forming one cluster for a test: each `python -m commandcenter serve` with
its own port and node id, all on the test's Redis key prefix (or a private redis-server)
and one PostgreSQL trace schema, both deleted afterwards."""

from __future__ import annotations

import secrets
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from commandcenter.auth import Role
from signalling.cluster.keys import ClusterKeys
from tests.browser import ServerProcess
from tests.browser import token as browser_token
from tests.clusterhelpers import REDIS_URL, delete_prefix
from tests.polling import wait_until
from tests.tracehelpers import PG_DSN, PostgresBackend
from tests.wsclient import Client

# Short figures so that deaths and failovers happen within a test's patience.
HEARTBEAT_S = 0.3
NODE_TIMEOUT_S = 1.5
LEASE_TTL_S = 1.5
START_S = 20.0


def token(user: str, role: str, court: str) -> str:
    return browser_token(user, Role(role), court, name=user)


class Node:
    """One hub process of the cluster (tests.browser.ServerProcess, with the cluster's
    settings)."""

    def __init__(self, cluster: Cluster, node_id: str, extra: Mapping[str, str]) -> None:
        self.cluster = cluster
        self.node_id = node_id
        workdir = cluster.workdir / node_id
        workdir.mkdir(parents=True, exist_ok=True)
        env = {
            "COMMANDCENTER_SERVER_NODE_ID": node_id,
            "COMMANDCENTER_RECORDER_BACKEND": "postgres",
            "COMMANDCENTER_RECORDER_POSTGRES_DSN": PG_DSN,
            "COMMANDCENTER_RECORDER_POSTGRES_SCHEMA": cluster.pg.schema,
            "COMMANDCENTER_REDIS_URL": cluster.redis_url,
            "COMMANDCENTER_REDIS_KEY_PREFIX": cluster.keys.prefix,
            "COMMANDCENTER_REDIS_HEARTBEAT_S": str(HEARTBEAT_S),
            "COMMANDCENTER_REDIS_NODE_TIMEOUT_S": str(NODE_TIMEOUT_S),
            "COMMANDCENTER_REDIS_LEASE_TTL_S": str(LEASE_TTL_S),
            "COMMANDCENTER_LOGGING_FORMAT": "json",
            # Media in each node's own process: these tests are about the cluster, and three
            # nodes' worker processes would only slow them (tests/test_media_workers.py).
            "COMMANDCENTER_MEDIA_WORKERS": "0",
            **cluster.extra_env,
            **extra,
        }
        self.server = ServerProcess(workdir, extra_env=env)
        self.proc = self.server.proc
        self.base = self.server.base

    async def health(self) -> dict[str, Any]:
        async with self.cluster.http.get(f"{self.base}/healthz") as resp:
            body: dict[str, Any] = await resp.json()
            return body

    async def try_health(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.node_id} exited with {self.proc.returncode}")
        try:
            return await self.health()
        except aiohttp.ClientError:
            return None

    async def connect(self, user: str, role: str, court: str, **query: str) -> Client:
        """Connect as `user` and wait for the welcome."""
        client = await self.open(user, role, court, **query)
        client.welcome = await client.expect("welcome", timeout=5.0)
        return client

    async def open(self, user: str, role: str, court: str, **query: str) -> Client:
        params = {"token": token(user, role, court), **query}
        ws = await self.cluster.http.ws_connect(f"{self.base}/ws", params=params)
        client = Client(ws, "json", user)
        self.cluster.clients.append(client)
        return client

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self.server.stop()

    def log_tail(self) -> str:
        return "\n".join(self.server.log_tail())


class Cluster:
    def __init__(self, workdir: Path, redis_url: str, extra_env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.redis_url = redis_url
        self.extra_env = dict(extra_env)
        self.keys = ClusterKeys(f"cc-test-{secrets.token_hex(6)}:")
        self.pg = PostgresBackend(PG_DSN)
        self.nodes: dict[str, Node] = {}
        self.clients: list[Client] = []
        self.http = aiohttp.ClientSession()

    def start(self, node_id: str, **extra: str) -> Node:
        node = Node(self, node_id, extra)
        self.nodes[node_id] = node
        return node

    async def formed(self, *node_ids: str, within: float = START_S) -> str:
        """Wait until the given nodes (default: every running one) agree on one authority
        and each sees them all alive; returns the authority's id."""
        ids = node_ids or tuple(n for n, node in self.nodes.items() if node.proc.poll() is None)
        agreed: list[str] = []

        async def agree() -> bool:
            views = [await self.nodes[n].try_health() for n in ids]
            if any(v is None or "cluster" not in v for v in views):
                return False
            clusters = [v["cluster"] for v in views if v is not None]
            authorities = {c["authority"] for c in clusters}
            roles = [c["role"] for c in clusters]
            if len(authorities) != 1 or None in authorities or roles.count("authority") != 1:
                return False
            if any(c["redis"] != "ok" or c["nodes"] < len(ids) for c in clusters):
                return False
            agreed[:] = [str(authorities.pop())]
            return True

        try:
            await wait_until(agree, within=within, what=f"cluster of {ids} formed")
        except AssertionError:
            raise AssertionError(self.logs()) from None
        return agreed[0]

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{node.log_tail()}" for n, node in self.nodes.items())

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for node in self.nodes.values():
            node.stop()
        await self.http.close()
        await self.pg.drop()
        redis = Redis.from_url(self.redis_url)
        try:
            await delete_prefix(redis, self.keys)
        except OSError:
            pass
        finally:
            await redis.aclose()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster on the shared Redis under a fresh prefix; start nodes with `start`."""
    made = Cluster(tmp_path, REDIS_URL, {})
    try:
        yield made
    finally:
        await made.close()


__all__ = ["Cluster", "Node", "cluster", "token"]
