"""Conference signalling benchmark: `python -m bench.conference_signalling [--sites 300]`.

What the hub sends to a provincial conference's sites and moderator, without media: the
server (`python -m commandcenter serve`, embedded defaults, a throw-away data directory) is
started by the benchmark; the clients are WebSocket connections in this process (they only
read and, on cue, send a request: far lighter than the server's side).

- A moderator (a supervisor of `HOST_COURT`) creates a conference inviting `--sites` officers
  of `SITE_COURT` by id and joins it as its chair; every site connects first.
- *joins*: every site sends `join_conference` at once. Per site, `admit_ms` is from sending
  it until its `conference_joined` (a site told `conference_waiting` first is admitted later,
  at the server's join pace). The phase ends once every site is admitted and
  `--settle` s have passed.
- *floor*: for `--floor-s` s, each tick (`--tick` s) `--hands` sites that do not hold the
  floor raise their hand; every `--grant-every` ticks the moderator revokes the holder and
  grants the floor to the head of the queue, and spotlights the new holder; sites that hold
  the floor release it at the next grant. `--settle` s of quiet follow.

`--joins-per-s` sets the server's `conferences.joins_per_s` (its default otherwise). Run on a
checkout without the join pace and the batched moderator view, the same command gives the
figures to compare with (sites then never wait).

Per phase, one JSON line: the messages and bytes (the frames' UTF-8 length) each site
received (`site_msgs_mean`, `site_msgs_max`, `site_bytes_mean`, `site_bytes_max`), the
moderator's (`moderator_msgs`, `moderator_bytes`), the largest frame either received, and
the types received; the joins phase also gives `admit_p50_ms`, `admit_p95_ms`,
`admit_max_ms` and how many sites were told to wait. The last line is the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench._common import (
    BenchError,
    ServerProcess,
    emit,
    free_port,
    percentile,
    raise_nofile_limit,
    rounded,
)
from commandcenter.auth import Role, issue_token

HOST_COURT: Final = "P01"
SITE_COURT: Final = "P0101"
MODERATOR: Final = "chair-1"
TOKEN_TTL_S: Final = 3600.0
REPLY_TIMEOUT_S: Final = 30.0


@dataclasses.dataclass(frozen=True)
class Settings:
    sites: int = 300
    floor_s: float = 60.0
    tick_s: float = 1.0
    hands: int = 5
    grant_every: int = 3
    settle_s: float = 2.0
    # Handshakes in flight at once (aiohttp's listen backlog is 128).
    concurrency: int = 32
    # conferences.joins_per_s for the server; None: its default.
    joins_per_s: float | None = None


def parse_args(argv: Sequence[str] | None) -> Settings:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m bench.conference_signalling",
        description="What a conference's sites and moderator receive; prints JSON lines.",
    )
    parser.add_argument("--sites", type=int, default=d.sites, help=f"sites ({d.sites})")
    parser.add_argument(
        "--floor-s", type=float, default=d.floor_s, help=f"floor activity, s ({d.floor_s:g})"
    )
    parser.add_argument("--tick", type=float, default=d.tick_s, help=f"tick, s ({d.tick_s:g})")
    parser.add_argument(
        "--hands", type=int, default=d.hands, help=f"hands raised per tick ({d.hands})"
    )
    parser.add_argument(
        "--grant-every", type=int, default=d.grant_every, help=f"ticks per grant ({d.grant_every})"
    )
    parser.add_argument(
        "--settle", type=float, default=d.settle_s, help=f"quiet after a phase, s ({d.settle_s:g})"
    )
    parser.add_argument(
        "--joins-per-s", type=float, help="the server's conferences.joins_per_s (its default)"
    )
    a = parser.parse_args(argv)
    if a.sites < 1 or a.floor_s < 0 or a.tick <= 0 or a.hands < 0 or a.grant_every < 1:
        parser.error("sizes must be positive")
    return Settings(
        sites=a.sites,
        floor_s=a.floor_s,
        tick_s=a.tick,
        hands=a.hands,
        grant_every=a.grant_every,
        settle_s=a.settle,
        joins_per_s=a.joins_per_s,
    )


def site_user(index: int) -> str:
    return f"site-{index}"


class Client:
    """One user's WebSocket: what it received (count, bytes, types, largest frame), replies
    matched to requests by id, and when it was admitted to the conference."""

    def __init__(self, user: str, role: Role, court: str) -> None:
        self.user = user
        self.role = role
        self.court = court
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.msgs = 0
        self.bytes = 0
        self.largest = 0
        self.types: Counter[str] = Counter()
        self.join_sent = 0.0
        self.joined_at: float | None = None
        self.waited = False
        self.floor = "not_permitted"
        self.queued = False
        self._ids = 0
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.error: str | None = None

    def reset(self) -> None:
        self.msgs = self.bytes = self.largest = 0
        self.types = Counter()

    async def connect(self, http: aiohttp.ClientSession, port: int, secret: str) -> None:
        token = issue_token(
            secret,
            user=self.user,
            role=self.role,
            court=self.court,
            name=self.user,
            ttl_s=TOKEN_TTL_S,
            now=time.time(),
        )
        self.ws = await http.ws_connect(
            f"http://127.0.0.1:{port}/ws",
            params={"token": token, "device": "bench", "app": "bench", "v": "1"},
        )
        first = await self.ws.receive(REPLY_TIMEOUT_S)
        if first.type is not aiohttp.WSMsgType.TEXT or '"welcome"' not in first.data[:30]:
            raise BenchError(f"{self.user}: expected a welcome, got {first.data!r:.200}")
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            size = len(frame.data.encode())
            self.msgs += 1
            self.bytes += size
            self.largest = max(self.largest, size)
            msg = json.loads(frame.data)
            kind = msg.get("type", "?")
            self.types[kind] += 1
            match kind:
                case "conference_waiting":
                    self.waited = True
                case "conference_joined":
                    self.joined_at = time.monotonic()
                case "floor_status":
                    self.floor = msg["floor"]["state"]
                    self.queued = self.floor == "queued"
                case "error":
                    self.error = str(msg)
            ref = msg.get("ref")
            future = self._pending.pop(ref, None) if isinstance(ref, str) else None
            if future is not None and not future.done():
                future.set_result(msg)

    async def send(self, message: dict[str, Any]) -> str:
        assert self.ws is not None
        self._ids += 1
        msg_id = f"{self.user}-{self._ids}"
        await self.ws.send_str(json.dumps({**message, "id": msg_id}))
        return msg_id

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._ids += 1
        msg_id = f"{self.user}-{self._ids}"
        self._pending[msg_id] = future
        assert self.ws is not None
        await self.ws.send_str(json.dumps({**message, "id": msg_id}))
        reply = await asyncio.wait_for(future, REPLY_TIMEOUT_S)
        if reply.get("type") == "error":
            raise BenchError(f"{self.user}: {message['type']} refused: {reply}")
        return reply

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.ws is not None:
            await self.ws.close()


def tally(phase: str, sites: Sequence[Client], moderator: Client, **extra: Any) -> dict[str, Any]:
    types: Counter[str] = Counter()
    for c in sites:
        types.update(c.types)
    n = len(sites)
    return {
        "phase": phase,
        "sites": n,
        "site_msgs_mean": rounded(sum(c.msgs for c in sites) / n, 2),
        "site_msgs_max": max(c.msgs for c in sites),
        "site_bytes_mean": rounded(sum(c.bytes for c in sites) / n, 1),
        "site_bytes_max": max(c.bytes for c in sites),
        "site_largest_frame": max(c.largest for c in sites),
        "moderator_msgs": moderator.msgs,
        "moderator_bytes": moderator.bytes,
        "moderator_largest_frame": moderator.largest,
        "site_types": dict(sorted(types.items())),
        "moderator_types": dict(sorted(moderator.types.items())),
        **extra,
    }


async def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def run(s: Settings, port: int, secret: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    moderator = Client(MODERATOR, Role.SUPERVISOR, HOST_COURT)
    sites = [Client(site_user(i), Role.OFFICER, SITE_COURT) for i in range(s.sites)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sem = asyncio.Semaphore(s.concurrency)

        async def connect(c: Client) -> None:
            async with sem:
                await c.connect(http, port, secret)

        try:
            await connect(moderator)
            await asyncio.gather(*(connect(c) for c in sites))
            created = await moderator.request(
                {
                    "type": "create_conference",
                    "title": "Benchmark: conference signalling",
                    "invite_users": [c.user for c in sites],
                }
            )
            cid: str = created["conference"]["conference_id"]
            await moderator.request({"type": "join_conference", "conference_id": cid})
            await asyncio.sleep(s.settle_s)
            lines.append(await joins(s, cid, sites, moderator))
            lines.append(await floor(s, cid, sites, moderator))
        finally:
            await asyncio.gather(*(c.close() for c in [moderator, *sites]))
    return lines


async def joins(s: Settings, cid: str, sites: list[Client], moderator: Client) -> dict[str, Any]:
    for c in [moderator, *sites]:
        c.reset()
    started = time.monotonic()
    for c in sites:
        c.join_sent = time.monotonic()
        await c.send({"type": "join_conference", "conference_id": cid})
    await wait_for(
        lambda: all(c.joined_at is not None or c.error for c in sites),
        max(120.0, s.sites),
        "every site admitted",
    )
    refused = [c.error for c in sites if c.joined_at is None]
    if refused:
        raise BenchError(f"{len(refused)} joins refused, e.g. {refused[0]}")
    admitted_s = time.monotonic() - started
    await asyncio.sleep(s.settle_s)
    admit = [(c.joined_at or 0.0) - c.join_sent for c in sites]
    return tally(
        "joins",
        sites,
        moderator,
        seconds=rounded(admitted_s, 3),
        waited=sum(1 for c in sites if c.waited),
        admit_p50_ms=rounded(percentile(admit, 50) * 1000, 1),
        admit_p95_ms=rounded(percentile(admit, 95) * 1000, 1),
        admit_max_ms=rounded(max(admit) * 1000, 1),
    )


async def floor(s: Settings, cid: str, sites: list[Client], moderator: Client) -> dict[str, Any]:
    for c in [moderator, *sites]:
        c.reset()
    queue: list[Client] = []  # in the order their hands went up
    cursor = 0
    holder: Client | None = None
    grants = 0
    ticks = int(s.floor_s / s.tick_s)
    started = time.monotonic()
    for tick in range(ticks):
        for _ in range(s.hands):
            c = sites[cursor % len(sites)]
            cursor += 1
            if c is holder or c in queue:
                continue
            queue.append(c)
            await c.send({"type": "raise_hand", "conference_id": cid})
        if tick % s.grant_every == s.grant_every - 1 and queue:
            nxt = queue.pop(0)
            if holder is not None:
                await holder.send({"type": "release_floor", "conference_id": cid})
            await moderator.request({"type": "grant_floor", "conference_id": cid, "site": nxt.user})
            await moderator.request({"type": "spotlight", "conference_id": cid, "site": nxt.user})
            holder = nxt
            grants += 1
        await asyncio.sleep(max(0.0, started + (tick + 1) * s.tick_s - time.monotonic()))
    await asyncio.sleep(s.settle_s)
    return tally("floor", sites, moderator, seconds=rounded(s.floor_s, 1), grants=grants)


def server_env(data_dir: str, secret: str, s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env.update(
        {
            "COMMANDCENTER_SERVER_DATA_DIR": data_dir,
            "COMMANDCENTER_AUTH_JWT_SECRET": secret,
            "COMMANDCENTER_LOGGING_LEVEL": "warning",
            "COMMANDCENTER_LIMITS_MESSAGES_PER_S": "100000",
            "COMMANDCENTER_LIMITS_MESSAGE_BURST": "100000",
            "COMMANDCENTER_SERVER_MAX_CONNECTIONS_PER_ADDRESS": "0",
            # The moderator comes in on top of the sites.
            "COMMANDCENTER_CONFERENCES_MAX_SITES": str(s.sites + 1),
            "COMMANDCENTER_CONFERENCES_MAX_QUEUE": str(s.sites),
            "COMMANDCENTER_CONFERENCES_REVOKE_GRACE_S": "0.2",
            # One media worker: the node's join pace is then `--joins-per-s` itself (it is
            # per worker, times the workers), whatever the machine's cores.
            "COMMANDCENTER_MEDIA_WORKERS": "1",
        }
    )
    if s.joins_per_s is not None:
        env["COMMANDCENTER_CONFERENCES_JOINS_PER_S"] = f"{s.joins_per_s:g}"
    return env


def main(argv: Sequence[str] | None = None) -> int:
    s = parse_args(argv)
    raise_nofile_limit()
    secret = secrets.token_urlsafe(36)
    with tempfile.TemporaryDirectory(prefix="bench-confsig-") as tmp:
        port = free_port()
        server = ServerProcess(
            [sys.executable, "-m", "commandcenter", "serve", "--port", str(port)],
            port=port,
            env=server_env(str(Path(tmp) / "var"), secret, s),
            log_path=Path(tmp) / "server.log",
        )
        try:
            with server:
                lines = asyncio.run(run(s, port, secret))
        except BenchError as exc:
            emit({"phase": "error", "error": str(exc)})
            return 1
    for line in lines:
        emit(line)
    joined, floor_ = lines
    emit(
        {
            "phase": "summary",
            "sites": s.sites,
            "join_site_msgs_max": joined["site_msgs_max"],
            "join_site_bytes_max": joined["site_bytes_max"],
            "join_moderator_msgs": joined["moderator_msgs"],
            "join_moderator_bytes": joined["moderator_bytes"],
            "admit_p95_ms": joined["admit_p95_ms"],
            "admit_max_ms": joined["admit_max_ms"],
            "waited": joined["waited"],
            "floor_site_msgs_max": floor_["site_msgs_max"],
            "floor_site_bytes_max": floor_["site_bytes_max"],
            "floor_moderator_msgs": floor_["moderator_msgs"],
            "floor_moderator_bytes": floor_["moderator_bytes"],
            "largest_site_frame": max(joined["site_largest_frame"], floor_["site_largest_frame"]),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
