"""The signalling hub: the WebSocket edge around the pure `Switchboard`.

It authenticates each connection, bounds and decodes frames, feeds messages and the time to
the switchboard, arms its one timer, and performs the actions that come back, in order:
records first (the recorder has a fact before any client hears of it), then deliveries.
This module is the one place where signalling errors become wire codes (`_error_reply`,
`_refuse`); the switchboard only raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Final

import structlog
from aiohttp import WSMsgType, web

from commandcenter.auth import AuthError, Identity, TokenVerifier
from commandcenter.config import Config
from sessions.recorder import SessionRecorder
from signalling import protocol as p
from signalling.actions import Action, Disconnect, Record, Send
from signalling.codec import Encoding, decode
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
from signalling.ratelimit import TokenBucket, WindowCounter
from signalling.router import Connection, Router
from signalling.switchboard import SessionKeys, Switchboard

log = structlog.get_logger(__name__)

WS_PATH: Final = "/ws"
# Query parameters of the WebSocket URL and their bounds.
MAX_DEVICE_CHARS: Final = 64
MAX_APP_CHARS: Final = 32
MAX_RESUME_CHARS: Final = 128
# Frames above max_frame_bytes get an error reply; aiohttp itself drops the connection (1009)
# only far above it, so that one oversize frame does not cost the client its session.
HARD_FRAME_FACTOR: Final = 16


class Hub:
    def __init__(
        self,
        *,
        config: Config,
        switchboard: Switchboard,
        verifier: TokenVerifier,
        recorder: SessionRecorder,
        router: Router,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.core = switchboard
        self.verifier = verifier
        self.recorder = recorder
        self.router = router
        self.clock = clock
        self.node_id = switchboard.node_id
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._outbox: list[Sequence[Action]] = []
        self._outbox_ready = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def stop(self) -> None:
        """Close every connection (1001), then flush what the core still had to say."""
        if self._timer is not None:
            self._timer.cancel()
        for ws in list(self._sockets):
            await ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down")
        await self._drain()
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task

    # ---- performing actions -----------------------------------------------------------

    def _emit(self, actions: Sequence[Action]) -> None:
        if actions:
            self._outbox.append(actions)
            self._outbox_ready.set()
        self._rearm()

    async def _pump(self) -> None:
        """Performs batches in the order the core produced them. Batches that pile up while
        the recorder is busy are recorded together: group commit for free."""
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._perform_pending()

    async def _perform_pending(self) -> None:
        while self._outbox:
            batches, self._outbox = self._outbox, []
            events = [a.event for b in batches for a in b if isinstance(a, Record)]
            if events:
                try:
                    await self.recorder.record(events)
                except Exception:
                    # The core has moved on already; its clients must hear of it even if
                    # the trace could not be written. The failure is loud in the log.
                    log.exception("recorder failed", events=len(events), node_id=self.node_id)
            for batch in batches:
                for action in batch:
                    if isinstance(action, Send):
                        self.router.deliver(action.to, action.message)
                    elif isinstance(action, Disconnect):
                        self.router.disconnect(
                            action.user, action.session_id, action.code, action.reason
                        )

    async def _drain(self) -> None:
        await self._perform_pending()

    def _rearm(self) -> None:
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
        limits = self.config.limits
        ws = web.WebSocketResponse(
            max_msg_size=limits.max_frame_bytes * HARD_FRAME_FACTOR,
            heartbeat=self.config.presence.heartbeat_interval_s * 2,
        )
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            try:
                identity, params = self._authenticate(request)
            except ConnectionRefused as exc:
                log.info("connection refused", reason=exc.reason, code=exc.close_code)
                await ws.close(code=exc.close_code, message=exc.reason.encode())
                return ws
            await self._serve(ws, identity, params)
        finally:
            self._sockets.discard(ws)
        return ws

    def _authenticate(self, request: web.Request) -> tuple[Identity, dict[str, str]]:
        query = request.query
        token = query.get("token")
        header = request.headers.get("Authorization", "")
        if token is None and header.lower().startswith("bearer "):
            token = header[7:].strip()
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
        # Connection is registered before the core speaks, so the welcome finds it.
        conn = Connection(ws, user, keys.session_id, Encoding(params["encoding"]))
        session, actions = self.core.connect(
            identity,
            keys=keys,
            device=params["device"],
            app_version=params["app"],
            resume_token=params["resume"] or None,
            now=self.clock(),
        )
        conn.session_id = session.session_id
        # Disconnect actions for an older connection of this user must reach it before
        # this connection takes the user's place in the router.
        for action in actions:
            if isinstance(action, Disconnect):
                self.router.disconnect(action.user, action.session_id, action.code, action.reason)
        self.router.attach(conn)
        self._emit([a for a in actions if not isinstance(a, Disconnect)])
        bound = log.bind(user_id=user, session_id=session.session_id, node_id=self.node_id)
        bound.info("connected", role=identity.role.value, court=identity.court)
        close: tuple[int, str] | None = None
        try:
            close = await self._read(ws, conn, identity, bound)
        except Exception:
            bound.exception("connection failed")
            close = (CLOSE_INTERNAL, "internal error")
        finally:
            if close is not None and not ws.closed:
                await conn.aclose(*close)
            await conn.stop()
            self.router.detach(conn)
            self._emit(self.core.disconnect(user, conn.session_id, self.clock()))
            bound.info("disconnected", code=ws.close_code)

    async def _read(
        self,
        ws: web.WebSocketResponse,
        conn: Connection,
        identity: Identity,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> tuple[int, str] | None:
        """Serve frames until the peer leaves (None) or must be closed (code, reason)."""
        limits = self.config.limits
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(limits.messages_per_s, limits.message_burst, loop.time())
        bad = WindowCounter(limits.bad_frame_window_s)
        over_rate = 0
        expires = identity.expires_at + self.config.auth.leeway_s
        user = identity.user_id
        async for frame in ws:
            if frame.type is WSMsgType.TEXT:
                encoding, data = Encoding.JSON, frame.data
            elif frame.type is WSMsgType.BINARY:
                encoding, data = Encoding.MSGPACK, frame.data
            else:
                # ERROR / CLOSE frames end the iteration; anything else is ignored.
                continue
            conn.encoding = encoding
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
            try:
                actions = self.core.handle(user, msg, now)
            except ClientError as exc:
                self._reply(conn, exc, msg.id)
                continue
            self._emit(actions)
        return None

    def _reply(self, conn: Connection, exc: ClientError, ref: str | None) -> None:
        self._emit([Send((conn.user,), _error_reply(exc, ref))])


def _error_reply(exc: ClientError, ref: str | None) -> p.Error:
    """The one translation of a client error to the wire."""
    return p.Error(ref=ref, code=exc.code, reason=exc.reason, field=exc.field)
