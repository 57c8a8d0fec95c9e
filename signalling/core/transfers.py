"""Transfers offered from one operator to another, until the other accepts or declines.

Theory of operation
-------------------
The operator of an answered call offers it to another free operator of the call's court (or
of their own): the other is told (`transfer_offered`) and has `calls.transfer_timeout_s` to
accept or decline; until then the call stays with the one offering it, media and all. An
accept hands the call over (`Calls.hand_over`, the `call_transferred` pushes); a decline, the
offer running out, the offering operator withdrawing it, the call ending or the other signing
out ends the offer instead, and both operators are told how (`transfer_ended`). A call has at
most one offer open, and an operator considers at most one offer at a time. Every step is a
trace fact: `transfer_offered`, `transfer_accepted`, and `transfer_<outcome>` for the rest.

This module owns the open offers and their expiry deadlines; it never reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from identity import Role
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.call import Call, CallState, call_info
from signalling.core.deadlines import Deadlines
from signalling.core.presence import Session
from signalling.errors import Busy, Forbidden, InvalidState, NotFound
from signalling.settings import CallsConfig

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard


@dataclass(frozen=True, slots=True)
class TransferExpiry:
    """Deadline: the transfer offered for `call_id` was neither accepted nor declined."""

    call_id: str


@dataclass(frozen=True, slots=True)
class TransferOffer:
    call_id: str
    offered_by: str
    offered_to: str
    expires_at: float


class Transfers:
    def __init__(self, board: Switchboard, config: CallsConfig, deadlines: Deadlines) -> None:
        self._board = board
        self.config = config
        self._deadlines = deadlines
        # call -> its open offer; operator -> the call offered to them.
        self._offers: dict[str, TransferOffer] = {}
        self._offered_to: dict[str, str] = {}

    # ---- queries ------------------------------------------------------------------------

    def offer_of(self, call_id: str) -> TransferOffer | None:
        return self._offers.get(call_id)

    def open_offers(self) -> list[TransferOffer]:
        return sorted(self._offers.values(), key=lambda o: o.call_id)

    def offered_to(self, user: str) -> TransferOffer | None:
        call_id = self._offered_to.get(user)
        return None if call_id is None else self._offers[call_id]

    # ---- what operators ask -------------------------------------------------------------

    def offer(self, session: Session, call: Call, to: str, now: float, out: list[Action]) -> None:
        board = self._board
        user = session.user_id
        if call.operator != user or call.state is not CallState.ACTIVE:
            raise InvalidState("only the operator of an answered call may transfer it")
        target = board.presence.session(to)
        if target is None or target.role is not Role.OPERATOR:
            raise NotFound("no such operator online", field="to")
        if target.identity.court not in (call.court, session.identity.court):
            raise Forbidden("operator does not serve this court", field="to")
        if to == user:
            raise InvalidState("cannot transfer a call to yourself", field="to")
        if call.call_id in self._offers:
            raise InvalidState("a transfer of this call is already offered", field="call_id")
        if (
            not target.connected
            or board.calls.call_id_of(to) is not None
            or board.availability.is_away(to)
            or to in self._offered_to
        ):
            raise Busy("operator is not free", field="to")
        offer = TransferOffer(call.call_id, user, to, now + self.config.transfer_timeout_s)
        self._offers[call.call_id] = offer
        self._offered_to[to] = call.call_id
        self._deadlines.set(TransferExpiry(call.call_id), offer.expires_at)
        out.append(board.facts.record("transfer_offered", now, call=call.call_id, by=user, to=to))
        info = board.presence.info
        msg = p.TransferOffered(
            call=call_info(call, info),
            from_operator=info(user),
            expires_in_s=self.config.transfer_timeout_s,
        )
        out.append(Send((to,), msg))

    def accept(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        user = session.user_id
        offer = self._offers.get(call.call_id)
        if offer is None or offer.offered_to != user:
            raise InvalidState("no transfer of this call is offered to you", field="call_id")
        if self._board.calls.call_id_of(user) is not None:
            raise Busy("you are already in a call")
        self._close(offer)
        out.append(
            self._board.facts.record(
                "transfer_accepted", now, call=call.call_id, by=user, offered_by=offer.offered_by
            )
        )
        self._board.calls.hand_over(call, offer.offered_by, user, now, out)

    def decline(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        offer = self._offers.get(call.call_id)
        if offer is None or offer.offered_to != session.user_id:
            raise InvalidState("no transfer of this call is offered to you", field="call_id")
        self._end(offer, "declined", session.user_id, now, out)

    def cancel(self, session: Session, call: Call, now: float, out: list[Action]) -> None:
        offer = self._offers.get(call.call_id)
        if offer is None or offer.offered_by != session.user_id:
            raise InvalidState("you have offered no transfer of this call", field="call_id")
        self._end(offer, "cancelled", session.user_id, now, out)

    # ---- what happens around them -------------------------------------------------------

    def expired(self, key: TransferExpiry, now: float, out: list[Action]) -> None:
        offer = self._offers.get(key.call_id)
        if offer is not None:
            self._end(offer, "expired", None, now, out)

    def call_ended(self, call_id: str, now: float, out: list[Action]) -> None:
        offer = self._offers.get(call_id)
        if offer is not None:
            self._end(offer, "ended", None, now, out)

    def signed_out(self, user: str, now: float, out: list[Action]) -> None:
        """`user` signs out: an offer made to them lapses (one they made ends with their
        call, through `call_ended`)."""
        offer = self.offered_to(user)
        if offer is not None:
            self._end(offer, "unavailable", user, now, out)

    def _end(
        self,
        offer: TransferOffer,
        outcome: p.TransferOutcome,
        by: str | None,
        now: float,
        out: list[Action],
    ) -> None:
        self._close(offer)
        out.append(
            self._board.facts.record(
                f"transfer_{outcome}",
                now,
                call=offer.call_id,
                by=by,
                offered_by=offer.offered_by,
                offered_to=offer.offered_to,
            )
        )
        told = tuple(sorted({offer.offered_by, offer.offered_to}))
        out.append(Send(told, p.TransferEnded(call_id=offer.call_id, outcome=outcome, by=by)))

    def _close(self, offer: TransferOffer) -> None:
        del self._offers[offer.call_id]
        self._offered_to.pop(offer.offered_to, None)
        self._deadlines.cancel(TransferExpiry(offer.call_id))
