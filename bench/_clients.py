"""The benchmark's client processes and the pipe protocol the orchestrator drives them with.

Two kinds of worker, each a spawned process running one event loop:

- *idle*: opens its share of the officers' connections and only reads (so pings are
  answered); it is there to make the server hold N connections.
- *workload*: the officers and operators whose latencies and throughput are measured. Its
  sends and receipts share one process and one clock (`time.perf_counter`).

The orchestrator (`bench.signalling`) sends a worker one command at a time over a
`multiprocessing` pipe, `{"cmd": name, ...arguments}`, and gets one reply back,
`{"ok": true, ...result}` or `{"ok": false, "error": traceback}`. Commands: `connect`,
`calls` and `relay` (workload only) and `stop`.

A worker talks either to the hub (`target="hub"`: a JWT in the URL) or to the bare relay of
`bench.ws_relay` (`target="relay"`: who it is in plain query parameters).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final, Literal
from urllib.parse import urlencode

import msgspec
from aiohttp import ClientSession, ClientWebSocketResponse, ClientWSTimeout, TCPConnector, WSMsgType

from bench._common import BenchError, MachineMeter, Reply, cpu_seconds, raise_nofile_limit
from commandcenter.auth import Role, issue_token

Target = Literal["hub", "relay"]

OFFICER: Final = "officer"
OPERATOR: Final = "operator"
TOKEN_TTL_S: Final = 3600.0
# Failures quoted back to the orchestrator, at most.
MAX_SAMPLES: Final = 5
# Frames are classified by their start: msgspec writes the `type` tag first.
_ACK_PREFIX: Final = '{"type":"ack"'
_WELCOME_PREFIX: Final = '{"type":"welcome"'
# A position well inside the protocol's bounds (Zagreb); device_time is set per phase.
_POSITION: Final = (
    '{"type":"position","id":"p%d","lat":45.815,"lon":15.982,"accuracy_m":8.0,"device_time":%d}'
)


@dataclass(frozen=True)
class User:
    user: str
    role: str  # OFFICER or OPERATOR
    court: str


@dataclass(frozen=True)
class ClientSpec:
    """What one worker connects to and as whom."""

    port: int
    target: Target
    users: tuple[User, ...]
    # HS256 secret the hub verifies tokens with (unused for the relay).
    secret: str = ""
    # Handshakes in flight at once; the server's listen backlog is small (aiohttp: 128).
    concurrency: int = 48
    connect_timeout_s: float = 30.0


def url_for(spec: ClientSpec, user: User, now: float) -> str:
    base = f"ws://127.0.0.1:{spec.port}/ws?"
    if spec.target == "relay":
        return base + urlencode({"user": user.user, "role": user.role, "court": user.court})
    token = issue_token(
        spec.secret,
        user=user.user,
        role=Role(user.role),
        court=user.court,
        name=user.user,
        ttl_s=TOKEN_TTL_S,
        now=now,
    )
    return base + urlencode({"token": token, "device": "bench", "app": "bench"})


# ---- connections ----------------------------------------------------------------------


@dataclass(eq=False)
class Peer:
    """One client connection and what the workload knows about its user."""

    user: User
    ws: ClientWebSocketResponse | None = None
    # Officer: the call it placed. Operator: the call it accepted.
    call: CallTrace | None = None


class Pool:
    """Opens connections for a list of users and runs one reader task per connection."""

    def __init__(
        self, spec: ClientSpec, on_frame: Callable[[Peer, str], Coroutine[Any, Any, None]]
    ):
        self.spec = spec
        self.peers = [Peer(u) for u in spec.users]
        self._on_frame = on_frame
        self._session: ClientSession | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self.failures: list[str] = []
        self.failed = 0
        self.closed_early = 0

    async def connect(self) -> Reply:
        self._session = ClientSession(connector=TCPConnector(limit=0))
        sem = asyncio.Semaphore(self.spec.concurrency)
        started = time.perf_counter()
        now = time.time()

        async def one(peer: Peer) -> None:
            async with sem:
                try:
                    await self._open(peer, now)
                except Exception as exc:
                    self.failed += 1
                    if len(self.failures) < MAX_SAMPLES:
                        self.failures.append(f"{peer.user.user}: {exc!r}")

        await asyncio.gather(*(one(p) for p in self.peers))
        return {
            "connected": sum(1 for p in self.peers if p.ws is not None),
            "failed": self.failed,
            "failures": self.failures,
            "seconds": round(time.perf_counter() - started, 3),
        }

    async def _open(self, peer: Peer, now: float) -> None:
        assert self._session is not None
        url = url_for(self.spec, peer.user, now)
        async with asyncio.timeout(self.spec.connect_timeout_s):
            ws = await self._session.ws_connect(
                url, timeout=ClientWSTimeout(ws_receive=None, ws_close=2.0)
            )
            first = await ws.receive()
        if first.type is not WSMsgType.TEXT or not first.data.startswith(_WELCOME_PREFIX):
            await ws.close()
            raise BenchError(f"expected a welcome, got {first.type.name} {first.data!r:.120}")
        peer.ws = ws
        task = asyncio.get_running_loop().create_task(self._read(peer, ws))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def _read(self, peer: Peer, ws: ClientWebSocketResponse) -> None:
        on_frame = self._on_frame
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await on_frame(peer, msg.data)
        # The server closed it: the benchmark counts that as a lost connection.
        peer.ws = None
        self.closed_early += 1

    def open_count(self) -> int:
        return sum(1 for p in self.peers if p.ws is not None and not p.ws.closed)

    async def close(self) -> None:
        for task in list(self._readers):
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self._session is not None:
            # Dropping the sockets is enough; a closing handshake per connection is not
            # what is measured and would take seconds for thousands of them.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._session.close(), 10.0)


# ---- the idle worker --------------------------------------------------------------------


class IdleWorker:
    def __init__(self, spec: ClientSpec) -> None:
        self.pool = Pool(spec, self._ignore)

    async def _ignore(self, peer: Peer, data: str) -> None:
        return None

    async def run(self, cmd: str, args: dict[str, Any]) -> Reply:
        match cmd:
            case "connect":
                return await self.pool.connect()
            case "status":
                return {"open": self.pool.open_count(), "closed_early": self.pool.closed_early}
            case "stop":
                await self.pool.close()
                return {}
        raise BenchError(f"idle worker: unknown command {cmd!r}")


# ---- the workload -----------------------------------------------------------------------


@dataclass(eq=False)
class CallTrace:
    """One call as the workload saw it; times are `time.perf_counter()` seconds."""

    ref: str
    officer: Peer
    t_sent: float
    call_id: str | None = None
    rings: list[float] = field(default_factory=list)
    accepted_by: Peer | None = None
    t_accept: float | None = None
    t_answered: float | None = None
    queued: bool = False
    end_reason: str | None = None


_decode_json = msgspec.json.Decoder(dict[str, Any]).decode


class Workload:
    """Officers who call their court's center and operators who answer at once; then the
    same officers streaming positions in a closed loop (see `bench.signalling`)."""

    def __init__(self, spec: ClientSpec) -> None:
        self.pool = Pool(spec, self._on_frame)
        self.mode: Literal["idle", "calls", "relay"] = "idle"
        # calls: officer id -> the call it placed and has not seen end.
        self.active: dict[str, CallTrace] = {}
        self.done: list[CallTrace] = []
        self.free: dict[str, deque[Peer]] = {}
        self.hold_s = 0.0
        self.errors = 0
        self.error_samples: list[str] = []
        self.stray = 0
        self._seq = 0
        # Set when the phase's last reply is in: every call ended, every position answered.
        self._quiet = asyncio.Event()
        self._placing = False
        self._tasks: set[asyncio.Task[None]] = set()
        # relay
        self.sending = False
        self.sent = 0
        self.acks = 0
        self.forwarded = 0
        self.other = 0
        self._device_time = 0

    async def run(self, cmd: str, args: dict[str, Any]) -> Reply:
        match cmd:
            case "connect":
                reply = await self.pool.connect()
                self.free = {}
                for peer in self.pool.peers:
                    if peer.user.role == OFFICER and peer.ws is not None:
                        self.free.setdefault(peer.user.court, deque()).append(peer)
                return reply
            case "calls":
                return await self.run_calls(**args)
            case "relay":
                return await self.run_relay(**args)
            case "status":
                return {"open": self.pool.open_count(), "closed_early": self.pool.closed_early}
            case "stop":
                await self.pool.close()
                return {}
        raise BenchError(f"workload: unknown command {cmd!r}")

    def _error(self, peer: Peer, data: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_SAMPLES:
            self.error_samples.append(f"{peer.user.user}: {data[:200]}")

    async def _send(self, peer: Peer, message: dict[str, Any]) -> None:
        if peer.ws is None:
            raise BenchError(f"{peer.user.user} is not connected")
        await peer.ws.send_str(msgspec.json.encode(message).decode())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_frame(self, peer: Peer, data: str) -> None:
        mode = self.mode
        if mode == "relay":
            if peer.user.role == OPERATOR:
                self.forwarded += 1
                return
            if data.startswith(_ACK_PREFIX):
                self.acks += 1
            else:
                self.other += 1
                self._error(peer, data)
            # Any reply frees the officer's slot in the window.
            if self.sending:
                await self._send_position(peer)
            elif self.acks + self.other >= self.sent:
                self._quiet.set()
            return
        if mode != "calls":
            return
        now = time.perf_counter()
        msg = _decode_json(data)
        if peer.user.role == OFFICER:
            await self._officer_frame(peer, msg, data, now)
        else:
            await self._operator_frame(peer, msg, data, now)

    # ---- calls ------------------------------------------------------------------------

    async def run_calls(
        self, rate: float, duration_s: float, hold_s: float, drain_s: float
    ) -> Reply:
        """Place `rate` calls a second for `duration_s`, round-robin over the courts."""
        self.mode = "calls"
        self.hold_s = hold_s
        self.active.clear()
        self.done.clear()
        self._placing = True
        self._quiet.clear()
        courts = sorted(self.free)
        if not courts:
            raise BenchError("workload has no connected officers")
        loop = asyncio.get_running_loop()
        total = max(1, round(rate * duration_s))
        skipped = 0
        max_lag = 0.0
        start = loop.time()
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                max_lag = max(max_lag, -delay)
            free = self.free[courts[i % len(courts)]]
            if not free:
                skipped += 1
                continue
            officer = free.popleft()
            self._seq += 1
            trace = CallTrace(ref=f"c{self._seq}", officer=officer, t_sent=0.0)
            officer.call = trace
            self.active[officer.user.user] = trace
            trace.t_sent = time.perf_counter()
            await self._send(officer, {"type": "call_center", "id": trace.ref})
        placed_s = loop.time() - start
        self._placing = False
        if self.active:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), drain_s)
        unfinished = len(self.active)
        # Late replies (the hangup's ack follows call_ended) must not leak into the next phase.
        await asyncio.sleep(0.3)
        self.mode = "idle"
        traces = self.done + list(self.active.values())
        ring_ms = [(max(t.rings) - t.t_sent) * 1000.0 for t in traces if t.rings]
        answer_ms = [
            (t.t_answered - t.t_accept) * 1000.0
            for t in traces
            if t.t_answered is not None and t.t_accept is not None
        ]
        reasons = Counter(t.end_reason or "unfinished" for t in traces)
        return {
            "placed": len(traces),
            "rang": len(ring_ms),
            "answered": len(answer_ms),
            "queued": sum(1 for t in traces if t.queued),
            "unfinished": unfinished,
            "skipped": skipped,
            "end_reasons": dict(reasons),
            "operators_rung_mean": (
                sum(len(t.rings) for t in traces) / len(ring_ms) if ring_ms else 0.0
            ),
            "placing_s": round(placed_s, 3),
            "max_schedule_lag_ms": round(max_lag * 1000.0, 3),
            "errors": self.errors,
            "error_samples": self.error_samples,
            "stray": self.stray,
            "ring_ms": ring_ms,
            "answer_ms": answer_ms,
        }

    async def _officer_frame(self, peer: Peer, msg: dict[str, Any], data: str, now: float) -> None:
        trace = peer.call
        kind = msg.get("type")
        if kind == "error":
            self._error(peer, data)
            if trace is not None and msg.get("ref") == trace.ref:
                trace.end_reason = f"error:{msg.get('code')}"
                self._finish(trace)
            return
        if trace is None:
            return
        if kind == "call_placed" and msg.get("ref") == trace.ref:
            trace.call_id = msg["call_id"]
        elif kind == "call_queued":
            trace.queued = True
        elif kind == "call_answered":
            trace.t_answered = now
            asyncio.get_running_loop().call_later(
                self.hold_s, lambda: self._spawn(self._hangup(peer, trace))
            )
        elif kind == "call_ended" and msg.get("call_id") == trace.call_id:
            trace.end_reason = msg.get("reason")
            self._finish(trace)

    def _finish(self, trace: CallTrace) -> None:
        officer = trace.officer
        if self.active.pop(officer.user.user, None) is not None:
            self.done.append(trace)
        if not self.active and not self._placing:
            self._quiet.set()
        officer.call = None
        if officer.ws is not None:
            self.free[officer.user.court].append(officer)

    async def _hangup(self, officer: Peer, trace: CallTrace) -> None:
        if officer.call is trace and trace.call_id is not None:
            self._seq += 1
            await self._send(
                officer, {"type": "hangup", "id": f"h{self._seq}", "call_id": trace.call_id}
            )

    async def _operator_frame(self, peer: Peer, msg: dict[str, Any], data: str, now: float) -> None:
        kind = msg.get("type")
        if kind == "call_ringing":
            call = msg["call"]
            trace = self.active.get(call["officer"]["id"])
            if trace is None or trace.call_id not in (None, call["call_id"]):
                self.stray += 1
                return
            trace.call_id = call["call_id"]
            trace.rings.append(now)
            if trace.accepted_by is None and peer.call is None:
                trace.accepted_by = peer
                peer.call = trace
                self._seq += 1
                trace.t_accept = time.perf_counter()
                await self._send(
                    peer, {"type": "accept", "id": f"a{self._seq}", "call_id": trace.call_id}
                )
        elif kind == "call_ended":
            if peer.call is not None and peer.call.call_id == msg.get("call_id"):
                peer.call = None
        elif kind == "error":
            self._error(peer, data)
            peer.call = None

    # ---- relay --------------------------------------------------------------------------

    async def run_relay(
        self,
        duration_s: float,
        warmup_s: float,
        window: int,
        drain_s: float,
        server_pid: int,
        watch_pids: list[int],
    ) -> Reply:
        """Every officer keeps `window` positions in flight; counts frames delivered."""
        officers = [p for p in self.pool.peers if p.user.role == OFFICER and p.ws is not None]
        if not officers:
            raise BenchError("workload has no connected officers")
        self.sent = self.acks = self.forwarded = self.other = 0
        self._device_time = int(time.time() * 1000)
        self._quiet.clear()
        self.mode = "relay"
        self.sending = True
        for _ in range(window):
            for officer in officers:
                await self._send_position(officer)
        await asyncio.sleep(warmup_s)
        machine = MachineMeter(watch_pids)
        machine.start()
        t0, cpu0, own0 = time.perf_counter(), cpu_seconds(server_pid), time.process_time()
        acks0, fwd0, sent0 = self.acks, self.forwarded, self.sent
        await asyncio.sleep(duration_s)
        t1, cpu1, own1 = time.perf_counter(), cpu_seconds(server_pid), time.process_time()
        acks1, fwd1, sent1 = self.acks, self.forwarded, self.sent
        machine_use = machine.stop()
        self.sending = False
        if self.acks + self.other < self.sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), drain_s)
        await asyncio.sleep(0.2)
        self.mode = "idle"
        wall = t1 - t0
        delivered = (acks1 - acks0) + (fwd1 - fwd0)
        return {
            "seconds": round(wall, 3),
            "officers": len(officers),
            "window": window,
            "msgs_per_s": round(delivered / wall, 1),
            "acks_per_s": round((acks1 - acks0) / wall, 1),
            "forwarded_per_s": round((fwd1 - fwd0) / wall, 1),
            "sent_per_s": round((sent1 - sent0) / wall, 1),
            "server_cpu_pct": round(100.0 * (cpu1 - cpu0) / wall, 1),
            # Independent of how much CPU the machine left the server: its efficiency.
            "msgs_per_server_cpu_s": round(delivered / (cpu1 - cpu0), 1) if cpu1 > cpu0 else 0.0,
            "client_cpu_pct": round(100.0 * (own1 - own0) / wall, 1),
            **machine_use,
            "unacked": self.sent - self.acks - self.other,
            "errors": self.other,
            "error_samples": self.error_samples,
        }

    async def _send_position(self, officer: Peer) -> None:
        ws = officer.ws
        if ws is None or ws.closed:
            return
        self.sent += 1
        await ws.send_str(_POSITION % (self.sent, self._device_time))


# ---- process entry points and the orchestrator's handle ---------------------------------


async def _command_loop(conn: Connection, worker: IdleWorker | Workload) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            request: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
        except EOFError:
            # The orchestrator is gone; nobody is left to report to.
            await worker.pool.close()
            return
        cmd = request.pop("cmd")
        try:
            reply = {"ok": True, **await worker.run(cmd, request)}
        except Exception:
            reply = {"ok": False, "error": traceback.format_exc()}
        conn.send(reply)
        if cmd == "stop":
            return


def idle_main(conn: Connection, spec: ClientSpec) -> None:
    raise_nofile_limit()
    asyncio.run(_command_loop(conn, IdleWorker(spec)))


def workload_main(conn: Connection, spec: ClientSpec) -> None:
    raise_nofile_limit()
    asyncio.run(_command_loop(conn, Workload(spec)))


__all__ = ["ClientSpec", "User", "idle_main", "workload_main"]
