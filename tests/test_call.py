"""The call transition table: every listed pair leads where it says, every other pair raises
(our bug, not the client's) and leaves the call untouched, no pair is a self-loop, and no
event sequence escapes the table's graph."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalling.core.call import (
    TRANSITIONS,
    Call,
    CallEvent,
    CallState,
    Effect,
    IllegalTransition,
    transition,
)
from signalling.errors import ClientError
from signalling.protocol import Direction

ALL_PAIRS = list(itertools.product(CallState, CallEvent))
ALLOWED = sorted(TRANSITIONS, key=str)
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]


def new_call(state: CallState) -> Call:
    call = Call(
        call_id="c1",
        direction=Direction.OFFICER_TO_CENTER,
        officer="o1",
        court="P0101",
        caller="o1",
        created_at=100.0,
    )
    call.state = state
    return call


@pytest.mark.parametrize(("state", "event"), ALLOWED)
def test_allowed_pair_leads_where_the_table_says(state: CallState, event: CallEvent) -> None:
    call = new_call(state)
    effects = call.apply(event, 5.0)
    result, expected = TRANSITIONS[(state, event)]
    assert effects == expected
    assert call.state is result
    assert call.history == [(5.0, event, result)]
    assert transition(state, event) == (result, effects)


def test_the_table_holds_only_state_changes() -> None:
    """No self-loop pads the table: what leaves a call in its state is not an event."""
    assert all(src is not dst for (src, _), (dst, _) in TRANSITIONS.items())


def test_each_timer_is_started_only_where_its_state_begins_and_stopped_where_it_ends() -> None:
    """The ring timer runs exactly while RINGING, the queue timer while QUEUED (from the
    call's creation, or afresh for an answered call sent back)."""
    queue_starts = {Effect.START_QUEUE_TIMER, Effect.START_REQUEUE_TIMER}
    for (src, _), (dst, effects) in TRANSITIONS.items():
        assert (Effect.START_RING_TIMER in effects) == (dst is CallState.RINGING)
        assert (Effect.STOP_RING_TIMER in effects) == (src is CallState.RINGING)
        assert bool(queue_starts & set(effects)) == (dst is CallState.QUEUED)
        assert (Effect.STOP_QUEUE_TIMER in effects) == (src is CallState.QUEUED)


@pytest.mark.parametrize(("state", "event"), FORBIDDEN)
def test_pair_missing_from_table_raises_and_changes_nothing(
    state: CallState, event: CallEvent
) -> None:
    call = new_call(state)
    call.history.append((1.0, CallEvent.RING, state))
    before = copy.deepcopy(dataclasses.asdict(call))
    with pytest.raises(IllegalTransition) as info:
        call.apply(event, 5.0)
    # The client's requests are checked before any event is applied: a missing pair is
    # our bug, answered `internal_error`, never blamed on the client.
    assert not isinstance(info.value, ClientError)
    assert info.value.code == "internal_error"
    assert dataclasses.asdict(call) == before


def test_ended_has_no_way_out() -> None:
    """No event leaves ENDED, not even END again."""
    assert not [pair for pair in TRANSITIONS if pair[0] is CallState.ENDED]
    for event in CallEvent:
        with pytest.raises(IllegalTransition):
            transition(CallState.ENDED, event)


def test_every_live_state_can_end_and_every_state_is_reachable_from_queued() -> None:
    """END is allowed from each live state, and the graph reaches every state from QUEUED."""
    for state in (CallState.QUEUED, CallState.RINGING, CallState.ACTIVE):
        assert TRANSITIONS[(state, CallEvent.END)][0] is CallState.ENDED
    seen = {CallState.QUEUED}
    frontier = [CallState.QUEUED]
    while frontier:
        state = frontier.pop()
        for (src, _), (dst, _) in TRANSITIONS.items():
            if src is state and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    assert seen == set(CallState)


def test_only_accept_reaches_active_and_only_requeue_goes_back_to_queued() -> None:
    """A call becomes ACTIVE only by ACCEPT from RINGING; it returns to QUEUED only by REQUEUE
    (nobody took it, or its operator sent it back)."""
    into_active = {k for k, (v, _) in TRANSITIONS.items() if v is CallState.ACTIVE}
    into_queued = {k for k, (v, _) in TRANSITIONS.items() if v is CallState.QUEUED}
    assert into_active == {(CallState.RINGING, CallEvent.ACCEPT)}
    assert into_queued == {
        (CallState.RINGING, CallEvent.REQUEUE),
        (CallState.ACTIVE, CallEvent.REQUEUE),
    }


def test_parties_and_members_follow_operator_and_supervisors() -> None:
    """parties() is the officer until an operator answers; members() adds supervisors."""
    call = new_call(CallState.ACTIVE)
    assert call.parties() == ("o1",)
    call.operator = "op1"
    call.supervisors["s1"] = True
    assert call.parties() == ("o1", "op1")
    assert call.members() == ("o1", "op1", "s1")
    assert call.is_live()
    call.state = CallState.ENDED
    assert not call.is_live()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(CallEvent)), max_size=40))
def test_random_event_sequences_never_leave_the_table(events: list[CallEvent]) -> None:
    """Applying any events in any order moves only along table edges; refused events leave
    state and history exactly as they were."""
    call = new_call(CallState.QUEUED)
    for i, event in enumerate(events):
        state, history = call.state, list(call.history)
        if (state, event) in TRANSITIONS:
            assert call.apply(event, float(i)) == TRANSITIONS[(state, event)][1]
            assert call.state is TRANSITIONS[(state, event)][0]
            assert call.history == [*history, (float(i), event, call.state)]
        else:
            with pytest.raises(IllegalTransition):
                call.apply(event, float(i))
            assert (call.state, call.history) == (state, history)
    prev = CallState.QUEUED
    for _, event, state in call.history:
        assert TRANSITIONS[(prev, event)][0] is state
        prev = state
