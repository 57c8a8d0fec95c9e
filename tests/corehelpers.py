"""Helpers for driving the pure `Switchboard` directly: a fake clock, identities of the
default court hierarchy (P > P01, P02 > P0101, P0102, P0201), deterministic call ids and
session keys, and filters over the actions that come back.

`Board` keeps every action it was handed, so a test can assert on one step's actions (the
return value) or on the whole story so far (`board.log`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from commandcenter.auth import Courts, Identity, Role
from commandcenter.config import (
    CallsConfig,
    ConferencesConfig,
    Config,
    EmergencyConfig,
    PresenceConfig,
)
from sessions.recorder import TraceEvent
from signalling import protocol as p
from signalling.core.actions import Action, Disconnect, Record, Send
from signalling.core.presence import Session, SessionKeys
from signalling.core.switchboard import Switchboard
from signalling.core.watches import WatchLimits
from signalling.settings import InstructionsConfig

COURTS = Courts(Config().courts)
T0 = 1_800_000_000.0
EXPIRES = T0 + 10 * 86400.0

M = TypeVar("M", bound=p.ServerMessage)


class FakeClock:
    """Server time in seconds; moves only when a test says so."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class CallIds:
    """c1, c2, ... in the order calls are created."""

    def __init__(self) -> None:
        self._n = itertools.count(1)

    def __call__(self) -> str:
        return f"c{next(self._n)}"


def ident(user: str, role: Role, court: str) -> Identity:
    return Identity(user_id=user, name=user.upper(), role=role, court=court, expires_at=EXPIRES)


def officer(user: str, court: str = "P0101") -> Identity:
    return ident(user, Role.OFFICER, court)


def operator(user: str, court: str = "P0101") -> Identity:
    return ident(user, Role.OPERATOR, court)


def supervisor(user: str, court: str = "P01") -> Identity:
    return ident(user, Role.SUPERVISOR, court)


def admin(user: str, court: str = "P") -> Identity:
    return ident(user, Role.ADMIN, court)


# ---- filters over actions ---------------------------------------------------------------


def sends(actions: Iterable[Action]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def messages(actions: Iterable[Action], kind: type[M], to: str | None = None) -> list[M]:
    """Messages of type `kind` in `actions`, only those addressed to `to` when given."""
    return [
        a.message
        for a in sends(actions)
        if isinstance(a.message, kind) and (to is None or to in a.to)
    ]


def recipients(actions: Iterable[Action], kind: type[p.ServerMessage]) -> set[str]:
    """Everyone who is sent a message of type `kind`."""
    return {u for a in sends(actions) if isinstance(a.message, kind) for u in a.to}


def records(actions: Iterable[Action], kind: str | None = None) -> list[TraceEvent]:
    return [
        a.event for a in actions if isinstance(a, Record) and (kind is None or a.event.kind == kind)
    ]


def record_kinds(actions: Iterable[Action]) -> list[str]:
    return [e.kind for e in records(actions)]


def disconnects(actions: Iterable[Action]) -> list[Disconnect]:
    return [a for a in actions if isinstance(a, Disconnect)]


def rung(actions: Iterable[Action], call_id: str) -> set[str]:
    """Users who were sent call_ringing for `call_id`."""
    return {
        u
        for a in sends(actions)
        if isinstance(a.message, p.CallRinging) and a.message.call.call_id == call_id
        for u in a.to
    }


def placed(actions: Iterable[Action]) -> str:
    """The call id of the single call_placed reply in `actions`."""
    (msg,) = messages(actions, p.CallPlaced)
    return msg.call_id


def ended(actions: Iterable[Action], call_id: str) -> p.CallEnded:
    """The single call_ended message for `call_id` in `actions`."""
    found = [m for m in messages(actions, p.CallEnded) if m.call_id == call_id]
    assert len(found) == 1, found
    return found[0]


# ---- a switchboard with a clock ---------------------------------------------------------


class Board:
    """A `Switchboard` on the default courts with a fake clock and a log of its actions."""

    def __init__(
        self,
        *,
        calls: CallsConfig | None = None,
        presence: PresenceConfig | None = None,
        conferences: ConferencesConfig | None = None,
        instructions: InstructionsConfig | None = None,
        media: bool = False,
        watches: WatchLimits | None = None,
        emergency: EmergencyConfig | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.calls_cfg = calls or CallsConfig()
        self.presence_cfg = presence or PresenceConfig()
        self.sb = Switchboard(
            courts=COURTS,
            calls=self.calls_cfg,
            presence=self.presence_cfg,
            node_id="n1",
            new_call_id=CallIds(),
            conferences=conferences,
            instructions=instructions,
            media=media,
            watches=watches,
            emergency=emergency,
        )
        self.log: list[Action] = []
        self._keys = itertools.count(1)
        self._msg_ids = itertools.count(1)

    @property
    def now(self) -> float:
        return self.clock.now

    def _keep(self, actions: list[Action]) -> list[Action]:
        self.log.extend(actions)
        return actions

    def connect(
        self,
        identity: Identity,
        *,
        resume: str | None = None,
        device: str = "phone-1",
        app: str = "1.0",
    ) -> tuple[Session, list[Action]]:
        n = next(self._keys)
        keys = SessionKeys(session_id=f"s{n}", resume_token=f"r{n}")
        session, actions = self.sb.connect(
            identity,
            keys=keys,
            device=device,
            app_version=app,
            resume_token=resume,
            now=self.now,
        )
        return session, self._keep(actions)

    def sign_in(self, *identities: Identity) -> list[Action]:
        out: list[Action] = []
        for identity in identities:
            out.extend(self.connect(identity)[1])
        return out

    def drop(self, user: str) -> list[Action]:
        """`user`'s connection closes."""
        session = self.sb.session(user)
        assert session is not None
        return self._keep(self.sb.disconnect(user, session.session_id, self.now))

    def send(self, user: str, msg: p.ClientMessage) -> list[Action]:
        return self._keep(self.sb.handle(user, msg, self.now))

    def msg_id(self) -> str:
        return f"m{next(self._msg_ids)}"

    def advance(self, seconds: float) -> list[Action]:
        """Time passes; every deadline it reaches is handled."""
        self.clock.advance(seconds)
        return self._keep(self.sb.handle_timeout(self.now))

    # Shorthands for client messages, each returning the actions of that one step.

    def call_center(self, user: str, case_number: str | None = None) -> list[Action]:
        return self.send(user, p.CallCenter(id=self.msg_id(), case_number=case_number))

    def emergency(self, user: str, note: str | None = None) -> list[Action]:
        return self.send(user, p.Emergency(id=self.msg_id(), note=note))

    def call_officer(self, user: str, target: str) -> list[Action]:
        return self.send(user, p.CallOfficer(id=self.msg_id(), officer=target))

    def accept(self, user: str, call_id: str) -> list[Action]:
        return self.send(user, p.Accept(id=self.msg_id(), call_id=call_id))

    def decline(self, user: str, call_id: str) -> list[Action]:
        return self.send(user, p.Decline(id=self.msg_id(), call_id=call_id))

    def cancel(self, user: str, call_id: str) -> list[Action]:
        return self.send(user, p.Cancel(id=self.msg_id(), call_id=call_id))

    def hangup(self, user: str, call_id: str) -> list[Action]:
        return self.send(user, p.Hangup(id=self.msg_id(), call_id=call_id))

    def join(self, user: str, call_id: str, covert: bool = False) -> list[Action]:
        return self.send(user, p.JoinCall(id=self.msg_id(), call_id=call_id, covert=covert))

    def leave(self, user: str, call_id: str) -> list[Action]:
        return self.send(user, p.LeaveCall(id=self.msg_id(), call_id=call_id))

    def transfer(self, user: str, call_id: str, to: str) -> list[Action]:
        """`user` offers the call to `to` (who has not accepted yet)."""
        return self.send(user, p.Transfer(id=self.msg_id(), call_id=call_id, to=to))

    def accept_transfer(self, user: str, call_id: str) -> list[Action]:
        return self.send(user, p.AcceptTransfer(id=self.msg_id(), call_id=call_id))

    def decline_transfer(self, user: str, call_id: str) -> list[Action]:
        return self.send(user, p.DeclineTransfer(id=self.msg_id(), call_id=call_id))

    def cancel_transfer(self, user: str, call_id: str) -> list[Action]:
        return self.send(user, p.CancelTransfer(id=self.msg_id(), call_id=call_id))

    def hand_over(self, user: str, call_id: str, to: str) -> list[Action]:
        """`user` offers the call to `to`, who accepts: the actions of the accept."""
        self.transfer(user, call_id, to)
        return self.accept_transfer(to, call_id)

    def send_back(self, user: str, call_id: str) -> list[Action]:
        return self.send(user, p.SendBack(id=self.msg_id(), call_id=call_id))

    def set_availability(self, user: str, status: p.AvailabilityChoice) -> list[Action]:
        return self.send(user, p.SetAvailability(id=self.msg_id(), status=status))

    def clear_emergency(self, user: str, target: str) -> list[Action]:
        return self.send(user, p.ClearEmergency(id=self.msg_id(), officer=target))

    def roster(self, user: str, court: str | None = None) -> p.Roster:
        actions = self.send(user, p.GetRoster(id=self.msg_id(), court=court))
        (roster,) = messages(actions, p.Roster, to=user)
        return roster

    def position(self, user: str, lat: float, lon: float = 120.0) -> list[Action]:
        msg = p.Position(
            id=self.msg_id(), lat=lat, lon=lon, accuracy_m=5.0, device_time=self.now * 1000.0
        )
        return self.send(user, msg)

    # Queries.

    def call_state(self, call_id: str) -> str | None:
        """The call's state, or None once it has ended (ended calls are dropped)."""
        call = self.sb.calls.table.get(call_id)
        return None if call is None else call.state.value

    def snapshot(self) -> Any:
        """Everything the core holds, deep-copied into plain values, for before/after
        comparisons."""
        sb = self.sb
        calls = {
            cid: {
                **dataclasses.asdict(c),
                "ringing": sorted(sb.dispatch.ringing(cid)),
                "declined": sorted(sb.dispatch.declined(cid)),
            }
            for cid, c in sb.calls.table.items()
        }
        sessions = {
            u: {
                **{f.name: _plain(getattr(s, f.name)) for f in dataclasses.fields(s)},
                "call": sb.calls.call_id_of(u),
                "ringing": sorted(sb.dispatch.ringing_at(u)),
                "monitoring": sorted(sb.calls.monitoring(u)),
            }
            for u, s in sb.presence.sessions.items()
        }
        return {
            "calls": calls,
            "sessions": sessions,
            "deadlines": sb.next_deadline(),
            "pending": len(sb.deadlines),
            "offers": sb.transfers.open_offers(),
            "alarms": sb.alarms.pending(),
            "held": {cid: sorted(sb.dispatch.held(cid)) for cid in sb.calls.table},
            "away": sb.availability.away(),
        }


def _plain(value: object) -> object:
    if isinstance(value, set):
        return sorted(value)
    return value


def ids_of(users: Sequence[p.UserInfo | None]) -> list[str | None]:
    return [u.id if u is not None else None for u in users]
