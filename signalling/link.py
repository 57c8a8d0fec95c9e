"""The one interface between the WebSocket edge and the core, and its one-node implementation.

The hub (signalling/hub.py) authenticates a connection, bounds and decodes its frames, and
tells a `CoreLink` what happened: a connection opened (`connected`), it said something
(`received`), it closed (`closed`). Where the core runs is the link's business, as LiveKit's
`Router` hides whether a room is local or on another node: `LocalCoreLink` runs the core in
this process; `signalling.cluster.RedisCoreLink` hands what clients say to the cluster's
authority over Redis, and runs the core while this node holds the authority lease. The
composition root (commandcenter/app.py) picks one; the hub never asks which.

Each link owns the node's `Outbox` (what reaches clients and the media server, in order), so
the hub queues its own steps (replies, closes) in the same stream as the core's actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from identity import Identity
from sessions.recorder import SessionRecorder
from signalling import protocol as p
from signalling.clock import Clock
from signalling.connection import Connection
from signalling.core.conference import Conference
from signalling.core.presence import Session, SessionKeys
from signalling.core.switchboard import Switchboard
from signalling.driver import CoreDriver
from signalling.media_port import MediaPort
from signalling.outbox import Outbox
from signalling.router import LocalRouter


@dataclass(frozen=True)
class ConnectParams:
    """What a connection's URL says beside its token, bounded by the hub."""

    device: str
    app_version: str
    # The resume token presented, if any.
    resume: str | None


class CoreLink(Protocol):
    @property
    def outbox(self) -> Outbox: ...

    async def start(self) -> None:
        """Called once the trace is open, before the first connection."""

    def connected(
        self, conn: Connection, identity: Identity, keys: SessionKeys, params: ConnectParams
    ) -> None:
        """`conn` was authenticated as `identity`; `keys` are fresh ids for a new session.
        The connection is attached to the router when its welcome is sent, and carries its
        session's id from then on (a resume keeps the session's old id)."""

    def received(self, conn: Connection, message: p.ClientMessage) -> None:
        """`conn` sent a valid, bounded message."""

    def closed(self, conn: Connection) -> None:
        """`conn` closed (for whatever reason, replaced connections included)."""

    def revoked(self, conn: Connection, reason: str) -> None:
        """`conn`'s user may no longer be signed in (`reason`: their account was disabled):
        their session signs out now and the connection is closed 4403."""

    def shutdown(self) -> None:
        """The node is stopping: the calls and sessions of this node's users end now, so
        the trace holds no sign-in without its sign-out and no call without its end."""

    async def stop(self, wait_s: float) -> None:
        """After every connection has closed: perform what is queued (up to `wait_s`) and
        stop every task and timer."""

    def health(self) -> dict[str, object]:
        """What /healthz reports, with `status` "ok" or "degraded"."""

    def session(self, user: str) -> Session | None:
        """`user`'s session, if the core runs on this node and has one (the evidence API
        reads the device's clock offset from its latest heartbeat)."""

    def running_core(self) -> Switchboard | None:
        """The switchboard, if it runs on this node now (read, never driven, by the metrics
        endpoint: calls by state, ring latency)."""

    async def conference(self, conference_id: str) -> Conference | None:
        """A conference not ended, as read (never driven) by an HTTP route that answers on
        every node (the witness invitations): from the core where it runs here, else from
        what the cluster's authority keeps of it for its successor (the journal: its creation
        and moderators at once, its sites at most `redis.journal_conference_s` behind).
        None: no such conference. CoreUnreachable: the store holding it does not answer
        now."""


class CoreUnreachable(Exception):
    """The core's state cannot be read from this node now (the cluster's Redis does not
    answer); worth asking again shortly."""


class LocalCoreLink:
    """One node alone: the core runs here and every user is connected here."""

    def __init__(
        self,
        *,
        core: Switchboard,
        recorder: SessionRecorder,
        media: MediaPort | None,
        clock: Clock,
    ) -> None:
        self.router = LocalRouter()
        self._outbox = Outbox(
            recorder=recorder, router=self.router, media=media, node_id=core.node_id
        )
        self.driver = CoreDriver(core, self._outbox, clock)
        self.core = core

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    async def start(self) -> None:
        await self._outbox.start()

    def connected(
        self, conn: Connection, identity: Identity, keys: SessionKeys, params: ConnectParams
    ) -> None:
        self.driver.connect(
            conn,
            identity,
            keys,
            device=params.device,
            app_version=params.app_version,
            resume_token=params.resume,
        )

    def received(self, conn: Connection, message: p.ClientMessage) -> None:
        self.driver.handle(conn.user, message)

    def closed(self, conn: Connection) -> None:
        # A replaced connection's close is reported too: the core knows it replaced it (it
        # asked for the Disconnect) and does not send the session away for it.
        self.driver.run(lambda now: self.core.disconnect(conn.user, conn.session_id, now))

    def revoked(self, conn: Connection, reason: str) -> None:
        self.driver.run(lambda now: self.core.revoke(conn.user, conn.session_id, reason, now))

    def shutdown(self) -> None:
        self.driver.run(self.core.shutdown)

    async def stop(self, wait_s: float) -> None:
        await self._outbox.stop(wait_s)
        self.driver.stop()

    def health(self) -> dict[str, object]:
        status = "degraded" if self._outbox.degraded else "ok"
        return {"status": status, **self._outbox.health()}

    def session(self, user: str) -> Session | None:
        return self.core.session(user)

    def running_core(self) -> Switchboard | None:
        return self.core

    async def conference(self, conference_id: str) -> Conference | None:
        return self.core.conferences.table.get(conference_id)
