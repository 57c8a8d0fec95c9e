"""The signalling hub: the WebSocket edge around the pure `Switchboard`.

It authenticates each connection, bounds and decodes frames, feeds messages and the time to
the switchboard, arms its one timer, and performs the actions that come back, in order:
records first (the recorder has a fact before any client hears of it), then deliveries.
This module is the one place where signalling errors become wire codes (`error_reply`,
`ConnectionRefused`); the switchboard only raises.

Everything that touches a connection's outgoing stream goes through one ordered outbox,
performed by one task (`_pump`): the core's actions, and the hub's own steps (attach a new
connection, switch a connection's reply encoding, close a connection). So a connection's
first frame is its welcome, a reply is encoded like the frame it answers, and the frames
queued for a connection before it is closed are sent before the close frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import structlog
from aiohttp import WSMsgType, web

from identity import AuthError, Identity, bearer_token
from sessions.recorder import SessionRecorder, TraceEvent
from signalling import protocol as p
from signalling.codec import Encoding, decode
from signalling.core.actions import Action, Disconnect, Negotiate, Record, Room, Send
from signalling.core.presence import SessionKeys
from signalling.core.switchboard import Switchboard
from signalling.errors import (
    CLOSE_BAD_INPUT,
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHORIZED,
    ClientError,
    ConnectionRefused,
    InvalidMessage,
    RateLimited,
)
from signalling.media_port import MediaPort
from signalling.ratelimit import TokenBucket, WindowCounter
from signalling.router import CLOSE_WAIT_S, Connection, Router
from signalling.settings import LimitsConfig, PresenceConfig

if TYPE_CHECKING:
    from signalling.cluster import ClusterNode

log = structlog.get_logger(__name__)

WS_PATH: Final = "/ws"
# While the recorder fails, it is retried at least this often, seconds.
RECORD_RETRY_S: Final = 1.0
# Query parameters of the WebSocket URL and their bounds.
MAX_DEVICE_CHARS: Final = 64
MAX_APP_CHARS: Final = 32
MAX_RESUME_CHARS: Final = 128
# Frames above max_frame_bytes get an error reply; aiohttp itself drops the connection (1009)
# only far above it, so that one oversize frame does not cost the client its session.
HARD_FRAME_FACTOR: Final = 16


# The hub's own steps, queued in the outbox between the core's actions.
@dataclass(frozen=True, slots=True)
class _Attach:
    """Make `conn` the user's connection in the router, from this point of the stream on."""

    conn: Connection


@dataclass(frozen=True, slots=True)
class _UseEncoding:
    """Frames delivered to `conn` from here on are encoded as the frame they answer."""

    conn: Connection
    encoding: Encoding


@dataclass(frozen=True, slots=True)
class _Close:
    """Take `conn` out of the router and close it once what was queued for it is sent."""

    conn: Connection
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class _Flushed:
    """Everything before this step has been performed."""

    done: asyncio.Future[None]


Step = Action | _Attach | _UseEncoding | _Close | _Flushed


class Authenticator(Protocol):
    """Turns a bearer token into an `Identity`, or raises `identity.AuthError` (the JWT
    verifier of `commandcenter.auth`, chosen by the composition root)."""

    def verify(self, token: str, now: float) -> Identity: ...


class Hub:
    def __init__(
        self,
        *,
        limits: LimitsConfig,
        presence: PresenceConfig,
        token_leeway_s: float,
        switchboard: Switchboard,
        verifier: Authenticator,
        recorder: SessionRecorder,
        router: Router,
        media: MediaPort | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self.presence = presence
        self.token_leeway_s = token_leeway_s
        self.core = switchboard
        self.verifier = verifier
        self.recorder = recorder
        self.router = router
        self.media = media
        self.clock = clock
        self.node_id = switchboard.node_id
        # Set when this node is one of many (signalling/cluster.py): the core then runs on
        # the authority node, and this hub's edge hands what clients say to the cluster.
        self.cluster: ClusterNode | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._outbox: list[Sequence[Step]] = []
        # Events the recorder refused (storage down), retried ahead of newer ones so the
        # trace keeps its order. Clients are still served meanwhile: an emergency must ring
        # even while the trace database is unreachable.
        self._unrecorded: list[TraceEvent] = []
        self._outbox_ready = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._stopping = False
        # The newest connection of each user. One that is no longer here was replaced: the
        # frames it still receives must not act on the session.
        self._live: dict[str, Connection] = {}
        # Handler tasks of open WebSockets, awaited on shutdown.
        self._handlers: set[asyncio.Task[object]] = set()
        # Media messages being carried out by the media server.
        self._negotiations: set[asyncio.Task[None]] = set()

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self.media is not None:
            await self.media.start()
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        if self.cluster is not None:
            await self.cluster.start()

    async def stop(self) -> None:
        """Close every connection (1001) after what was queued for it, let each handler
        tell the core its connection is gone, and perform what the core still had to say."""
        self._stopping = True
        # Told before the close, so clients see their calls end with a reason. Of many
        # nodes, only this node's users sign out: the others' sessions go on, taken on by
        # the next authority (on a gateway the core is empty and this says nothing).
        local = set(self._live) if self.cluster is not None else None
        self._emit(self.core.shutdown(self.clock(), local))
        for conn in list(self._live.values()):
            self._emit([_Close(conn, CLOSE_GOING_AWAY, "server shutting down")])
        handlers = {t for t in self._handlers if t is not asyncio.current_task()}
        if handlers:
            await asyncio.wait(handlers, timeout=CLOSE_WAIT_S + 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush(), CLOSE_WAIT_S)
        if self._negotiations:
            await asyncio.wait(set(self._negotiations), timeout=CLOSE_WAIT_S)
        if self.cluster is not None:
            await self.cluster.stop()
        if self.media is not None:
            await self.media.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
            self._pump_task = None

    # ---- performing actions -----------------------------------------------------------

    def emit(self, actions: Sequence[Action]) -> None:
        """Perform the core's `actions` after everything queued so far (the cluster's
        authority applies what other nodes said through this)."""
        self._emit(actions)

    def close_connection(self, conn: Connection, code: int, reason: str) -> None:
        """Close `conn` once what was queued for it is sent."""
        self._emit([_Close(conn, code, reason)])

    def reply(self, conn: Connection, exc: ClientError, ref: str | None) -> None:
        """Answer a message of `conn` with the error `exc`."""
        self._reply(conn, exc, ref)

    def _emit(self, steps: Sequence[Step]) -> None:
        if steps:
            self._outbox.append(steps)
            self._outbox_ready.set()
        self._rearm()

    async def _flush(self) -> None:
        """Return once everything emitted so far has been performed."""
        if self._pump_task is None or self._pump_task.done():
            return
        done = asyncio.get_running_loop().create_future()
        self._emit([_Flushed(done)])
        await done

    async def _pump(self) -> None:
        """Performs batches in the order they were emitted. Batches that pile up while the
        recorder is busy are recorded together: group commit for free."""
        while True:
            if self._unrecorded:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox_ready.wait(), RECORD_RETRY_S)
            else:
                await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._perform_pending()

    def health(self) -> dict[str, object]:
        """What /healthz reports: degraded while trace events wait for the recorder."""
        degraded = bool(self._unrecorded) or (self.cluster is not None and self.cluster.degraded)
        status = "degraded" if degraded else "ok"
        health: dict[str, object] = {"status": status, "unrecorded_events": len(self._unrecorded)}
        if self.media is not None:
            health.update(self.media.health())
        if self.cluster is not None:
            health.update(self.cluster.health())
        return health

    async def _record(self, events: list[TraceEvent]) -> None:
        pending = self._unrecorded + events if self._unrecorded else events
        if not pending:
            return
        try:
            await self.recorder.record(pending)
        except Exception:
            # Kept and retried (see _unrecorded); loud in the log while it lasts.
            if not self._unrecorded:
                log.exception("recorder failed", events=len(pending), node_id=self.node_id)
            self._unrecorded = pending
            return
        if self._unrecorded:
            log.info("recorder recovered", events=len(pending), node_id=self.node_id)
        self._unrecorded = []

    async def _perform_pending(self) -> None:
        while True:
            batches, self._outbox = self._outbox, []
            events = [a.event for b in batches for a in b if isinstance(a, Record)]
            await self._record(events)
            if self.cluster is not None and events:
                self.cluster.recorded(events)
            for batch in batches:
                for step in batch:
                    try:
                        self._perform(step)
                    except Exception:
                        # One bad step must not stop the pump, or every client goes silent.
                        log.exception("step failed", step=type(step).__name__)
            if not self._outbox:
                return

    def _perform(self, step: Step) -> None:
        match step:
            case Send():
                self.router.deliver(step.to, step.message)
            case Disconnect():
                self.router.disconnect(step.user, step.session_id, step.code, step.reason)
            case _Attach():
                self.router.attach(step.conn)
            case _UseEncoding():
                step.conn.encoding = step.encoding
            case _Close():
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

    def deliver(self, user: str, message: p.ServerMessage) -> None:
        """Queue `message` for `user` behind everything already queued (the media server's
        replies and offers come this way)."""
        self._emit([Send((user,), message)])

    def negotiate(self, step: Negotiate, port: MediaPort | None) -> None:
        """Have `port` carry out a member's media message (errors are answered to them)."""
        task = asyncio.get_running_loop().create_task(self._negotiate(step, port))
        self._negotiations.add(task)
        task.add_done_callback(self._negotiations.discard)

    async def _negotiate(self, step: Negotiate, port: MediaPort | None) -> None:
        if port is None:
            return
        try:
            await port.signal(step.user, step.message)
        except ClientError as exc:
            self.deliver(step.user, error_reply(exc, step.message.id))
        except Exception:
            log.exception(
                "media negotiation failed",
                user_id=step.user,
                call_id=step.message.call_id,
                node_id=self.node_id,
            )
            reply = p.Error(ref=step.message.id, code="internal_error", reason="internal error")
            self.deliver(step.user, reply)

    def _rearm(self) -> None:
        if self._stopping and self._pump_task is None:
            return
        deadline = self.core.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, deadline - self.clock())
            self._timer = loop.call_at(loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            actions = self.core.handle_timeout(self.clock())
        except Exception:
            log.exception("timeout handling failed", node_id=self.node_id)
            actions = []
        self._emit(actions)

    # ---- the WebSocket edge -------------------------------------------------------------

    async def handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        limits = self.limits
        ws = web.WebSocketResponse(
            max_msg_size=limits.max_frame_bytes * HARD_FRAME_FACTOR,
            heartbeat=self.presence.heartbeat_interval_s * 2,
        )
        await ws.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                if self._stopping:
                    raise ConnectionRefused(CLOSE_GOING_AWAY, "server shutting down")
                identity, params = self._authenticate(request)
            except ConnectionRefused as exc:
                log.info("connection refused", reason=exc.reason, code=exc.close_code)
                await ws.close(code=exc.close_code, message=exc.reason.encode())
                return ws
            await self._serve(ws, identity, params)
        except Exception:
            # Our fault, not the peer's: logged in full, answered without details.
            log.exception("websocket handler failed", node_id=self.node_id)
            if not ws.closed:
                await ws.close(code=CLOSE_INTERNAL, message=b"internal error")
        finally:
            self._handlers.discard(task)
        return ws

    def _authenticate(self, request: web.Request) -> tuple[Identity, dict[str, str]]:
        query = request.query
        # Browsers cannot set headers on a WebSocket, hence the query parameter.
        token = query.get("token")
        if token is None:
            token = bearer_token(request.headers.get("Authorization", ""))
        if not token:
            raise ConnectionRefused(CLOSE_UNAUTHORIZED, "token missing")
        try:
            identity = self.verifier.verify(token, self.clock())
        except AuthError as exc:
            raise ConnectionRefused(CLOSE_UNAUTHORIZED, exc.reason) from None
        params = {
            "device": query.get("device", ""),
            "app": query.get("app", ""),
            "resume": query.get("resume", ""),
            "encoding": query.get("encoding", Encoding.JSON.value),
            "v": query.get("v", str(p.PROTOCOL_VERSION)),
        }
        bounds = {"device": MAX_DEVICE_CHARS, "app": MAX_APP_CHARS, "resume": MAX_RESUME_CHARS}
        for name, bound in bounds.items():
            if len(params[name]) > bound:
                raise ConnectionRefused(CLOSE_BAD_INPUT, f"{name} longer than {bound}")
        if params["encoding"] not in (Encoding.JSON.value, Encoding.MSGPACK.value):
            raise ConnectionRefused(CLOSE_BAD_INPUT, "encoding must be json or msgpack")
        if params["v"] != str(p.PROTOCOL_VERSION):
            raise ConnectionRefused(CLOSE_BAD_INPUT, f"protocol version {p.PROTOCOL_VERSION} only")
        return identity, params

    async def _serve(
        self, ws: web.WebSocketResponse, identity: Identity, params: dict[str, str]
    ) -> None:
        user = identity.user_id
        keys = SessionKeys(
            session_id="s-" + secrets.token_hex(8), resume_token=secrets.token_urlsafe(24)
        )
        if self.cluster is not None:
            # The core is on the authority: the welcome comes back through the cluster,
            # which attaches the connection then (under its session's id).
            conn = Connection(ws, user, keys.session_id, Encoding(params["encoding"]))
            self._live[user] = conn
            self.cluster.connect(conn, identity, keys, params)
            await self._serve_connection(ws, conn, identity)
            return
        session, actions = self.core.connect(
            identity,
            keys=keys,
            device=params["device"],
            app_version=params["app"],
            resume_token=params["resume"] or None,
            now=self.clock(),
        )
        conn = Connection(ws, user, session.session_id, Encoding(params["encoding"]))
        self._live[user] = conn
        self._emit(_attached(conn, actions))
        # This frame lives as long as the connection: hold no more than it needs.
        del actions, keys, session
        await self._serve_connection(ws, conn, identity)

    async def _serve_connection(
        self, ws: web.WebSocketResponse, conn: Connection, identity: Identity
    ) -> None:
        user = identity.user_id
        # A connection is authorised by its token only while the token lasts, idle or not.
        loop = asyncio.get_running_loop()
        expires_in = identity.expires_at + self.token_leeway_s - self.clock()
        expiry = loop.call_at(loop.time() + max(0.0, expires_in), self._expire, conn)
        bound = log.bind(user_id=user, session_id=conn.session_id, node_id=self.node_id)
        bound.info("connected", role=identity.role.value, court=identity.court)
        close: tuple[int, str] | None = None
        try:
            close = await self._read(ws, conn, identity, bound)
        except Exception:
            bound.exception("connection failed")
            close = (CLOSE_INTERNAL, "internal error")
        finally:
            expiry.cancel()
            # Everything up to the core's disconnect is synchronous: no other connection of
            # this user can come in between, and the core hears of this close even if the
            # task is cancelled in one of the awaits below.
            live = self._live.get(user) is conn
            if live:
                del self._live[user]
            peer_left = False
            if close is not None and not ws.closed:
                self._emit([_Close(conn, *close)])
            elif live and not conn.closing:
                # The peer left; nothing queued for it can be delivered any more.
                self.router.detach(conn)
                peer_left = True
            # Else the hub closed it or it was replaced: its close is under way or queued.
            # A replaced connection's close is reported too; the core knows it replaced it
            # (it asked for the Disconnect) and must not send the session away for it.
            if self.cluster is not None:
                self.cluster.closed(conn)
            else:
                self._emit(self.core.disconnect(user, conn.session_id, self.clock()))
            if peer_left:
                await conn.stop()
            await conn.finish()
            bound.info("disconnected", code=ws.close_code)

    async def _read(
        self,
        ws: web.WebSocketResponse,
        conn: Connection,
        identity: Identity,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> tuple[int, str] | None:
        """Serve frames until the peer leaves (None) or must be closed (code, reason)."""
        limits = self.limits
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(limits.messages_per_s, limits.message_burst, loop.time())
        bad = WindowCounter(limits.bad_frame_window_s)
        over_rate = 0
        expires = identity.expires_at + self.token_leeway_s
        user = identity.user_id
        replies = conn.encoding
        async for frame in ws:
            if self._live.get(user) is not conn:
                # Replaced by a newer connection of the user: its close is on the way, and
                # nothing this one sends may act on the session any more.
                return None
            if frame.type is WSMsgType.TEXT:
                encoding, data = Encoding.JSON, frame.data
            elif frame.type is WSMsgType.BINARY:
                encoding, data = Encoding.MSGPACK, frame.data
            else:
                # ERROR / CLOSE frames end the iteration; anything else is ignored.
                continue
            if encoding is not replies:
                # Ordered with the deliveries, so replies already queued keep their encoding.
                replies = encoding
                self._emit([_UseEncoding(conn, encoding)])
            now = self.clock()
            if now > expires:
                return (CLOSE_UNAUTHORIZED, "token expired")
            if not bucket.take(loop.time()):
                over_rate += 1
                if over_rate >= limits.rate_limited_before_close:
                    return (CLOSE_RATE_LIMITED, "message rate exceeded")
                self._reply(conn, RateLimited("too many messages, slow down"), None)
                continue
            over_rate = 0
            try:
                msg = decode(data, encoding, limits.max_frame_bytes)
            except InvalidMessage as exc:
                if bad.add(loop.time()) >= limits.bad_frames_before_close:
                    return (CLOSE_BAD_INPUT, "too many invalid frames")
                self._reply(conn, exc, exc.ref)
                continue
            if isinstance(msg, p.Offer | p.Answer) and len(msg.sdp) > limits.max_sdp_chars:
                self._reply(conn, InvalidMessage("sdp too long", field="sdp"), msg.id)
                continue
            if self.cluster is not None:
                self.cluster.message(conn, msg)
                continue
            try:
                actions = self.core.handle(user, msg, now)
            except ClientError as exc:
                self._reply(conn, exc, msg.id)
                continue
            self._emit(actions)
        return None

    def _expire(self, conn: Connection) -> None:
        if self._live.get(conn.user) is conn:
            self._emit([_Close(conn, CLOSE_UNAUTHORIZED, "token expired")])

    def _reply(self, conn: Connection, exc: ClientError, ref: str | None) -> None:
        self._emit([Send((conn.user,), error_reply(exc, ref))])


def _attached(conn: Connection, actions: Sequence[Action]) -> list[Step]:
    """The core's actions for a new connection, with the connection attached to the router
    just before its welcome: what was said before it (to the connection it replaces, if any)
    never reaches it, and what is said after it does."""
    steps: list[Step] = list(actions)
    for i, action in enumerate(steps):
        if isinstance(action, Send) and isinstance(action.message, p.Welcome):
            steps.insert(i, _Attach(conn))
            return steps
    # The core always welcomes; should it not, the connection still gets what follows.
    steps.append(_Attach(conn))
    return steps


def error_reply(exc: ClientError, ref: str | None) -> p.Error:
    """The one translation of a client error to the wire."""
    return p.Error(ref=ref, code=exc.code, reason=exc.reason, field=exc.field)
