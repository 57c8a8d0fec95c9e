"""The signalling hub: the WebSocket edge in front of a `CoreLink`.

It authenticates each connection, bounds and decodes its frames, rate-limits them, and tells
the link what each connection does (`connected`, `received`, `closed`); the link runs the core
(here, or on the cluster's authority) and queues what the core says in the node's outbox.
This module is where a connection's own faults become wire codes: a refused connection is
closed with its 4xxx code (`ConnectionRefused`), a bad frame is answered with an `error`
(`signalling.errors.error_reply`), and a fault of ours outside any message closes it with
1011. The hub knows nothing of where the core runs.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from typing import Final, Protocol

import structlog
from aiohttp import WSMsgType, web

from identity import AuthError, Identity, bearer_token
from signalling import protocol as p
from signalling.clock import Clock
from signalling.codec import Encoding, decode, encode, ref_of
from signalling.connection import CLOSE_WAIT_S, Connection
from signalling.core.presence import SessionKeys
from signalling.errors import (
    CLOSE_BAD_INPUT,
    CLOSE_FORBIDDEN,
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_RATE_LIMITED,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    ConnectionRefused,
    InvalidMessage,
    RateLimited,
    Unavailable,
    error_reply,
)
from signalling.link import ConnectParams, CoreLink
from signalling.outbox import UseEncoding
from signalling.ratelimit import TokenBucket, WindowCounter
from signalling.settings import LimitsConfig

log = structlog.get_logger(__name__)

WS_PATH: Final = "/ws"
# Query parameters of the WebSocket URL and their bounds.
MAX_DEVICE_CHARS: Final = 64
MAX_APP_CHARS: Final = 32
MAX_RESUME_CHARS: Final = 128
# Why actions and connections are refused while the recorder fails (docs/protocol.md).
TRACE_UNAVAILABLE: Final = "the record cannot be written just now; nothing was done, retry"
# Frames above max_frame_bytes get an error reply; aiohttp itself drops the connection (1009)
# only far above it, so that one oversize frame does not cost the client its session.
HARD_FRAME_FACTOR: Final = 16


class Authenticator(Protocol):
    """Turns a bearer token into an `Identity`, or raises `identity.AuthError` (the JWT
    verifier of `commandcenter.auth`, chosen by the composition root)."""

    def verify(self, token: str, now: float) -> Identity: ...


class Hub:
    def __init__(
        self,
        *,
        link: CoreLink,
        authenticator: Authenticator,
        limits: LimitsConfig,
        heartbeat_interval_s: float,
        token_leeway_s: float,
        clock: Clock,
        node_id: str,
    ) -> None:
        self.link = link
        self.outbox = link.outbox
        self.authenticator = authenticator
        self.limits = limits
        self.heartbeat_interval_s = heartbeat_interval_s
        self.token_leeway_s = token_leeway_s
        self.clock = clock
        self.node_id = node_id
        self._stopping = False
        # The newest connection of each user. One that is no longer here was replaced: the
        # frames it still receives must not act on the session.
        self._live: dict[str, Connection] = {}
        # Handler tasks of open WebSockets, awaited on shutdown.
        self._handlers: set[asyncio.Task[object]] = set()
        # Connections this hub closed for a fault (refused, bad input, rate, token, ours),
        # by close code: the WebSocket's errors that are not `error` replies.
        self.closed_for_fault: Counter[int] = Counter()

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.link.start()

    async def stop(self) -> None:
        """Close every connection (1001) after what was queued for it, let each handler
        tell the link its connection is gone, and stop the link. Once: a drain stops the hub
        early, and the application's shutdown asks again."""
        if self._stopping:
            return
        self._stopping = True
        # Told before the close, so clients see their calls end with a reason.
        self.link.shutdown()
        for conn in list(self._live.values()):
            self.outbox.close(conn, CLOSE_GOING_AWAY, "server shutting down")
        handlers = {t for t in self._handlers if t is not asyncio.current_task()}
        if handlers:
            await asyncio.wait(handlers, timeout=CLOSE_WAIT_S + 1.0)
        await self.link.stop(CLOSE_WAIT_S)

    def health(self) -> dict[str, object]:
        return self.link.health()

    @property
    def stopping(self) -> bool:
        """Shutting down: new connections are refused (1001)."""
        return self._stopping

    def largest_backlog_bytes(self) -> int:
        """The most bytes queued for any one live connection (bounded by
        `limits.max_backlog_bytes`)."""
        return max((conn.backlog_bytes for conn in self._live.values()), default=0)

    def live_connections(self) -> int:
        """How many users are connected to this node now."""
        return len(self._live)

    def is_live(self, user: str) -> bool:
        """Whether `user` has a connection to this node now."""
        return user in self._live

    def revoke(self, user: str, reason: str) -> bool:
        """`user` may no longer be signed in (`reason`, e.g. `account_disabled`): if they
        are connected here, their session signs out and the connection closes 4403 (a
        client does not reconnect on it). Whether they were connected here."""
        conn = self._live.get(user)
        if conn is None or conn.closing:
            return False
        log.info("connection revoked", user_id=user, reason=reason, node_id=self.node_id)
        self.link.revoked(conn, reason)
        # Closed here too, after the sign-out is carried out: with no authority to hear it
        # (a cluster between authorities) the connection must not stay open meanwhile.
        self.outbox.close(conn, CLOSE_FORBIDDEN, reason)
        return True

    # ---- the WebSocket edge -------------------------------------------------------------

    async def handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            max_msg_size=self.limits.max_frame_bytes * HARD_FRAME_FACTOR,
            heartbeat=self.heartbeat_interval_s * 2,
        )
        await ws.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                if self._stopping:
                    raise ConnectionRefused(CLOSE_GOING_AWAY, "server shutting down")
                identity, params, encoding = self._authenticate(request)
                if self.outbox.degraded:
                    # A sign-in the trace cannot hold would be lost by a crash.
                    raise ConnectionRefused(CLOSE_TRY_AGAIN, TRACE_UNAVAILABLE)
            except ConnectionRefused as exc:
                log.info("connection refused", reason=exc.reason, code=exc.close_code)
                self.closed_for_fault[exc.close_code] += 1
                await ws.close(code=exc.close_code, message=exc.reason.encode())
                return ws
            await self._serve(ws, identity, params, encoding, request.transport)
        except Exception:
            # Our fault, not the peer's: logged in full, answered without details.
            log.exception("websocket handler failed", node_id=self.node_id)
            self.closed_for_fault[CLOSE_INTERNAL] += 1
            if not ws.closed:
                await ws.close(code=CLOSE_INTERNAL, message=b"internal error")
        finally:
            self._handlers.discard(task)
        return ws

    def _authenticate(self, request: web.Request) -> tuple[Identity, ConnectParams, Encoding]:
        query = request.query
        # Browsers cannot set headers on a WebSocket, hence the query parameter.
        token = query.get("token")
        if token is None:
            token = bearer_token(request.headers.get("Authorization", ""))
        if not token:
            raise ConnectionRefused(CLOSE_UNAUTHORIZED, "token missing")
        try:
            identity = self.authenticator.verify(token, self.clock.now())
        except AuthError as exc:
            raise ConnectionRefused(CLOSE_UNAUTHORIZED, exc.reason) from None
        device = query.get("device", "")
        app = query.get("app", "")
        resume = query.get("resume", "")
        encoding = query.get("encoding", Encoding.JSON.value)
        version = query.get("v", str(p.PROTOCOL_VERSION))
        bounds = {"device": MAX_DEVICE_CHARS, "app": MAX_APP_CHARS, "resume": MAX_RESUME_CHARS}
        for name, value in (("device", device), ("app", app), ("resume", resume)):
            if len(value) > bounds[name]:
                raise ConnectionRefused(CLOSE_BAD_INPUT, f"{name} longer than {bounds[name]}")
        if encoding not in (Encoding.JSON.value, Encoding.MSGPACK.value):
            raise ConnectionRefused(CLOSE_BAD_INPUT, "encoding must be json or msgpack")
        if version != str(p.PROTOCOL_VERSION):
            raise ConnectionRefused(CLOSE_BAD_INPUT, f"protocol version {p.PROTOCOL_VERSION} only")
        params = ConnectParams(device=device, app_version=app, resume=resume or None)
        return identity, params, Encoding(encoding)

    async def _serve(
        self,
        ws: web.WebSocketResponse,
        identity: Identity,
        params: ConnectParams,
        encoding: Encoding,
        ws_transport: asyncio.Transport | None,
    ) -> None:
        user = identity.user_id
        keys = SessionKeys(
            session_id="s-" + secrets.token_hex(8), resume_token=secrets.token_urlsafe(24)
        )
        conn = Connection(
            ws,
            user,
            keys.session_id,
            encoding,
            max_backlog_bytes=self.limits.max_backlog_bytes,
            transport=ws_transport,
        )
        self._live[user] = conn
        self.link.connected(conn, identity, keys, params)
        # This frame lives as long as the connection: hold no more than it needs.
        del keys, params
        # A connection is authorised by its token only while the token lasts, idle or not.
        expiry = self.clock.call_at(
            identity.expires_at + self.token_leeway_s, lambda: self._expire(conn)
        )
        bound = log.bind(user_id=user, session_id=conn.session_id, node_id=self.node_id)
        bound.info("connected", role=identity.role.value, court=identity.court)
        close: tuple[int, str] | None = None
        try:
            close = await self._read(ws, conn, identity)
        except Exception:
            bound.exception("connection failed")
            close = (CLOSE_INTERNAL, "internal error")
        finally:
            expiry.cancel()
            # Everything up to the link's `closed` is synchronous: no other connection of
            # this user can come in between, and the link hears of this close even if the
            # task is cancelled in one of the awaits below.
            live = self._live.get(user) is conn
            if live:
                del self._live[user]
            peer_left = False
            if close is not None and not ws.closed:
                self.closed_for_fault[close[0]] += 1
                self.outbox.close(conn, *close)
            elif live and not conn.closing:
                # The peer left; nothing queued for it can be delivered any more.
                self.outbox.router.detach(conn)
                peer_left = True
            # Else the hub closed it or it was replaced: its close is under way or queued.
            self.link.closed(conn)
            if peer_left:
                await conn.stop()
            await conn.finish()
            # Debug: one info line per sign-in ("connected"); the trace holds every sign-out
            # and away, and a phone on a poor network reconnects many times an hour.
            bound.debug("disconnected", code=ws.close_code)

    async def _read(
        self, ws: web.WebSocketResponse, conn: Connection, identity: Identity
    ) -> tuple[int, str] | None:
        """Serve frames until the peer leaves (None) or must be closed (code, reason)."""
        limits = self.limits
        clock = self.clock
        bucket = TokenBucket(limits.messages_per_s, limits.message_burst, clock.monotonic())
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
                self.outbox.emit([UseEncoding(conn, encoding)])
            if clock.now() > expires:
                return (CLOSE_UNAUTHORIZED, "token expired")
            tick = clock.monotonic()
            if not bucket.take(tick):
                over_rate += 1
                if over_rate >= limits.rate_limited_before_close:
                    return (CLOSE_RATE_LIMITED, "message rate exceeded")
                # Only the id is read (cheap next to a full decode), so the error names it.
                ref = ref_of(data, encoding, limits.max_frame_bytes)
                self.outbox.reply(conn, RateLimited("too many messages, slow down"), ref)
                continue
            over_rate = 0
            try:
                msg = decode(data, encoding, limits.max_frame_bytes)
            except InvalidMessage as exc:
                if bad.add(tick) >= limits.bad_frames_before_close:
                    return (CLOSE_BAD_INPUT, "too many invalid frames")
                self.outbox.reply(conn, exc, exc.ref)
                continue
            if isinstance(msg, p.Offer | p.Answer) and len(msg.sdp) > limits.max_sdp_chars:
                self.outbox.reply(conn, InvalidMessage("sdp too long", field="sdp"), msg.id)
                continue
            if self.outbox.degraded and not isinstance(msg, p.Heartbeat):
                # Nothing may be done that the trace cannot hold. Answered at once, past
                # the held stream: nothing was done, so there is nothing to order it after.
                refusal = error_reply(Unavailable(TRACE_UNAVAILABLE), msg.id)
                conn.send(encode(refusal, encoding))
                continue
            self.link.received(conn, msg)
        return None

    def _expire(self, conn: Connection) -> None:
        if self._live.get(conn.user) is conn:
            self.closed_for_fault[CLOSE_UNAUTHORIZED] += 1
            self.outbox.close(conn, CLOSE_UNAUTHORIZED, "token expired")
