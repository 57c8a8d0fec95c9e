"""What a call's members ask for beyond answering and media: the operator asks the
supervisors over the call's court into it, and a party says its camera went off or on.

An invitation keeps no state: it tells each supervisor and administrator signed in over the
court, and each answers, or not, with `join_call` (whose checks and policy, visible or
silent, apply as ever). So nothing expires and nothing is left over when the call ends.
The camera is the same but for what it said last: the call keeps who said their camera is
off, for the pages that welcome it later; the media itself is the client's (a party that
turns its camera off stops sending video)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.call import Call, CallState, call_info
from signalling.core.presence import Session
from signalling.errors import Forbidden, InvalidState, Unavailable

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard


def invite_supervisors(
    board: Switchboard, session: Session, call: Call, now: float, out: list[Action]
) -> None:
    user = session.user_id
    if call.operator != user:
        raise Forbidden("only the call's operator invites a supervisor")
    if call.state is not CallState.ACTIVE:
        raise InvalidState(f"call is {call.state.value}")
    presence = board.presence
    invited = sorted(presence.monitors(call.court) - set(call.members()))
    if not invited:
        raise Unavailable("no supervisor over this call's court is signed in")
    out.append(
        board.facts.record("supervisor_invited", now, call=call.call_id, by=user, users=invited)
    )
    msg = p.SupervisorInvited(call=call_info(call, presence.info), by=presence.info(user))
    out.append(Send(tuple(invited), msg))


def set_camera(session: Session, call: Call, on: bool, out: list[Action]) -> None:
    user = session.user_id
    # A covert monitor's media is never forwarded, so there is no camera of theirs to show.
    heard = call.parties() + tuple(u for u, covert in call.supervisors.items() if not covert)
    if user not in heard:
        raise Forbidden("only a party of the call has a camera in it")
    if call.state is not CallState.ACTIVE:
        raise InvalidState(f"call is {call.state.value}")
    # Kept with the call, so that a page that reloads or joins mid-call is told (CallInfo).
    if on:
        call.cameras_off.discard(user)
    else:
        call.cameras_off.add(user)
    others = tuple(u for u in call.members() if u != user)
    if others:
        out.append(Send(others, p.CameraChanged(call_id=call.call_id, user=user, on=on)))
