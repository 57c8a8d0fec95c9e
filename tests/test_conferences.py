"""Conferences through the pure switchboard, with a fake clock: hosting now or later,
invitations ringing consoles and phones, joining and leaving, the floor (raise hand, grant,
roll call, revoke with grace, mute all), the moderators' actions, two moderators at once, the
chair dropping, a site's connection dropping, witnesses, and the end.

Courts (the default config): P > P01, P02 > P0101, P0102 (under P01), P0201 (under P02).
"""

from __future__ import annotations

from typing import Any

import pytest

from identity import Identity, Role
from signalling import protocol as p
from signalling.errors import Conflict, Forbidden, InvalidState, NotFound
from signalling.settings import ConferencesConfig
from tests.corehelpers import (
    EXPIRES,
    Board,
    admin,
    messages,
    officer,
    operator,
    recipients,
    record_kinds,
    records,
    supervisor,
)

GRACE = 3.0  # conferences.revoke_grace_s by default
# The moderators' view unbatched: each input's changes reach them with its other messages
# (batching is tests/test_conference_scale.py's).
EVERY_CHANGE_AT_ONCE = ConferencesConfig(moderator_delta_s=0.0)


def witness(user: str, conference_id: str) -> Identity:
    return Identity(
        user_id=user,
        name=user.upper(),
        role=Role.WITNESS,
        court="P",
        expires_at=EXPIRES,
        scope=f"conference:{conference_id}",
    )


def create(b: Board, host: str, **fields: Any) -> str:
    actions = b.send(host, p.CreateConference(id=b.msg_id(), title="Dispatch meeting", **fields))
    (created,) = messages(actions, p.ConferenceCreated, to=host)
    return created.conference.conference_id


def join(b: Board, user: str, conference_id: str) -> p.ConferenceJoined:
    actions = b.send(user, p.JoinConference(id=b.msg_id(), conference_id=conference_id))
    (joined,) = messages(actions, p.ConferenceJoined, to=user)
    return joined


def floor_of(actions: list[Any], user: str) -> p.FloorStatus:
    found = messages(actions, p.FloorStatus, to=user)
    assert found, f"no floor_status for {user}"
    return found[-1]


def province() -> Board:
    """The chair sup0 (supervisor at P), consoles op1, op2 of P0101 and op3 of P0102, a
    supervisor of P02, and officers o1 (P0101) and o9 (P0201), all signed in."""
    b = Board(conferences=EVERY_CHANGE_AT_ONCE)
    b.sign_in(
        supervisor("sup0", "P"),
        operator("op1"),
        operator("op2"),
        operator("op3", "P0102"),
        supervisor("sup2", "P02"),
        officer("o1"),
        officer("o9", "P0201"),
    )
    return b


def running(b: Board) -> str:
    """A conference of sup0 inviting every court under P01, and o1; sup0 and op1, op3 in."""
    cid = create(b, "sup0", invite_below=("P01",), invite_users=("o1",))
    join(b, "sup0", cid)
    join(b, "op1", cid)
    join(b, "op3", cid)
    return cid


# ---- hosting and invitations ---------------------------------------------------------------


def test_a_conference_created_now_starts_and_rings_the_invited_consoles_and_phones() -> None:
    b = province()
    actions = b.send(
        "sup0",
        p.CreateConference(
            id=b.msg_id(), title="Dispatch meeting", invite_below=("P01",), invite_users=("o1",)
        ),
    )
    assert record_kinds(actions) == ["conference_created", "conference_started"]
    (started,) = records(actions, "conference_started")
    assert (started.data["court"], started.data["host"]) == ("P", "sup0")
    # Every console of P01, P0101 and P0102 rings, and the invited officer's phone; not the
    # host, not another court's supervisor, not an uninvited officer.
    assert recipients(actions, p.ConferenceInvitation) == {"op1", "op2", "op3", "o1"}
    (created,) = messages(actions, p.ConferenceCreated, to="sup0")
    # The host court (its other consoles) first, then every court under P01.
    assert created.conference.invited_courts == ["P", "P01", "P0101", "P0102"]
    assert created.conference.status == "running"


def test_a_scheduled_conference_rings_nobody_until_its_time() -> None:
    b = province()
    actions = b.send(
        "sup0",
        p.CreateConference(
            id=b.msg_id(),
            title="Weekly",
            invite_courts=("P0101",),
            starts_at=(b.now + 600) * 1000,
        ),
    )
    assert record_kinds(actions) == ["conference_created"]
    assert recipients(actions, p.ConferenceInvitation) == set()
    cid = messages(actions, p.ConferenceCreated)[0].conference.conference_id
    with pytest.raises(InvalidState):
        b.send("op1", p.JoinConference(id=b.msg_id(), conference_id=cid))
    started = b.advance(600)
    assert record_kinds(started) == ["conference_started"]
    assert recipients(started, p.ConferenceInvitation) == {"op1", "op2"}


def test_hosting_is_for_the_command_center_within_its_scope() -> None:
    b = province()
    with pytest.raises(Forbidden):
        b.send("o1", p.CreateConference(id=b.msg_id(), title="x"))
    with pytest.raises(Forbidden) as info:
        b.send("op1", p.CreateConference(id=b.msg_id(), title="x", invite_courts=("P0102",)))
    assert info.value.field == "invite_courts"
    with pytest.raises(NotFound):
        b.send("sup0", p.CreateConference(id=b.msg_id(), title="x", invite_courts=("Q",)))


def test_the_first_console_of_a_court_to_join_answers_for_it() -> None:
    b = province()
    cid = create(b, "sup0", invite_courts=("P0101",))
    join(b, "sup0", cid)
    actions = b.send("op1", p.JoinConference(id=b.msg_id(), conference_id=cid))
    assert record_kinds(actions) == ["site_joined"]
    (stopped,) = messages(actions, p.InvitationStopped, to="op2")
    assert (stopped.reason, stopped.by and stopped.by.id) == ("answered", "op1")
    (changed,) = messages(actions, p.SitesChanged, to="sup0")
    assert [(i.invitee, i.state) for i in changed.invitations] == [("P0101", "joined")]
    # op2 may still join from the list: a second site of the court.
    assert join(b, "op2", cid).role == "site"


def test_an_invitation_declined_by_every_console_is_declined_and_the_host_sees_it() -> None:
    b = province()
    cid = create(b, "sup0", invite_courts=("P0101",))
    join(b, "sup0", cid)
    b.send("op1", p.DeclineConference(id=b.msg_id(), conference_id=cid))
    actions = b.send("op2", p.DeclineConference(id=b.msg_id(), conference_id=cid))
    (changed,) = messages(actions, p.SitesChanged, to="sup0")
    assert [(i.invitee, i.state) for i in changed.invitations] == [("P0101", "declined")]


def test_unanswered_invitations_stop_ringing_after_the_ring_time() -> None:
    b = province()
    create(b, "sup0", invite_courts=("P0101",))
    actions = b.advance(60.0)
    assert recipients(actions, p.InvitationStopped) == {"op1", "op2"}
    assert {m.reason for m in messages(actions, p.InvitationStopped)} == {"expired"}


def test_who_may_join() -> None:
    b = province()
    cid = running(b)
    with pytest.raises(Forbidden):
        b.send("o9", p.JoinConference(id=b.msg_id(), conference_id=cid))
    # A supervisor over the host court may; an invited officer's phone may.
    b.sign_in(admin("adm"))
    assert join(b, "adm", cid).role == "site"
    assert join(b, "o1", cid).role == "site"
    with pytest.raises(NotFound):
        b.send("op1", p.JoinConference(id=b.msg_id(), conference_id="m404"))


def test_joining_again_is_the_state_again_not_a_second_join() -> None:
    b = province()
    cid = running(b)
    actions = b.send("op1", p.JoinConference(id=b.msg_id(), conference_id=cid))
    assert record_kinds(actions) == []
    (joined,) = messages(actions, p.ConferenceJoined, to="op1")
    assert joined.state.sites == 3


def test_the_moderator_sees_the_sites_and_a_site_sees_only_the_state() -> None:
    b = province()
    cid = running(b)
    moderator = join(b, "sup0", cid)
    assert moderator.role == "moderator"
    assert {s.user.id for s in moderator.sites} == {"sup0", "op1", "op3"}
    assert moderator.invitations
    site = join(b, "op1", cid)
    assert (site.role, site.sites, site.invitations) == ("site", [], [])
    assert site.state.chair is not None
    assert site.state.chair.id == "sup0"


# ---- the floor -----------------------------------------------------------------------------


def test_raised_hands_queue_by_court_level_then_time_and_the_moderator_grants() -> None:
    b = province()
    cid = running(b)
    b.sign_in(supervisor("sup1"))  # a P01 (intermediate) console
    join(b, "sup1", cid)
    first = b.send("op1", p.RaiseHand(id=b.msg_id(), conference_id=cid))
    assert floor_of(first, "op1").floor.position == 1
    assert record_kinds(first) == ["floor_requested"]
    b.advance(1.0)
    later = b.send("sup1", p.RaiseHand(id=b.msg_id(), conference_id=cid))
    # The intermediate court goes ahead of the basic one that asked first.
    assert floor_of(later, "sup1").floor.position == 1
    assert floor_of(later, "op1").floor.position == 2
    grant = b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="sup1"))
    status = floor_of(grant, "sup1").floor
    assert (status.state, status.called) == ("permitted", False)
    assert floor_of(grant, "op1").floor.position == 1
    (update,) = messages(grant, p.ConferenceUpdate, to="op3")
    assert update.changes.holders == [
        p.UserInfo(id="sup1", name="SUP1", role="supervisor", court="P01")
    ]
    assert isinstance(update.changes.spotlight, p.UserInfo)
    assert update.changes.spotlight.id == "sup1"
    (granted,) = records(grant, "floor_granted")
    assert (granted.data["user"], granted.data["by"]) == ("sup1", "sup0")


def test_roll_call_gives_the_floor_to_a_site_that_did_not_ask() -> None:
    b = province()
    cid = running(b)
    actions = b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op3"))
    status = floor_of(actions, "op3").floor
    assert (status.state, status.called) == ("permitted", True)
    (granted,) = records(actions, "floor_granted")
    assert granted.data["called"] is True


def test_revoke_takes_the_floor_after_the_grace() -> None:
    b = province()
    cid = running(b)
    b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op1"))
    revoking = b.send("sup0", p.RevokeFloor(id=b.msg_id(), conference_id=cid, site="op1"))
    status = floor_of(revoking, "op1").floor
    assert status.state == "pending_revoke"
    assert status.until == (b.now + GRACE) * 1000
    assert records(revoking, "floor_revoked") == []
    taken = b.advance(GRACE)
    assert floor_of(taken, "op1").floor.state == "not_permitted"
    assert floor_of(taken, "op1").reason == "moderator"
    (revoked,) = records(taken, "floor_revoked")
    assert revoked.data["reason"] == "moderator"


def test_mute_all_takes_every_floor_at_once_and_keeps_the_raised_hands() -> None:
    b = province()
    cid = running(b)
    b.send("sup0", p.SetFloor(id=b.msg_id(), conference_id=cid, max_speakers=2))
    b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op1"))
    b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op3"))
    b.send("sup0", p.UnmuteAll(id=b.msg_id(), conference_id=cid))
    actions = b.send("sup0", p.MuteAll(id=b.msg_id(), conference_id=cid))
    assert {floor_of(actions, u).reason for u in ("op1", "op3")} == {"mute_all"}
    (update,) = messages(actions, p.ConferenceUpdate, to="op1")
    assert (update.changes.holders, update.changes.audio) == ([], "floor")
    assert record_kinds(actions)[0] == "conference_muted"


def test_a_site_that_is_not_a_moderator_may_not_moderate() -> None:
    b = province()
    cid = running(b)
    for msg in (
        p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op3"),
        p.MuteAll(id=b.msg_id(), conference_id=cid),
        p.EndConference(id=b.msg_id(), conference_id=cid),
    ):
        with pytest.raises(Forbidden):
            b.send("op1", msg)


def test_granting_the_floor_to_someone_not_in_the_conference_is_not_found() -> None:
    b = province()
    cid = running(b)
    with pytest.raises(NotFound) as info:
        b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op2"))
    assert info.value.field == "site"


def test_of_two_moderators_acting_on_the_same_revision_one_wins_the_other_is_told() -> None:
    b = province()
    cid = running(b)
    b.sign_in(supervisor("sup1"))
    join(b, "sup1", cid)
    b.send("sup0", p.NameModerator(id=b.msg_id(), conference_id=cid, user="sup1"))
    revision = join(b, "sup0", cid).state.revision
    b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op1", revision=revision))
    with pytest.raises(Conflict) as info:
        b.send(
            "sup1", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op3", revision=revision)
        )
    assert info.value.field == "revision"


# ---- the room ------------------------------------------------------------------------------


def test_removed_with_a_ban_the_site_is_told_and_may_not_come_back() -> None:
    b = province()
    cid = running(b)
    actions = b.send("sup0", p.RemoveSite(id=b.msg_id(), conference_id=cid, site="op3", ban=True))
    (left,) = messages(actions, p.ConferenceLeft, to="op3")
    assert (left.reason, left.by) == ("banned", "sup0")
    (record,) = records(actions, "site_left")
    assert (record.data["reason"], record.data["by"]) == ("banned", "sup0")
    with pytest.raises(Forbidden):
        b.send("op3", p.JoinConference(id=b.msg_id(), conference_id=cid))


def test_a_locked_conference_takes_no_new_site() -> None:
    b = province()
    cid = running(b)
    b.send("sup0", p.LockConference(id=b.msg_id(), conference_id=cid, locked=True))
    with pytest.raises(InvalidState):
        b.send("op2", p.JoinConference(id=b.msg_id(), conference_id=cid))
    # A site already in comes back (joining again is the state again).
    assert join(b, "op1", cid).state.locked is True


def test_a_site_whose_connection_drops_is_away_then_back_without_a_new_join() -> None:
    b = province()
    running(b)
    session = b.sb.session("op1")
    assert session is not None
    away = b.drop("op1")
    (change,) = messages(away, p.SitesChanged, to="sup0")
    assert change.sites[0].status == "away"
    back_session, back = b.connect(operator("op1"), resume=session.resume_token)
    (change,) = messages(back, p.SitesChanged, to="sup0")
    assert change.sites[0].status == "joined"
    assert "site_joined" not in record_kinds(b.log[-len(back) :])
    assert back_session.session_id == session.session_id


def test_when_the_chair_drops_a_connected_co_moderator_takes_the_chair() -> None:
    b = province()
    cid = running(b)
    b.sign_in(supervisor("sup1"))
    join(b, "sup1", cid)
    b.send("sup0", p.NameModerator(id=b.msg_id(), conference_id=cid, user="sup1"))
    actions = b.drop("sup0")
    (changed,) = records(actions, "chair_changed")
    assert (changed.data["chair"], changed.data["reason"]) == ("sup1", "takeover")


def test_with_no_moderator_the_conference_runs_on_for_the_grace_then_ends() -> None:
    b = province()
    cid = running(b)
    b.drop("sup0")
    b.advance(b.presence_cfg.grace_s)  # sup0 signed out: still no moderator
    actions = b.advance(300.0)
    (ended,) = messages(actions, p.ConferenceEnded, to="op1")
    assert ended.reason == "no_moderator"
    assert cid not in b.sb.conferences.table


def test_a_moderator_back_within_the_grace_takes_the_chair_again() -> None:
    b = province()
    cid = running(b)
    session = b.sb.session("sup0")
    assert session is not None
    b.drop("sup0")
    _, back = b.connect(supervisor("sup0", "P"), resume=session.resume_token)
    (changed,) = records(back, "chair_changed")
    assert (changed.data["chair"], changed.data["reason"]) == ("sup0", "back")
    assert messages(b.advance(300.0), p.ConferenceEnded) == []
    assert cid in b.sb.conferences.table


def test_the_moderator_ends_it_everyone_is_told_and_it_is_recorded() -> None:
    b = province()
    cid = running(b)
    actions = b.send("sup0", p.EndConference(id=b.msg_id(), conference_id=cid))
    assert recipients(actions, p.ConferenceEnded) == {"sup0", "op1", "op3"}
    (ended,) = records(actions, "conference_ended")
    assert (ended.data["reason"], ended.data["by"], ended.data["court"]) == ("ended", "sup0", "P")
    with pytest.raises(NotFound):
        b.send("op1", p.RaiseHand(id=b.msg_id(), conference_id=cid))


# ---- witnesses -----------------------------------------------------------------------------


def test_a_witness_watches_the_one_conference_of_their_token_and_cannot_speak() -> None:
    b = province()
    cid = running(b)
    other = create(b, "sup0", invite_courts=("P02",))
    b.sign_in(witness("w1", cid))
    listed = b.send("w1", p.ListConferences(id=b.msg_id()))
    (reply,) = messages(listed, p.Conferences, to="w1")
    assert [c.conference_id for c in reply.conferences] == [cid]
    joined = b.send("w1", p.JoinConference(id=b.msg_id(), conference_id=cid))
    (record,) = records(joined, "site_joined")
    assert record.data["role"] == "witness"
    with pytest.raises(Forbidden):
        b.send("w1", p.RaiseHand(id=b.msg_id(), conference_id=cid))
    with pytest.raises(Forbidden):
        b.send("w1", p.JoinConference(id=b.msg_id(), conference_id=other))
    with pytest.raises(Forbidden):
        b.send("w1", p.GetRoster(id=b.msg_id()))
    left = b.send("w1", p.LeaveConference(id=b.msg_id(), conference_id=cid))
    (record,) = records(left, "site_left")
    assert (record.data["user"], record.data["reason"]) == ("w1", "left")


def test_shutdown_ends_every_conference() -> None:
    b = province()
    cid = running(b)
    actions = b.sb.shutdown(b.now)
    (ended,) = records(actions, "conference_ended")
    assert (ended.data["conference"], ended.data["reason"]) == (cid, "shutdown")


def test_in_an_open_floor_hands_are_granted_while_there_is_room_and_mute_all_silences_it() -> None:
    b = province()
    cid = running(b)
    b.send("sup0", p.SetFloor(id=b.msg_id(), conference_id=cid, max_speakers=1, mode="open"))
    first = b.send("op1", p.RaiseHand(id=b.msg_id(), conference_id=cid))
    assert floor_of(first, "op1").floor.state == "permitted"
    second = b.send("op3", p.RaiseHand(id=b.msg_id(), conference_id=cid))
    assert floor_of(second, "op3").floor.position == 1
    muted = b.send("sup0", p.MuteAll(id=b.msg_id(), conference_id=cid))
    # Nobody holds the floor afterwards: the raised hand waits for the moderator.
    (update,) = messages(muted, p.ConferenceUpdate, to="op3")
    assert (update.changes.holders, update.changes.mode) == ([], "moderated")
    assert b.sb.conferences.table[cid].floor.position("op3") == 1


def test_an_invitation_that_rang_at_nobody_is_not_answered_at_the_end_of_the_ring_time() -> None:
    b = province()
    cid = create(b, "sup0", invite_courts=("P0201",))  # no console of P0201 is signed in
    join(b, "sup0", cid)
    actions = b.advance(60.0)
    (changed,) = messages(actions, p.SitesChanged, to="sup0")
    states = {i.invitee: i.state for i in changed.invitations}
    # The host's own join does not answer for the host court: its colleagues may still come.
    assert states["P0201"] == "no_answer"


def test_the_host_courts_own_consoles_are_invited_too() -> None:
    b = province()
    b.sign_in(supervisor("sup1"), operator("op4", "P01"))
    actions = b.send("sup1", p.CreateConference(id=b.msg_id(), title="P01 meeting"))
    assert recipients(actions, p.ConferenceInvitation) == {"op4"}


def test_a_hand_raised_again_keeps_its_place_and_is_not_recorded_again() -> None:
    b = province()
    cid = running(b)
    b.send("op1", p.RaiseHand(id=b.msg_id(), conference_id=cid))
    again = b.send("op1", p.RaiseHand(id=b.msg_id(), conference_id=cid))
    assert record_kinds(again) == []
    assert floor_of(again, "op1").floor.position == 1


def test_hands_and_joins_do_not_move_the_revision_a_moderator_decides_on() -> None:
    b = province()
    cid = running(b)
    revision = join(b, "sup0", cid).state.revision
    b.send("op1", p.RaiseHand(id=b.msg_id(), conference_id=cid))
    join(b, "op2", cid)
    b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op1", revision=revision))
    with pytest.raises(Conflict):
        b.send("sup0", p.MuteAll(id=b.msg_id(), conference_id=cid, revision=revision))


def test_the_revoke_says_why_at_once_and_its_record_says_who() -> None:
    b = province()
    cid = running(b)
    b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op1"))
    revoking = b.send("sup0", p.RevokeFloor(id=b.msg_id(), conference_id=cid, site="op1"))
    assert floor_of(revoking, "op1").reason == "moderator"
    (revoked,) = records(b.advance(GRACE), "floor_revoked")
    assert (revoked.data["reason"], revoked.data["by"]) == ("moderator", "sup0")


def test_naming_a_moderator_twice_is_refused_and_the_new_one_sees_the_invitations() -> None:
    b = province()
    cid = running(b)
    actions = b.send("sup0", p.NameModerator(id=b.msg_id(), conference_id=cid, user="op1"))
    # The whole view, once, then the batches (here the one saying op1 is a moderator now).
    invitations, _ = messages(actions, p.SitesChanged, to="op1")
    assert {i.invitee for i in invitations.invitations} >= {"P0101", "P0102"}
    with pytest.raises(InvalidState):
        b.send("sup0", p.NameModerator(id=b.msg_id(), conference_id=cid, user="op1"))


def test_a_site_whose_connection_is_down_is_not_given_the_floor() -> None:
    b = province()
    cid = running(b)
    b.drop("op1")
    with pytest.raises(InvalidState) as info:
        b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op1"))
    assert info.value.field == "site"


def test_auditors_do_not_join_and_moderators_join_a_full_conference() -> None:
    b = Board(conferences=ConferencesConfig(max_sites=2))
    b.sign_in(supervisor("sup0", "P"), operator("op1"), operator("op3", "P0102"))
    b.sign_in(Identity("aud", "AUD", Role.AUDITOR, "P", EXPIRES))
    cid = create(b, "sup0", invite_below=("P01",))
    join(b, "op1", cid)
    join(b, "op3", cid)
    assert join(b, "sup0", cid).role == "moderator"
    with pytest.raises(Forbidden):
        b.send("aud", p.JoinConference(id=b.msg_id(), conference_id=cid))


def test_a_conference_no_moderator_ever_joins_ends_after_the_grace() -> None:
    b = province()
    cid = create(b, "sup0", invite_below=("P01",))
    join(b, "op1", cid)
    actions = b.advance(300.0)
    (ended,) = messages(actions, p.ConferenceEnded, to="op1")
    assert ended.reason == "no_moderator"
    assert cid not in b.sb.conferences.table


def test_mute_all_in_an_open_floor_records_the_switch_to_moderated() -> None:
    b = province()
    cid = running(b)
    b.send("sup0", p.SetFloor(id=b.msg_id(), conference_id=cid, max_speakers=1, mode="open"))
    actions = b.send("sup0", p.MuteAll(id=b.msg_id(), conference_id=cid))
    policies = records(actions, "floor_policy")
    assert [r.data["mode"] for r in policies] == ["moderated"]


def test_a_console_signing_in_while_its_court_is_rung_is_rung_too_but_not_after() -> None:
    b = province()
    cid = create(b, "sup0", invite_below=("P02",))
    late = b.sign_in(operator("op9", "P0201"))
    (invitation,) = messages(late, p.ConferenceInvitation, to="op9")
    assert invitation.conference.conference_id == cid
    b.advance(60.0)  # the ring time is over
    assert messages(b.sign_in(operator("op8", "P0201")), p.ConferenceInvitation) == []


def test_what_still_rings_is_sent_again_after_a_resume() -> None:
    b = province()
    session = b.sb.session("op1")
    assert session is not None
    b.drop("op1")
    cid = create(b, "sup0", invite_below=("P01",))
    _, back = b.connect(operator("op1"), resume=session.resume_token)
    (invitation,) = messages(back, p.ConferenceInvitation, to="op1")
    assert invitation.conference.conference_id == cid
