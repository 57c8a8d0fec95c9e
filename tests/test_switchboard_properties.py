"""Stateful property tests of the switchboard: random connects, drops, resumes, calls,
answers, emergencies, supervision, transfers and the passing of time, over a few users in
two courts (and their parent), with the core's invariants checked after every step.

A refused request (any ClientError) must leave the core exactly as it was; any other
exception fails the test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from identity import Identity, Role
from signalling import protocol as p
from signalling.core.actions import Record, Send
from signalling.core.call import TRANSITIONS, Call, CallEvent, CallState
from signalling.core.deadlines import Deadlines
from signalling.core.dispatch import QueueTimeout, RingTimeout
from signalling.core.presence import Grace
from signalling.errors import ClientError
from signalling.protocol import Direction
from signalling.settings import CallsConfig, PresenceConfig
from tests.corehelpers import COURTS, Board, admin, officer, operator, supervisor

USERS: dict[str, Identity] = {
    i.user_id: i
    for i in (
        officer("oA1", "P0101"),
        officer("oA2", "P0101"),
        officer("oB1", "P0102"),
        operator("opA1", "P0101"),
        operator("opA2", "P0101"),
        operator("opB1", "P0102"),
        operator("opP", "P01"),
        supervisor("sup", "P01"),
        supervisor("supX", "P02"),
        admin("adm", "P"),
    )
}
OFFICERS = sorted(u for u, i in USERS.items() if i.role is Role.OFFICER)
CENTER = sorted(u for u, i in USERS.items() if i.role is not Role.OFFICER)
EVERYONE = sorted(USERS)

CALLS = CallsConfig(
    ring_timeout_s=10.0,
    queue_timeout_s=25.0,
    fallback_to_parent=True,
    allow_covert_monitoring=True,
    max_queue=2,
)
PRESENCE = PresenceConfig(grace_s=5.0, position_interval_s=1.0, heartbeat_interval_s=15.0)

# Records about a call, and the event each stands for (None: depends on the state, or the
# record leaves the call in its state).
EVENT_OF: dict[str, CallEvent | None] = {
    "call_queued": None,
    "call_ringing": None,
    "call_declined": None,
    "call_answered": CallEvent.ACCEPT,
    "supervisor_joined": None,
    "supervisor_left": None,
    "call_transferred": None,
    "transfer_offered": None,
    "transfer_accepted": None,
    "transfer_declined": None,
    "transfer_expired": None,
    "transfer_cancelled": None,
    "transfer_ended": None,
    "transfer_unavailable": None,
    "party_away": None,
    "party_back": None,
    "call_escalated": None,
    "call_sent_back": None,
    "call_ended": CallEvent.END,
}
# The states in which a record that leaves the call in its state may be made.
MADE_WHILE: dict[str, frozenset[CallState]] = {
    "call_declined": frozenset({CallState.RINGING}),
    "supervisor_joined": frozenset({CallState.ACTIVE}),
    # A call sent back to the queue keeps its monitors until it is answered again.
    "supervisor_left": frozenset({CallState.QUEUED, CallState.RINGING, CallState.ACTIVE}),
    "call_transferred": frozenset({CallState.ACTIVE}),
    "transfer_offered": frozenset({CallState.ACTIVE}),
    "transfer_accepted": frozenset({CallState.ACTIVE}),
    "transfer_declined": frozenset({CallState.ACTIVE}),
    "transfer_expired": frozenset({CallState.ACTIVE}),
    "transfer_cancelled": frozenset({CallState.ACTIVE}),
    "transfer_ended": frozenset({CallState.ACTIVE}),
    "transfer_unavailable": frozenset({CallState.ACTIVE}),
    "party_away": frozenset({CallState.QUEUED, CallState.RINGING, CallState.ACTIVE}),
    "party_back": frozenset({CallState.QUEUED, CallState.RINGING, CallState.ACTIVE}),
    "call_escalated": frozenset({CallState.QUEUED, CallState.RINGING, CallState.ACTIVE}),
    "call_sent_back": frozenset({CallState.RINGING, CallState.ACTIVE}),
}

users = st.sampled_from(EVERYONE)
officers = st.sampled_from(OFFICERS)
center_users = st.sampled_from(CENTER)
indexes = st.integers(min_value=0, max_value=7)
# True about one time in eight: a request from someone it does not concern.
rarely = st.integers(min_value=0, max_value=7).map(lambda i: i == 7)


class SwitchboardMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.b = Board(calls=CALLS, presence=PRESENCE)
        self.seen = 0  # how much of b.log the trace checks have read
        # call id -> state replayed from its records alone.
        self.replayed: dict[str, CallState] = {}
        self.created: set[str] = set()
        self.ended_count: Counter[str] = Counter()
        self.sign_ins: Counter[str] = Counter()
        self.sign_outs: Counter[str] = Counter()
        # user -> the session id of each connection the driver still has open, oldest
        # first; the driver reports each one's close exactly once, as the hub does.
        self.open_connections: dict[str, list[str]] = {}
        self.after_timeout: float | None = None

    # ---- driving -----------------------------------------------------------------------

    def _call(self, n: int, answered: bool = False) -> tuple[str, Call | None]:
        """The n-th live call (wrapping; among answered ones if asked and there are any),
        or an id of no live call when there is none."""
        table = self.b.sb.calls.table
        live = sorted(table)
        active = [c for c in live if table[c].state is CallState.ACTIVE]
        if answered and active:
            live = active
        if not live:
            return f"c{n}", None
        cid = live[n % len(live)]
        return cid, table[cid]

    def _pick(self, pool: Iterable[str], k: int, anyone: bool) -> str:
        """Usually someone for whom the request makes sense (from `pool`), sometimes anyone."""
        choices = sorted(pool)
        if anyone or not choices:
            return EVERYONE[k % len(EVERYONE)]
        return choices[k % len(choices)]

    def _send(self, user: str, msg: p.ClientMessage) -> None:
        self.after_timeout = None
        before = self.b.snapshot()
        try:
            self.b.send(user, msg)
        except ClientError:
            assert self.b.snapshot() == before, f"refused {msg!r} from {user} changed state"

    def _mid(self) -> str:
        return self.b.msg_id()

    @initialize(absent=st.sets(users, max_size=4))
    def sign_everyone_in(self, absent: set[str]) -> None:
        for user in EVERYONE:
            if user not in absent:
                self.connect(user, False)

    @rule(user=users, resume=st.booleans())
    def connect(self, user: str, resume: bool) -> None:
        self.after_timeout = None
        old = self.b.sb.session(user)
        token = old.resume_token if (old is not None and resume) else None
        session, _ = self.b.connect(USERS[user], resume=token)
        self.open_connections.setdefault(user, []).append(session.session_id)

    @rule(user=users, newest=st.booleans())
    def close(self, user: str, newest: bool) -> None:
        """One of `user`'s open connections closes (a replaced one, or the peer left)."""
        conns = self.open_connections.get(user, [])
        if conns:
            self.after_timeout = None
            sid = conns.pop(-1 if newest else 0)
            self.b.log.extend(self.b.sb.disconnect(user, sid, self.b.now))

    @rule(user=officers, case=st.none() | st.just("(2026)P-7"))
    def call_center(self, user: str, case: str | None) -> None:
        self._send(user, p.CallCenter(id=self._mid(), case_number=case))

    @rule(user=officers)
    def emergency(self, user: str) -> None:
        self._send(user, p.Emergency(id=self._mid(), note="help"))

    @rule(user=center_users, callee=st.sampled_from([*OFFICERS, "ghost", "opA1"]))
    def call_officer(self, user: str, callee: str) -> None:
        self._send(user, p.CallOfficer(id=self._mid(), officer=callee))

    @rule(n=indexes, k=indexes, anyone=rarely)
    def accept(self, n: int, k: int, anyone: bool) -> None:
        cid, _ = self._call(n)
        user = self._pick(self.b.sb.dispatch.ringing(cid), k, anyone)
        self._send(user, p.Accept(id=self._mid(), call_id=cid))

    @rule(n=indexes, k=indexes, anyone=rarely)
    def decline(self, n: int, k: int, anyone: bool) -> None:
        cid, _ = self._call(n)
        user = self._pick(self.b.sb.dispatch.ringing(cid), k, anyone)
        self._send(user, p.Decline(id=self._mid(), call_id=cid))

    @rule(n=indexes, k=indexes, anyone=rarely)
    def cancel(self, n: int, k: int, anyone: bool) -> None:
        cid, call = self._call(n)
        user = self._pick((call.caller,) if call else (), k, anyone)
        self._send(user, p.Cancel(id=self._mid(), call_id=cid))

    @rule(n=indexes, k=indexes, anyone=rarely)
    def hangup(self, n: int, k: int, anyone: bool) -> None:
        cid, call = self._call(n, answered=True)
        user = self._pick(call.members() if call else (), k, anyone)
        self._send(user, p.Hangup(id=self._mid(), call_id=cid))

    @rule(n=indexes, k=indexes, covert=st.booleans(), anyone=rarely)
    def join(self, n: int, k: int, covert: bool, anyone: bool) -> None:
        cid, _ = self._call(n, answered=True)
        user = self._pick(("sup", "supX", "adm"), k, anyone)
        self._send(user, p.JoinCall(id=self._mid(), call_id=cid, covert=covert))

    @rule(n=indexes, k=indexes, anyone=rarely)
    def leave(self, n: int, k: int, anyone: bool) -> None:
        cid, call = self._call(n)
        user = self._pick(call.supervisors if call else (), k, anyone)
        self._send(user, p.LeaveCall(id=self._mid(), call_id=cid))

    @rule(
        n=indexes,
        k=indexes,
        to=st.sampled_from(["opA1", "opA2", "opB1", "opP", "sup"]),
        anyone=rarely,
    )
    def transfer(self, n: int, k: int, to: str, anyone: bool) -> None:
        cid, call = self._call(n, answered=True)
        user = self._pick((call.operator,) if call and call.operator else (), k, anyone)
        self._send(user, p.Transfer(id=self._mid(), call_id=cid, to=to))

    @rule(n=indexes, to=st.sampled_from(["opA1", "opA2", "opB1", "opP", "sup"]), how=indexes)
    def answer_transfer(self, n: int, to: str, how: int) -> None:
        """The operator offered a call accepts, declines, or the offerer cancels."""
        cid, call = self._call(n, answered=True)
        if how < 4:
            self._send(to, p.AcceptTransfer(id=self._mid(), call_id=cid))
        elif how < 6:
            self._send(to, p.DeclineTransfer(id=self._mid(), call_id=cid))
        else:
            user = call.operator if call and call.operator else to
            self._send(user, p.CancelTransfer(id=self._mid(), call_id=cid))

    @rule(n=indexes, k=indexes, anyone=rarely)
    def send_back(self, n: int, k: int, anyone: bool) -> None:
        cid, call = self._call(n)
        ringing = sorted(self.b.sb.dispatch.ringing(cid))
        own = (call.operator,) if call and call.operator else ()
        user = self._pick((*own, *ringing), k, anyone)
        self._send(user, p.SendBack(id=self._mid(), call_id=cid))

    @rule(user=st.sampled_from(["opA1", "opA2", "opB1", "opP"]), away=st.booleans())
    def set_availability(self, user: str, away: bool) -> None:
        status: p.AvailabilityChoice = "away" if away else "available"
        self._send(user, p.SetAvailability(id=self._mid(), status=status))

    @rule(user=users, flagged=officers)
    def clear_emergency(self, user: str, flagged: str) -> None:
        self._send(user, p.ClearEmergency(id=self._mid(), officer=flagged))

    @rule(user=users, lat=st.floats(min_value=-90, max_value=90))
    def position(self, user: str, lat: float) -> None:
        msg = p.Position(id=self._mid(), lat=lat, lon=1.0, accuracy_m=3.0, device_time=1e12)
        self._send(user, msg)

    @rule(user=users, court=st.none() | st.sampled_from(["P01", "P0101", "P0102", "P02", "Q"]))
    def roster(self, user: str, court: str | None) -> None:
        self._send(user, p.GetRoster(id=self._mid(), court=court))

    @rule(n=indexes, k=indexes, anyone=rarely)
    def offer(self, n: int, k: int, anyone: bool) -> None:
        cid, call = self._call(n)
        user = self._pick(call.members() if call else (), k, anyone)
        self._send(user, p.Offer(id=self._mid(), call_id=cid, sdp="v=0"))

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 4.0, 5.0, 9.0, 10.0, 26.0]))
    def advance(self, seconds: float) -> None:
        self.b.advance(seconds)
        self.after_timeout = self.b.now

    # ---- checks ------------------------------------------------------------------------

    def _read_trace(self) -> None:
        """Replay the records logged since the last call along the table's edges."""
        new = self.b.log[self.seen :]
        self.seen = len(self.b.log)
        for action in new:
            if isinstance(action, Send):
                assert action.to, f"{action.message!r} addressed to nobody"
            if not isinstance(action, Record):
                continue
            event = action.event
            if event.kind in ("sign_in", "session_continued"):
                # Every session opened is one of these; a continued one must name the
                # session it continues, which ended (was signed out) before it.
                user = event.data["user"]
                if event.kind == "session_continued":
                    assert self.sign_ins[user] == self.sign_outs[user], event
                self.sign_ins[user] += 1
            elif event.kind == "sign_out":
                self.sign_outs[event.data["user"]] += 1
            if event.kind == "call_created":
                cid = event.data["call"]
                assert cid not in self.created, f"{cid} created twice"
                self.created.add(cid)
                self.replayed[cid] = CallState.QUEUED
                continue
            if event.kind not in EVENT_OF:
                continue
            cid = event.data["call"]
            state = self.replayed[cid]
            assert state is not CallState.ENDED, f"{event.kind} after {cid} ended"
            ev = EVENT_OF[event.kind]
            if event.kind == "call_queued":
                ev = CallEvent.REQUEUE if state is not CallState.QUEUED else None
                assert state in (CallState.QUEUED, CallState.RINGING, CallState.ACTIVE)
            elif event.kind == "call_ringing":
                # From the queue it starts ringing; while ringing, more users ring.
                ev = CallEvent.RING if state is CallState.QUEUED else None
                assert state in (CallState.QUEUED, CallState.RINGING)
            elif event.kind in MADE_WHILE:
                assert state in MADE_WHILE[event.kind], f"{cid}: {event.kind} while {state}"
            if ev is not None:
                assert (state, ev) in TRANSITIONS, f"{cid}: {event.kind} while {state}"
                self.replayed[cid] = TRANSITIONS[(state, ev)][0]
            if event.kind == "call_ended":
                self.ended_count[cid] += 1

    @invariant()
    def trace_follows_the_table(self) -> None:
        """Each call's records replay along table edges, end once, and agree with the call."""
        self._read_trace()
        for cid in self.created:
            call = self.b.sb.calls.table.get(cid)
            if call is None:
                assert self.ended_count[cid] == 1, f"{cid} gone with {self.ended_count[cid]} ends"
                assert self.replayed[cid] is CallState.ENDED
            else:
                assert self.ended_count[cid] == 0
                assert call.state is self.replayed[cid]
                prev = CallState.QUEUED
                for _, ev, st_ in call.history:
                    assert TRANSITIONS[(prev, ev)][0] is st_
                    prev = st_
        assert set(self.b.sb.calls.table) <= self.created

    @invariant()
    def sessions_match_sign_ins(self) -> None:
        self._read_trace()
        for user in EVERYONE:
            open_ = self.sign_ins[user] - self.sign_outs[user]
            assert open_ == (1 if user in self.b.sb.presence.sessions else 0), user

    @invariant()
    def calls_are_consistent(self) -> None:
        sb = self.b.sb
        sessions = sb.presence.sessions
        parties: Counter[str] = Counter()
        for cid, call in sb.calls.table.items():
            ringing = sb.dispatch.ringing(cid)
            assert call.state is not CallState.ENDED
            assert call.is_live()
            for u in call.parties():
                parties[u] += 1
                assert u in sessions, f"{u} is a party of {cid} without a session"
            if call.state is CallState.ACTIVE:
                assert call.operator is not None
                assert not ringing
                assert call.answered_at is not None
            elif call.state is CallState.RINGING:
                assert ringing, f"{cid} rings nobody"
                for u in ringing:
                    s = sessions.get(u)
                    assert s is not None, f"{cid} rings {u} who is signed out"
                    if u != call.officer:
                        # Only an officer keeps ringing while away (to answer on resume).
                        assert s.connected, f"{cid} rings {u} who is away"
                assert sb.deadlines.get(RingTimeout(cid)) is not None
            else:
                assert call.state is CallState.QUEUED
                assert not ringing
                assert call.direction is Direction.OFFICER_TO_CENTER
                assert call.operator is None
                assert sb.deadlines.get(QueueTimeout(cid)) is not None
            assert not (ringing & sb.dispatch.declined(cid))
            if call.direction is Direction.CENTER_TO_OFFICER:
                # The caller answers for the center until they hand the call over.
                assert call.answered_at is not None or call.operator == call.caller
                assert ringing <= {call.officer}
            assert not (set(call.supervisors) & set(call.parties()))
            assert call.away <= set(call.parties())
            for u in call.away:
                assert not sessions[u].connected
        for user, n in parties.items():
            assert n <= 1, f"{user} is a party of {n} live calls"

    @invariant()
    def session_indexes_agree_with_calls(self) -> None:
        sb = self.b.sb
        table = sb.calls.table
        for user, s in sb.presence.sessions.items():
            mine = {cid for cid, c in table.items() if user in c.parties()}
            call = sb.calls.call_id_of(user)
            assert ({call} if call is not None else set()) == mine, user
            ringing = {cid for cid in table if user in sb.dispatch.ringing(cid)}
            assert sb.dispatch.ringing_at(user) == ringing, user
            monitoring = {cid for cid, c in table.items() if user in c.supervisors}
            assert sb.calls.monitoring(user) == monitoring, user
            normal = [c for c in ringing if not table[c].emergency]
            assert len(normal) <= 1, f"{user} rings for normal calls {normal}"
            assert s.connected == (s.connections > 0), user
            open_ = self.open_connections.get(user, []).count(s.session_id)
            assert s.connections == open_, f"{user}: {s.connections} connections, {open_} open"
            if s.connected:
                assert sb.deadlines.get(Grace(user)) is None
            else:
                assert sb.deadlines.get(Grace(user)) is not None
            if s.role is not Role.OFFICER:
                assert not s.emergency

    @invariant()
    def nobody_free_is_left_out(self) -> None:
        """No waiting or ringing call has a free, willing answerer it does not ring (an
        operator who said they are away is willing for emergencies only)."""
        sb = self.b.sb
        for call in sb.calls.table.values():
            if call.direction is not Direction.OFFICER_TO_CENTER:
                continue
            if call.state not in (CallState.QUEUED, CallState.RINGING):
                continue
            sessions = sb.presence.sessions
            idle = [u for u in answerers(sessions, call.court, call.emergency)]
            for u in idle:
                s = sessions[u]
                free = (
                    s.connected
                    and sb.calls.call_id_of(u) is None
                    and (
                        call.emergency
                        or (not sb.dispatch.ringing_at(u) and not sb.availability.is_away(u))
                    )
                )
                held = sb.dispatch.held(call.call_id)
                if free and u not in sb.dispatch.declined(call.call_id) and u not in held:
                    ringing = sb.dispatch.ringing(call.call_id)
                    assert u in ringing, f"{call.call_id} does not ring free {u}"

    @invariant()
    def no_deadline_left_in_the_past(self) -> None:
        if self.after_timeout is not None:
            nxt = self.b.sb.next_deadline()
            assert nxt is None or nxt > self.after_timeout

    def teardown(self) -> None:
        """Left alone, everything that waits comes to an end: queued and ringing calls
        time out, away sessions are signed out; only answered calls between connected
        parties remain, and no deadline is left pending for nothing: but an emergency nobody
        took on, whose alarm repeats until someone does."""
        sb = self.b.sb
        for _ in range(500):
            nxt = sb.next_deadline()
            if nxt is None or len(sb.deadlines) == len(sb.alarms.pending()):
                break
            self.b.advance(max(0.0, nxt - self.b.now))
            self.after_timeout = self.b.now
            self.no_deadline_left_in_the_past()
        assert len(sb.deadlines) == len(sb.alarms.pending())
        for flagged in sb.alarms.pending():
            s = sb.presence.sessions[flagged]
            assert s.emergency
            assert s.emergency_taken_by is None
        self.trace_follows_the_table()
        self.calls_are_consistent()
        for call in sb.calls.table.values():
            assert call.state is CallState.ACTIVE
            assert not call.away
        assert all(s.connected for s in sb.presence.sessions.values())


def answerers(sessions: dict[str, Any], court: str, emergency: bool) -> list[str]:
    """Who answers a call from `court`: the operators of the court, or of the nearest
    ancestor with an operator signed in; in an emergency also supervisors and admins whose
    scope covers the court."""
    ops_by_court: dict[str, list[str]] = {}
    for u, s in sessions.items():
        if s.role is Role.OPERATOR:
            ops_by_court.setdefault(s.identity.court, []).append(u)
    center = court
    if court not in ops_by_court and CALLS.fallback_to_parent:
        center = next((c for c in COURTS.ancestors(court) if c in ops_by_court), court)
    found = list(ops_by_court.get(center, []))
    if emergency:
        found += [
            u
            for u, s in sessions.items()
            if s.role in (Role.SUPERVISOR, Role.ADMIN) and COURTS.in_scope(s.identity, court)
        ]
    return found


SwitchboardMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSwitchboard = SwitchboardMachine.TestCase


# ---- the deadline heap --------------------------------------------------------------------

keys = st.sampled_from(["a", "b", "c", "d"])
times = st.integers(min_value=0, max_value=20).map(float)
deadline_ops = st.lists(
    st.tuples(st.just("set"), keys, times)
    | st.tuples(st.just("cancel"), keys, st.just(0.0))
    | st.tuples(st.just("pop"), st.just(""), times),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(deadline_ops)
def test_deadlines_behave_like_a_dict_of_times(ops: list[tuple[str, str, float]]) -> None:
    """Setting replaces, cancelling removes, pop_due returns exactly the due keys earliest
    first (ties in the order they were set), and next() is the earliest pending time."""
    d = Deadlines()
    model: dict[str, tuple[float, int]] = {}
    for seq, (op, key, when) in enumerate(ops):
        if op == "set":
            d.set(key, when)
            model[key] = (when, seq)
        elif op == "cancel":
            d.cancel(key)
            model.pop(key, None)
        else:
            due = sorted((v, k) for k, v in model.items() if v[0] <= when)
            assert d.pop_due(when) == [k for _, k in due]
            for _, k in due:
                del model[k]
        assert len(d) == len(model)
        assert d.next() == (min(v[0] for v in model.values()) if model else None)
        for k in ("a", "b", "c", "d"):
            assert d.get(k) == (model[k][0] if k in model else None)
