"""The hub's pure core: a thin facade over the sub-cores that each own one part of the state.

Events go in (`connect`, `disconnect`, `handle(user, message, now)`, `handle_timeout(now)`),
actions come out (`Send`, `Record`, `Disconnect`, `Room`, `Negotiate`). Nothing here touches a
socket, a clock, a task or a random source: the driver passes the time, the session ids and a
call id factory, and arms one timer at `next_deadline()`.

The sub-cores, each the only owner of its state (docs/architecture.md has the map):

* `presence` (signalling.core.presence): sessions, sign-ins and sign-outs, heartbeats,
  positions, who is signed in where;
* `views` (signalling.core.views): who watches whom, the roster and its deltas;
* `dispatch` (signalling.core.dispatch): ringing, the queue, first accept wins, emergencies
  ahead of everything (pre-emption), with `placing` (signalling.core.placing) deciding
  whether a call may be placed;
* `calls` (signalling.core.calls): the call table, parties, supervisors, transfers;
* `conferences` (signalling.core.conferences): provincial conferences and their sites, with
  `invitations`, `speakers` (the hands and the floor) and `moderation` (the room and the
  chair) beside it, and `stages` (signalling.core.stage) turning each running conference
  into the media room its media server follows, and `feeds` (signalling.core.feeds) showing
  live calls to a conference;
* `instructions` (signalling.core.instructions): text instructions to officers and their
  delivered and read receipts;
* `watches` (signalling.core.watches): the video wall's watches of officers' cameras;
* `facts` (signalling.core.facts): the shape of every record that goes to the trace.

They reach each other through this facade, which routes each client message to the sub-core
that owns it (`handle`) and each deadline to the one that set it (`handle_timeout`). A new
capability is a new sub-core, with its messages routed here and its deadlines typed like the
others, as the conferences were added beside the calls.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection
from typing import Final

from identity import Courts, Identity, Role
from signalling import protocol as p
from signalling.core import supervision
from signalling.core.actions import Action, Disconnect, Send
from signalling.core.alarms import AlarmDue, Alarms, EmergencyFacts
from signalling.core.availability import Availability
from signalling.core.call import Call, call_info
from signalling.core.calls import Calls
from signalling.core.conferences import AdoptionGrace, ChairGrace, Conferences, ConferenceStart
from signalling.core.deadlines import Deadlines
from signalling.core.dispatch import Dispatch, QueueTimeout, RingTimeout, SendBackHold
from signalling.core.facts import CallFacts, ConferenceFacts, Facts, WaitingCall
from signalling.core.feeds import Feeds
from signalling.core.instructions import InstructionExpiry, Instructions
from signalling.core.invitations import InvitationExpiry, Invitations
from signalling.core.join_pace import JoinTurn
from signalling.core.moderation import Moderation
from signalling.core.moderator_view import ModeratorDelta, ModeratorViews
from signalling.core.placing import Placing
from signalling.core.presence import Grace, Presence, Session, SessionKeys
from signalling.core.queues import QueueViews
from signalling.core.speakers import FloorTimer, Speakers
from signalling.core.stage import Stages
from signalling.core.transfers import TransferExpiry, Transfers
from signalling.core.views import PositionDue, Views
from signalling.core.watches import Watches, WatchFacts, WatchLimits
from signalling.errors import CLOSE_FORBIDDEN, CLOSE_REPLACED, Forbidden, InvalidState
from signalling.protocol import EndReason
from signalling.settings import (
    CallsConfig,
    ConferencesConfig,
    EmergencyConfig,
    InstructionsConfig,
    PresenceConfig,
)

# The most frequent messages, which never change who is free or what rings: the scan of
# every call that `Dispatch.run` makes is skipped for them.
_NO_DISPATCH: Final = (
    p.Heartbeat,
    p.Position,
    p.GetRoster,
    p.GetOperators,
    p.GetQueue,
    *p.MEDIA_MESSAGES,
    *p.CONFERENCE_MESSAGES,
    *p.INSTRUCTION_MESSAGES,
    p.Watch,
    p.Unwatch,
    p.WallLayout,
)
# Messages that never change a conference's media: `Stages.sync` is skipped for them.
_NO_MEDIA_CHANGE: Final = (
    p.Heartbeat,
    p.Position,
    p.GetRoster,
    *p.MEDIA_MESSAGES,
    *p.INSTRUCTION_MESSAGES,
    p.Watch,
    p.Unwatch,
    p.WallLayout,
)


class Switchboard:
    def __init__(
        self,
        *,
        courts: Courts,
        calls: CallsConfig,
        presence: PresenceConfig,
        node_id: str,
        new_call_id: Callable[[], str],
        media: bool = False,
        recording: bool = False,
        conferences: ConferencesConfig | None = None,
        new_conference_id: Callable[[], str] | None = None,
        instructions: InstructionsConfig | None = None,
        new_instruction_id: Callable[[], str] | None = None,
        watches: WatchLimits | None = None,
        new_watch_id: Callable[[], str] | None = None,
        emergency: EmergencyConfig | None = None,
    ) -> None:
        self.courts = courts
        self.node_id = node_id
        self.deadlines = Deadlines()
        self.facts = Facts(node_id)
        self.presence = Presence(self, courts, presence, self.deadlines)
        self.views = Views(self, courts, presence.position_interval_s, self.deadlines)
        self.calls = Calls(self, courts, calls, new_call_id, media=media)
        self.dispatch = Dispatch(self, courts, calls, self.deadlines)
        self.placing = Placing(self, courts, calls)
        conferences = conferences if conferences is not None else ConferencesConfig()
        self.conferences = Conferences(
            self,
            courts,
            conferences,
            new_conference_id if new_conference_id is not None else _numbered("m"),
            self.deadlines,
        )
        self.invitations = Invitations(self, conferences, self.deadlines)
        self.moderation = Moderation(self, courts, conferences, self.deadlines)
        self.speakers = Speakers(self, courts, conferences, self.deadlines)
        self.stages = Stages(self, media=media, recording=recording)
        self.moderator_views = ModeratorViews(self, conferences.moderator_delta_s, self.deadlines)
        self.feeds = Feeds(self, courts)
        self.instructions = Instructions(
            self,
            courts,
            instructions if instructions is not None else InstructionsConfig(),
            self.deadlines,
            new_instruction_id if new_instruction_id is not None else _numbered("i"),
        )
        self.watches = Watches(
            self,
            courts,
            watches if watches is not None else WatchLimits(),
            new_watch_id if new_watch_id is not None else _numbered("w"),
            media=media,
        )
        # The call flow at the console: transfers offered and accepted, operators away.
        self.transfers = Transfers(self, calls, self.deadlines)
        self.availability = Availability(self, courts)
        self.queues = QueueViews(self, courts)
        # Emergencies nobody took on: repeated, then escalated to the court above.
        self.alarms = Alarms(
            self, courts, emergency if emergency is not None else EmergencyConfig(), self.deadlines
        )

    # ---- queries ------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self.deadlines.next()

    def session(self, user: str) -> Session | None:
        return self.presence.session(user)

    def live_calls(self) -> list[Call]:
        return self.calls.live()

    def online_officers(self, court: str | None = None) -> list[str]:
        return self.presence.online_officers(court)

    def queue(self, court: str) -> list[Call]:
        return self.dispatch.queue(court)

    def calls_of(self, user: str) -> list[p.CallInfo]:
        """Every call `user` has a part in (ringing at them, monitored, or theirs), by id:
        what their welcome lists."""
        calls = self.calls
        ids = set(self.dispatch.ringing_at(user)) | calls.monitoring(user)
        mine = calls.call_id_of(user)
        if mine is not None:
            ids.add(mine)
        info = self.presence.info
        return [call_info(calls.table[c], info) for c in sorted(ids)]

    # ---- connections --------------------------------------------------------------------

    def connect(
        self,
        identity: Identity,
        *,
        keys: SessionKeys,
        device: str,
        app_version: str,
        resume_token: str | None,
        now: float,
    ) -> tuple[Session, list[Action]]:
        """A connection authenticated as `identity` opened. Returns the session it serves."""
        session, out = self.presence.connect(
            identity,
            keys=keys,
            device=device,
            app_version=app_version,
            resume_token=resume_token,
            now=now,
        )
        # After the welcome: what the officer has not read, sent again.
        self.instructions.signed_in(session, now, out)
        self.moderator_views.sync(now, out)
        self.stages.sync(out)
        self.availability.sync(out)
        self.queues.sync(out)
        return session, out

    def disconnect(self, user: str, session_id: str, now: float) -> list[Action]:
        out = self.presence.disconnect(user, session_id, now)
        self.moderator_views.sync(now, out)
        self.stages.sync(out)
        self.availability.sync(out)
        self.queues.sync(out)
        return out

    # ---- client messages ----------------------------------------------------------------

    def handle(self, user: str, msg: p.ClientMessage, now: float) -> list[Action]:
        """Carry out one decoded client message. Raises a ClientError (and changes nothing)
        when the message may not be carried out."""
        session = self.presence.session(user)
        if session is None or not session.connected:
            raise InvalidState("no live session")
        out: list[Action] = []
        self._route(session, msg, now, out)
        if not isinstance(msg, _NO_DISPATCH):
            self.dispatch.run(now, out)
        self.moderator_views.sync(now, out)
        if not isinstance(msg, _NO_MEDIA_CHANGE):
            self.stages.sync(out)
        if not isinstance(msg, _NO_DISPATCH):
            self.availability.sync(out)
            self.queues.sync(out)
        return out

    def _route(self, session: Session, msg: p.ClientMessage, now: float, out: list[Action]) -> None:
        """Hand `msg` to the sub-core that owns what it asks for."""
        user = session.user_id
        calls, dispatch, placing = self.calls, self.dispatch, self.placing
        match msg:
            case p.Heartbeat():
                out.append(Send((user,), self.presence.heartbeat(session, msg, now)))
                return
            case p.Position():
                out.extend(self.views.position(session, msg, now))
                return
            case p.GetRoster():
                out.append(Send((user,), self.views.roster(session, msg)))
                return
            case p.CallCenter():
                _require(session, Role.OFFICER, "only officers call the center")
                placing.call_center(session, msg.case_number, False, msg.id, now, out)
                return
            case p.Emergency():
                _require(session, Role.OFFICER, "only officers raise emergencies")
                placing.emergency(session, msg, now, out)
                return
            case p.CallOfficer():
                placing.call_officer(session, msg, now, out)
                return
            case p.Watch():
                self.watches.watch(session, msg, now, out)
                return
            case p.Unwatch():
                self.watches.unwatch(session, msg, now, out)
            case p.WallLayout():
                self.watches.layout(session, msg, out)
            case p.Offer() | p.Answer() | p.IceCandidate() | p.Snapshot():
                if msg.call_id in self.conferences.table:
                    out.append(self.stages.negotiate(session, msg))
                elif msg.call_id in self.watches.table:
                    out.append(self.watches.negotiate(session, msg))
                else:
                    out.append(calls.negotiate(session, msg))
                return
            case _ if isinstance(msg, p.CONFERENCE_MESSAGES):
                self._route_conference(session, msg, now, out)
                return
            case p.SendInstruction():
                self.instructions.send(session, msg, now, out)
                return
            case p.ListInstructions():
                out.append(Send((user,), self.instructions.listed(session, msg)))
                return
            case p.InstructionReceipt():
                self.instructions.receipt(session, msg, now, out)
            case _ if isinstance(msg, p.CALLFLOW_CLIENT_MESSAGES):
                self._route_callflow(session, msg, now, out)
                return
            case p.Accept():
                dispatch.accept(session, calls.get(msg.call_id), now, out)
            case p.Decline():
                dispatch.decline(session, calls.get(msg.call_id), now, out)
            case p.Cancel():
                placing.cancel(session, calls.get(msg.call_id), now, out)
            case p.EmergencyNote():
                placing.emergency_note(session, msg, now, out)
            case p.ClearEmergency():
                placing.clear_emergency(session, msg, now, out)
            case p.AcknowledgeEmergency():
                placing.acknowledge_emergency(session, msg.officer, now, out)
            case p.Hangup():
                calls.hangup(session, calls.get(msg.call_id), now, out)
            case p.JoinCall():
                calls.join(session, calls.get(msg.call_id), msg.covert, now, out)
            case p.LeaveCall():
                calls.leave(session, calls.get(msg.call_id), now, out)
            case p.Transfer():
                self.transfers.offer(session, calls.get(msg.call_id), msg.to, now, out)
        out.append(Send((user,), p.Ack(ref=msg.id)))

    def _route_callflow(
        self, session: Session, msg: p.ClientMessage, now: float, out: list[Action]
    ) -> None:
        calls, transfers, user = self.calls, self.transfers, session.user_id
        match msg:
            case p.GetOperators():
                out.append(Send((user,), self.availability.operators(session, msg)))
                return
            case p.GetQueue():
                out.append(Send((user,), self.queues.queue(session, msg)))
                return
            case p.AcceptTransfer():
                transfers.accept(session, calls.get(msg.call_id), now, out)
            case p.DeclineTransfer():
                transfers.decline(session, calls.get(msg.call_id), now, out)
            case p.CancelTransfer():
                transfers.cancel(session, calls.get(msg.call_id), now, out)
            case p.SetAvailability():
                self.availability.set(session, msg, now, out)
            case p.SendBack():
                self.dispatch.send_back(session, calls.get(msg.call_id), now, out)
            case p.InviteSupervisor():
                supervision.invite_supervisors(self, session, calls.get(msg.call_id), now, out)
            case p.SetCamera():
                supervision.set_camera(session, calls.get(msg.call_id), msg.on, out)
        out.append(Send((user,), p.Ack(ref=msg.id)))

    def _route_conference(
        self, session: Session, msg: p.ClientMessage, now: float, out: list[Action]
    ) -> None:
        conferences, moderation, speakers = self.conferences, self.moderation, self.speakers
        user = session.user_id
        match msg:
            case p.CreateConference():
                conferences.create(session, msg, now, out)
                return
            case p.ListConferences():
                out.append(Send((user,), conferences.listed(session, msg)))
                return
            case p.JoinConference():
                conferences.join(session, msg, now, out)
                return
            case p.StartConference():
                conferences.start_early(session, msg, now, out)
            case p.DeclineConference():
                self.invitations.decline(session, msg, now, out)
            case p.LeaveConference():
                conferences.leave(session, msg, now, out)
            case p.RaiseHand():
                speakers.raise_hand(session, msg, now, out)
            case p.LowerHand():
                speakers.lower_hand(session, msg, now, out)
            case p.ReleaseFloor():
                speakers.release(session, msg, now, out)
            case p.GrantFloor():
                speakers.grant(session, msg, now, out)
            case p.RevokeFloor():
                speakers.revoke(session, msg, now, out)
            case p.MuteAll():
                speakers.mute_all(session, msg, now, out)
            case p.UnmuteAll():
                speakers.unmute_all(session, msg, now, out)
            case p.Spotlight():
                moderation.spotlight(session, msg, now, out)
            case p.RemoveSite():
                moderation.remove(session, msg, now, out)
            case p.LockConference():
                moderation.lock(session, msg, now, out)
            case p.RecordConference():
                moderation.record(session, msg, now, out)
            case p.ShareCall():
                self.feeds.share(session, msg, now, out)
            case p.UnshareCall():
                self.feeds.unshare(session, msg, now, out)
            case p.SetFloor():
                speakers.set_floor(session, msg, now, out)
            case p.NameModerator():
                moderation.name_moderator(session, msg, now, out)
            case p.RemoveModerator():
                moderation.remove_moderator(session, msg, now, out)
            case p.InviteToConference():
                self.invitations.invite(session, msg, now, out)
            case p.WithdrawInvitation():
                self.invitations.withdraw(session, msg, now, out)
            case p.HandOver():
                moderation.hand_over(session, msg, now, out)
            case p.EndConference():
                moderation.end(session, msg, now, out)
        out.append(Send((user,), p.Ack(ref=msg.id)))

    def media_call(self, user: str, call_id: str) -> Call:
        """The active call `user` may negotiate media for; raises otherwise."""
        return self.calls.media_call(user, call_id)

    # ---- timeouts -----------------------------------------------------------------------

    def handle_timeout(self, now: float) -> list[Action]:
        out: list[Action] = []
        for key in self.deadlines.pop_due(now):
            match key:
                case Grace(user=user):
                    self.presence.grace_expired(user, now, out)
                case RingTimeout() | QueueTimeout():
                    self.dispatch.timed_out(key, now, out)
                case PositionDue(user=user):
                    out.extend(self.views.position_due(user, now))
                case ConferenceStart(conference_id=cid):
                    self.conferences.start_due(cid, now, out)
                case InvitationExpiry(conference_id=cid):
                    self.invitations.expired(cid, now, out)
                case ChairGrace(conference_id=cid):
                    self.moderation.chair_grace_over(cid, now, out)
                case AdoptionGrace(conference_id=cid):
                    self.conferences.adoption_grace_over(cid, now, out)
                case FloorTimer():
                    self.speakers.timer_fired(key, now, out)
                case ModeratorDelta():
                    self.moderator_views.flush_due(key, now, out)
                case JoinTurn():
                    self.conferences.turn_due(key, now, out)
                case InstructionExpiry():
                    self.instructions.expired(key, now, out)
                case TransferExpiry():
                    self.transfers.expired(key, now, out)
                case SendBackHold():
                    self.dispatch.hold_over(key)
                case AlarmDue():
                    self.alarms.due(key, now, out)
        self.dispatch.run(now, out)
        self.moderator_views.sync(now, out)
        self.stages.sync(out)
        self.availability.sync(out)
        self.queues.sync(out)
        return out

    # ---- many nodes (signalling/cluster) ------------------------------------------------

    def adopt(
        self,
        identity: Identity,
        *,
        keys: SessionKeys,
        device: str,
        app_version: str,
        now: float,
        emergency: EmergencyFacts | None = None,
    ) -> list[Action]:
        """A gateway reports a live connection of session `keys.session_id` (a resync: after
        this node became the authority, or after messages between them may have been lost).

        A session we know under that id is brought up to date (back from away, if the
        close we heard of was the lost connection's) and welcomed again with the current
        state. One we do not know is taken on as it is: its sign-in was recorded by the
        authority that opened it, so it is recorded as `session_adopted`, not counted again;
        the `emergency` the dead authority left for it, if any, is carried on with it, the
        officer flagged in the very first roster update (docs/cluster.md
        *Failure*). A report of a session the user has since replaced is answered by
        closing it."""
        user = identity.user_id
        old = self.presence.session(user)
        if old is not None and old.session_id == keys.session_id:
            if old.connected:
                out: list[Action] = [
                    Send((user,), self.presence.welcome(old, resumed=True, now=now))
                ]
                # Pushes may have been lost with the messages that made this resync.
                self.instructions.signed_in(old, now, out)
                return out
            _, out = self.connect(
                identity,
                keys=keys,
                device=device,
                app_version=app_version,
                resume_token=old.resume_token,
                now=now,
            )
            return out
        if old is not None:
            return [Disconnect(user, keys.session_id, CLOSE_REPLACED, "signed in elsewhere")]
        out = []
        adopted = self.presence.open(
            identity,
            keys,
            device,
            app_version,
            "session_adopted",
            now,
            out,
            resumed=True,
            carried=emergency,
        )
        if adopted.emergency:
            self.placing.show_escalated(adopted, out)
        self.instructions.signed_in(adopted, now, out)
        self.moderator_views.sync(now, out)
        self.stages.sync(out)
        return out

    def lose(self, user: str, session_id: str, now: float) -> list[Action]:
        """The node serving `session_id` died: its calls end with `node_lost` at once and
        the user signs out (no grace: their connection is known gone, and a client that
        reconnects elsewhere in time has resumed already, under the same session id but
        from a live node, so this is not called for it)."""
        out: list[Action] = []
        session = self.presence.session(user)
        if session is None or session.session_id != session_id:
            return out
        call = self.calls.call_of(user)
        if call is not None:
            self.calls.end(call, EndReason.NODE_LOST, user, now, out)
        self.presence.sign_out(session, "node_lost", now, out)
        self.dispatch.run(now, out)
        self.moderator_views.sync(now, out)
        self.stages.sync(out)
        self.availability.sync(out)
        self.queues.sync(out)
        return out

    def revoke(self, user: str, session_id: str, reason: str, now: float) -> list[Action]:
        """`user` may no longer be signed in (their account was disabled): their session
        signs out at once with `reason` (their calls end as for any sign-out) and their
        connection is closed `4403`, where it may not come back. Nothing for a session
        since replaced or gone."""
        out: list[Action] = []
        session = self.presence.session(user)
        if session is None or session.session_id != session_id:
            return out
        self.presence.sign_out(session, reason, now, out)
        out.append(Disconnect(user, session_id, CLOSE_FORBIDDEN, reason))
        self.dispatch.run(now, out)
        self.stages.sync(out)
        self.availability.sync(out)
        self.queues.sync(out)
        return out

    def call_facts(self, call_id: str) -> CallFacts | None:
        """What the next authority needs to take a live call over, or end it, should this
        one die with it (the cluster's journal)."""
        return self.calls.facts(call_id)

    def conference_facts(self, conference_id: str) -> ConferenceFacts | None:
        """What the next authority needs to end a conference, should this one die with it."""
        return self.conferences.facts(conference_id)

    def watch_facts(self, watch_id: str) -> WatchFacts | None:
        """What the next authority needs to close an open watch in the trace, should this
        one die with it."""
        return self.watches.facts(watch_id)

    def take_over(self, waiting: WaitingCall, now: float) -> list[Action]:
        return self.placing.take_over(waiting, now)

    def emergency_facts(self, officer: str) -> EmergencyFacts | None:
        """What the next authority needs to carry on `officer`'s raised emergency, should
        this one die (the cluster's journal)."""
        return self.alarms.facts(officer)

    def carry_over_emergency(self, facts: EmergencyFacts, now: float) -> list[Action]:
        return self.placing.carry_over_emergency(facts, now)

    def session_facts(self, user: str) -> dict[str, object] | None:
        """The data of the `sign_out` record `user`'s session would have if it were lost
        with its node now (the cluster's journal, as `call_facts`)."""
        session = self.presence.session(user)
        if session is None:
            return None
        return self.presence.signed_out_data(session, "node_lost")

    def end_call(self, call_id: str, reason: EndReason, now: float) -> list[Action]:
        """End a live call from outside (its media node died): everyone in it is told."""
        out: list[Action] = []
        call = self.calls.table.get(call_id)
        if call is not None and call.is_live():
            self.calls.end(call, reason, None, now, out)
            self.dispatch.run(now, out)
        return out

    def shutdown(self, now: float, users: Collection[str] | None = None) -> list[Action]:
        """The node is stopping: end every call and sign everyone out (or only `users` and
        the sessions away: the rest are connected to other nodes, and the next authority
        takes their sessions on; an away session has no node to report it, and if this is
        the last node out nobody would ever sign it out), so the trace holds no sign-in
        without its sign-out and no call without its end."""
        out: list[Action] = []
        self.watches.end_all(now, out)
        self.conferences.end_all("shutdown", now, out)
        for call in self.calls.live():
            self.calls.end(call, EndReason.SHUTDOWN, None, now, out)
        for session in list(self.presence.sessions.values()):
            if users is None or session.user_id in users or not session.connected:
                self.presence.sign_out(session, "shutdown", now, out)
        self.moderator_views.sync(now, out)
        self.stages.sync(out)
        return out


def _numbered(prefix: str) -> Callable[[], str]:
    """Ids `<prefix>1`, `<prefix>2`, ... (the driver gives random ones; tests keep these)."""
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def _require(session: Session, role: Role, reason: str) -> None:
    if session.role is not role:
        raise Forbidden(reason)
