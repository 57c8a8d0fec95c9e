"""Live calls shown to a conference: an operator pushes the call they are answering (the
officer's feed) into a conference they have joined, or a moderator shows one of their scope
(an emergency among them). The officer's video goes in the spotlight, and their audio is heard
while they are in it; the moderator may spotlight anyone else meanwhile, and back. The feed
ends when the call ends or someone takes it back (`unshare_call`).

A call an operator showed is shown on their word: when they leave the call (they hand it on
to another operator, or send it back to the queue) the feed ends with them, and the
moderators, that operator and the call's new operator are told (`feed_ended`). Showing it
again is the new operator's choice, or a moderator's. A moderator's own feed does not depend
on the call's operator and stays.

The officer does not join the conference: their call goes on as before, and the feed is what
the call's media server already receives (media.conference_room).

This module owns nothing of its own: the feeds are in each conference's record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from identity import Courts
from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.call import Call, CallState
from signalling.core.conference import (
    Conference,
    ConferenceStatus,
    Feed,
    check_revision,
    moderated,
)
from signalling.core.presence import Session
from signalling.errors import Forbidden, InvalidState, NotFound

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard

# Feeds shown to one conference at once: each is one more stream for the media server.
MAX_FEEDS: Final = 4


class Feeds:
    def __init__(self, board: Switchboard, courts: Courts) -> None:
        self._board = board
        self._courts = courts

    def share(self, session: Session, msg: p.ShareCall, now: float, out: list[Action]) -> None:
        board = self._board
        conf = board.conferences.get(msg.conference_id)
        user = session.user_id
        call = board.calls.table.get(msg.call_id)
        if call is None:
            raise NotFound("no such call", field="call_id")
        if user in conf.moderators:
            moderated(conf, user, msg.revision)
            if not self._courts.in_scope(session.identity, call.court):
                raise Forbidden("that call is outside your scope", field="call_id")
        else:
            if user not in conf.sites or user != call.operator:
                raise Forbidden(
                    "only a moderator, or the call's operator in the conference, may share it"
                )
            _running(conf)
            check_revision(conf, msg.revision)
        if call.state is not CallState.ACTIVE:
            raise InvalidState("the call is not answered", field="call_id")
        if call.call_id in conf.feeds:
            raise InvalidState("that call is shared already", field="call_id")
        if len(conf.feeds) >= MAX_FEEDS:
            raise InvalidState(f"{MAX_FEEDS} calls are shared already", field="call_id")
        feed = Feed(call.call_id, call.officer, call.emergency, user)
        conf.feeds[call.call_id] = feed
        conf.spotlight = call.officer
        out.append(
            board.facts.record(
                "call_shared",
                now,
                conference=conf.conference_id,
                call=call.call_id,
                officer=call.officer,
                emergency=call.emergency,
                by=user,
            )
        )
        self._changed(conf, out)

    def unshare(self, session: Session, msg: p.UnshareCall, now: float, out: list[Action]) -> None:
        conf = self._board.conferences.get(msg.conference_id)
        user = session.user_id
        feed = conf.feeds.get(msg.call_id)
        if user in conf.moderators:
            moderated(conf, user, msg.revision)
        elif feed is None or feed.by != user:
            raise Forbidden("only a moderator, or who shared the call, may take it back")
        else:
            _running(conf)
            check_revision(conf, msg.revision)
        if feed is None:
            raise NotFound("that call is not shared with this conference", field="call_id")
        self._take_back(conf, feed, "unshared", user, now, out)

    def operator_left(
        self,
        call: Call,
        user: str,
        reason: p.FeedEndReason,
        now: float,
        out: list[Action],
    ) -> None:
        """`user`, the operator of `call`, left it (`reason`): the feeds they shared of it
        end, unless they moderate that conference."""
        info = self._board.presence.info
        for conf in self._board.conferences.table.values():
            feed = conf.feeds.get(call.call_id)
            if feed is None or feed.by != user or user in conf.moderators:
                continue
            if conf.status is not ConferenceStatus.RUNNING:
                continue
            self._take_back(conf, feed, reason, user, now, out)
            told = {*conf.moderators_here(), user}
            if call.operator is not None:
                told.add(call.operator)
            msg = p.FeedEnded(
                conference_id=conf.conference_id,
                title=conf.title,
                call_id=call.call_id,
                officer=info(call.officer),
                reason=reason,
                by=info(user),
                to=info(call.operator) if call.operator is not None else None,
            )
            out.append(Send(tuple(sorted(told)), msg))

    def call_ended(self, call_id: str, now: float, out: list[Action]) -> None:
        """A call ended: no conference shows it any more."""
        for conf in self._board.conferences.table.values():
            feed = conf.feeds.get(call_id)
            if feed is not None and conf.status is ConferenceStatus.RUNNING:
                self._take_back(conf, feed, "call_ended", None, now, out)

    def _take_back(
        self,
        conf: Conference,
        feed: Feed,
        reason: str,
        by: str | None,
        now: float,
        out: list[Action],
    ) -> None:
        del conf.feeds[feed.call_id]
        if conf.spotlight == feed.officer:
            conf.spotlight = None
        out.append(
            self._board.facts.record(
                "call_unshared",
                now,
                conference=conf.conference_id,
                call=feed.call_id,
                reason=reason,
                by=by,
            )
        )
        self._changed(conf, out)

    def _changed(self, conf: Conference, out: list[Action]) -> None:
        conf.changed()
        self._board.conferences.broadcast(conf, out)


def _running(conf: Conference) -> None:
    if conf.status is not ConferenceStatus.RUNNING:
        raise InvalidState(f"conference is {conf.status.value}")
