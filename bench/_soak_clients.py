"""The soak's simulated officers and operators: one process, one event loop, real WebSockets.

Officers send a `position` every `position_interval_s` (staggered over the interval) and,
`rate` times a second in all, one free officer calls its court's center (`call_center`);
the first operator rung accepts at once, the officer holds `hold_s` and hangs up. A
connection the server closes (or that breaks) is opened again after a short backoff, on
the next node of the list, resuming its session with the resume token of its last welcome,
and the client carries on: that is what an officer's app does.

Everything a client sees is kept for the orchestrator (`bench.soak`): per minute the calls
placed and answered, ring latencies (from `call_center` sent until the last operator rung
has `call_ringing`, as `bench.signalling` measures it), errors by code, closes by code,
reconnects, positions sent and acknowledged; and, for the whole run, every call (when it
was placed, its id, whether it was answered and how it ended) and every session each
client was welcomed into, which `bench._trace_check` holds the trace to.

A message is *unanswered* if its connection stayed open and no reply to it (an `ack`, a
`call_placed`, an `error` naming it) came within `reply_timeout_s`: the server took it and
said nothing. Those count as events lost.

Commands from the orchestrator (over the `bench._common.Worker` pipe): `connect`, `start`,
`minute`, `drain`, `close`, `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

import msgspec
from aiohttp import ClientSession, ClientWebSocketResponse, ClientWSTimeout, TCPConnector, WSMsgType

from bench._clients import OFFICER, User, url_for
from bench._clients import ClientSpec as _UrlSpec
from bench._common import BenchError, Reply, raise_nofile_limit

# How long a message may go without any reply before it counts as unanswered, seconds.
REPLY_TIMEOUT_S: Final = 30.0
# A call not ended this long after it was placed is given up on (counted unfinished).
CALL_TIMEOUT_S: Final = 90.0
# Wait before an `accept` or `hangup` refused `unavailable` is sent again, seconds.
RETRY_S: Final = 1.0
RECONNECT_MIN_S: Final = 0.5
RECONNECT_MAX_S: Final = 5.0
# Events of the run kept for the chaos report (closes, reconnects, errors), at most.
MAX_EVENTS: Final = 200_000
_POSITION: Final = (
    '{"type":"position","id":"%s","lat":45.815,"lon":15.982,"accuracy_m":8.0,"device_time":%d}'
)
_decode = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass(frozen=True)
class SoakSpec:
    """Who connects where: `users[i]` starts on `ports[homes[i]]`."""

    ports: tuple[int, ...]
    users: tuple[User, ...]
    homes: tuple[int, ...]
    secret: str
    concurrency: int = 32


@dataclass(eq=False)
class Client:
    user: User
    node: int
    ws: ClientWebSocketResponse | None = None
    session_id: str | None = None
    resume_token: str | None = None
    # Officer: the call it placed and has not seen end. Operator: the call it accepted.
    call: Call | None = None
    stopping: bool = False
    reconnecting: bool = False


@dataclass(eq=False)
class Call:
    ref: str
    officer: Client
    t_sent: float
    wall_sent: float
    call_id: str | None = None
    rings: list[float] = field(default_factory=list)
    accepted: bool = False
    answered: bool = False
    hung_up: bool = False
    end: str | None = None
    wall_end: float | None = None


class Minute:
    """What the clients saw since the last `minute` command."""

    def __init__(self) -> None:
        self.placed = 0
        self.answered = 0
        self.ended: Counter[str] = Counter()
        self.ring_ms: list[float] = []
        self.errors: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.reconnects = 0
        self.positions_sent = 0
        self.positions_acked = 0

    def reply(self) -> Reply:
        return {
            "placed": self.placed,
            "answered": self.answered,
            "ended": dict(self.ended),
            "ring_ms": self.ring_ms,
            "errors": dict(self.errors),
            "closes": dict(self.closes),
            "reconnects": self.reconnects,
            "positions_sent": self.positions_sent,
            "positions_acked": self.positions_acked,
        }


class Soak:
    def __init__(self, spec: SoakSpec) -> None:
        self.spec = spec
        self.clients = [Client(u, h) for u, h in zip(spec.users, spec.homes, strict=True)]
        self.officers = [c for c in self.clients if c.user.role == OFFICER]
        self.by_court: dict[str, list[Client]] = {}
        for c in self.officers:
            self.by_court.setdefault(c.user.court, []).append(c)
        self.minute = Minute()
        self.calls: list[Call] = []
        self.active: dict[str, Call] = {}
        self.sessions: set[str] = set()
        # (wall time, what, detail): closes, reconnects, errors, for the chaos report.
        self.events: list[tuple[float, str, str]] = []
        # Message id -> (monotonic time sent, client): waiting for any reply.
        self.pending: dict[str, tuple[float, Client]] = {}
        # An `accept` or `hangup` by id, sent again (after RETRY_S) if refused
        # `unavailable`: the app's user would press the button again.
        self.retriable: dict[str, tuple[Client, Call, dict[str, Any]]] = {}
        self.retries = 0
        # Replies that came for a call this client had already given up on (a `call_placed`
        # after a welcome that did not list the call): answered, but worth a look.
        self.stale_replies = 0
        self.stale_samples: list[str] = []
        self.unanswered = 0
        self.unanswered_samples: list[str] = []
        self.placing = False
        self.hold_s = 1.0
        self._ids = itertools.count(1)
        self._session: ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._load: list[asyncio.Task[None]] = []
        self._rng = random.Random(7)

    # ---- connections ----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _event(self, what: str, detail: str) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append((time.time(), what, detail))

    async def connect_all(self) -> Reply:
        self._session = ClientSession(connector=TCPConnector(limit=0))
        sem = asyncio.Semaphore(self.spec.concurrency)
        failures: list[str] = []
        started = time.perf_counter()

        async def one(client: Client) -> None:
            async with sem:
                try:
                    await self._open(client)
                except Exception as exc:
                    if len(failures) < 5:
                        failures.append(f"{client.user.user}: {exc!r:.300}")

        # Operators first: they are on the roster before any officer signs in.
        await asyncio.gather(*(one(c) for c in self.clients if c.user.role != OFFICER))
        await asyncio.gather(*(one(c) for c in self.officers))
        connected = sum(1 for c in self.clients if c.ws is not None)
        return {
            "connected": connected,
            "failed": len(self.clients) - connected,
            "failures": failures,
            "seconds": round(time.perf_counter() - started, 2),
        }

    async def _open(self, client: Client) -> None:
        assert self._session is not None
        spec = _UrlSpec(self.spec.ports[client.node], "hub", (), self.spec.secret)
        url = url_for(spec, client.user, time.time())
        if client.resume_token:
            url += f"&resume={client.resume_token}"
        async with asyncio.timeout(15.0):
            ws = await self._session.ws_connect(
                url, timeout=ClientWSTimeout(ws_receive=None, ws_close=2.0)
            )
            first = await ws.receive()
        if first.type is not WSMsgType.TEXT:
            await ws.close()
            raise BenchError(f"closed before its welcome: {first.type.name} {ws.close_code}")
        msg = _decode(first.data)
        if msg.get("type") != "welcome":
            await ws.close()
            raise BenchError(f"expected a welcome, got {first.data[:160]}")
        client.session_id = msg["session_id"]
        client.resume_token = msg["resume_token"]
        self.sessions.add(msg["session_id"])
        client.ws = ws
        self._welcomed_again(client, msg)
        self._spawn(self._read(client, ws))

    async def _read(self, client: Client, ws: ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        self._on_frame(client, _decode(msg.data), msg.data)
                    except Exception as exc:
                        self._event("client_bug", repr(exc)[:200])
        finally:
            if client.ws is ws:
                client.ws = None
            if not client.stopping:
                code = str(ws.close_code)
                self.minute.closes[code] += 1
                self._event("close", code)
                self._lost_connection(client)
                if not client.reconnecting:
                    client.reconnecting = True
                    self._spawn(self._reconnect(client))

    def _lost_connection(self, client: Client) -> None:
        """What was waiting on this connection will get no reply: not unanswered."""
        for mid, (_, owner) in list(self.pending.items()):
            if owner is client:
                del self.pending[mid]

    async def _reconnect(self, client: Client) -> None:
        delay = RECONNECT_MIN_S
        try:
            while not client.stopping:
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                if client.stopping:
                    return
                try:
                    await self._open(client)
                except Exception as exc:
                    self._event("reconnect_failed", type(exc).__name__)
                    # The next node in the list, as a load balancer would send it elsewhere.
                    client.node = (client.node + 1) % len(self.spec.ports)
                    delay = min(RECONNECT_MAX_S, delay * 2)
                    continue
                self.minute.reconnects += 1
                self._event("reconnect", str(client.node))
                return
        finally:
            client.reconnecting = False

    async def close_all(self) -> Reply:
        """Close every connection normally (1000), as officers signing off would."""
        for c in self.clients:
            c.stopping = True
        for task in self._load:
            task.cancel()
        open_ws = [c.ws for c in self.clients if c.ws is not None]
        await asyncio.gather(*(ws.close() for ws in open_ws), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._session.close(), 10.0)
        return {"closed": len(open_ws)}

    # ---- frames ---------------------------------------------------------------------------

    def _answered(self, ref: object) -> None:
        if isinstance(ref, str):
            self.pending.pop(ref, None)

    def _on_frame(self, client: Client, msg: dict[str, Any], data: str) -> None:
        kind = msg.get("type")
        now = time.perf_counter()
        ref = msg.get("ref")
        if (
            kind == "call_placed"
            and ref in self.pending
            and (client.call is None or client.call.ref != ref)
        ):
            # Every reply carries its message's id (protocol.md): this one answers `ref` even
            # though the call it was for is over here.
            self._answered(ref)
            self.stale_replies += 1
            if len(self.stale_samples) < 5:
                call_id = msg.get("call_id")
                self.stale_samples.append(
                    f"{client.user.user} {ref} call_placed {call_id} at {time.time():.1f}"
                )
            self._event("stale_reply", str(kind))
            return
        if kind == "ack":
            if msg.get("ref") in self.pending:
                self.minute.positions_acked += 1
            self._answered(msg.get("ref"))
            return
        if kind == "error":
            self._answered(msg.get("ref"))
            code = str(msg.get("code"))
            self.minute.errors[code] += 1
            self._event("error", code)
            retry = self.retriable.pop(str(msg.get("ref")), None)
            if retry is not None:
                if code == "unavailable":
                    self._retry_later(*retry)
                return
            call = client.call
            if client.user.role == OFFICER and call is not None and msg.get("ref") == call.ref:
                self._finish(call, f"error:{code}")
            elif client.user.role != OFFICER:
                client.call = None
            return
        if kind == "welcome":
            # Sent again after a resync (a new authority, Redis back): same session or new.
            client.session_id = msg["session_id"]
            client.resume_token = msg["resume_token"]
            self.sessions.add(msg["session_id"])
            self._welcomed_again(client, msg)
            return
        if client.user.role == OFFICER:
            self._officer_frame(client, msg, kind, now)
        else:
            self._operator_frame(client, msg, kind, now)

    def _retry_later(self, client: Client, call: Call, message: dict[str, Any]) -> None:
        def again() -> None:
            if call.end is None:
                self.retries += 1
                self._spawn(self._send(client, message, retry=call))

        asyncio.get_running_loop().call_later(RETRY_S, again)

    def _welcomed_again(self, client: Client, msg: dict[str, Any]) -> None:
        """A welcome (after a reconnect, or again after a resync) lists the user's live
        calls, as an app restores its screen from it: an officer's call that is not among
        them ended while nobody could tell it; one that is active was answered (its
        `call_answered` may have gone down with the connection), so it is held and hung
        up; an operator's call that is not among them is over for it."""
        calls = {c.get("call_id"): c for c in msg.get("calls", [])}
        call = client.call
        if call is None:
            return
        if client.user.role != OFFICER:
            if call.call_id not in calls:
                client.call = None
            return
        if call.call_id is None:
            # Its call_placed went down with the connection: the officer's one live call.
            mine = [c for c in calls.values() if c.get("direction") == "officer_to_center"]
            if len(mine) == 1:
                call.call_id = mine[0]["call_id"]
                self._answered(call.ref)
        info = calls.get(call.call_id)
        if info is None:
            if call.call_id is not None or not self._placed_since_welcome(call):
                self._finish(call, "gone_at_welcome")
            return
        if info.get("state") != "active":
            return
        if not call.answered:
            call.answered = True
            self.minute.answered += 1
            loop = asyncio.get_running_loop()
            loop.call_later(self.hold_s, lambda: self._spawn(self._hangup(client, call)))
        elif call.hung_up:
            # The hangup went down with the connection: hang up again.
            self._spawn(self._hangup(client, call))

    @staticmethod
    def _placed_since_welcome(call: Call) -> bool:
        """A call placed less than a second ago may not be in a welcome written before."""
        return time.time() - call.wall_sent < 1.0

    def _officer_frame(self, client: Client, msg: dict[str, Any], kind: Any, now: float) -> None:
        call = client.call
        if call is None:
            return
        if kind == "call_placed" and msg.get("ref") == call.ref:
            self._answered(call.ref)
            call.call_id = msg["call_id"]
        elif kind == "call_answered" and msg["call"]["call_id"] == call.call_id:
            if not call.answered:
                call.answered = True
                self.minute.answered += 1
                loop = asyncio.get_running_loop()
                loop.call_later(self.hold_s, lambda: self._spawn(self._hangup(client, call)))
        elif kind == "call_ended" and msg.get("call_id") == call.call_id:
            self._finish(call, str(msg.get("reason")))

    def _operator_frame(self, client: Client, msg: dict[str, Any], kind: Any, now: float) -> None:
        if kind == "call_ringing":
            info = msg["call"]
            call = self.active.get(info["officer"]["id"])
            if call is None or call.call_id not in (None, info["call_id"]):
                return
            call.call_id = info["call_id"]
            call.rings.append(now)
            if not call.accepted and client.call is None:
                call.accepted = True
                client.call = call
                accept = {"type": "accept", "call_id": call.call_id}
                self._spawn(self._send(client, accept, retry=call))
        elif (
            kind == "call_ended"
            and client.call is not None
            and client.call.call_id == msg.get("call_id")
        ):
            client.call = None

    def _finish(self, call: Call, end: str) -> None:
        if call.end is not None:
            return
        call.end = end
        call.wall_end = time.time()
        self.minute.ended[end] += 1
        if call.rings:
            self.minute.ring_ms.append((max(call.rings) - call.t_sent) * 1000.0)
        officer = call.officer
        if self.active.get(officer.user.user) is call:
            del self.active[officer.user.user]
        if officer.call is call:
            officer.call = None
        for c in self.clients:
            if c.call is call and c is not officer:
                c.call = None
        for mid, (_, of_call, _) in list(self.retriable.items()):
            if of_call is call:
                del self.retriable[mid]

    async def _send(
        self, client: Client, message: dict[str, Any], *, retry: Call | None = None
    ) -> str:
        mid = f"m{next(self._ids)}"
        ws = client.ws
        if ws is None or ws.closed:
            return mid
        if retry is not None:
            self.retriable[mid] = (client, retry, message)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(msgspec.json.encode({**message, "id": mid}).decode())
        return mid

    async def _hangup(self, officer: Client, call: Call) -> None:
        if officer.call is call and call.call_id is not None and call.end is None:
            call.hung_up = True
            await self._send(officer, {"type": "hangup", "call_id": call.call_id}, retry=call)

    # ---- the load -------------------------------------------------------------------------

    def start(self, rate: float, hold_s: float, position_interval_s: float) -> Reply:
        self.hold_s = hold_s
        self.placing = True
        loop = asyncio.get_running_loop()
        self._load = [
            loop.create_task(self._positions(position_interval_s)),
            loop.create_task(self._place_calls(rate)),
            loop.create_task(self._watchdog()),
        ]
        return {}

    async def _positions(self, interval_s: float) -> None:
        """Each officer every `interval_s`, their turns spread evenly over the interval."""
        loop = asyncio.get_running_loop()
        n = len(self.officers)
        start = loop.time()
        for k in itertools.count():
            officer = self.officers[k % n]
            due = start + k * interval_s / n
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            ws = officer.ws
            if ws is None or ws.closed:
                continue
            mid = f"p{next(self._ids)}"
            self.pending[mid] = (time.monotonic(), officer)
            self.minute.positions_sent += 1
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(_POSITION % (mid, int(time.time() * 1000)))

    async def _place_calls(self, rate: float) -> None:
        loop = asyncio.get_running_loop()
        courts = sorted(self.by_court)
        start = loop.time()
        for k in itertools.count():
            due = start + k / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.placing:
                return
            court = courts[k % len(courts)]
            free = [c for c in self.by_court[court] if c.call is None and c.ws is not None]
            if not free:
                continue
            officer = self._rng.choice(free)
            ref = f"c{next(self._ids)}"
            call = Call(ref, officer, time.perf_counter(), time.time())
            officer.call = call
            self.active[officer.user.user] = call
            self.calls.append(call)
            self.minute.placed += 1
            ws = officer.ws
            assert ws is not None
            self.pending[ref] = (time.monotonic(), officer)
            try:
                await ws.send_str(f'{{"type":"call_center","id":"{ref}"}}')
            except (ConnectionError, RuntimeError):
                self.pending.pop(ref, None)
                self._finish(call, "send_failed")

    async def _watchdog(self) -> None:
        """Unanswered messages, and calls that never end, once a second."""
        while True:
            await asyncio.sleep(1.0)
            self._expire()

    def _expire(self) -> None:
        now = time.monotonic()
        for mid, (sent, owner) in list(self.pending.items()):
            if now - sent > REPLY_TIMEOUT_S:
                del self.pending[mid]
                self.unanswered += 1
                what = "position" if mid.startswith("p") else "call_center"
                if len(self.events) < MAX_EVENTS:
                    # Dated when it was sent: the fault it fell in, not 30 s later.
                    self.events.append((time.time() - (now - sent), "unanswered", what))
                if len(self.unanswered_samples) < 5:
                    ws = owner.ws
                    self.unanswered_samples.append(
                        f"{owner.user.user} node {owner.node} {what} {mid} sent "
                        f"{time.time() - (now - sent):.1f} open {ws is not None and not ws.closed}"
                    )
        wall = time.time()
        for call in list(self.active.values()):
            if wall - call.wall_sent > CALL_TIMEOUT_S:
                self._finish(call, "unfinished")

    async def drain(self, wait_s: float) -> Reply:
        """Stop placing calls; wait (up to `wait_s`) for the calls under way to end and
        every message to be answered; then report the whole run."""
        self.placing = False
        for task in self._load[:2]:
            task.cancel()
        deadline = time.monotonic() + wait_s
        while (self.active or self.pending) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            self._expire()
        for call in list(self.active.values()):
            self._finish(call, "unfinished")
        pending = len(self.pending)
        return {
            "calls": [
                [c.wall_sent, c.call_id, c.answered, c.end, c.wall_end, c.officer.user.user]
                for c in self.calls
            ],
            "sessions": sorted(self.sessions),
            "events": self.events,
            "unanswered": self.unanswered + pending,
            "retries": self.retries,
            "stale_replies": self.stale_replies,
            "stale_samples": self.stale_samples,
            "unanswered_samples": self.unanswered_samples,
            "open": sum(1 for c in self.clients if c.ws is not None and not c.ws.closed),
        }

    async def run(self, cmd: str, args: dict[str, Any]) -> Reply:
        match cmd:
            case "connect":
                return await self.connect_all()
            case "start":
                return self.start(**args)
            case "minute":
                minute, self.minute = self.minute, Minute()
                open_now = sum(1 for c in self.clients if c.ws is not None and not c.ws.closed)
                # A call placed in the line's last milliseconds is answered in the next line:
                # with the calls still waiting, each line balances (placed + waiting before ==
                # answered + waiting now) however the boundary falls.
                in_flight = sum(1 for c in self.active.values() if not c.answered)
                return {
                    **minute.reply(),
                    "in_flight": in_flight,
                    "open": open_now,
                    "unanswered": self.unanswered,
                }
            case "drain":
                return await self.drain(**args)
            case "close" | "stop":
                return await self.close_all()
        raise BenchError(f"soak clients: unknown command {cmd!r}")


async def _loop(conn: Connection, soak: Soak) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            request: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
        except EOFError:
            await soak.close_all()
            return
        cmd = request.pop("cmd")
        try:
            reply = {"ok": True, **await soak.run(cmd, request)}
        except Exception:
            import traceback

            reply = {"ok": False, "error": traceback.format_exc()}
        conn.send(reply)
        if cmd == "stop":
            return


def soak_clients_main(conn: Connection, spec: SoakSpec) -> None:
    raise_nofile_limit()
    asyncio.run(_loop(conn, Soak(spec)))


__all__ = ["SoakSpec", "soak_clients_main"]
