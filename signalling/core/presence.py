"""Who is signed in: sessions, their connections, sign-ins and sign-outs, heartbeats and
positions, and who is where (officers, operators and supervisors by court).

Theory of operation
-------------------
A user's connection opens a session (a sign-in, for officers counted by the statistics).
When the connection drops the session goes AWAY for `presence.grace_s`; a reconnect
presenting the session's resume token within that time resumes it (no new sign-in, calls
kept); one presenting it while the session is still connected replaces the older
connection, whose close does not then send the session away. When the grace runs out the
user is signed out, and every call they were a party to ends with `party_lost`.

A session's own states are one table (`TRANSITIONS`); how its calls follow it (away, back,
ended) is asked of `signalling.core.calls` and `signalling.core.dispatch`, through the
switchboard that owns them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from identity import Courts, Identity, Role
from signalling import protocol as p
from signalling.core.actions import Action, Disconnect, Send
from signalling.core.alarms import EmergencyFacts, carries
from signalling.core.call import IllegalTransition
from signalling.core.deadlines import Deadlines
from signalling.errors import CLOSE_REPLACED
from signalling.protocol import EndReason
from signalling.settings import PresenceConfig

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard

WATCHER_ROLES: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
# The command center's seats: a court's console answers a conference invitation for it.
CONSOLE_ROLES: Final = WATCHER_ROLES
MONITOR_ROLES: Final = frozenset({Role.SUPERVISOR, Role.ADMIN})


class Link(StrEnum):
    """Whether a session has a live connection."""

    CONNECTED = "connected"
    AWAY = "away"
    SIGNED_OUT = "signed_out"


class SessionEvent(StrEnum):
    DROP = "drop"  # its last connection closed
    RESUME = "resume"  # a connection presented its resume token in time
    SIGN_OUT = "sign_out"


class SessionEffect(StrEnum):
    START_GRACE = "start_grace"
    STOP_GRACE = "stop_grace"


_C, _A, _S = Link.CONNECTED, Link.AWAY, Link.SIGNED_OUT

TRANSITIONS: Final[dict[tuple[Link, SessionEvent], tuple[Link, tuple[SessionEffect, ...]]]] = {
    (_C, SessionEvent.DROP): (_A, (SessionEffect.START_GRACE,)),
    (_C, SessionEvent.SIGN_OUT): (_S, ()),
    (_A, SessionEvent.RESUME): (_C, (SessionEffect.STOP_GRACE,)),
    (_A, SessionEvent.SIGN_OUT): (_S, (SessionEffect.STOP_GRACE,)),
}


@dataclass(frozen=True, slots=True)
class Grace:
    """Deadline: `user`'s session, away, is signed out."""

    user: str


@dataclass(frozen=True)
class SessionKeys:
    """Fresh identifiers the driver draws for a connection that may open a new session."""

    session_id: str
    resume_token: str


@dataclass
class Session:
    identity: Identity
    session_id: str
    resume_token: str
    device: str
    app_version: str
    signed_in_at: float
    link: Link = Link.CONNECTED
    # `link is Link.CONNECTED`, kept beside it by `apply`: read on every message.
    connected: bool = True
    # Open connections serving this session: two while a resuming connection replaces one
    # the driver has been told to close but has not yet reported closed.
    connections: int = 1
    # Device clock minus server clock (ms), from the latest heartbeat.
    clock_offset_ms: float | None = None
    rtt_ms: float | None = None
    position: p.GeoPosition | None = None
    emergency: bool = False
    # Who at the center took the emergency on (acknowledge_emergency), until it is cleared.
    emergency_taken_by: str | None = None
    # The officer's short note on it (raised with it, or added after), until it is cleared.
    emergency_note: str | None = None

    @property
    def user_id(self) -> str:
        return self.identity.user_id

    @property
    def role(self) -> Role:
        return self.identity.role

    def apply(self, event: SessionEvent) -> tuple[SessionEffect, ...]:
        try:
            new, effects = TRANSITIONS[(self.link, event)]
        except KeyError:
            raise IllegalTransition(f"session cannot {event.value} while {self.link}") from None
        self.link = new
        self.connected = new is Link.CONNECTED
        return effects


class Presence:
    def __init__(
        self, board: Switchboard, courts: Courts, config: PresenceConfig, deadlines: Deadlines
    ) -> None:
        self._board = board
        self._courts = courts
        self.config = config
        self._deadlines = deadlines
        self.sessions: dict[str, Session] = {}
        # court -> operators / officers signed in there; supervisors and admins whose scope
        # covers it.
        self._operators: dict[str, set[str]] = {}
        self._officers: dict[str, set[str]] = {}
        self._monitors: dict[str, set[str]] = {}
        # court -> the command center's users of that very court (its consoles).
        self._consoles: dict[str, set[str]] = {}

    # ---- queries ------------------------------------------------------------------------

    def session(self, user: str) -> Session | None:
        return self.sessions.get(user)

    def operators(self, court: str) -> frozenset[str]:
        return frozenset(self._operators.get(court, ()))

    def monitors(self, court: str) -> frozenset[str]:
        return frozenset(self._monitors.get(court, ()))

    def officers(self, court: str) -> list[str]:
        return sorted(self._officers.get(court, ()))

    def consoles(self, court: str) -> list[str]:
        return sorted(self._consoles.get(court, ()))

    def has_operators(self, court: str) -> bool:
        return bool(self._operators.get(court))

    def online_officers(self, court: str | None = None) -> list[str]:
        if court is None:
            return [u for users in self._officers.values() for u in users]
        return self.officers(court)

    def grace_left(self, user: str, now: float) -> float:
        """How much longer `user`, away, may come back."""
        expiry = self._deadlines.get(Grace(user))
        return self.config.grace_s if expiry is None else max(0.0, expiry - now)

    # ---- connections --------------------------------------------------------------------

    def connect(
        self,
        identity: Identity,
        *,
        keys: SessionKeys,
        device: str,
        app_version: str,
        resume_token: str | None,
        now: float,
    ) -> tuple[Session, list[Action]]:
        """A connection authenticated as `identity` opened. Returns the session it serves."""
        out: list[Action] = []
        user = identity.user_id
        old = self.sessions.get(user)
        if (
            old is not None
            and resume_token is not None
            and resume_token == old.resume_token
            and (old.role, old.identity.court) == (identity.role, identity.court)
        ):
            self._resume(old, identity, now, out)
            return old, out
        continued: str | None = None
        if old is not None:
            out.append(Disconnect(user, old.session_id, CLOSE_REPLACED, "signed in elsewhere"))
            self.sign_out(old, "replaced", now, out)
            # The old session was still there (connected, or away within its resume
            # window): this is the same sign-in going on from a new connection.
            if (old.role, old.identity.court) == (identity.role, identity.court):
                continued = old.session_id
        if continued is None:
            session = self.open(identity, keys, device, app_version, "sign_in", now, out)
        else:
            # A reconnect inside the resume window without resuming (an app restarted, a
            # second device): a new session, recorded as such, but not a new sign-in, so an
            # officer reconnecting in a loop is counted once (docs/statistics.md). After an
            # explicit sign-out, or once the window has run out, it is a sign-in again.
            session = self.open(
                identity,
                keys,
                device,
                app_version,
                "session_continued",
                now,
                out,
                continues=continued,
            )
        return session, out

    def _resume(self, session: Session, identity: Identity, now: float, out: list[Action]) -> None:
        """Same session, new connection: not a sign-in, calls kept."""
        board = self._board
        user = identity.user_id
        if session.connected:
            # The older connection's close is still to be reported; it must not send the
            # session away (see `disconnect`).
            out.append(Disconnect(user, session.session_id, CLOSE_REPLACED, "resumed elsewhere"))
            session.connections += 1
        else:
            session.connections = 1
            self._apply(session, SessionEvent.RESUME)
        session.identity = identity
        board.calls.party_back(user, now, out)
        if session.role is Role.OFFICER:
            out.extend(board.views.officer_changed(session))
        out.append(Send((user,), self.welcome(session, resumed=True, now=now)))
        # After the welcome: a moderator coming back must hear of its sites.
        board.conferences.member_back(user, now, out)
        board.invitations.remind(user, out)
        board.dispatch.run(now, out)

    def open(
        self,
        identity: Identity,
        keys: SessionKeys,
        device: str,
        app_version: str,
        kind: str,
        now: float,
        out: list[Action],
        *,
        resumed: bool = False,
        continues: str | None = None,
        carried: EmergencyFacts | None = None,
    ) -> Session:
        """A new session (`kind`: `sign_in`; `session_continued` for one that `continues`
        the user's session that ended within the resume window; `session_adopted` for one
        another authority opened), announced and welcomed. An adopted officer's emergency
        the dead authority left (`carried`) is flagged before the session is first shown,
        so that no roster update shows the officer without it."""
        board = self._board
        user = identity.user_id
        session = Session(
            identity=identity,
            session_id=keys.session_id,
            resume_token=keys.resume_token,
            device=device,
            app_version=app_version,
            signed_in_at=now,
        )
        self.sessions[user] = session
        self._index(identity, add=True)
        board.views.watch(identity, add=True)
        out.append(
            board.facts.signed_in(
                kind,
                user=user,
                name=identity.name,
                role=identity.role.value,
                court=identity.court,
                session=session.session_id,
                device=device,
                app_version=app_version,
                now=now,
                continues=continues,
            )
        )
        if carried is not None and carries(session, carried):
            board.placing.flag_carried(session, carried, now, out)
        if identity.role is Role.OFFICER:
            out.extend(board.views.officer_changed(session))
        out.append(Send((user,), self.welcome(session, resumed=resumed, now=now)))
        # Only a conference adopted from a dead authority can have kept this user's place
        # (signing out leaves every conference): they are back in it.
        board.conferences.member_back(user, now, out)
        board.invitations.signed_in(session, out)
        board.dispatch.run(now, out)
        return session

    def disconnect(self, user: str, session_id: str, now: float) -> list[Action]:
        """A connection of `session_id` closed; the session waits out the grace period.

        The driver reports the close of every connection it opened with `connect`, including
        one the core told it to close: a connection replaced by a resume shares its session
        id with the one replacing it, and only the last to close sends the session away."""
        out: list[Action] = []
        board = self._board
        session = self.sessions.get(user)
        if session is None or session.session_id != session_id or not session.connected:
            return out
        session.connections -= 1
        if session.connections > 0:
            return out
        self._apply(session, SessionEvent.DROP, now)
        if self.config.grace_s <= 0:
            # No grace: away is signed out at once.
            self.sign_out(session, "closed", now, out)
            board.dispatch.run(now, out)
            return out
        board.calls.party_away(user, self.config.grace_s, now, out)
        board.conferences.member_away(user, now, out)
        # A camera or a wall without its connection shows nothing: its watches end now.
        board.watches.gone(user, now, out)
        if session.role is not Role.OFFICER:
            # Someone who cannot answer stops ringing; their calls ring elsewhere or queue.
            # An officer keeps ringing: the call is in their welcome when they resume.
            board.dispatch.stop_ringing_all(user, "away", now, out)
        if session.role is Role.OFFICER:
            out.extend(board.views.officer_changed(session))
        board.dispatch.run(now, out)
        return out

    def grace_expired(self, user: str, now: float, out: list[Action]) -> None:
        session = self.sessions.get(user)
        if session is not None and not session.connected:
            self.sign_out(session, "grace_expired", now, out)

    def sign_out(self, session: Session, reason: str, now: float, out: list[Action]) -> None:
        """Close `session` for `reason`: what it monitors, rings for or takes part in goes
        first, then the session itself, recorded and announced offline."""
        board = self._board
        user = session.user_id
        board.views.forget(user)
        board.watches.gone(user, now, out)
        board.calls.leave_all(user, now, out)
        board.dispatch.signed_out(user, now, out)
        board.transfers.signed_out(user, now, out)
        board.availability.signed_out(user)
        board.alarms.forget(user)
        call = board.calls.call_of(user)
        if call is not None:
            board.calls.end(call, EndReason.PARTY_LOST, user, now, out)
        board.conferences.member_gone(user, now, out)
        out.append(board.facts.record("sign_out", now, **self.signed_out_data(session, reason)))
        self._apply(session, SessionEvent.SIGN_OUT)
        self._index(session.identity, add=False)
        board.views.watch(session.identity, add=False)
        del self.sessions[user]
        if session.role is Role.OFFICER:
            out.extend(board.views.officer_gone(session))

    def signed_out_data(self, session: Session, reason: str) -> dict[str, object]:
        return self._board.facts.signed_out_data(
            user=session.user_id,
            role=session.role.value,
            court=session.identity.court,
            session=session.session_id,
            reason=reason,
        )

    def _apply(self, session: Session, event: SessionEvent, now: float = 0.0) -> None:
        for effect in session.apply(event):
            match effect:
                case SessionEffect.START_GRACE:
                    self._deadlines.set(Grace(session.user_id), now + self.config.grace_s)
                case SessionEffect.STOP_GRACE:
                    self._deadlines.cancel(Grace(session.user_id))

    def _index(self, ident: Identity, *, add: bool) -> None:
        user = ident.user_id
        if ident.role in MONITOR_ROLES:
            for court in self._courts.scope(ident):
                _toggle(self._monitors, court, user, add)
        if ident.role is Role.OPERATOR:
            _toggle(self._operators, ident.court, user, add)
        if ident.role in CONSOLE_ROLES:
            _toggle(self._consoles, ident.court, user, add)
        if ident.role is Role.OFFICER:
            _toggle(self._officers, ident.court, user, add)

    # ---- what sessions say --------------------------------------------------------------

    def heartbeat(self, session: Session, msg: p.Heartbeat, now: float) -> p.HeartbeatAck:
        server_ms = p.epoch_ms(now)
        # The device stamped device_time about half a round trip before we received it.
        half_rtt = (msg.rtt_ms or 0.0) / 2.0
        offset = round(msg.device_time + half_rtt - server_ms, 3)
        session.clock_offset_ms = offset
        session.rtt_ms = msg.rtt_ms
        return p.HeartbeatAck(
            ref=msg.id,
            device_time=msg.device_time,
            server_time=server_ms,
            offset_ms=offset,
            rtt_ms=msg.rtt_ms,
        )

    def set_emergency(self, session: Session, on: bool) -> bool:
        """Flag or clear `session`'s officer as in an emergency; True if it changed."""
        changed = session.emergency is not on
        session.emergency = on
        if changed:
            session.emergency_taken_by = None
            session.emergency_note = None
        return changed

    def welcome(self, session: Session, *, resumed: bool, now: float) -> p.Welcome:
        board = self._board
        return p.Welcome(
            protocol=p.PROTOCOL_VERSION,
            session_id=session.session_id,
            resume_token=session.resume_token,
            resumed=resumed,
            user=self.info_of(session.identity),
            node_id=board.facts.node_id,
            server_time=p.epoch_ms(now),
            heartbeat_interval_s=self.config.heartbeat_interval_s,
            grace_s=self.config.grace_s,
            calls=board.calls_of(session.user_id),
            court_name=self.court_name(session.identity.court),
        )

    def court_name(self, court: str) -> str:
        """The court's name to show; its code when it is not configured here."""
        return self._courts.name(court) if court in self._courts else court

    # ---- how users are shown ------------------------------------------------------------

    @staticmethod
    def info_of(ident: Identity) -> p.UserInfo:
        return p.UserInfo(
            id=ident.user_id, name=ident.name, role=ident.role.value, court=ident.court
        )

    def info(self, user: str) -> p.UserInfo:
        s = self.sessions.get(user)
        if s is None:
            return p.UserInfo(id=user, name=user, role="", court="")
        return self.info_of(s.identity)


def _toggle(index: dict[str, set[str]], key: str, user: str, add: bool) -> None:
    if add:
        index.setdefault(key, set()).add(user)
        return
    users = index.get(key)
    if users is not None:
        users.discard(user)
        if not users:
            del index[key]
