"""The node's one ordered stream of everything that reaches a client or the media server.

The core's actions and the edge's own steps (attach a new connection, switch a connection's
reply encoding, close a connection, answer with an error) are performed in the order they
were emitted, by one task (`_pump`), records first: every `Record` of a batch is written to
the trace (awaited) before any client hears of it. So a connection's first frame is its
welcome, a reply is encoded like the frame it answers, and what was queued for a connection
before it is closed is sent before the close frame. Batches that pile up while the recorder
is busy are recorded together: group commit for free.

While the recorder fails (the trace database is down, its disk full), nothing is performed:
the batches whose events are not durable are held, in order, and retried at least every
RECORD_RETRY_S, so no client is ever told of a fact a crash could take back. Meanwhile the
hub refuses new actions and connections (`refusing`, docs/protocol.md), `/healthz` says
`degraded`, `/readyz` fails, and the log says so once; once the recorder takes the events,
everything held is performed, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from sessions.recorder import SessionRecorder, TraceEvent
from signalling import protocol as p
from signalling.codec import Encoding
from signalling.connection import Connection
from signalling.core.actions import Action, Disconnect, Negotiate, Record, Room, Send
from signalling.errors import ClientError, error_reply, internal_error_reply
from signalling.media_port import MediaPort
from signalling.router import Router

log = structlog.get_logger(__name__)

# While the recorder fails, it is retried at least this often, seconds.
RECORD_RETRY_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Attach:
    """Make `conn` the user's connection in the router, from this point of the stream on."""

    conn: Connection


@dataclass(frozen=True, slots=True)
class UseEncoding:
    """Frames delivered to `conn` from here on are encoded as the frame they answer."""

    conn: Connection
    encoding: Encoding


@dataclass(frozen=True, slots=True)
class Close:
    """Take `conn` out of the router and close it once what was queued for it is sent."""

    conn: Connection
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer `conn` itself: an edge's own reply (an error for a frame it sent) goes to the
    connection that sent the frame, not to wherever the user is routed. In a cluster the
    authority's map may name another node for a while (a resume elsewhere, a resync), and a
    connection still waiting for its welcome is in no map at all; routed, such a reply was
    lost, and the client waited for ever."""

    conn: Connection
    message: p.ServerMessage


@dataclass(frozen=True, slots=True)
class _Flushed:
    """Everything before this step has been performed."""

    done: asyncio.Future[None]


Step = Action | Attach | UseEncoding | Close | Reply | _Flushed


class Outbox:
    def __init__(
        self,
        *,
        recorder: SessionRecorder,
        router: Router,
        media: MediaPort | None,
        node_id: str,
        recorded: Callable[[Sequence[TraceEvent]], None] | None = None,
    ) -> None:
        """`recorded` is told of every batch of events once the recorder has them (the
        cluster's journal follows them)."""
        self.recorder = recorder
        self.router = router
        self.media = media
        self.node_id = node_id
        self._recorded = recorded
        self._batches: list[Sequence[Step]] = []
        # The recorder failed the last write: the batches are held (see the module doc).
        self._failing = False
        self._ready = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        # Media messages being carried out by the media server.
        self._negotiations: set[asyncio.Task[None]] = set()
        # Events recorded through this outbox, by kind (sign-ins for the metrics endpoint).
        self.recorded_kinds: Counter[str] = Counter()

    # ---- what callers queue -------------------------------------------------------------

    def emit(self, steps: Sequence[Step]) -> None:
        """Perform `steps` after everything emitted so far."""
        if steps:
            self._batches.append(steps)
            self._ready.set()

    def deliver(self, user: str, message: p.ServerMessage) -> None:
        """Queue `message` for `user` behind everything already queued (the media server's
        replies and offers come this way)."""
        self.emit([Send((user,), message)])

    def reply(self, conn: Connection, exc: ClientError, ref: str | None) -> None:
        """Answer a message of `conn` with the client error `exc`."""
        self.emit([Reply(conn, error_reply(exc, ref))])

    def close(self, conn: Connection, code: int, reason: str) -> None:
        """Close `conn` once what was queued for it is sent."""
        self.emit([Close(conn, code, reason)])

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self.media is not None:
            await self.media.start(self.deliver)
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def flush(self) -> None:
        """Return once everything emitted so far has been performed."""
        if self._pump_task is None or self._pump_task.done():
            return
        done = asyncio.get_running_loop().create_future()
        self.emit([_Flushed(done)])
        await done

    async def stop(self, wait_s: float) -> None:
        """Perform what is queued (up to `wait_s`), let media negotiations finish, stop the
        media server and the pump."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), wait_s)
        if self._negotiations:
            await asyncio.wait(set(self._negotiations), timeout=wait_s)
        if self.media is not None:
            await self.media.stop()
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
            self._pump_task = None

    def health(self) -> dict[str, object]:
        unrecorded = (
            sum(1 for b in self._batches for a in b if isinstance(a, Record))
            if self._failing
            else 0
        )
        health: dict[str, object] = {"unrecorded_events": unrecorded}
        if self.media is not None:
            health.update(self.media.health())
        return health

    @property
    def degraded(self) -> bool:
        """Trace events wait for the recorder, and everything behind them with them."""
        return self._failing

    # ---- the pump -----------------------------------------------------------------------

    async def _pump(self) -> None:
        while True:
            if self._failing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), RECORD_RETRY_S)
            else:
                await self._ready.wait()
            self._ready.clear()
            await self._perform_pending()

    async def _perform_pending(self) -> None:
        while True:
            batches, self._batches = self._batches, []
            events = [a.event for b in batches for a in b if isinstance(a, Record)]
            if not await self._record(events):
                # Not durable: nobody may hear of these yet. Held ahead of what came since.
                self._batches = [*batches, *self._batches]
                return
            if self._recorded is not None and events:
                self._recorded(events)
            self.recorded_kinds.update(e.kind for e in events)
            for batch in batches:
                for step in batch:
                    try:
                        self._perform(step)
                    except Exception:
                        # One bad step must not stop the pump, or every client goes silent.
                        log.exception("step failed", step=type(step).__name__)
            if not self._batches:
                return

    async def _record(self, events: list[TraceEvent]) -> bool:
        """Whether `events` are durable now (none to write: they are)."""
        if not events:
            return True
        try:
            await self.recorder.record(events)
        except Exception:
            # Loud once in the log while it lasts (an alarm); /readyz fails meanwhile.
            if not self._failing:
                log.exception(
                    "recorder failed: holding every delivery",
                    events=len(events),
                    node_id=self.node_id,
                    alarm=True,
                )
            self._failing = True
            return False
        if self._failing:
            log.warning("recorder recovered", events=len(events), node_id=self.node_id)
        self._failing = False
        return True

    def _perform(self, step: Step) -> None:
        match step:
            case Send():
                self.router.deliver(step.to, step.message)
            case Disconnect():
                self.router.disconnect(step.user, step.session_id, step.code, step.reason)
            case Attach():
                self.router.attach(step.conn)
            case UseEncoding():
                step.conn.encoding = step.encoding
            case Reply():
                self.router.reply(step.conn, step.message)
            case Close():
                self.router.detach(step.conn)
                step.conn.close(step.code, step.reason)
            case _Flushed():
                if not step.done.done():
                    step.done.set_result(None)
            case Room():
                if self.media is not None:
                    self.media.room_changed(step)
            case Negotiate():
                self.negotiate(step, self.media)
            case Record():
                pass

    # ---- media --------------------------------------------------------------------------

    def negotiate(self, step: Negotiate, port: MediaPort | None) -> None:
        """Have `port` carry out a member's media message (errors are answered to them)."""
        task = asyncio.get_running_loop().create_task(self._negotiate(step, port))
        self._negotiations.add(task)
        task.add_done_callback(self._negotiations.discard)

    async def _negotiate(self, step: Negotiate, port: MediaPort | None) -> None:
        if port is None:
            return
        message = step.message
        try:
            await port.signal(step.user, message)
        except ClientError as exc:
            self.deliver(step.user, error_reply(exc, message.id))
        except Exception:
            log.exception(
                "media negotiation failed",
                user_id=step.user,
                call_id=message.call_id,
                node_id=self.node_id,
            )
            self.deliver(step.user, internal_error_reply(message.id))


def attached(conn: Connection, actions: Sequence[Action]) -> list[Step]:
    """The core's actions for a new connection, with the connection attached to the router
    just before its welcome: what was said before it (to the connection it replaces, if any)
    never reaches it, and what is said after it does."""
    steps: list[Step] = list(actions)
    for i, action in enumerate(steps):
        if isinstance(action, Send) and isinstance(action.message, p.Welcome):
            steps.insert(i, Attach(conn))
            return steps
    # The core always welcomes; should it not, the connection still gets what follows.
    steps.append(Attach(conn))
    return steps
