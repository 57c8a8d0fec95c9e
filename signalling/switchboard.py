"""The hub's pure core: who is signed in, which calls exist, who rings, who is free.

Events go in (`connect`, `disconnect`, `handle(user, message, now)`, `handle_timeout(now)`),
actions come out (`Send`, `Record`, `Disconnect`). Nothing here touches a socket, a clock, a
task or a random source: the driver (`signalling.hub`) passes the time, the session ids and a
call id factory, and arms one timer at `next_deadline()`.

Theory of operation
-------------------
Sessions. A user's connection opens a session (a sign-in, for officers counted by the
statistics). When the connection drops the session goes *away* for `presence.grace_s`; a
reconnect presenting the session's resume token within that time resumes it (no new sign-in,
calls kept); one presenting it while the session is still connected replaces the older
connection, whose close does not then send the session away. When the grace runs out the
user is signed out and every call they were a party to ends with `party_lost`. Whoever
joins a call while a party is away (answering, taking a transfer, monitoring) is told so.

Ringing. An operator is *free* when signed in, connected, not in a call and not placing one.
An officer's call to the center rings every free operator of the officer's court (or, with
`calls.fallback_to_parent` and no operator of that court signed in, of the nearest ancestor
court that has one). A normal call rings an operator only while no other call rings them, so
that a court's calls are taken in queue order; a call that finds nobody free is QUEUED and
its officer is told its position among the calls waiting for the same operators (courts
that fall back to one parent share its line; `calls.max_queue` bounds each line).
Emergencies go ahead of every queue and ring every operator in scope who is not in a call,
whatever else rings them, and every supervisor or admin whose scope covers the court.
Whenever anyone becomes free, `_dispatch` rings the queued calls in order (emergencies
first, then oldest first).

Every transition a call makes is checked against `signalling.call.TRANSITIONS` and recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from identity import Courts, Identity, Role
from sessions.recorder import TraceEvent
from signalling import protocol as p
from signalling.actions import Action, Disconnect, Negotiate, Record, Room, Send
from signalling.call import Call, CallEvent, CallState
from signalling.deadlines import Deadlines
from signalling.errors import (
    CLOSE_REPLACED,
    Busy,
    CallAlreadyTaken,
    Forbidden,
    InvalidState,
    MediaUnavailable,
    NotFound,
)
from signalling.protocol import Direction, EndReason
from signalling.settings import CallsConfig, PresenceConfig

# The most frequent messages, which never change who is free or what rings: the scan of
# every call that `_dispatch` makes is skipped for them.
_NO_DISPATCH = (p.Heartbeat, p.Position, p.GetRoster, *p.MEDIA_MESSAGES)
CENTER_ROLES = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
WATCHER_ROLES = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
MONITOR_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


@dataclass
class Session:
    identity: Identity
    session_id: str
    resume_token: str
    device: str
    app_version: str
    signed_in_at: float
    connected: bool = True
    # Open connections serving this session: two while a resuming connection replaces one
    # the driver has been told to close but has not yet reported closed.
    connections: int = 1
    # Device clock minus server clock (ms), from the latest heartbeat.
    clock_offset_ms: float | None = None
    rtt_ms: float | None = None
    position: p.GeoPosition | None = None
    position_sent_at: float | None = None
    position_pending: bool = False
    emergency: bool = False
    # The live call this user is a party to (officer, answering operator, or caller).
    call: str | None = None
    # Calls ringing at this user now.
    ringing: set[str] = field(default_factory=set)
    # Calls this supervisor monitors.
    monitoring: set[str] = field(default_factory=set)

    @property
    def user_id(self) -> str:
        return self.identity.user_id

    @property
    def role(self) -> Role:
        return self.identity.role


@dataclass(frozen=True)
class WaitingCall:
    """An officer's call to the center not yet answered, as a new authority re-queues it."""

    call_id: str
    officer: str
    court: str
    created_at: float
    case_number: str | None
    emergency: bool


@dataclass(frozen=True)
class CallFacts:
    """A live call as the cluster's journal keeps it: who to tell if it is lost, the data of
    its `call_ended` record then, and, while unanswered, what re-queues it."""

    notify: tuple[str, ...]
    ended: dict[str, object]
    waiting: WaitingCall | None


@dataclass(frozen=True)
class SessionKeys:
    """Fresh identifiers the driver draws for a connection that may open a new session."""

    session_id: str
    resume_token: str


class Switchboard:
    def __init__(
        self,
        *,
        courts: Courts,
        calls: CallsConfig,
        presence: PresenceConfig,
        node_id: str,
        new_call_id: Callable[[], str],
        media: bool = False,
    ) -> None:
        self.courts = courts
        # Whether a media server stands behind the driver (Room / Negotiate actions).
        self.media = media
        self.calls_cfg = calls
        self.presence_cfg = presence
        self.node_id = node_id
        self._new_call_id = new_call_id
        self.sessions: dict[str, Session] = {}
        self.calls: dict[str, Call] = {}
        self.deadlines = Deadlines()
        # court -> users (online or away) whose roster scope includes it.
        self._watchers: dict[str, set[str]] = {}
        # court -> operators signed in there.
        self._operators: dict[str, set[str]] = {}
        # court -> supervisors/admins whose scope covers it.
        self._monitors: dict[str, set[str]] = {}
        # court -> officers signed in there.
        self._officers: dict[str, set[str]] = {}
        # call id -> queue position last told to its officer.
        self._told_position: dict[str, int] = {}

    # ---- queries --------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self.deadlines.next()

    def session(self, user: str) -> Session | None:
        return self.sessions.get(user)

    def live_calls(self) -> list[Call]:
        return [c for c in self.calls.values() if c.is_live()]

    def online_officers(self, court: str | None = None) -> list[str]:
        if court is None:
            return [u for users in self._officers.values() for u in users]
        return sorted(self._officers.get(court, ()))

    def queue(self, court: str) -> list[Call]:
        """Queued calls of officers of `court`, in the order they will ring."""
        waiting = [
            c for c in self.calls.values() if c.state is CallState.QUEUED and c.court == court
        ]
        return sorted(waiting, key=_queue_order)

    # ---- sessions ---------------------------------------------------------------------

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
            # Same session, new connection: not a sign-in, calls kept.
            if old.connected:
                # The older connection's close is still to be reported; it must not send
                # the session away (see `disconnect`).
                out.append(Disconnect(user, old.session_id, CLOSE_REPLACED, "resumed elsewhere"))
                old.connections += 1
            else:
                old.connections = 1
            old.identity = identity
            old.connected = True
            self.deadlines.cancel(("grace", user))
            for call_id in self._calls_of(user):
                call = self.calls[call_id]
                if user in call.away:
                    call.away.discard(user)
                    call.apply(CallEvent.PARTY_BACK, now)
                    out.append(self._record("party_back", now, call=call.call_id, user=user))
                    others = tuple(m for m in call.members() if m != user)
                    if others:
                        msg = p.PartyBack(call_id=call.call_id, user=self._info(user))
                        out.append(Send(others, msg))
                    self._room(call, out)
            if old.role is Role.OFFICER:
                out.extend(self._roster_changed(old, now))
            out.append(Send((user,), self._welcome(old, resumed=True, now=now)))
            self._dispatch(now, out)
            return old, out
        if old is not None:
            out.append(Disconnect(user, old.session_id, CLOSE_REPLACED, "signed in elsewhere"))
            self._sign_out(old, "replaced", now, out)
        session, opened = self._open(identity, keys, device, app_version, "sign_in", now)
        out.extend(opened)
        return session, out

    def _open(
        self,
        identity: Identity,
        keys: SessionKeys,
        device: str,
        app_version: str,
        kind: str,
        now: float,
        *,
        resumed: bool = False,
    ) -> tuple[Session, list[Action]]:
        out: list[Action] = []
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
        self._index(session, add=True)
        out.append(
            self._record(
                kind,
                now,
                user=user,
                role=identity.role.value,
                court=identity.court,
                session=session.session_id,
                device=device,
                app_version=app_version,
                node=self.node_id,
            )
        )
        if identity.role is Role.OFFICER:
            out.extend(self._roster_changed(session, now))
        out.append(Send((user,), self._welcome(session, resumed=resumed, now=now)))
        self._dispatch(now, out)
        return session, out

    def disconnect(self, user: str, session_id: str, now: float) -> list[Action]:
        """A connection of `session_id` closed; the session waits out the grace period.

        The driver reports the close of every connection it opened with `connect`, including
        one the core told it to close: a connection replaced by a resume shares its session
        id with the one replacing it, and only the last to close sends the session away."""
        out: list[Action] = []
        session = self.sessions.get(user)
        if session is None or session.session_id != session_id or not session.connected:
            return out
        session.connections -= 1
        if session.connections > 0:
            return out
        session.connected = False
        if self.presence_cfg.grace_s <= 0:
            self._sign_out(session, "closed", now, out)
            self._dispatch(now, out)
            return out
        self.deadlines.set(("grace", user), now + self.presence_cfg.grace_s)
        info = self._info(user)
        for call_id in self._calls_of(user):
            call = self.calls[call_id]
            if user in call.parties():
                call.away.add(user)
                call.apply(CallEvent.PARTY_AWAY, now)
                out.append(self._record("party_away", now, call=call_id, user=user))
                others = tuple(m for m in call.members() if m != user)
                if others:
                    # Whoever joins later (an operator answering a ringing call, a
                    # supervisor) is told on joining: see `_tell_away`.
                    msg = p.PartyAway(call_id=call_id, user=info, grace_s=self.presence_cfg.grace_s)
                    out.append(Send(others, msg))
                self._room(call, out)
        if session.role is not Role.OFFICER:
            # Someone who cannot answer stops ringing; their calls ring elsewhere or queue.
            # An officer keeps ringing: the call is in their welcome when they resume.
            for call_id in list(session.ringing):
                self._stop_ringing(self.calls[call_id], user, "away", now, out)
        if session.role is Role.OFFICER:
            out.extend(self._roster_changed(session, now))
        self._dispatch(now, out)
        return out

    # ---- many nodes (signalling/cluster.py) -------------------------------------------

    def adopt(
        self,
        identity: Identity,
        *,
        keys: SessionKeys,
        device: str,
        app_version: str,
        now: float,
    ) -> list[Action]:
        """A gateway reports a live connection of session `keys.session_id` (a resync: after
        this node became the authority, or after messages between them may have been lost).

        A session we know under that id is brought up to date (back from away, if the
        close we heard of was the lost connection's) and welcomed again with the current
        state. One we do not know is taken on as it is: its sign-in was recorded by the
        authority that opened it, so it is recorded as `session_adopted`, not counted again.
        A report of a session the user has since replaced is answered by closing it."""
        user = identity.user_id
        old = self.sessions.get(user)
        if old is not None and old.session_id == keys.session_id:
            if old.connected:
                return [Send((user,), self._welcome(old, resumed=True, now=now))]
            _, out = self.connect(
                identity,
                keys=keys,
                device=device,
                app_version=app_version,
                resume_token=old.resume_token,
                now=now,
            )
            return out
        if old is not None:
            return [Disconnect(user, keys.session_id, CLOSE_REPLACED, "signed in elsewhere")]
        _, out = self._open(
            identity, keys, device, app_version, "session_adopted", now, resumed=True
        )
        return out

    def lose(self, user: str, session_id: str, now: float) -> list[Action]:
        """The node serving `session_id` died: its calls end with `node_lost` at once and
        the user signs out (no grace: their connection is known gone, and a client that
        reconnects elsewhere in time has resumed already, under the same session id but
        from a live node, so this is not called for it)."""
        out: list[Action] = []
        session = self.sessions.get(user)
        if session is None or session.session_id != session_id:
            return out
        if session.call is not None:
            self._end(self.calls[session.call], EndReason.NODE_LOST, user, now, out)
        self._sign_out(session, "node_lost", now, out)
        self._dispatch(now, out)
        return out

    def call_facts(self, call_id: str) -> CallFacts | None:
        """What the next authority needs to take a live call over, or end it, should this
        one die with it (signalling/cluster.py's journal)."""
        call = self.calls.get(call_id)
        if call is None or not call.is_live():
            return None
        waiting = None
        if call.direction is Direction.OFFICER_TO_CENTER and call.answered_at is None:
            waiting = WaitingCall(
                call_id=call.call_id,
                officer=call.officer,
                court=call.court,
                created_at=call.created_at,
                case_number=call.case_number,
                emergency=call.emergency,
            )
        return CallFacts(
            notify=tuple(sorted({*call.members(), *call.ringing})),
            ended=_ended_data(call, EndReason.NODE_LOST, None),
            waiting=waiting,
        )

    def take_over(self, waiting: WaitingCall, now: float) -> list[Action]:
        """Queue again an officer's unanswered call that a dead authority held (the next one
        took its sessions on first): it rings as it would have, in its old place in the
        queue (by `created_at`), and the officer is welcomed again to see it. An officer no
        longer here, or in another call by now, has it ended with `node_lost`."""
        out: list[Action] = []
        if waiting.call_id in self.calls:
            return out
        session = self.sessions.get(waiting.officer)
        call = Call(
            call_id=waiting.call_id,
            direction=Direction.OFFICER_TO_CENTER,
            officer=waiting.officer,
            court=waiting.court,
            caller=waiting.officer,
            created_at=waiting.created_at,
            case_number=waiting.case_number,
            emergency=waiting.emergency,
        )
        self.calls[call.call_id] = call
        if session is None or session.call is not None:
            self._end(call, EndReason.NODE_LOST, None, now, out)
            return out
        session.call = call.call_id
        if waiting.emergency:
            session.emergency = True
        out.append(self._record("call_taken_over", now, call=call.call_id, node=self.node_id))
        deadline = waiting.created_at + self.calls_cfg.queue_timeout_s
        self.deadlines.set(("queue", call.call_id), max(now, deadline))
        out.extend(self._roster_changed(session, now))
        self._dispatch(now, out)
        out.append(Send((session.user_id,), self._welcome(session, resumed=True, now=now)))
        return out

    def session_facts(self, user: str) -> dict[str, object] | None:
        """The data of the `sign_out` record `user`'s session would have if it were lost
        with its node now (the cluster's journal, as `call_facts`)."""
        session = self.sessions.get(user)
        if session is None:
            return None
        return self._signed_out_data(session, "node_lost")

    def _signed_out_data(self, session: Session, reason: str) -> dict[str, object]:
        return {
            "user": session.user_id,
            "role": session.role.value,
            "court": session.identity.court,
            "session": session.session_id,
            "reason": reason,
            "node": self.node_id,
        }

    def end_call(self, call_id: str, reason: EndReason, now: float) -> list[Action]:
        """End a live call from outside (its media node died): everyone in it is told."""
        out: list[Action] = []
        call = self.calls.get(call_id)
        if call is not None and call.is_live():
            self._end(call, reason, None, now, out)
            self._dispatch(now, out)
        return out

    def shutdown(self, now: float, users: Collection[str] | None = None) -> list[Action]:
        """The node is stopping: end every call and sign everyone out (or only `users`: the
        rest are connected to other nodes, and the next authority takes their sessions on),
        so the trace holds no sign-in without its sign-out and no call without its end."""
        out: list[Action] = []
        for call in list(self.calls.values()):
            if call.is_live():
                self._end(call, EndReason.SHUTDOWN, None, now, out)
        for session in list(self.sessions.values()):
            if users is None or session.user_id in users:
                self._sign_out(session, "shutdown", now, out)
        return out

    def _sign_out(self, session: Session, reason: str, now: float, out: list[Action]) -> None:
        user = session.user_id
        self.deadlines.cancel(("grace", user))
        self.deadlines.cancel(("pos", user))
        for call_id in list(session.monitoring):
            self._leave(self.calls[call_id], user, now, out)
        for call_id in list(session.ringing):
            call = self.calls[call_id]
            if call.direction is Direction.CENTER_TO_OFFICER:
                self._end(call, EndReason.PARTY_LOST, user, now, out)
            else:
                self._stop_ringing(call, user, "away", now, out)
        if session.call is not None:
            self._end(self.calls[session.call], EndReason.PARTY_LOST, user, now, out)
        out.append(self._record("sign_out", now, **self._signed_out_data(session, reason)))
        self._index(session, add=False)
        del self.sessions[user]
        watchers = self._watchers_of(session.identity.court)
        if session.role is Role.OFFICER and watchers:
            entry = self._roster_entry(session, status="offline")
            out.append(Send(watchers, p.RosterUpdate(entry=entry)))

    def _index(self, session: Session, *, add: bool) -> None:
        ident = session.identity
        user = ident.user_id
        courts: Iterable[str] = ()
        if ident.role in WATCHER_ROLES:
            courts = self.courts.scope(ident)
        for court in courts:
            _toggle(self._watchers, court, user, add)
            if ident.role in MONITOR_ROLES:
                _toggle(self._monitors, court, user, add)
        if ident.role is Role.OPERATOR:
            _toggle(self._operators, ident.court, user, add)
        if ident.role is Role.OFFICER:
            _toggle(self._officers, ident.court, user, add)

    # ---- timeouts ---------------------------------------------------------------------

    def handle_timeout(self, now: float) -> list[Action]:
        out: list[Action] = []
        for key in self.deadlines.pop_due(now):
            assert isinstance(key, tuple)
            kind, ident = key
            if kind == "grace":
                session = self.sessions.get(ident)
                if session is not None and not session.connected:
                    self._sign_out(session, "grace_expired", now, out)
            elif kind == "ring":
                call = self.calls.get(ident)
                if call is not None and call.state is CallState.RINGING:
                    self._end(call, EndReason.MISSED, None, now, out)
            elif kind == "queue":
                call = self.calls.get(ident)
                if call is not None and call.state is CallState.QUEUED:
                    self._end(call, EndReason.QUEUE_TIMEOUT, None, now, out)
            elif kind == "pos":
                session = self.sessions.get(ident)
                if session is not None and session.position_pending:
                    out.extend(self._publish_position(session, now))
        self._dispatch(now, out)
        return out

    # ---- client messages --------------------------------------------------------------

    def handle(self, user: str, msg: p.ClientMessage, now: float) -> list[Action]:
        """Carry out one decoded client message. Raises a ClientError (and changes nothing)
        when the message may not be carried out."""
        session = self.sessions.get(user)
        if session is None or not session.connected:
            raise InvalidState("no live session")
        out: list[Action] = []
        match msg:
            case p.Heartbeat():
                out.append(Send((user,), self._heartbeat(session, msg, now)))
            case p.Position():
                self._require(session, {Role.OFFICER}, "only officers report positions")
                session.position = p.GeoPosition(
                    lat=msg.lat, lon=msg.lon, accuracy_m=msg.accuracy_m, device_time=msg.device_time
                )
                interval = self.presence_cfg.position_interval_s
                last = session.position_sent_at
                if last is None or now - last >= interval:
                    out.extend(self._publish_position(session, now))
                elif not session.position_pending:
                    session.position_pending = True
                    self.deadlines.set(("pos", user), last + interval)
                out.append(Send((user,), p.Ack(ref=msg.id)))
            case p.CallCenter():
                self._require(session, {Role.OFFICER}, "only officers call the center")
                self._call_center(session, msg.case_number, False, msg.id, now, out)
            case p.Emergency():
                self._require(session, {Role.OFFICER}, "only officers raise emergencies")
                self._emergency(session, msg, now, out)
            case p.CallOfficer():
                self._call_officer(session, msg, now, out)
            case p.Accept():
                self._accept(session, self._call(msg.call_id), now, out)
                out.append(Send((user,), p.Ack(ref=msg.id)))
            case p.Decline():
                self._decline(session, self._call(msg.call_id), now, out)
                out.append(Send((user,), p.Ack(ref=msg.id)))
            case p.Cancel():
                call = self._call(msg.call_id)
                if call.caller != user:
                    raise Forbidden("only the caller may cancel")
                if call.state not in (CallState.QUEUED, CallState.RINGING):
                    raise InvalidState(f"cannot cancel a call that is {call.state.value}")
                self._end(call, EndReason.CANCELLED, user, now, out)
                out.append(Send((user,), p.Ack(ref=msg.id)))
            case p.Hangup():
                self._hangup(session, self._call(msg.call_id), now, out)
                out.append(Send((user,), p.Ack(ref=msg.id)))
            case p.JoinCall():
                self._join(session, self._call(msg.call_id), msg.covert, now, out)
                out.append(Send((user,), p.Ack(ref=msg.id)))
            case p.LeaveCall():
                call = self._call(msg.call_id)
                if user not in call.supervisors:
                    raise InvalidState("you are not monitoring this call")
                self._leave(call, user, now, out)
                out.append(Send((user,), p.Ack(ref=msg.id)))
            case p.Transfer():
                self._transfer(session, self._call(msg.call_id), msg.to, now, out)
                out.append(Send((user,), p.Ack(ref=msg.id)))
            case p.ClearEmergency():
                self._clear_emergency(session, msg.officer, now, out)
                out.append(Send((user,), p.Ack(ref=msg.id)))
            case p.GetRoster():
                out.append(Send((user,), self._roster(session, msg)))
            case p.Offer() | p.Answer() | p.IceCandidate():
                # Media negotiation is carried out by the driver's media port; the core only
                # checks that the sender is in the call.
                self.media_call(user, msg.call_id)
                if not self.media:
                    raise MediaUnavailable("media is not available on this server")
                out.append(Negotiate(user, msg))
            case p.Snapshot():
                call = self.media_call(user, msg.call_id)
                self._require(session, CENTER_ROLES, "only the command center takes snapshots")
                if msg.of is not None and msg.of not in call.members():
                    raise NotFound("no such member in this call", field="of")
                if not self.media:
                    raise MediaUnavailable("media is not available on this server")
                out.append(Negotiate(user, msg))
        if not isinstance(msg, _NO_DISPATCH):
            self._dispatch(now, out)
        return out

    def media_call(self, user: str, call_id: str) -> Call:
        """The active call `user` may negotiate media for; raises otherwise."""
        call = self._call(call_id)
        if user not in call.members():
            raise Forbidden("you are not in this call")
        if call.state is not CallState.ACTIVE:
            raise InvalidState(f"call is {call.state.value}")
        return call

    # ---- heartbeat and positions ---------------------------------------------------------

    def _heartbeat(self, session: Session, msg: p.Heartbeat, now: float) -> p.HeartbeatAck:
        server_ms = ms(now)
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

    def _publish_position(self, session: Session, now: float) -> list[Action]:
        session.position_pending = False
        session.position_sent_at = now
        self.deadlines.cancel(("pos", session.user_id))
        pos = session.position
        assert pos is not None
        rec = self._record(
            "position",
            now,
            user=session.user_id,
            court=session.identity.court,
            lat=pos.lat,
            lon=pos.lon,
            accuracy_m=pos.accuracy_m,
            device_time=pos.device_time,
            clock_offset_ms=session.clock_offset_ms,
        )
        return [rec, *self._roster_changed(session, now)]

    # ---- roster -----------------------------------------------------------------------

    def _roster_entry(
        self, session: Session, status: p.PresenceStatus | None = None
    ) -> p.RosterEntry:
        if status is None:
            status = "online" if session.connected else "away"
        return p.RosterEntry(
            officer=self._info_of(session.identity),
            status=status,
            call_id=session.call,
            emergency=session.emergency,
            position=session.position,
            device=session.device,
            since=ms(session.signed_in_at),
        )

    def _roster_changed(self, session: Session, now: float) -> list[Action]:
        watchers = self._watchers_of(session.identity.court)
        if not watchers:
            return []
        return [Send(watchers, p.RosterUpdate(entry=self._roster_entry(session)))]

    def _watchers_of(self, court: str) -> tuple[str, ...]:
        return tuple(self._watchers.get(court, ()))

    def _roster(self, session: Session, msg: p.GetRoster) -> p.Roster:
        self._require(session, WATCHER_ROLES, "only the command center sees the roster")
        scope = self.courts.scope(session.identity)
        if msg.court is not None:
            if msg.court not in self.courts:
                raise NotFound("unknown court", field="court")
            if msg.court not in scope:
                raise Forbidden("court is outside your scope", field="court")
            courts: Iterable[str] = (msg.court,)
        else:
            courts = scope
        entries = [
            self._roster_entry(self.sessions[u])
            for court in sorted(courts)
            for u in sorted(self._officers.get(court, ()))
        ]
        return p.Roster(ref=msg.id, officers=entries)

    # ---- placing calls ----------------------------------------------------------------

    def _call_center(
        self,
        session: Session,
        case_number: str | None,
        emergency: bool,
        ref: str,
        now: float,
        out: list[Action],
    ) -> Call:
        if session.call is not None:
            raise Busy("you are already in a call")
        officer = session.identity
        call = Call(
            call_id=self._new_call_id(),
            direction=Direction.OFFICER_TO_CENTER,
            officer=officer.user_id,
            court=officer.court,
            caller=officer.user_id,
            created_at=now,
            case_number=case_number,
            emergency=emergency,
        )
        self.calls[call.call_id] = call
        session.call = call.call_id
        out.append(self._record_created(call, now))
        out.append(Send((officer.user_id,), p.CallPlaced(ref=ref, call_id=call.call_id)))
        out.extend(self._roster_changed(session, now))
        waiting = len(self._lines().get(self._center_court(call), [])) - 1
        if not emergency and not self._candidates(call) and waiting >= self.calls_cfg.max_queue:
            self._end(call, EndReason.QUEUE_FULL, None, now, out)
            return call
        self.deadlines.set(("queue", call.call_id), now + self.calls_cfg.queue_timeout_s)
        out.append(self._record("call_queued", now, call=call.call_id))
        # _dispatch (run after every message) rings it or tells the officer its position.
        return call

    def _emergency(self, session: Session, msg: p.Emergency, now: float, out: list[Action]) -> None:
        user = session.user_id
        if not session.emergency:
            session.emergency = True
            out.append(
                self._record(
                    "emergency_raised",
                    now,
                    officer=user,
                    court=session.identity.court,
                    call=session.call,
                    note=msg.note,
                    position=_position_data(session.position),
                )
            )
        if session.call is None:
            self._call_center(session, msg.case_number, True, msg.id, now, out)
            return
        call = self.calls[session.call]
        if not call.emergency:
            call.apply(CallEvent.ESCALATE, now)
            call.emergency = True
            out.append(self._record("call_escalated", now, call=call.call_id))
        out.append(Send((user,), p.CallPlaced(ref=msg.id, call_id=call.call_id)))
        out.extend(self._roster_changed(session, now))

    def _call_officer(
        self, session: Session, msg: p.CallOfficer, now: float, out: list[Action]
    ) -> None:
        self._require(session, CENTER_ROLES, "only the command center calls officers")
        caller = session.user_id
        if msg.officer == caller:
            raise InvalidState("cannot call yourself", field="officer")
        target = self.sessions.get(msg.officer)
        if target is not None and target.role is not Role.OFFICER:
            # Calling a user who is no officer ends like calling one who is not signed in,
            # so the answer does not reveal which ids exist.
            target = None
        court = target.identity.court if target is not None else None
        if court is not None and not self.courts.in_scope(session.identity, court):
            raise Forbidden("officer is outside your scope", field="officer")
        if target is None and session.role is Role.OPERATOR:
            # Unknown officers are reported like offline ones, without revealing which.
            court = session.identity.court
        if session.call is not None:
            raise Busy("you are already in a call")
        call = Call(
            call_id=self._new_call_id(),
            direction=Direction.CENTER_TO_OFFICER,
            officer=msg.officer,
            court=court or session.identity.court,
            caller=caller,
            created_at=now,
            case_number=msg.case_number,
            operator=caller,
        )
        self.calls[call.call_id] = call
        out.append(self._record_created(call, now))
        out.append(Send((caller,), p.CallPlaced(ref=msg.id, call_id=call.call_id)))
        if target is None or not target.connected:
            self._end(call, EndReason.UNAVAILABLE, None, now, out)
            return
        if target.call is not None:
            self._end(call, EndReason.BUSY, None, now, out)
            return
        # The caller stops ringing for incoming calls while placing this one.
        session.call = call.call_id
        for other in list(session.ringing):
            self._stop_ringing(self.calls[other], caller, "busy", now, out)
        target.call = call.call_id
        self._ring(call, [msg.officer], now, out)
        out.extend(self._roster_changed(target, now))

    # ---- ringing ----------------------------------------------------------------------

    def _free(self, user: str, *, emergency: bool) -> bool:
        s = self.sessions.get(user)
        if s is None or not s.connected or s.call is not None:
            return False
        return emergency or not s.ringing

    def _center_court(self, call: Call) -> str:
        """The court whose operators answer `call`: the officer's own, or with fallback the
        nearest ancestor with an operator signed in."""
        if self._operators.get(call.court) or not self.calls_cfg.fallback_to_parent:
            return call.court
        for court in self.courts.ancestors(call.court):
            if self._operators.get(court):
                return court
        return call.court

    def _candidates(self, call: Call) -> list[str]:
        court = self._center_court(call)
        users = set(self._operators.get(court, ()))
        if call.emergency:
            users |= self._monitors.get(call.court, set())
        return sorted(
            u
            for u in users
            if u not in call.declined
            and u not in call.ringing
            and self._free(u, emergency=call.emergency)
        )

    def _ring(self, call: Call, users: list[str], now: float, out: list[Action]) -> None:
        first = call.state is CallState.QUEUED
        call.apply(CallEvent.RING if first else CallEvent.RING_MORE, now)
        if first:
            self.deadlines.cancel(("queue", call.call_id))
            self.deadlines.set(("ring", call.call_id), now + self.calls_cfg.ring_timeout_s)
            call.ring_started_at = now
            self._told_position.pop(call.call_id, None)
        for u in users:
            call.ringing.add(u)
            self.sessions[u].ringing.add(call.call_id)
        out.append(self._record("call_ringing", now, call=call.call_id, users=sorted(users)))
        out.append(Send(tuple(users), p.CallRinging(call=self._call_info(call))))

    def _stop_ringing(
        self, call: Call, user: str, reason: p.RingStopReason, now: float, out: list[Action]
    ) -> None:
        """`user` no longer rings for `call` (busy elsewhere or gone); requeue if nobody
        else rings. A center-to-officer call whose officer stops ringing is ended instead."""
        call.ringing.discard(user)
        s = self.sessions.get(user)
        if s is not None:
            s.ringing.discard(call.call_id)
        out.append(Send((user,), p.RingStopped(call_id=call.call_id, reason=reason)))
        if call.ringing or call.state is not CallState.RINGING:
            return
        if call.direction is Direction.CENTER_TO_OFFICER:
            self._end(call, EndReason.PARTY_LOST, user, now, out)
        else:
            self._requeue(call, now, out)

    def _lines(self) -> dict[str, list[Call]]:
        """Queued calls by the court whose operators will answer them, in ring order.

        Calls of courts that fall back to a common parent wait in one line, so a position
        told to an officer counts every call that will ring before theirs."""
        lines: dict[str, list[Call]] = {}
        for call in self.calls.values():
            if call.state is CallState.QUEUED:
                lines.setdefault(self._center_court(call), []).append(call)
        for line in lines.values():
            line.sort(key=_queue_order)
        return lines

    def _requeue(self, call: Call, now: float, out: list[Action]) -> None:
        call.apply(CallEvent.REQUEUE, now)
        self.deadlines.cancel(("ring", call.call_id))
        self.deadlines.set(
            ("queue", call.call_id), call.created_at + self.calls_cfg.queue_timeout_s
        )
        out.append(self._record("call_queued", now, call=call.call_id))

    def _dispatch(self, now: float, out: list[Action]) -> None:
        """Ring whatever can ring: queued calls in order, and free users for ringing calls.
        Then tell queued officers their (new) positions."""
        live = [c for c in self.calls.values() if c.state in (CallState.QUEUED, CallState.RINGING)]
        if not live:
            return
        live = [c for c in live if c.direction is Direction.OFFICER_TO_CENTER]
        # Queued calls take free operators before ringing calls spread to them, so that
        # a court with two waiting calls and two operators works on both.
        for call in sorted(
            live,
            key=lambda c: (
                not c.emergency,
                c.state is not CallState.QUEUED,
                c.created_at,
                c.call_id,
            ),
        ):
            candidates = self._candidates(call)
            if not candidates:
                continue
            self._ring(call, candidates, now, out)
        for line in self._lines().values():
            for pos, call in enumerate(line, start=1):
                if self._told_position.get(call.call_id) != pos:
                    self._told_position[call.call_id] = pos
                    out.append(
                        Send((call.officer,), p.CallQueued(call_id=call.call_id, position=pos))
                    )

    # ---- answering ----------------------------------------------------------------------

    def _accept(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        user = session.user_id
        if call.state is CallState.ACTIVE and user not in call.members():
            raise CallAlreadyTaken("call was taken by someone else")
        if call.state is not CallState.RINGING:
            raise InvalidState(f"call is {call.state.value}")
        if user not in call.ringing:
            raise InvalidState("call is not ringing for you")
        if session.call is not None and session.call != call.call_id:
            raise Busy("you are already in a call")
        call.apply(CallEvent.ACCEPT, now)
        self.deadlines.cancel(("ring", call.call_id))
        call.answered_at = now
        others = tuple(u for u in call.ringing if u != user)
        for u in call.ringing:
            s = self.sessions.get(u)
            if s is not None:
                s.ringing.discard(call.call_id)
        call.ringing.clear()
        if call.direction is Direction.OFFICER_TO_CENTER:
            call.operator = user
            session.call = call.call_id
            # The new operator stops ringing for every other call.
            for other in list(session.ringing):
                self._stop_ringing(self.calls[other], user, "busy", now, out)
        out.append(self._record("call_answered", now, call=call.call_id, by=user))
        if others:
            out.append(Send(others, p.CallTaken(call_id=call.call_id, by=self._info(user))))
        out.append(Send(call.parties(), p.CallAnswered(call=self._call_info(call))))
        self._room(call, out)
        if call.direction is Direction.OFFICER_TO_CENTER:
            # An officer answering the center was a party all along and has been told.
            self._tell_away(call, user, now, out)

    def _decline(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        user = session.user_id
        if call.state is not CallState.RINGING or user not in call.ringing:
            raise InvalidState("call is not ringing for you")
        if call.direction is Direction.CENTER_TO_OFFICER:
            self._end(call, EndReason.DECLINED, user, now, out)
            return
        call.apply(CallEvent.DECLINE, now)
        call.ringing.discard(user)
        call.declined.add(user)
        session.ringing.discard(call.call_id)
        out.append(self._record("call_declined", now, call=call.call_id, by=user))
        if call.ringing:
            return
        court = self._center_court(call)
        pool = set(self._operators.get(court, ()))
        if call.emergency:
            pool |= self._monitors.get(call.court, set())
        if pool <= call.declined:
            # Everyone who could answer has said no: tell the officer now, not at timeout.
            self._end(call, EndReason.DECLINED, user, now, out)
        else:
            self._requeue(call, now, out)

    def _hangup(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        user = session.user_id
        if user in call.supervisors:
            self._leave(call, user, now, out)
        elif call.state is CallState.ACTIVE and user in call.parties():
            self._end(call, EndReason.HANGUP, user, now, out)
        elif call.state in (CallState.QUEUED, CallState.RINGING) and user == call.caller:
            self._end(call, EndReason.CANCELLED, user, now, out)
        elif call.state is CallState.RINGING and user in call.ringing:
            self._decline(session, call, now, out)
        else:
            raise InvalidState("you are not in this call")

    def _end(
        self, call: Call, reason: EndReason, by: str | None, now: float, out: list[Action]
    ) -> None:
        call.apply(CallEvent.END, now)
        call.ended_at = now
        call.end_reason = reason
        call.ended_by = by
        self.deadlines.cancel(("ring", call.call_id))
        self.deadlines.cancel(("queue", call.call_id))
        self._told_position.pop(call.call_id, None)
        ringing = tuple(call.ringing)
        for u in ringing:
            s = self.sessions.get(u)
            if s is not None:
                s.ringing.discard(call.call_id)
        call.ringing.clear()
        members = call.members()
        for u in members:
            s = self.sessions.get(u)
            if s is None:
                continue
            if s.call == call.call_id:
                s.call = None
            s.monitoring.discard(call.call_id)
        if call.caller not in members:
            s = self.sessions.get(call.caller)
            if s is not None and s.call == call.call_id:
                s.call = None
        out.append(self._record("call_ended", now, **_ended_data(call, reason, by)))
        # Not `call.caller`: a caller who transferred the call is out of it, and one who
        # has not is a member.
        notify = {*members, *ringing}
        if call.direction is Direction.CENTER_TO_OFFICER and call.answered_at is None:
            # An officer who never rang (busy, unavailable) is not told of the attempt.
            notify -= {call.officer} - set(ringing)
        out.append(
            Send(tuple(sorted(notify)), p.CallEnded(call_id=call.call_id, reason=reason, by=by))
        )
        officer = self.sessions.get(call.officer)
        if officer is not None and officer.role is Role.OFFICER:
            out.extend(self._roster_changed(officer, now))
        if call.answered_at is not None:
            out.append(Room(call.call_id, (), (), call.court, call.officer, call.case_number))
        # Ended calls are kept only as long as something may still refer to them.
        del self.calls[call.call_id]

    # ---- supervision and transfer -----------------------------------------------------

    def _join(
        self, session: Session, call: Call, covert: bool, now: float, out: list[Action]
    ) -> None:
        user = session.user_id
        self._require(session, MONITOR_ROLES, "only supervisors join calls")
        if not self.courts.in_scope(session.identity, call.court):
            raise Forbidden("call is outside your scope")
        if covert and not self.calls_cfg.allow_covert_monitoring:
            raise Forbidden("covert monitoring is not allowed", field="covert")
        if user in call.members():
            raise InvalidState("you are already in this call")
        if call.state is not CallState.ACTIVE:
            raise InvalidState(f"call is {call.state.value}")
        call.apply(CallEvent.SUPERVISOR_JOIN, now)
        call.supervisors[user] = covert
        session.monitoring.add(call.call_id)
        out.append(
            self._record("supervisor_joined", now, call=call.call_id, user=user, covert=covert)
        )
        msg = p.ParticipantJoined(call_id=call.call_id, user=self._info(user), covert=covert)
        out.append(Send((user,), p.CallAnswered(call=self._call_info(call))))
        told = (user,) if covert else call.members()
        out.append(Send(told, msg))
        self._room(call, out)
        self._tell_away(call, user, now, out)

    def _leave(self, call: Call, user: str, now: float, out: list[Action]) -> None:
        covert = call.supervisors.get(user, False)
        call.apply(CallEvent.SUPERVISOR_LEAVE, now)
        msg = p.ParticipantLeft(call_id=call.call_id, user=self._info(user))
        told = (user,) if covert else call.members()
        del call.supervisors[user]
        s = self.sessions.get(user)
        if s is not None:
            s.monitoring.discard(call.call_id)
        out.append(
            self._record("supervisor_left", now, call=call.call_id, user=user, covert=covert)
        )
        out.append(Send(told, msg))
        self._room(call, out)

    def _transfer(
        self, session: Session, call: Call, to: str, now: float, out: list[Action]
    ) -> None:
        user = session.user_id
        if call.operator != user or call.state is not CallState.ACTIVE:
            raise InvalidState("only the operator of an answered call may transfer it")
        target = self.sessions.get(to)
        if target is None or target.role is not Role.OPERATOR:
            raise NotFound("no such operator online", field="to")
        if target.identity.court not in (call.court, session.identity.court):
            raise Forbidden("operator does not serve this court", field="to")
        if to == user:
            raise InvalidState("cannot transfer a call to yourself", field="to")
        if not target.connected or target.call is not None:
            raise Busy("operator is not free", field="to")
        call.apply(CallEvent.TRANSFER, now)
        call.operator = to
        session.call = None
        target.call = call.call_id
        for other in list(target.ringing):
            self._stop_ringing(self.calls[other], to, "busy", now, out)
        out.append(self._record("call_transferred", now, call=call.call_id, by=user, to=to))
        msg = p.CallTransferred(call=self._call_info(call), from_operator=self._info(user))
        out.append(Send(tuple(sorted({user, *call.members()})), msg))
        self._room(call, out)
        self._tell_away(call, to, now, out)

    def _room(self, call: Call, out: list[Action]) -> None:
        """Tell the media server who may have media in `call` now: its members who are
        not away, once it is answered."""
        if call.answered_at is None or call.state is CallState.ENDED:
            return
        members = tuple(m for m in call.members() if m not in call.away)
        silent = tuple(u for u, covert in call.supervisors.items() if covert)
        out.append(Room(call.call_id, members, silent, call.court, call.officer, call.case_number))

    def _tell_away(self, call: Call, newcomer: str, now: float, out: list[Action]) -> None:
        """Tell someone who just joined `call` which parties are away, and for how much
        longer they may come back: they were not there when it was announced."""
        for u in sorted(call.away):
            if u == newcomer:
                continue
            expiry = self.deadlines.get(("grace", u))
            left = self.presence_cfg.grace_s if expiry is None else max(0.0, expiry - now)
            msg = p.PartyAway(call_id=call.call_id, user=self._info(u), grace_s=round(left, 3))
            out.append(Send((newcomer,), msg))

    def _clear_emergency(
        self, session: Session, officer: str, now: float, out: list[Action]
    ) -> None:
        self._require(session, CENTER_ROLES, "only the command center clears emergencies")
        target = self.sessions.get(officer)
        if target is None or target.role is not Role.OFFICER:
            raise NotFound("no such officer signed in", field="officer")
        if not self.courts.in_scope(session.identity, target.identity.court):
            raise Forbidden("officer is outside your scope", field="officer")
        if not target.emergency:
            raise InvalidState("officer has no emergency", field="officer")
        target.emergency = False
        out.append(
            self._record(
                "emergency_cleared",
                now,
                officer=officer,
                court=target.identity.court,
                by=session.user_id,
            )
        )
        out.extend(self._roster_changed(target, now))

    # ---- helpers ----------------------------------------------------------------------

    def _require(self, session: Session, roles: Iterable[Role], reason: str) -> None:
        if session.role not in roles:
            raise Forbidden(reason)

    def _call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise NotFound("no such call", field="call_id")
        return call

    def _calls_of(self, user: str) -> list[str]:
        s = self.sessions.get(user)
        if s is None:
            return []
        ids = set(s.ringing) | s.monitoring
        if s.call is not None:
            ids.add(s.call)
        return sorted(ids)

    def _info_of(self, ident: Identity) -> p.UserInfo:
        return p.UserInfo(
            id=ident.user_id, name=ident.name, role=ident.role.value, court=ident.court
        )

    def _info(self, user: str) -> p.UserInfo:
        s = self.sessions.get(user)
        if s is None:
            return p.UserInfo(id=user, name=user, role="", court="")
        return self._info_of(s.identity)

    def _call_info(self, call: Call) -> p.CallInfo:
        return p.CallInfo(
            call_id=call.call_id,
            direction=call.direction,
            state=call.state.value,
            court=call.court,
            officer=self._info(call.officer),
            operator=self._info(call.operator) if call.operator is not None else None,
            case_number=call.case_number,
            emergency=call.emergency,
            supervisors=[self._info(u) for u, covert in call.supervisors.items() if not covert],
            created_at=ms(call.created_at),
        )

    def _welcome(self, session: Session, *, resumed: bool, now: float) -> p.Welcome:
        calls = [self._call_info(self.calls[c]) for c in self._calls_of(session.user_id)]
        return p.Welcome(
            protocol=p.PROTOCOL_VERSION,
            session_id=session.session_id,
            resume_token=session.resume_token,
            resumed=resumed,
            user=self._info_of(session.identity),
            node_id=self.node_id,
            server_time=ms(now),
            heartbeat_interval_s=self.presence_cfg.heartbeat_interval_s,
            grace_s=self.presence_cfg.grace_s,
            calls=calls,
        )

    def _record(self, kind: str, now: float, **data: object) -> Record:
        return Record(TraceEvent(kind=kind, at=now, data=data))

    def _record_created(self, call: Call, now: float) -> Record:
        return self._record(
            "call_created",
            now,
            call=call.call_id,
            direction=call.direction.value,
            officer=call.officer,
            court=call.court,
            caller=call.caller,
            case_number=call.case_number,
            emergency=call.emergency,
            node=self.node_id,
        )


def _ended_data(call: Call, reason: EndReason, by: str | None) -> dict[str, object]:
    return {
        "call": call.call_id,
        "reason": reason.value,
        "by": by,
        "direction": call.direction.value,
        "court": call.court,
        "officer": call.officer,
        "operator": call.operator if call.answered_at is not None else None,
        "answered": call.answered_at is not None,
        "emergency": call.emergency,
        "case_number": call.case_number,
        "monitored_by": sorted(call.supervisors),
    }


def _queue_order(call: Call) -> tuple[bool, float, str]:
    return (not call.emergency, call.created_at, call.call_id)


def _toggle(index: dict[str, set[str]], key: str, user: str, add: bool) -> None:
    if add:
        index.setdefault(key, set()).add(user)
        return
    users = index.get(key)
    if users is not None:
        users.discard(user)
        if not users:
            del index[key]


def _position_data(pos: p.GeoPosition | None) -> dict[str, float] | None:
    if pos is None:
        return None
    return {
        "lat": pos.lat,
        "lon": pos.lon,
        "accuracy_m": pos.accuracy_m,
        "device_time": pos.device_time,
    }
