"""The call transition table: every listed pair leads where it says, every other pair raises
and leaves the call untouched, and no event sequence escapes the table's graph."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalling.call import TRANSITIONS, Call, CallEvent, CallState, next_state
from signalling.errors import ClientError, InvalidState
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
    result = call.apply(event, 5.0)
    assert result is TRANSITIONS[(state, event)]
    assert call.state is result
    assert call.history == [(5.0, event, result)]
    assert next_state(state, event) is result


@pytest.mark.parametrize(("state", "event"), FORBIDDEN)
def test_pair_missing_from_table_raises_and_changes_nothing(
    state: CallState, event: CallEvent
) -> None:
    call = new_call(state)
    call.history.append((1.0, CallEvent.RING, state))
    before = copy.deepcopy(dataclasses.asdict(call))
    with pytest.raises(InvalidState) as info:
        call.apply(event, 5.0)
    assert isinstance(info.value, ClientError)
    assert info.value.code == "invalid_state"
    assert dataclasses.asdict(call) == before


def test_ended_has_no_way_out() -> None:
    """No event leaves ENDED, not even END again."""
    assert not [pair for pair in TRANSITIONS if pair[0] is CallState.ENDED]
    for event in CallEvent:
        with pytest.raises(InvalidState):
            next_state(CallState.ENDED, event)


def test_every_live_state_can_end_and_every_state_is_reachable_from_queued() -> None:
    """END is allowed from each live state, and the graph reaches every state from QUEUED."""
    for state in (CallState.QUEUED, CallState.RINGING, CallState.ACTIVE):
        assert TRANSITIONS[(state, CallEvent.END)] is CallState.ENDED
    seen = {CallState.QUEUED}
    frontier = [CallState.QUEUED]
    while frontier:
        state = frontier.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is state and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    assert seen == set(CallState)


def test_only_accept_reaches_active_and_only_requeue_goes_back_to_queued() -> None:
    """A call becomes ACTIVE only by ACCEPT from RINGING; it returns to QUEUED only by REQUEUE."""
    into_active = {k for k, v in TRANSITIONS.items() if v is CallState.ACTIVE and k[0] != v}
    into_queued = {k for k, v in TRANSITIONS.items() if v is CallState.QUEUED and k[0] != v}
    assert into_active == {(CallState.RINGING, CallEvent.ACCEPT)}
    assert into_queued == {(CallState.RINGING, CallEvent.REQUEUE)}


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
            assert call.apply(event, float(i)) is TRANSITIONS[(state, event)]
            assert call.history == [*history, (float(i), event, call.state)]
        else:
            with pytest.raises(InvalidState):
                call.apply(event, float(i))
            assert (call.state, call.history) == (state, history)
    prev = CallState.QUEUED
    for _, event, state in call.history:
        assert TRANSITIONS[(prev, event)] is state
        prev = state
