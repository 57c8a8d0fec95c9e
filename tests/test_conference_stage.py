"""What a conference's media forwards: the core's rooms (signalling.core.stage) and the media
server's slots (media.stage), both pure."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from identity import Identity, Role
from media.stage import Lineup, Speaking, lineup, seen_by, sticky
from signalling import protocol as p
from signalling.core.actions import Room, Stage
from signalling.errors import Forbidden, InvalidState, MediaUnavailable, NotFound
from tests.corehelpers import (
    EXPIRES,
    Board,
    messages,
    operator,
    placed,
    recipients,
    record_kinds,
    records,
)
from tests.test_conferences import create, join, province, running, witness


def rooms(actions: list[Any], cid: str) -> list[Room]:
    return [a for a in actions if isinstance(a, Room) and a.call_id == cid]


def last_room(b: Board, cid: str) -> Room:
    found = rooms(b.log, cid)
    assert found, "no room sent"
    return found[-1]


# ---- the core: who may be heard and seen ----------------------------------------------------


def test_a_running_conference_forwards_the_chair_and_nobody_else_until_the_floor_is_given() -> None:
    b = province()
    cid = running(b)
    room = last_room(b, cid)
    assert room.members == ("sup0", "op1", "op3")
    assert room.stage == Stage(audible=("sup0",), spotlight="sup0", moderators=("sup0",))
    granted = b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op3"))
    (room,) = rooms(granted, cid)
    assert room.stage is not None
    assert (room.stage.audible, room.stage.spotlight) == (("sup0", "op3"), "op3")


def test_hands_and_repeated_joins_send_no_new_room() -> None:
    b = province()
    cid = running(b)
    assert rooms(b.send("op1", p.RaiseHand(id=b.msg_id(), conference_id=cid)), cid) == []
    assert rooms(b.send("op1", p.JoinConference(id=b.msg_id(), conference_id=cid)), cid) == []


def test_unmute_all_opens_the_stage_and_mute_all_closes_it() -> None:
    b = province()
    cid = running(b)
    opened = b.send("sup0", p.UnmuteAll(id=b.msg_id(), conference_id=cid))
    (room,) = rooms(opened, cid)
    assert room.stage is not None
    assert room.stage.open
    closed = b.send("sup0", p.MuteAll(id=b.msg_id(), conference_id=cid))
    (room,) = rooms(closed, cid)
    assert room.stage is not None
    assert not room.stage.open


def test_a_site_away_is_out_of_the_room_until_it_is_back() -> None:
    b = province()
    cid = running(b)
    session = b.sb.session("op1")
    assert session is not None
    (room,) = rooms(b.drop("op1"), cid)
    assert "op1" not in room.members
    _, back = b.connect(operator("op1"), resume=session.resume_token)
    (room,) = rooms(back, cid)
    assert "op1" in room.members


def test_a_witness_receives_and_is_never_forwarded() -> None:
    b = province()
    cid = running(b)
    b.sign_in(witness("w1", cid))
    join(b, "w1", cid)
    room = last_room(b, cid)
    assert "w1" in room.members
    assert room.silent == ("w1",)


def test_the_end_of_a_conference_ends_its_media() -> None:
    b = province()
    cid = running(b)
    ended = b.send("sup0", p.EndConference(id=b.msg_id(), conference_id=cid))
    (room,) = rooms(ended, cid)
    assert room.members == ()


def test_a_co_moderator_is_heard_after_the_chair_and_before_the_holders() -> None:
    b = province()
    cid = running(b)
    b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op3"))
    b.send("sup0", p.NameModerator(id=b.msg_id(), conference_id=cid, user="op1"))
    stage = last_room(b, cid).stage
    assert stage is not None
    assert stage.audible == ("sup0", "op1", "op3")
    assert stage.moderators == ("sup0", "op1")


# ---- the media server: sources in slots -----------------------------------------------------

STAGE = Stage(audible=("chair", "s1"), spotlight="s1", moderators=("chair",))
EMPTY = Lineup.empty(3, 4)


def test_audible_publishers_fill_the_audio_slots_and_the_sites_fill_the_grid() -> None:
    line = lineup(
        STAGE, audio={"chair", "s1", "s2"}, video=["chair", "s1", "s2"], speaking=[], previous=EMPTY
    )
    assert line == Lineup(("chair", "s1", None), "s1", ("s1", "s2", None, None))


def test_a_site_speaking_is_heard_only_when_the_stage_is_open() -> None:
    closed = lineup(STAGE, audio={"chair", "s1", "s2"}, video=[], speaking=["s2"], previous=EMPTY)
    assert "s2" not in closed.audio
    opened = Stage(STAGE.audible, STAGE.spotlight, STAGE.moderators, open=True)
    line = lineup(opened, audio={"chair", "s1", "s2"}, video=[], speaking=["s2"], previous=EMPTY)
    assert sorted(u for u in line.audio if u) == ["chair", "s1", "s2"]


def test_an_open_discussion_hears_the_three_loudest_speakers() -> None:
    """Open: the loudest speakers take the slots before the silent chair and holders; the
    chair speaking is never cut."""
    opened = Stage(STAGE.audible, STAGE.spotlight, STAGE.moderators, open=True)
    publishing = {"chair", "s1", "s2", "s3", "s4", "s5"}
    line = lineup(
        opened, audio=publishing, video=[], speaking=["s4", "s2", "s5", "s3"], previous=EMPTY
    )
    assert sorted(u for u in line.audio if u) == ["s2", "s4", "s5"]
    chair_too = lineup(
        opened, audio=publishing, video=[], speaking=["s4", "s2", "chair", "s5"], previous=line
    )
    assert sorted(u for u in chair_too.audio if u) == ["chair", "s2", "s4"]
    # Sticky: who stays keeps the slot they had.
    for u in ("s2", "s4"):
        assert chair_too.audio.index(u) == line.audio.index(u)


def test_speakers_are_ranked_by_their_running_level_loudest_first() -> None:
    speaking = Speaking()
    for i in range(20):
        t = 10.0 + i * 0.02
        speaking.heard("quiet", 45, t)
        speaking.heard("loud", 10, t)
        speaking.heard("middle", 30, t)
    assert speaking.now(10.5) == ["loud", "middle", "quiet"]
    # One loud syllable does not make the quiet one the loudest.
    speaking.heard("quiet", 0, 10.41)
    assert speaking.now(10.5)[0] == "loud"


def test_a_spotlight_that_publishes_no_video_shows_nothing() -> None:
    line = lineup(STAGE, audio=set(), video=["chair"], speaking=[], previous=EMPTY)
    assert line.spotlight is None


def test_nobody_receives_their_own_media_and_only_moderators_the_grid() -> None:
    line = Lineup(("chair", "s1", None), "s1", ("s1", "s2"))
    assert seen_by(line, "s1", moderator=False) == Lineup(("chair", None, None), None, (None, None))
    assert seen_by(line, "chair", moderator=True) == Lineup((None, "s1", None), "s1", ("s1", "s2"))


@given(
    previous=st.lists(st.sampled_from(["a", "b", "c", "d", "e", None]), min_size=1, max_size=5),
    wanted=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=6),
)
def test_sticky_slots_keep_what_stays_and_hold_the_most_important(
    previous: list[str | None], wanted: list[str]
) -> None:
    slots = sticky(tuple(previous), wanted)
    chosen = list(dict.fromkeys(wanted))[: len(previous)]
    assert len(slots) == len(previous)
    assert sorted(u for u in slots if u is not None) == sorted(chosen)
    for before in chosen:
        if before in previous:
            assert slots.index(before) == previous.index(before)


def test_a_site_counts_as_speaking_for_a_moment_after_its_last_loud_packet() -> None:
    speaking = Speaking()
    assert speaking.heard("s1", 30, now=10.0)
    assert not speaking.heard("s1", 30, now=10.1)
    assert not speaking.heard("s2", 120, now=10.1)  # silence
    assert speaking.heard("s2", 20, now=10.2)
    assert speaking.now(10.3) == ["s2", "s1"]
    assert speaking.now(11.0) == []


# ---- recording ----------------------------------------------------------------------------


def test_recording_is_a_moderators_and_every_site_is_told() -> None:
    b = province()
    b.sb.stages.recording = True  # as on a server with an evidence store
    cid = running(b)
    with pytest.raises(Forbidden):
        b.send("op1", p.RecordConference(id=b.msg_id(), conference_id=cid, on=True))
    started = b.send("sup0", p.RecordConference(id=b.msg_id(), conference_id=cid, on=True))
    assert record_kinds(started) == ["conference_recording_started"]
    assert recipients(started, p.ConferenceUpdate) == {"sup0", "op1", "op3"}
    (room,) = rooms(started, cid)
    assert room.stage is not None
    assert room.stage.record
    with pytest.raises(InvalidState):
        b.send("sup0", p.RecordConference(id=b.msg_id(), conference_id=cid, on=True))
    stopped = b.send("sup0", p.RecordConference(id=b.msg_id(), conference_id=cid, on=False))
    assert record_kinds(stopped) == ["conference_recording_stopped"]


def test_a_server_without_evidence_refuses_to_record() -> None:
    b = province()
    cid = running(b)
    with pytest.raises(MediaUnavailable):
        b.send("sup0", p.RecordConference(id=b.msg_id(), conference_id=cid, on=True))


# ---- live calls shown to a conference ---------------------------------------------------------


def answered_call(b: Board, user: str, *, emergency: bool = False) -> str:
    """o1 (P0101) calls (or raises an emergency) and `user` answers."""
    call_id = placed(b.emergency("o1") if emergency else b.call_center("o1"))
    b.accept(user, call_id)
    return call_id


def test_the_calls_operator_in_the_conference_shows_it_and_its_officer_is_seen_and_heard() -> None:
    b = province()
    cid = running(b)
    call_id = answered_call(b, "op1")
    with pytest.raises(Forbidden):  # a site that is not the call's operator
        b.send("op3", p.ShareCall(id=b.msg_id(), conference_id=cid, call_id=call_id))
    shared = b.send("op1", p.ShareCall(id=b.msg_id(), conference_id=cid, call_id=call_id))
    (record,) = records(shared, "call_shared")
    assert (record.data["officer"], record.data["by"]) == ("o1", "op1")
    (update,) = messages(shared, p.ConferenceUpdate, to="op3")
    feeds = update.changes.feeds
    assert isinstance(feeds, list)
    assert [f.officer.id for f in feeds] == ["o1"]
    assert isinstance(update.changes.spotlight, p.UserInfo)
    assert update.changes.spotlight.id == "o1"
    (room,) = rooms(shared, cid)
    assert room.stage is not None
    assert room.stage.feeds == (("o1", call_id),)
    assert room.stage.audible[-1] == "o1"
    # Shown elsewhere, the officer is no longer heard; shown again, heard again.
    b.send("sup0", p.Spotlight(id=b.msg_id(), conference_id=cid, site="op3"))
    stage = last_room(b, cid).stage
    assert stage is not None
    assert "o1" not in stage.audible
    b.send("sup0", p.Spotlight(id=b.msg_id(), conference_id=cid, site="o1"))
    stage = last_room(b, cid).stage
    assert stage is not None
    assert "o1" in stage.audible


def test_a_moderator_shows_an_emergency_of_their_scope_until_the_call_ends() -> None:
    b = province()
    cid = running(b)
    call_id = answered_call(b, "op2", emergency=True)
    shared = b.send("sup0", p.ShareCall(id=b.msg_id(), conference_id=cid, call_id=call_id))
    (record,) = records(shared, "call_shared")
    assert record.data["emergency"] is True
    with pytest.raises(InvalidState):
        b.send("sup0", p.ShareCall(id=b.msg_id(), conference_id=cid, call_id=call_id))
    hung_up = b.hangup("op2", call_id)
    (record,) = records(hung_up, "call_unshared")
    assert (record.data["reason"], record.data["by"]) == ("call_ended", None)
    (update,) = messages(hung_up, p.ConferenceUpdate, to="op1")
    assert (update.changes.feeds, update.changes.spotlight) == ([], None)


def test_a_call_not_answered_or_not_shared_cannot_be_shown_or_taken_back() -> None:
    b = province()
    cid = running(b)
    ringing = placed(b.call_center("o1"))
    with pytest.raises(InvalidState):
        b.send("sup0", p.ShareCall(id=b.msg_id(), conference_id=cid, call_id=ringing))
    with pytest.raises(NotFound):
        b.send("sup0", p.ShareCall(id=b.msg_id(), conference_id=cid, call_id="c-none"))
    with pytest.raises(NotFound):
        b.send("sup0", p.UnshareCall(id=b.msg_id(), conference_id=cid, call_id=ringing))


def test_who_shared_a_call_or_a_moderator_takes_it_back() -> None:
    b = province()
    cid = running(b)
    call_id = answered_call(b, "op1")
    b.send("op1", p.ShareCall(id=b.msg_id(), conference_id=cid, call_id=call_id))
    with pytest.raises(Forbidden):
        b.send("op3", p.UnshareCall(id=b.msg_id(), conference_id=cid, call_id=call_id))
    back = b.send("sup0", p.UnshareCall(id=b.msg_id(), conference_id=cid, call_id=call_id))
    (record,) = records(back, "call_unshared")
    assert (record.data["reason"], record.data["by"]) == ("unshared", "sup0")


def test_a_call_shown_by_its_operator_stops_being_shown_when_they_hand_it_on() -> None:
    """The share was op1's word; op2 takes the call over without having shown it."""
    b = province()
    cid = running(b)
    call_id = answered_call(b, "op1")
    b.send("op1", p.ShareCall(id=b.msg_id(), conference_id=cid, call_id=call_id))
    handed = b.hand_over("op1", call_id, "op2")
    (record,) = records(handed, "call_unshared")
    assert (record.data["reason"], record.data["by"]) == ("transferred", "op1")
    assert record_kinds(handed).index("call_transferred") < record_kinds(handed).index(
        "call_unshared"
    )
    (update,) = messages(handed, p.ConferenceUpdate, to="sup0")
    assert (update.changes.feeds, update.changes.spotlight) == ([], None)
    assert recipients(handed, p.FeedEnded) == {"sup0", "op1", "op2"}
    (ended,) = messages(handed, p.FeedEnded, to="sup0")
    assert (ended.conference_id, ended.call_id, ended.reason) == (cid, call_id, "transferred")
    assert ended.officer.id == "o1"
    assert ended.by.id == "op1"
    assert ended.to is not None
    assert ended.to.id == "op2"
    stage = last_room(b, cid).stage
    assert stage is not None
    assert stage.feeds == ()


def test_a_call_sent_back_to_the_queue_stops_being_shown_by_its_operator() -> None:
    b = province()
    cid = running(b)
    call_id = answered_call(b, "op1")
    b.send("op1", p.ShareCall(id=b.msg_id(), conference_id=cid, call_id=call_id))
    back = b.send_back("op1", call_id)
    (record,) = records(back, "call_unshared")
    assert (record.data["reason"], record.data["by"]) == ("sent_back", "op1")
    (ended,) = messages(back, p.FeedEnded, to="op1")
    assert (ended.reason, ended.to) == ("sent_back", None)


def test_a_call_a_moderator_shows_stays_shown_when_its_operator_hands_it_on() -> None:
    b = province()
    cid = running(b)
    call_id = answered_call(b, "op1")
    b.send("sup0", p.ShareCall(id=b.msg_id(), conference_id=cid, call_id=call_id))
    handed = b.hand_over("op1", call_id, "op2")
    assert records(handed, "call_unshared") == []
    assert messages(handed, p.FeedEnded) == []
    stage = last_room(b, cid).stage
    assert stage is not None
    assert stage.feeds == (("o1", call_id),)


# ---- concentrated enforcement actions ---------------------------------------------------------


def test_an_action_scope_names_an_action_and_never_a_meeting() -> None:
    b = province()
    meeting_id = running(b)
    action_id = create(b, "sup0", kind="action", invite_users=("o1",))
    b.sign_in(
        Identity("w1", "W1", Role.WITNESS, "P", EXPIRES, scope=f"action:{action_id}"),
        Identity("w2", "W2", Role.WITNESS, "P", EXPIRES, scope=f"action:{meeting_id}"),
    )
    assert join(b, "w1", action_id).role == "witness"
    with pytest.raises(Forbidden):
        join(b, "w2", meeting_id)
    kinds = {r.data["conference"]: r.data["kind"] for r in records(b.log, "conference_started")}
    assert kinds == {meeting_id: "meeting", action_id: "action"}
    join(b, "sup0", action_id)
    stage = last_room(b, action_id).stage
    assert stage is not None
    assert stage.action
