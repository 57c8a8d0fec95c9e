"""Stateful property tests of the video wall's watches: random connects, drops, resumes,
watches, unwatches, calls and the passing of time over a few officers and watchers of two
courts, with the watch table's invariants checked after every step and the trace's promise
checked at the end: every watch_started has exactly one watch_stopped after it, once the
node stops. A refused request must leave the watches as they were."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from identity import Identity, Role
from signalling import protocol as p
from signalling.core.actions import Record, Room
from signalling.core.watches import WatchLimits
from signalling.errors import ClientError
from signalling.settings import PresenceConfig
from tests.corehelpers import COURTS, Board, officer, operator, supervisor

USERS: dict[str, Identity] = {
    i.user_id: i
    for i in (
        officer("oA1", "P0101"),
        officer("oA2", "P0101"),
        officer("oB1", "P0102"),
        operator("opA", "P0101"),
        operator("opB", "P0102"),
        supervisor("sup", "P01"),
    )
}
OFFICERS = sorted(u for u, i in USERS.items() if i.role is Role.OFFICER)
WATCHERS = sorted(u for u, i in USERS.items() if i.role is not Role.OFFICER)
LIMITS = WatchLimits(max_feeds=2, starts_per_min=5)


class WatchMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.b = Board(media=True, watches=LIMITS, presence=PresenceConfig(grace_s=5.0))
        self.resume: dict[str, str] = {}
        # Media rooms as the driver would hold them: watch id -> members.
        self.rooms: dict[str, tuple[str, ...]] = {}

    def _keep(self, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, Room) and a.watch:
                if a.members:
                    self.rooms[a.call_id] = a.members
                else:
                    self.rooms.pop(a.call_id, None)

    def _state(self) -> Any:
        w = self.b.sb.watches
        return {k: (v.officer, dict(v.watchers)) for k, v in w.table.items()}

    @rule(user=st.sampled_from(sorted(USERS)), resume=st.booleans())
    def connect(self, user: str, resume: bool) -> None:
        session = self.b.sb.session(user)
        if session is not None and session.connected:
            return
        token = self.resume.get(user) if resume else None
        new, actions = self.b.connect(USERS[user], resume=token)
        self.resume[user] = new.resume_token
        self._keep(actions)

    @rule(user=st.sampled_from(sorted(USERS)))
    def drop(self, user: str) -> None:
        session = self.b.sb.session(user)
        if session is None or not session.connected:
            return
        self._keep(self.b.drop(user))

    @rule(watcher=st.sampled_from(WATCHERS + OFFICERS[:1]), officer=st.sampled_from(OFFICERS))
    def watch(self, watcher: str, officer: str) -> None:
        self._send(watcher, p.Watch(id=self.b.msg_id(), officer=officer))

    @rule(watcher=st.sampled_from(WATCHERS), pick=st.integers(0, 5))
    def unwatch(self, watcher: str, pick: int) -> None:
        ids = sorted(self.b.sb.watches.table) or ["w-none"]
        self._send(watcher, p.Unwatch(id=self.b.msg_id(), watch_id=ids[pick % len(ids)]))

    @rule(user=st.sampled_from(OFFICERS))
    def call_center(self, user: str) -> None:
        self._send(user, p.CallCenter(id=self.b.msg_id()))

    @rule(seconds=st.sampled_from([0.5, 3.0, 6.0, 61.0]))
    def advance(self, seconds: float) -> None:
        self._keep(self.b.advance(seconds))

    def _send(self, user: str, msg: p.ClientMessage) -> None:
        session = self.b.sb.session(user)
        if session is None or not session.connected:
            return
        before = self._state()
        try:
            self._keep(self.b.send(user, msg))
        except ClientError:
            assert self._state() == before

    @invariant()
    def watches_are_consistent(self) -> None:
        w = self.b.sb.watches
        for watch_id, watch in w.table.items():
            # Open only while someone watches an officer who is connected, in scope.
            assert watch.watchers
            officer_session = self.b.sb.session(watch.officer)
            assert officer_session is not None
            assert officer_session.connected
            assert w.of_officer(watch.officer) is watch
            for watcher in watch.watchers:
                s = self.b.sb.session(watcher)
                assert s is not None
                assert s.connected
                assert s.role is not Role.OFFICER
                assert COURTS.in_scope(s.identity, watch.court)
            # The media room the driver holds is exactly the officer and the watchers.
            assert self.rooms.get(watch_id) == (watch.officer, *sorted(watch.watchers))
        assert set(self.rooms) == set(w.table)
        for watcher in WATCHERS:
            assert len(w.watching(watcher)) <= LIMITS.max_feeds

    def teardown(self) -> None:
        self.b.log.extend(self.b.sb.shutdown(self.b.now))
        starts: Counter[tuple[str, str]] = Counter()
        stops: Counter[tuple[str, str]] = Counter()
        for a in self.b.log:
            if isinstance(a, Record) and a.event.kind == "watch_started":
                starts[(a.event.data["watch"], a.event.data["by"])] += 1
            if isinstance(a, Record) and a.event.kind == "watch_stopped":
                stops[(a.event.data["watch"], a.event.data["by"])] += 1
        assert starts == stops


WatchMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWatches = WatchMachine.TestCase
