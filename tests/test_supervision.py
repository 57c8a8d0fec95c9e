"""The pure core of `invite_supervisor` and `set_camera` (signalling/core/supervision.py),
driven on the `Switchboard` directly with a fake clock: who is asked, what is recorded, who
may say a camera changed and who is told; time never matters, so nothing waits."""

from __future__ import annotations

import msgspec
import pytest

from identity import Identity
from signalling import protocol as p
from signalling.core.actions import Action
from signalling.errors import Forbidden, InvalidState, Unavailable
from signalling.settings import CallsConfig
from tests.corehelpers import (
    Board,
    messages,
    officer,
    operator,
    placed,
    records,
    supervisor,
)


def answered(board: Board) -> str:
    board.sign_in(operator("op1"), officer("o1"))
    call_id = placed(board.call_center("o1"))
    board.accept("op1", call_id)
    return call_id


def invite(board: Board, user: str, call_id: str) -> list[Action]:
    return board.send(user, p.InviteSupervisor(id=board.msg_id(), call_id=call_id))


def camera(board: Board, user: str, call_id: str, on: bool) -> list[Action]:
    return board.send(user, p.SetCamera(id=board.msg_id(), call_id=call_id, on=on))


def test_the_supervisors_over_the_court_are_asked_and_it_is_recorded() -> None:
    board = Board()
    call_id = answered(board)
    board.sign_in(supervisor("sv1"), supervisor("sv2", "P02"), supervisor("sv3"))
    out = invite(board, "op1", call_id)
    invited = messages(out, p.SupervisorInvited)
    assert len(invited) == 1  # one push, to everyone asked
    assert invited[0].by.id == "op1"
    assert invited[0].call.call_id == call_id
    [event] = records(out, "supervisor_invited")
    assert event.data == {"call": call_id, "by": "op1", "users": ["sv1", "sv3"]}


def test_a_supervisor_in_the_call_already_is_not_asked_again() -> None:
    board = Board()
    call_id = answered(board)
    board.sign_in(supervisor("sv1"), supervisor("sv3"))
    board.join("sv1", call_id)
    out = invite(board, "op1", call_id)
    [event] = records(out, "supervisor_invited")
    assert event.data["users"] == ["sv3"]


def test_nobody_to_ask_is_unavailable_and_only_the_operator_asks() -> None:
    board = Board()
    call_id = answered(board)
    with pytest.raises(Unavailable):
        invite(board, "op1", call_id)
    board.sign_in(supervisor("sv1"))
    with pytest.raises(Forbidden):
        invite(board, "o1", call_id)


def test_a_call_not_answered_cannot_be_joined_so_nobody_is_invited_to_it() -> None:
    board = Board()
    board.sign_in(operator("op1"), officer("o1"), supervisor("sv1"))
    call_id = placed(board.call_officer("op1", "o1"))
    with pytest.raises(InvalidState):
        invite(board, "op1", call_id)


def test_a_camera_change_goes_to_the_other_members_only() -> None:
    board = Board()
    call_id = answered(board)
    board.sign_in(supervisor("sv1"))
    board.join("sv1", call_id)
    out = camera(board, "op1", call_id, False)
    told = {u for s in out if hasattr(s, "to") for u in s.to}
    changed = messages(out, p.CameraChanged)
    assert [(c.user, c.on) for c in changed] == [("op1", False)]
    assert {"o1", "sv1"} <= told
    assert not messages(out, p.CameraChanged, to="op1")
    assert records(out) == []  # said, not recorded


def test_a_covert_monitor_has_no_camera_in_the_call() -> None:
    board = Board(calls=CallsConfig(supervisor_join="either"))
    call_id = answered(board)
    board.sign_in(supervisor("sv1"))
    board.join("sv1", call_id, covert=True)
    with pytest.raises(Forbidden):
        camera(board, "sv1", call_id, False)


def welcomed_cameras_off(board: Board, user: str, identity: Identity) -> list[str]:
    """What `user`'s page is told of the call's cameras when it comes back (F5: a resume)."""
    session = board.sb.session(user)
    assert session is not None
    board.drop(user)
    _, out = board.connect(identity, resume=session.resume_token)
    [welcome] = messages(out, p.Welcome, to=user)
    [call] = welcome.calls
    return call.cameras_off


def test_a_page_that_reloads_mid_call_is_told_whose_camera_is_off() -> None:
    board = Board()
    call_id = answered(board)
    camera(board, "o1", call_id, False)
    assert welcomed_cameras_off(board, "op1", operator("op1")) == ["o1"]
    camera(board, "op1", call_id, False)
    assert welcomed_cameras_off(board, "o1", officer("o1")) == ["o1", "op1"]
    camera(board, "o1", call_id, True)
    assert welcomed_cameras_off(board, "op1", operator("op1")) == ["op1"]


def test_a_supervisor_joining_late_sees_the_cameras_off_and_takes_theirs_when_leaving() -> None:
    board = Board()
    call_id = answered(board)
    camera(board, "o1", call_id, False)
    board.sign_in(supervisor("sv1"))
    out = board.join("sv1", call_id)
    [answered_msg] = messages(out, p.CallAnswered, to="sv1")
    assert answered_msg.call.cameras_off == ["o1"]
    camera(board, "sv1", call_id, False)
    board.leave("sv1", call_id)
    assert welcomed_cameras_off(board, "op1", operator("op1")) == ["o1"]


def test_an_operator_handing_the_call_on_takes_their_camera_state_with_them() -> None:
    board = Board()
    call_id = answered(board)
    board.sign_in(operator("op2"))
    camera(board, "op1", call_id, False)
    board.hand_over("op1", call_id, "op2")
    assert welcomed_cameras_off(board, "o1", officer("o1")) == []


def test_a_call_whose_cameras_are_all_on_is_sent_as_before() -> None:
    board = Board()
    call_id = answered(board)
    camera(board, "o1", call_id, False)
    camera(board, "o1", call_id, True)
    [info] = board.sb.calls_of("op1")
    assert "cameras_off" not in msgspec.to_builtins(info)
