"""A scripted province: `python -m bench.province [--conferences 224] [--intermediate 15]
[--basic 11] [--sites 4] [--dir D]`.

Builds a province of courts (one provincial high court, `--intermediate` intermediate courts,
`--basic` basic courts under each: 181 courts by default), starts the server on it (`python
-m commandcenter serve`, a child process with its SQLite trace in `--dir` or a temporary
directory), and holds `--conferences` video conferences through the WebSocket as a province
would: the provincial court hosts one in ten, the intermediate courts the others in turn, each
inviting every court under its host. For each one `--sites` consoles of invited courts join, one
raises a hand, the moderator gives it the floor and takes it back, then ends the conference.
The seed article's figure is 224 enforcement consultations over two months.

Then it asks `commandcenter stats --format json --explain` for the day, every court and the
first intermediate court, as an auditor would, and compares: the province's `conferences`
figure must equal the conferences held, the intermediate court's the conferences it hosted.
One JSON line per phase; the LAST line is the summary, with `pass`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench._common import BenchError, ServerProcess, emit, free_port
from commandcenter.auth import Role, issue_token

PROVINCE: Final = "P"
REPLY_TIMEOUT_S: Final = 10.0


def courts_toml(intermediate: int, basic: int) -> tuple[str, list[str], dict[str, list[str]]]:
    """The `[[courts]]` tables of the province, its intermediate courts and, per one, its
    basic courts."""
    lines = [f'[[courts]]\ncode = "{PROVINCE}"\nname = "Provincial High Court"\n']
    middles = [f"P{i:02d}" for i in range(1, intermediate + 1)]
    below: dict[str, list[str]] = {}
    for m in middles:
        lines.append(f'[[courts]]\ncode = "{m}"\nname = "Intermediate Court {m}"\nparent = "P"\n')
        below[m] = [f"{m}{j:02d}" for j in range(1, basic + 1)]
        for b in below[m]:
            lines.append(f'[[courts]]\ncode = "{b}"\nname = "Basic Court {b}"\nparent = "{m}"\n')
    return "\n".join(lines), middles, below


class Console:
    """One signed-in WebSocket: sends with fresh ids, reads replies and pushes in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: list[dict[str, Any]] = []

    async def request(self, type_: str, reply: str = "ack", **fields: Any) -> dict[str, Any]:
        msg_id = f"r{next(self._ids)}"
        await self.ws.send_json({"type": type_, "id": msg_id, **fields})
        while True:
            msg = await self.ws.receive_json(timeout=REPLY_TIMEOUT_S)
            if msg.get("type") == "error" and msg.get("ref") is None:
                raise BenchError(f"{type_} {fields}: {msg}")
            if msg.get("ref") == msg_id:
                if msg["type"] != reply:
                    raise BenchError(f"{type_} {fields}: {msg}")
                return dict(msg)
            self._pending.append(msg)
            # Pushes (rings, updates) are not what this script measures: keep the last few.
            del self._pending[:-32]


async def connect(
    session: aiohttp.ClientSession, port: int, secret: str, user: str, role: Role, court: str
) -> Console:
    token = issue_token(
        secret, user=user, role=role, court=court, name=user, ttl_s=3600, now=time.time()
    )
    ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws", params={"token": token})
    first = await ws.receive_json(timeout=REPLY_TIMEOUT_S)
    if first.get("type") != "welcome":
        raise BenchError(f"{user}: expected a welcome, got {first}")
    return Console(ws)


async def hold(
    port: int,
    secret: str,
    conferences: int,
    middles: list[str],
    below: dict[str, list[str]],
    sites: int,
) -> dict[str, int]:
    """Hold the conferences; returns how many each hosting court held."""
    held: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        hosts = {
            court: await connect(session, port, secret, f"sup-{court}", Role.SUPERVISOR, court)
            for court in [PROVINCE, *middles]
        }
        consoles = {
            court: await connect(session, port, secret, f"op-{court}", Role.OPERATOR, court)
            for m in middles
            for court in below[m][:sites]
        }
        for i in range(conferences):
            court = PROVINCE if i % 10 == 0 else middles[i % len(middles)]
            host = hosts[court]
            invited = [c for m in ([court] if court != PROVINCE else middles) for c in below[m]]
            joining = [consoles[c] for c in invited if c in consoles][:sites]
            created = await host.request(
                "create_conference",
                reply="conference_created",
                title=f"Enforcement consultation {i + 1}",
                invite_below=[court] if court != PROVINCE else [PROVINCE],
            )
            cid = created["conference"]["conference_id"]
            await host.request("join_conference", reply="conference_joined", conference_id=cid)
            for console in joining:
                await console.request(
                    "join_conference", reply="conference_joined", conference_id=cid
                )
            if joining:
                speaker = joining[0]
                site = next(u for u, c in consoles.items() if c is speaker)
                await speaker.request("raise_hand", conference_id=cid)
                await host.request("grant_floor", conference_id=cid, site=f"op-{site}")
                await host.request("mute_all", conference_id=cid)
            await host.request("end_conference", conference_id=cid)
            held[court] = held.get(court, 0) + 1
            if (i + 1) % 50 == 0:
                emit({"phase": "progress", "conferences_held": i + 1})
        for console in [*hosts.values(), *consoles.values()]:
            await console.ws.close()
    return held


def stats(config: Path, env: dict[str, str], court: str | None) -> dict[str, Any]:
    today = dt.datetime.now(dt.UTC).date()
    argv = [
        sys.executable,
        "-m",
        "commandcenter",
        "stats",
        "--config",
        str(config),
        "--from",
        today.isoformat(),
        "--to",
        (today + dt.timedelta(days=1)).isoformat(),
        "--format",
        "json",
        "--explain",
    ]
    if court is not None:
        argv += ["--court", court]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise BenchError(f"commandcenter stats failed: {done.stderr.strip()}")
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.province", description=__doc__)
    parser.add_argument("--conferences", type=int, default=224, help="conferences to hold")
    parser.add_argument("--intermediate", type=int, default=15, help="intermediate courts")
    parser.add_argument("--basic", type=int, default=11, help="basic courts under each")
    parser.add_argument("--sites", type=int, default=4, help="consoles joining each conference")
    parser.add_argument("--dir", type=Path, help="where the trace is kept (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.conferences < 1 or args.intermediate < 1 or args.basic < 1 or args.sites < 0:
        parser.error("--conferences, --intermediate and --basic must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-province-") as tmp:
        work: Path = args.dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        courts, middles, below = courts_toml(args.intermediate, args.basic)
        secret = secrets.token_urlsafe(48)
        port = free_port()
        config = work / "province.toml"
        config.write_text(
            f'[server]\nport = {port}\ndata_dir = "{work / "var"}"\n\n'
            f'[auth]\njwt_secret = "{secret}"\n\n[logging]\nlevel = "warning"\n\n'
            # Two months of a province's conferences in seconds: far above any person's
            # message rate, which is not what is measured here.
            "[limits]\nmessages_per_s = 100000.0\nmessage_burst = 100000\n\n"
            # Nor is the pace sites are let into media (no media is negotiated here).
            f"[conferences]\nmax_open = {args.conferences + 10}\njoins_per_s = 100000.0\n\n"
            f"{courts}",
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
        emit(
            {
                "phase": "start",
                "courts": 1 + len(middles) * (1 + args.basic),
                "conferences": args.conferences,
                "sites": args.sites,
            }
        )
        serve = [sys.executable, "-m", "commandcenter", "serve", "--config", str(config)]
        with ServerProcess(serve, port=port, env=env, log_path=work / "server.log"):
            held = asyncio.run(hold(port, secret, args.conferences, middles, below, args.sites))
        held_s = time.monotonic() - started
        province = stats(config, env, None)
        first = stats(config, env, middles[0])
        counted = province["figures"]["conferences"]
        counted_first = first["figures"]["conferences"]
        emit(
            {
                "phase": "stats",
                "conferences": counted,
                f"conferences_{middles[0]}": counted_first,
                "how": province["how"]["conferences"],
            }
        )
        ok = counted == args.conferences and counted_first == held.get(middles[0], 0)
        emit(
            {
                "phase": "summary",
                "conferences_held": sum(held.values()),
                "conferences_counted": counted,
                "held_by_court": held,
                "counted_for_court": {middles[0]: counted_first},
                "seconds": round(held_s, 2),
                "pass": ok,
            }
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
