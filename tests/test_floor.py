"""A conference's floor: the per-site table (every listed pair leads where it says, every other
pair raises and changes nothing, no self-loops, timers run exactly while their states last,
docs/floor.md shows the same table), scenarios of every command in both modes, and a
Hypothesis state machine over random commands and timer firings checking the arbiter's
invariants after every step. Pure: no event loop, times passed in."""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from signalling.core.floor import (
    TRANSITIONS,
    Denied,
    Floor,
    FloorEffect,
    FloorEvent,
    FloorIdle,
    FloorMode,
    FloorPolicy,
    FloorTaken,
    Granted,
    IllegalTransition,
    Lowered,
    Positions,
    Queued,
    Released,
    Revoked,
    Revoking,
    SiteEffect,
    SiteFloor,
    StartTimer,
    StopTimer,
    TimerKind,
    transition,
)
from signalling.errors import ClientError

N, Q, P, R = (
    SiteFloor.NOT_PERMITTED,
    SiteFloor.QUEUED,
    SiteFloor.PERMITTED,
    SiteFloor.PENDING_REVOKE,
)
OPEN = FloorMode.OPEN
ALL_PAIRS = list(itertools.product(SiteFloor, FloorEvent))
ALLOWED = sorted(TRANSITIONS, key=str)
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]
# A talk-time limit, so that every timer of the table shows up as an effect.
TIMED = FloorPolicy(max_talk_s=60.0, revoke_grace_s=3.0)
DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "floor.md"


def floor_with(state: SiteFloor, policy: FloorPolicy = TIMED) -> Floor:
    """A floor where site "s" is in `state`, put there by the commands at t=1."""
    floor = Floor(policy)
    if state is Q:
        floor.request("s", 1, 1.0)
    elif state in (P, R):
        floor.grant("s", 1.0)
    if state is R:
        floor.revoke("s", 1.0)
    assert floor.state_of("s") is state
    return floor


def snapshot(floor: Floor) -> dict[str, Any]:
    return copy.deepcopy(vars(floor))


def timers(effects: list[FloorEffect]) -> list[SiteEffect]:
    """The timer effects of a command, as the table names them."""
    names = []
    for e in effects:
        if isinstance(e, StartTimer | StopTimer):
            verb = "start" if isinstance(e, StartTimer) else "stop"
            names.append(SiteEffect(f"{verb}_{e.kind}_timer"))
    return names


# ---- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "event"), ALLOWED)
def test_allowed_pair_leads_where_the_table_says(state: SiteFloor, event: FloorEvent) -> None:
    floor = floor_with(state)
    history = list(floor.history)
    effects = floor._apply("s", event, 5.0, priority=1, reason="moderator")
    result, expected = TRANSITIONS[(state, event)]
    assert floor.state_of("s") is result
    assert timers(effects) == list(expected)
    assert floor.history == [*history, (5.0, "s", event, result)]
    assert transition(state, event) == (result, expected)


@pytest.mark.parametrize(("state", "event"), FORBIDDEN)
def test_pair_missing_from_table_raises_and_changes_nothing(
    state: SiteFloor, event: FloorEvent
) -> None:
    floor = floor_with(state)
    before = snapshot(floor)
    with pytest.raises(IllegalTransition) as info:
        floor._apply("s", event, 5.0, priority=1, reason="moderator")
    # The commands check the state before choosing an event: a missing pair is our bug,
    # answered `internal_error`, never blamed on the client.
    assert not isinstance(info.value, ClientError)
    assert info.value.code == "internal_error"
    assert snapshot(floor) == before


def test_the_table_holds_only_state_changes() -> None:
    """No self-loop pads the table: what leaves a site where it is, is not an event."""
    assert all(src is not dst for (src, _), (dst, _) in TRANSITIONS.items())


def test_each_timer_is_started_where_its_state_begins_and_stopped_where_it_ends() -> None:
    """T2 (talk) runs exactly while PERMITTED, T3 (revoke) while PENDING_REVOKE."""
    for (src, _), (dst, effects) in TRANSITIONS.items():
        assert (SiteEffect.START_TALK_TIMER in effects) == (dst is P)
        assert (SiteEffect.STOP_TALK_TIMER in effects) == (src is P)
        assert (SiteEffect.START_REVOKE_TIMER in effects) == (dst is R)
        assert (SiteEffect.STOP_REVOKE_TIMER in effects) == (src is R)


@pytest.mark.parametrize("state", list(SiteFloor))
def test_a_site_can_leave_from_every_state(state: SiteFloor) -> None:
    """LEAVE is in the table from every state it changes (all but NOT_PERMITTED, where it
    leads), and `leave` ends every site NOT_PERMITTED without raising."""
    if state is not N:
        assert TRANSITIONS[(state, FloorEvent.LEAVE)][0] is N
    floor = floor_with(state)
    floor.leave("s", 9.0)
    assert floor.state_of("s") is N
    assert floor.holders() == floor.queue() == ()


def test_every_state_is_reachable_and_only_grant_gives_the_floor() -> None:
    seen, frontier = {N}, [N]
    while frontier:
        state = frontier.pop()
        for (src, _), (dst, _) in TRANSITIONS.items():
            if src is state and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    assert seen == set(SiteFloor)
    into_permitted = {event for (_, event), (dst, _) in TRANSITIONS.items() if dst is P}
    assert into_permitted == {FloorEvent.GRANT}


def test_the_documented_table_is_the_code_table() -> None:
    """docs/floor.md's transition table (state | event | next state | effects, values in
    backticks) is exactly TRANSITIONS, so the doc cannot drift."""
    text = DOC_PATH.read_text(encoding="utf-8")
    section = text.split("## Transition table", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert rows[0].replace(" ", "") == "|state|event|nextstate|effects|"
    documented: dict[tuple[SiteFloor, FloorEvent], tuple[SiteFloor, tuple[SiteEffect, ...]]] = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        state, event, new = (c.strip("`") for c in cells[:3])
        key = (SiteFloor(state), FloorEvent(event))
        assert key not in documented, f"{key} listed twice"
        effects = tuple(SiteEffect(x) for x in re.findall(r"`([a-z_]+)`", cells[3]))
        documented[key] = (SiteFloor(new), effects)
    expected = "\n".join(
        f"| `{s}` | `{e}` | `{n}` | {', '.join(f'`{x}`' for x in fx) or '(none)'} |"
        for (s, e), (n, fx) in TRANSITIONS.items()
    )
    assert documented == TRANSITIONS, f"docs/floor.md's table should read:\n{expected}"


# ---- commands, moderated ----------------------------------------------------------------------


def test_hands_queue_by_priority_then_time_then_site_and_are_told_their_place() -> None:
    floor = Floor(FloorPolicy())
    assert floor.request("b2", 2, 1.0) == [Queued("b2", 1)]
    assert floor.request("a2", 2, 1.0) == [Queued("a2", 1), Positions((("b2", 2),))]
    assert floor.request("c1", 1, 2.0) == [Queued("c1", 1), Positions((("a2", 2), ("b2", 3)))]
    assert floor.request("d2", 2, 3.0) == [Queued("d2", 4)]
    assert floor.queue() == ("c1", "a2", "b2", "d2")
    assert [floor.position(s) for s in ("c1", "d2", "nobody")] == [1, 4, None]
    assert floor.holders() == ()
    assert floor.state_of("a2") is Q


def test_asking_again_while_queued_retells_the_place_and_changes_nothing() -> None:
    floor = Floor(FloorPolicy())
    floor.request("a", 2, 1.0)
    floor.request("b", 2, 2.0)
    before = snapshot(floor)
    assert floor.request("b", 0, 3.0) == [Queued("b", 2)]
    assert snapshot(floor) == before


def test_the_moderator_grants_from_the_queue_and_the_others_move_up() -> None:
    floor = Floor(FloorPolicy())
    for i, site in enumerate("abc"):
        floor.request(site, 1, float(i))
    assert floor.grant("b", 5.0) == [Granted("b", None), Positions((("c", 2),)), FloorTaken(("b",))]
    assert floor.queue() == ("a", "c")
    assert floor.holders() == ("b",)
    assert floor.state_of("b") is P
    assert floor.history[-1] == (5.0, "b", FloorEvent.GRANT, P)


def test_roll_call_grants_a_site_that_did_not_ask() -> None:
    floor = Floor(FloorPolicy(max_talk_s=30.0))
    assert floor.grant("x", 5.0) == [
        Granted("x", 35.0),
        StartTimer("talk", "x", 35.0),
        FloorTaken(("x",)),
    ]
    assert floor.until("x") == 35.0
    assert floor.history == [(5.0, "x", FloorEvent.GRANT, P)]


def test_a_grant_over_a_full_floor_supersedes_the_holder_granted_longest_ago() -> None:
    floor = Floor(FloorPolicy(max_speakers=2, max_talk_s=60.0))
    floor.grant("a", 1.0)
    floor.grant("b", 2.0)
    assert floor.grant("c", 3.0) == [
        Revoked("a", "superseded"),
        StopTimer("talk", "a"),
        Granted("c", 63.0),
        StartTimer("talk", "c", 63.0),
        FloorTaken(("b", "c")),
    ]
    floor.revoke("b", 4.0)
    assert floor.grant("d", 5.0)[:2] == [Revoked("b", "superseded"), StopTimer("revoke", "b")]
    assert floor.holders() == ("c", "d")


def test_revoke_warns_then_takes_the_floor_when_the_grace_is_over() -> None:
    floor = Floor(TIMED)
    floor.grant("a", 10.0)
    assert floor.revoke("a", 20.0) == [
        Revoking("a", 23.0, "moderator"),
        StopTimer("talk", "a"),
        StartTimer("revoke", "a", 23.0),
    ]
    assert floor.state_of("a") is R
    assert floor.holders() == ("a",)
    assert floor.until("a") == 23.0
    before = snapshot(floor)
    assert floor.revoke("a", 21.0) == []  # already on its way: the first grace stands
    assert floor.timer_fired("revoke", "a", 22.9) == []  # early: an older timer of that key
    assert snapshot(floor) == before
    assert floor.timer_fired("revoke", "a", 23.0) == [Revoked("a", "moderator"), FloorIdle()]
    assert floor.timer_fired("revoke", "a", 23.0) == []
    assert floor.state_of("a") is N


def test_talk_time_over_revokes_with_grace_and_no_stop_for_the_spent_timer() -> None:
    floor = Floor(FloorPolicy(max_talk_s=30.0, revoke_grace_s=3.0))
    assert floor.grant("a", 0.0)[0] == Granted("a", 30.0)
    assert floor.timer_fired("talk", "a", 29.0) == []
    assert floor.timer_fired("talk", "a", 30.0) == [
        Revoking("a", 33.0, "talk_time"),
        StartTimer("revoke", "a", 33.0),
    ]
    assert floor.timer_fired("talk", "a", 31.0) == []
    assert floor.timer_fired("revoke", "a", 33.0) == [Revoked("a", "talk_time"), FloorIdle()]


def test_a_holder_releases_the_floor_even_while_it_is_being_revoked() -> None:
    floor = Floor(TIMED)
    floor.grant("a", 0.0)
    assert floor.release("a", 5.0) == [Released("a"), StopTimer("talk", "a"), FloorIdle()]
    floor.grant("a", 6.0)
    floor.revoke("a", 7.0)
    assert floor.release("a", 8.0) == [Released("a"), StopTimer("revoke", "a"), FloorIdle()]
    assert floor.timer_fired("revoke", "a", 10.0) == []


def test_mute_all_takes_every_floor_at_once_and_keeps_the_raised_hands() -> None:
    floor = Floor(FloorPolicy(max_speakers=2))
    floor.grant("a", 1.0)
    floor.grant("b", 2.0)
    floor.request("c", 2, 3.0)
    floor.request("d", 1, 4.0)
    floor.revoke("b", 5.0)
    assert floor.revoke_all(6.0) == [
        Revoked("a", "mute_all"),
        Revoked("b", "mute_all"),
        StopTimer("revoke", "b"),
        FloorIdle(),
    ]
    assert floor.queue() == ("d", "c")
    assert floor.revoke_all(7.0) == []


def test_the_moderated_floor_is_never_granted_by_itself() -> None:
    """Releases, revocations and more room leave the raised hands waiting for the moderator."""
    floor = Floor(FloorPolicy(revoke_grace_s=1.0))
    floor.request("a", 0, 1.0)
    floor.grant("b", 2.0)
    assert floor.release("b", 3.0) == [Released("b"), FloorIdle()]
    floor.grant("c", 4.0)
    floor.revoke("c", 4.0)
    assert floor.timer_fired("revoke", "c", 5.0) == [Revoked("c", "moderator"), FloorIdle()]
    assert floor.set_policy(FloorPolicy(max_speakers=3), 6.0) == []
    assert floor.queue() == ("a",)


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        (N, "left", []),
        (Q, "left", [Lowered("s", "left"), Positions((("t", 1),))]),
        (Q, "removed", [Lowered("s", "removed"), Positions((("t", 1),))]),
        (P, "left", [Released("s", "left"), StopTimer("talk", "s"), FloorIdle()]),
        (P, "removed", [Revoked("s", "removed"), StopTimer("talk", "s"), FloorIdle()]),
        (R, "left", [Released("s", "left"), StopTimer("revoke", "s"), FloorIdle()]),
        (R, "banned", [Revoked("s", "banned"), StopTimer("revoke", "s"), FloorIdle()]),
    ],
)
def test_leave_lowers_the_hand_and_takes_the_floor(
    state: SiteFloor, reason: str, expected: list[FloorEffect]
) -> None:
    """A site that left of its own accord released its floor; one put out had it taken."""
    floor = floor_with(state)
    floor.request("t", 2, 2.0)
    assert floor.leave("s", 3.0, reason) == expected
    assert floor.state_of("s") is N
    assert floor.queue() == ("t",)


@pytest.mark.parametrize(
    ("state", "command", "reason"),
    [
        (P, lambda f: f.request("s", 0, 5.0), "already_permitted"),
        (R, lambda f: f.request("s", 0, 5.0), "already_permitted"),
        (P, lambda f: f.grant("s", 5.0), "already_permitted"),
        (R, lambda f: f.grant("s", 5.0), "already_permitted"),
        (N, lambda f: f.cancel("s", 5.0), "not_queued"),
        (P, lambda f: f.cancel("s", 5.0), "not_queued"),
        (N, lambda f: f.release("s", 5.0), "not_permitted"),
        (Q, lambda f: f.release("s", 5.0), "not_permitted"),
        (N, lambda f: f.revoke("s", 5.0), "not_permitted"),
        (Q, lambda f: f.revoke("s", 5.0), "not_permitted"),
    ],
)
def test_a_refusal_is_a_denied_effect_and_changes_nothing(
    state: SiteFloor, command: Callable[[Floor], list[FloorEffect]], reason: str
) -> None:
    floor = floor_with(state)
    before = snapshot(floor)
    assert command(floor) == [Denied("s", reason)]
    assert snapshot(floor) == before


def test_a_hand_beyond_max_queue_is_denied() -> None:
    floor = Floor(FloorPolicy(max_queue=2))
    floor.request("a", 1, 1.0)
    floor.request("b", 1, 2.0)
    before = snapshot(floor)
    assert floor.request("c", 0, 3.0) == [Denied("c", "queue_full")]
    assert snapshot(floor) == before
    floor.cancel("a", 4.0)
    assert floor.request("c", 0, 5.0) == [Queued("c", 1), Positions((("b", 2),))]


def test_a_stale_timer_does_nothing() -> None:
    floor = Floor(TIMED)
    assert floor.timer_fired("talk", "a", 100.0) == []
    floor.grant("a", 0.0)
    floor.release("a", 1.0)
    floor.request("a", 1, 2.0)
    before = snapshot(floor)
    assert floor.timer_fired("talk", "a", 60.0) == []
    assert floor.timer_fired("revoke", "a", 60.0) == []
    assert snapshot(floor) == before


@pytest.mark.parametrize(
    "changes",
    [
        {"max_speakers": 0},
        {"max_talk_s": 0.0},
        {"revoke_grace_s": -1.0},
        {"max_queue": -1},
        {"revoke_grace_s": float("nan")},
    ],
)
def test_a_policy_out_of_bounds_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="out of bounds"):
        FloorPolicy(**changes)


# ---- commands, open -----------------------------------------------------------------------


def test_open_grants_while_there_is_room_then_queues() -> None:
    floor = Floor(FloorPolicy(mode=OPEN, max_speakers=2))
    assert floor.request("a", 2, 1.0) == [Granted("a", None), FloorTaken(("a",))]
    assert floor.request("b", 2, 2.0) == [Granted("b", None), FloorTaken(("a", "b"))]
    assert floor.request("c", 2, 3.0) == [Queued("c", 1)]  # equal priority: no pre-emption
    assert floor.request("d", 3, 4.0) == [Queued("d", 2)]


def test_open_head_of_the_queue_takes_a_released_or_left_place() -> None:
    floor = Floor(FloorPolicy(mode=OPEN))
    for i, site in enumerate("abc"):
        floor.request(site, 2, float(i))
    assert floor.release("a", 5.0) == [
        Released("a"),
        Granted("b", None),
        Positions((("c", 1),)),
        FloorTaken(("b",)),
    ]
    assert floor.leave("b", 6.0) == [Released("b", "left"), Granted("c", None), FloorTaken(("c",))]


def test_open_strictly_higher_priority_preempts_the_lowest_holder_with_grace() -> None:
    floor = Floor(FloorPolicy(mode=OPEN, revoke_grace_s=3.0))
    floor.request("a", 2, 0.0)
    floor.request("b", 2, 1.0)
    assert floor.request("c", 1, 2.0) == [
        Queued("c", 1),
        Revoking("a", 5.0, "preempted"),
        StartTimer("revoke", "a", 5.0),
        Positions((("b", 2),)),
    ]
    assert floor.state_of("a") is R
    assert floor.timer_fired("revoke", "a", 5.0) == [
        Revoked("a", "preempted"),
        Granted("c", None),
        Positions((("b", 1),)),
        FloorTaken(("c",)),
    ]


def test_open_preempts_the_lowest_priority_holder_granted_longest_ago() -> None:
    floor = Floor(FloorPolicy(mode=OPEN, max_speakers=3))
    floor.request("a", 1, 0.0)
    floor.request("b", 2, 1.0)
    floor.request("c", 2, 2.0)
    assert floor.request("d", 1, 3.0)[1] == Revoking("b", 6.0, "preempted")


def test_open_preemption_waits_for_places_already_being_freed() -> None:
    """A hand that a pending revocation will reach pre-empts nobody; the next one does."""
    floor = Floor(FloorPolicy(mode=OPEN, max_speakers=2))
    floor.request("a", 2, 0.0)
    floor.request("b", 2, 1.0)
    floor.revoke("a", 2.0)
    assert floor.request("c", 1, 3.0) == [Queued("c", 1)]
    assert floor.request("d", 1, 4.0) == [
        Queued("d", 2),
        Revoking("b", 7.0, "preempted"),
        StartTimer("revoke", "b", 7.0),
    ]


def test_open_never_preempts_the_moderators_choice() -> None:
    floor = Floor(FloorPolicy(mode=OPEN))
    floor.grant("x", 0.0)
    assert floor.request("a", 0, 1.0) == [Queued("a", 1)]
    assert floor.state_of("x") is P


def test_open_mute_all_gives_the_freed_places_to_the_queue() -> None:
    """In OPEN mode a freed place is the queue head's, also after mute all (silence an open
    floor by switching it to MODERATED first)."""
    floor = Floor(FloorPolicy(mode=OPEN))
    floor.request("a", 2, 0.0)
    floor.request("b", 2, 1.0)
    assert floor.revoke_all(2.0) == [
        Revoked("a", "mute_all"),
        Granted("b", None),
        FloorTaken(("b",)),
    ]


def test_switching_to_open_grants_from_the_queue_while_there_is_room() -> None:
    floor = Floor(FloorPolicy())
    for i, site in enumerate("abc"):
        floor.request(site, 1, float(i))
    assert floor.set_policy(FloorPolicy(mode=OPEN, max_speakers=2), 5.0) == [
        Granted("a", None),
        Granted("b", None),
        Positions((("c", 1),)),
        FloorTaken(("a", "b")),
    ]
    assert floor.policy == FloorPolicy(mode=OPEN, max_speakers=2)
    assert floor.set_policy(FloorPolicy(mode=OPEN, max_speakers=3), 6.0) == [
        Granted("c", None),
        FloorTaken(("a", "b", "c")),
    ]


def test_lowering_max_speakers_supersedes_the_longest_granted() -> None:
    floor = Floor(FloorPolicy(max_speakers=3))
    for i, site in enumerate("abc"):
        floor.grant(site, float(i))
    assert floor.set_policy(FloorPolicy(max_speakers=1), 5.0) == [
        Revoked("a", "superseded"),
        Revoked("b", "superseded"),
        FloorTaken(("c",)),
    ]


def test_a_new_talk_time_applies_from_the_next_grant() -> None:
    floor = Floor(FloorPolicy(max_speakers=2))
    floor.grant("a", 0.0)
    assert floor.set_policy(FloorPolicy(max_speakers=2, max_talk_s=10.0), 1.0) == []
    assert floor.until("a") is None
    assert floor.grant("b", 2.0)[0] == Granted("b", 12.0)


# ---- random commands and timer firings --------------------------------------------------------

SITES = ["s0", "s1", "s2", "s3", "s4"]
KINDS: list[TimerKind] = ["talk", "revoke"]
sites = st.sampled_from(SITES)
policies = st.builds(
    FloorPolicy,
    mode=st.sampled_from(list(FloorMode)),
    max_speakers=st.integers(1, 3),
    max_talk_s=st.none() | st.sampled_from([1.0, 4.0]),
    revoke_grace_s=st.sampled_from([0.0, 1.0, 3.0]),
    max_queue=st.integers(0, 4),
)


class FloorMachine(RuleBasedStateMachine):
    """Drives one Floor as its owner would: arms the timers its effects start, cancels the ones
    they stop, fires only armed ones (on time), and remembers what each site was told."""

    def __init__(self) -> None:
        super().__init__()
        self.floor = Floor(FloorPolicy())
        self.now = 0.0
        self.armed: dict[tuple[TimerKind, str], float] = {}  # (kind, site) -> at
        self.told: dict[str, int] = {}  # queued site -> the position it was last told
        self.asked: dict[str, tuple[int, float]] = {}  # queued site -> (priority, asked at)
        self.replayed: dict[str, SiteFloor] = {}  # states replayed from the history alone

    @initialize(policy=policies)
    def start(self, policy: FloorPolicy) -> None:
        self.floor = Floor(policy)

    def _do(
        self, command: Callable[[], list[FloorEffect]], fired: tuple[TimerKind, str] | None = None
    ) -> list[FloorEffect]:
        floor = self.floor
        before, holders, queue = snapshot(floor), floor.holders(), floor.queue()
        seen = len(floor.history)
        effects = command()
        if any(isinstance(e, Denied) for e in effects):
            assert len(effects) == 1, effects
            assert snapshot(floor) == before, f"{effects} changed the floor"
            return effects
        if not effects:  # nothing to tell: nothing changed, but the policy a command set
            assert {**snapshot(floor), "_policy": None} == {**before, "_policy": None}
        for e in effects:
            match e:
                case StartTimer(kind, site, at):
                    assert (kind, site) not in self.armed, f"{e} while armed"
                    self.armed[(kind, site)] = at
                case StopTimer(kind, site):
                    assert (kind, site) != fired, "a fired timer is not stopped"
                    assert self.armed.pop((kind, site), None) is not None, f"{e} not armed"
        for e in effects:
            match e:
                case Queued(site, position):
                    self.told[site] = position
                case Positions(changed):
                    moved = [s for s, _ in changed]
                    assert moved == [s for s in floor.queue() if s in moved], "in queue order"
                    for site, position in changed:
                        assert site in self.told
                        self.told[site] = position
                case Granted(site, until):
                    self.told.pop(site, None)
                    assert floor.state_of(site) is P
                    assert until == self.armed.get(("talk", site))
                case Lowered(site):
                    assert site in self.told, f"{e} without a raised hand"
                    del self.told[site]
                    assert floor.state_of(site) is N
                case Revoking(site, at):
                    assert floor.state_of(site) is R
                    assert self.armed[("revoke", site)] == at
                case Revoked(site) | Released(site):
                    assert floor.state_of(site) is N
        # The general state: Taken when the holders changed and some remain, Idle when none do.
        after = floor.holders()
        taken = [e for e in effects if isinstance(e, FloorTaken)]
        idle = [e for e in effects if isinstance(e, FloorIdle)]
        if set(after) != set(holders) and after:
            assert (taken, idle) == ([FloorTaken(after)], [])
        elif holders and not after:
            assert (taken, idle) == ([], [FloorIdle()])
        else:
            assert (taken, idle) == ([], [])
        # New history entries move along the table only.
        for _, site, event, new in floor.history[seen:]:
            assert TRANSITIONS[(self.replayed.get(site, N), event)][0] is new
            self.replayed[site] = new
        for site in set(queue) - set(floor.queue()):
            self.asked.pop(site)
        return effects

    @rule(asks=st.lists(st.tuples(sites, st.integers(0, 2)), min_size=1, max_size=3))
    def hands_go_up(self, asks: list[tuple[str, int]]) -> None:
        """A few sites ask at the same moment (ties broken by site id)."""
        for site, priority in asks:
            self.request(site, priority)

    def request(self, site: str, priority: int) -> None:
        was = self.floor.state_of(site)
        before = snapshot(self.floor)
        effects = self._do(lambda: self.floor.request(site, priority, self.now))
        if was is Q:
            assert effects == [Queued(site, self.told[site])]
            assert snapshot(self.floor) == before
        elif self.floor.state_of(site) is Q:
            self.asked[site] = (priority, self.now)

    @rule(site=sites)
    def cancel(self, site: str) -> None:
        self._do(lambda: self.floor.cancel(site, self.now))

    @rule(site=sites)
    def grant(self, site: str) -> None:
        self._do(lambda: self.floor.grant(site, self.now))

    @rule(site=sites)
    def release(self, site: str) -> None:
        self._do(lambda: self.floor.release(site, self.now))

    @rule(site=sites)
    def revoke(self, site: str) -> None:
        self._do(lambda: self.floor.revoke(site, self.now))

    @rule()
    def revoke_all(self) -> None:
        self._do(lambda: self.floor.revoke_all(self.now))

    @rule(site=sites, reason=st.sampled_from(["left", "removed"]))
    def leave(self, site: str, reason: str) -> None:
        self._do(lambda: self.floor.leave(site, self.now, reason))
        assert self.floor.state_of(site) is N

    @rule(policy=policies)
    def set_policy(self, policy: FloorPolicy) -> None:
        self._do(lambda: self.floor.set_policy(policy, self.now))
        assert self.floor.policy == policy

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 3.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: self.armed)
    @rule(n=st.integers(0, 10))
    def fire(self, n: int) -> None:
        """An armed timer falls due (time moves to it if it has not come yet)."""
        key = sorted(self.armed)[n % len(self.armed)]
        self.now = max(self.now, self.armed[key])
        self._fire(key)
        if key not in self.armed:
            assert self.floor.timer_fired(*key, self.now) == []  # fired exactly once

    @precondition(lambda self: self.armed)
    @rule()
    def fire_due(self) -> None:
        """Time moves to the earliest armed timer and everything due then fires, earliest
        first, as the deadline heap hands them over."""
        self.now = max(self.now, min(self.armed.values()))
        while due := sorted((at, key) for key, at in self.armed.items() if at <= self.now):
            self._fire(due[0][1])

    def _fire(self, key: tuple[TimerKind, str]) -> None:
        del self.armed[key]
        effects = self._do(lambda: self.floor.timer_fired(*key, self.now), fired=key)
        assert effects, f"armed {key} did nothing"

    @rule(kind=st.sampled_from(KINDS), site=sites)
    def fire_stale(self, kind: TimerKind, site: str) -> None:
        """A timer not armed, or armed for later, does nothing."""
        at = self.armed.get((kind, site))
        if at is not None and at <= self.now:
            return
        before = snapshot(self.floor)
        assert self.floor.timer_fired(kind, site, self.now) == []
        assert snapshot(self.floor) == before

    @invariant()
    def holders_fit_and_the_queue_is_in_order(self) -> None:
        floor = self.floor
        holders, queue = floor.holders(), floor.queue()
        assert len(holders) <= floor.policy.max_speakers
        assert not set(holders) & set(queue)
        assert list(queue) == sorted(queue, key=lambda s: (*self.asked[s], s))
        assert set(self.asked) == set(queue)
        assert self.told == {s: floor.position(s) for s in queue}
        if floor.policy.mode is OPEN:
            assert not queue or len(holders) == floor.policy.max_speakers

    @invariant()
    def states_and_timers_agree(self) -> None:
        floor = self.floor
        for site in SITES:
            state = floor.state_of(site)
            assert state is self.replayed.get(site, N)
            assert (state in (P, R)) == (site in floor.holders())
            assert (state is Q) == (site in floor.queue())
            assert (("revoke", site) in self.armed) == (state is R)
            assert ("talk", site) not in self.armed or state is P
            armed = self.armed.get(("revoke", site), self.armed.get(("talk", site)))
            assert floor.until(site) == armed


FloorMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFloorMachine = FloorMachine.TestCase
