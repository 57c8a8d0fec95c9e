"""The authority's state beside its switchboard, and what it decides on what gateways say.

The node holding the lease runs the province's `Switchboard`. Beside it this module keeps
where each user's connection is (`where`, `arriving`), which session a gateway's drawn id
stands for (`aliases`) and which node relays each call's media (`media_nodes`), and applies
to both what the inbox brings (`signalling.cluster.wire`): a connection, its close, a
report for a resync; and what the registry says: a node died. It also decides what to do
with the journal a dead authority left (its calls end, its unreported sessions sign out).

Pure, like the switchboard: time is an argument, and nothing here touches Redis, a task or
a log (import-linter keeps it so, pyproject.toml). What must happen beyond the core comes
back as data: the core's actions, for the `CoreDriver`, and `DisconnectOn`, for a gateway;
`signalling.cluster.leader` performs both.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from identity import Identity, Role
from sessions.recorder import TraceEvent
from signalling import protocol as p
from signalling.cluster import wire as w
from signalling.cluster.nodes import OVERLOADED_CPU, NodeRecord
from signalling.core.actions import Action, Record, Room, Send
from signalling.core.alarms import EmergencyFacts
from signalling.core.conference_snapshot import SnapshotError, restored
from signalling.core.facts import WaitingCall
from signalling.core.presence import SessionKeys
from signalling.core.switchboard import Switchboard
from signalling.errors import CLOSE_REPLACED
from signalling.protocol import EndReason

_T = TypeVar("_T")

# A node's id and its run (its start time): where a connection is.
Location = tuple[str, float]


@dataclass(frozen=True, slots=True)
class DisconnectOn:
    """Close `user`'s connection of session `session_id` on gateway `node`: a connection the
    core no longer knows (replaced, or resumed elsewhere, since), so no `Disconnect` of the
    core's would reach it."""

    node: str
    user: str
    session_id: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Reconciled:
    """A gateway's report applied: the core's actions, and the stale connections to close."""

    actions: list[Action]
    closes: list[DisconnectOn]


@dataclass(frozen=True, slots=True)
class NodeLost:
    """A node's death applied: the core's actions, and how many sessions it took along."""

    actions: list[Action]
    sessions: int


@dataclass(frozen=True, slots=True)
class InheritedCalls:
    """The calls a dead authority left in the journal: `actions` end the live ones (recorded,
    their members told), whose fields `ended` are to be deleted; `waiting` ones are taken
    over once their officers' sessions are (`take_over_waiting`)."""

    actions: list[Action]
    ended: list[str]
    waiting: list[WaitingCall]


@dataclass(frozen=True, slots=True)
class InheritedConferences:
    """The conferences a dead authority left in the journal: `actions` carry on those
    `adopted` and end the others (recorded, their sites told), whose fields `ended` are to
    be deleted."""

    actions: list[Action]
    ended: list[str]
    adopted: list[str] = field(default_factory=list)
    # id -> why its snapshot could not be restored (it ended instead), for the log.
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InheritedSessions:
    """The sessions a dead authority left that no gateway reported: `actions` record them
    signed out, and their fields `closed` are to be deleted."""

    actions: list[Action]
    closed: list[str]


@dataclass(frozen=True, slots=True)
class InheritedWatches:
    """The watches a dead authority left in the journal: `actions` close them (each
    watcher's stop recorded `node_lost`, watchers and officer told); `ended` are the fields
    to delete; `rooms` maps each of them to its officer, for the media nodes to close its
    room (the dead authority alone knew which node held it)."""

    actions: list[Action]
    ended: list[str]
    rooms: dict[str, str]


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A journal entry skipped: `journal` names the hash, `key` its field."""

    journal: str
    key: str
    error: str


@dataclass
class AuthorityState:
    """What the authority holds: the core, and where each of its users is."""

    core: Switchboard
    # user -> (node, run) of the connection the core last welcomed.
    where: dict[str, Location] = field(default_factory=dict)
    # user -> (node, run) of a connection whose welcome is still to be delivered.
    arriving: dict[str, Location] = field(default_factory=dict)
    # (user, session id a gateway drew) -> the session it resumed, for that gateway's close.
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    # call -> the node relaying its media (a conference's: its home node).
    media_nodes: dict[str, str] = field(default_factory=dict)
    # conference -> its sites over the nodes (docs/cluster.md, *One conference over every
    # node*), for those placed with the cascade.
    spreads: dict[str, Spread] = field(default_factory=dict)
    # user -> where the connections are that a resume replaced while they were open: the
    # core counts each until its close is reported, which a dead node never sends.
    superseded: dict[str, list[Location]] = field(default_factory=dict)
    # Sessions adopted from gateways' reports since the last `inherit_sessions`: taken over
    # from a dead authority, so not to be signed out as left by it.
    adopted: set[str] = field(default_factory=set)
    # A dead authority's emergencies (officer -> as it left them; None: unreadable), held
    # from before the first resync until `inherit_emergencies`: each is flagged on its
    # officer's session as the session is adopted, so that it is never shown unflagged.
    held_emergencies: dict[str, EmergencyFacts | None] = field(default_factory=dict)
    # Journal entries the inheritance could not read (which journal, field, why), for the
    # journal to log and delete: one bad entry must not stop the rest being inherited.
    unreadable: list[Unreadable] = field(default_factory=list)

    # ---- what gateways say ------------------------------------------------------------------

    def connect(self, envelope: w.Connect, now: float) -> list[Action]:
        """A connection opened on `envelope.node`: its session is opened or resumed; the
        user is there from their welcome on (`welcomed`)."""
        info = envelope.conn
        before = self.core.session(info.user)
        open_before = before is not None and before.connected
        previous = self.arriving.get(info.user) or self.where.get(info.user)
        self.arriving[info.user] = (envelope.node, envelope.run)
        session, actions = self.core.connect(
            identity_of(info),
            keys=SessionKeys(info.session_id, info.resume_token),
            device=info.device,
            app_version=info.app_version,
            resume_token=envelope.resume,
            now=now,
        )
        if session.session_id != info.session_id:
            self.aliases[(info.user, info.session_id)] = session.session_id
        if session is before and open_before and previous is not None:
            # Resumed while its connection was open: that one's close is still to come.
            self.superseded.setdefault(info.user, []).append(previous)
        return actions

    def admits(self, envelope: w.ClientMessage) -> bool:
        """Whether the core should hear this message: not if it comes from a connection
        replaced since, whose close is on its way (like the frames of a replaced connection
        on one node, it may not act)."""
        current = self.core.session(envelope.user)
        session_id = self.aliases.get((envelope.user, envelope.session_id), envelope.session_id)
        return current is None or current.session_id == session_id

    def closed(self, envelope: w.Closed, now: float) -> list[Action]:
        user = envelope.user
        session_id = self.aliases.pop((user, envelope.session_id), envelope.session_id)
        self._forget_superseded(user, lambda loc: loc[0] == envelope.node, at_most=1)
        if self.where.get(user, ("", 0.0))[0] == envelope.node:
            current = self.core.session(user)
            if current is None or current.session_id == session_id:
                del self.where[user]
        return self.core.disconnect(user, session_id, now)

    def revoked(self, envelope: w.Revoked, now: float) -> list[Action]:
        """A gateway found a connection whose user may no longer be signed in."""
        user = envelope.user
        session_id = self.aliases.get((user, envelope.session_id), envelope.session_id)
        return self.core.revoke(user, session_id, envelope.reason, now)

    def reconcile(self, report: w.Report, now: float) -> Reconciled:
        """A gateway's every connection (a resync): sessions the core knows are welcomed
        again, unknown ones adopted, stale ones closed, and those the gateway no longer
        serves have their close applied (it was lost on the way)."""
        core = self.core
        out: list[Action] = []
        closes: list[DisconnectOn] = []
        reported = {c.user: c for c in report.conns}
        for user, (node, _) in list(self.where.items()):
            if node != report.node:
                continue
            info = reported.get(user)
            session = core.session(user)
            if info is None or session is None or session.session_id != info.session_id:
                # That node no longer serves it: its close was lost on the way.
                del self.where[user]
                if session is not None and session.connected:
                    out.extend(core.disconnect(user, session.session_id, now))
        for info in report.conns:
            session = core.session(info.user)
            location = self.where.get(info.user)
            if session is not None and session.session_id != info.session_id:
                # Replaced since (by a connection elsewhere): close the stale one.
                closes.append(_replaced(report.node, info, "signed in elsewhere"))
                continue
            if session is not None and location is not None and location[0] != report.node:
                # Resumed on another node since; this node's close of it is on its way.
                closes.append(_replaced(report.node, info, "resumed elsewhere"))
                continue
            self.arriving[info.user] = (report.node, report.run)
            emergency = None
            if session is None:
                self.adopted.add(info.session_id)
                emergency = self._held_emergency(info)
            keys = SessionKeys(info.session_id, info.resume_token)
            out.extend(
                core.adopt(
                    identity_of(info),
                    keys=keys,
                    device=info.device,
                    app_version=info.app_version,
                    now=now,
                    emergency=emergency,
                )
            )
        return Reconciled(out, closes)

    # ---- what the registry says -------------------------------------------------------------

    def node_lost(self, node_id: str, current_run: float | None, now: float) -> NodeLost:
        """`node_id` died (or restarted: `current_run` is its new run, whose users stay):
        the sessions it served lose their calls and sign out (`node_lost`), and so end the
        calls whose media it relayed.

        A session is the dead node's when its latest connection is there: the one whose
        welcome is on its way (`arriving`) if any, else the one welcomed (`where`). So a
        user who resumed, or signed in again, on a live node before the death was noticed
        is left alone even before their welcome went out (the session replaced by a new
        one was signed out `replaced` when it was); and a user whose welcome was still on
        its way through the dead node is signed out, as nobody alive serves them."""
        core = self.core

        def on_dead(location: Location | None) -> bool:
            return location is not None and location[0] == node_id and location[1] != current_run

        actions: list[Action] = []
        lost = 0
        users = {u for u, loc in self.where.items() if on_dead(loc)}
        users |= {u for u, loc in self.arriving.items() if on_dead(loc)}
        for user in sorted(users):
            latest = self.arriving.get(user) or self.where.get(user)
            if on_dead(self.where.get(user)):
                del self.where[user]
            if on_dead(self.arriving.get(user)):
                del self.arriving[user]
            session = core.session(user)
            if not on_dead(latest) or session is None:
                continue
            lost += 1
            actions.extend(core.lose(user, session.session_id, now))
        for user in list(self.superseded):
            # Connections a resume elsewhere replaced: closed with their node.
            for _ in range(self._forget_superseded(user, on_dead)):
                session = core.session(user)
                if session is not None:
                    actions.extend(core.disconnect(user, session.session_id, now))
        for call_id, node in list(self.media_nodes.items()):
            if node == node_id:
                actions.extend(core.end_call(call_id, EndReason.NODE_LOST, now))
        return NodeLost(actions, lost)

    def _forget_superseded(
        self, user: str, which: Callable[[Location], bool], at_most: int | None = None
    ) -> int:
        """Drop `user`'s superseded connections `which` holds for (`at_most` of them);
        returns how many were dropped."""
        locations = self.superseded.get(user)
        if not locations:
            return 0
        kept: list[Location] = []
        dropped = 0
        for loc in locations:
            if which(loc) and (at_most is None or dropped < at_most):
                dropped += 1
            else:
                kept.append(loc)
        if kept:
            self.superseded[user] = kept
        else:
            del self.superseded[user]
        return dropped

    # ---- what routing needs -----------------------------------------------------------------

    def welcomed(self, users: Iterable[str]) -> None:
        """A welcome goes to `users`: each is, from here on, where their arriving connection
        is (what was said before, to a connection it replaces, went to the old node)."""
        for user in users:
            arrival = self.arriving.pop(user, None)
            if arrival is not None:
                self.where[user] = arrival

    def media_node(self, call_id: str, alive: Sequence[NodeRecord], fallback: str) -> str:
        """The node relaying `call_id`'s media, chosen among `alive` when first asked."""
        node = self.media_nodes.get(call_id)
        if node is None:
            rooms = collections.Counter(self.media_nodes.values())
            node = pick_media_node(alive, rooms, fallback)
            self.media_nodes[call_id] = node
        return node

    # ---- what a dead authority left ---------------------------------------------------------

    def inherit_calls(self, journal: Mapping[str, bytes], now: float) -> InheritedCalls:
        """The dead authority's journal of calls (call id -> `wire.JournalCall`): the calls
        this core does not have end `node_lost` now; waiting ones are kept for later."""
        actions: list[Action] = []
        ended: list[str] = []
        waiting: list[WaitingCall] = []
        for call_id, value in journal.items():
            if self.core.calls.table.get(call_id) is not None:
                continue
            entry = self._entry("calls", call_id, value, w.decode_journal_call)
            if entry is None:
                continue
            if entry.waiting is not None:
                # Taken over once its officer's session is (after the resync).
                waiting.append(entry.waiting)
                continue
            actions.append(Record(TraceEvent(kind="call_ended", at=now, data=entry.ended)))
            message = p.CallEnded(call_id=call_id, reason=EndReason.NODE_LOST, by=None)
            actions.append(Send(tuple(entry.notify), message))
            ended.append(call_id)
        return InheritedCalls(actions, ended, waiting)

    def inherit_conferences(
        self,
        journal: Mapping[str, bytes],
        now: float,
        *,
        media: Mapping[str, bytes] | None = None,
        alive: Sequence[str] = (),
        new_key: Callable[[], bytes] | None = None,
    ) -> InheritedConferences:
        """The dead authority's journal of conferences (id -> `wire.JournalConference`).
        Each with a snapshot this core can restore is carried on here (`conference_adopted`,
        docs/cluster.md *Failure*), its media kept where it was on the nodes still `alive`
        (`media`: id -> `wire.JournalMedia`), a cascade's under a key from `new_key`; the
        others end `node_lost` now, their sites told."""
        actions: list[Action] = []
        ended: list[str] = []
        adopted: list[str] = []
        refused: dict[str, str] = {}
        # Conference -> its members whose media node died with the authority (None: all).
        restarts: list[tuple[str, frozenset[str] | None]] = []
        for conference_id, value in journal.items():
            if conference_id in self.core.conferences.table:
                continue
            entry = self._entry("conferences", conference_id, value, w.decode_journal_conference)
            if entry is None:
                continue
            if entry.snapshot is not None:
                try:
                    conf = restored(entry.snapshot, now)
                except SnapshotError as exc:
                    refused[conference_id] = str(exc)
                else:
                    if conf.conference_id == conference_id:
                        moved = self._place_adopted(conference_id, media, alive, new_key)
                        self.core.conferences.adopt(conf, now, actions)
                        adopted.append(conference_id)
                        if moved is not None:
                            restarts.append((conference_id, moved))
                        continue
            actions.append(Record(TraceEvent(kind="conference_ended", at=now, data=entry.ended)))
            message = p.ConferenceEnded(conference_id=conference_id, reason="node_lost", by=None)
            actions.append(Send(tuple(entry.notify), message))
            ended.append(conference_id)
        if adopted:
            # Their rooms, to their media nodes (kept above) as to any new one; then the
            # members whose media node died offer again, to the node the room placed them on.
            self.core.stages.sync(actions)
            for conference_id, lost in restarts:
                members = self.core.conferences.table[conference_id].members()
                told = tuple(u for u in members if lost is None or u in lost)
                if told:
                    actions.append(Send(told, p.MediaRestart(call_id=conference_id)))
        return InheritedConferences(actions, ended, adopted, refused)

    def _place_adopted(
        self,
        conference_id: str,
        media: Mapping[str, bytes] | None,
        alive: Sequence[str],
        new_key: Callable[[], bytes] | None,
    ) -> frozenset[str] | None:
        """A conference carried on keeps its media where it was, on the live nodes: home
        (else, over the cascade, the live node with the most of its sites) and each site's
        node. A site whose node died is placed again with the first room. Returns who must
        offer again (their media node died): the sites placed on a dead node, None for
        every member (its one media node died), an empty set for nobody."""
        value = (media or {}).get(conference_id)
        if value is None:
            return frozenset()
        try:
            placed = w.decode_journal_media(value)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return frozenset()
        sites = {user: at for user, at in placed.sites.items() if at in alive}
        lost = frozenset(user for user, at in placed.sites.items() if at not in alive)
        if not sites or new_key is None:
            if placed.home in alive:
                self.media_nodes[conference_id] = placed.home
                return frozenset()
            return None
        home = placed.home
        if home not in alive:
            counts = collections.Counter(sites.values())
            home = max(sorted(counts), key=counts.__getitem__)
        self.spreads[conference_id] = Spread(home=home, key=new_key(), sites=sites)
        self.media_nodes[conference_id] = home
        return lost

    def inherit_instructions(
        self, journal: Mapping[str, bytes], now: float
    ) -> tuple[list[Action], list[str]]:
        """The dead authority's journal of instructions (id -> `wire.JournalInstruction`):
        each still valid is carried on here (`actions` send it again to its officers
        connected now); the second list is the fields to delete (expired, or unreadable)."""
        actions: list[Action] = []
        gone: list[str] = []
        for instruction_id, value in journal.items():
            entry = self._entry("instructions", instruction_id, value, w.decode_journal_instruction)
            if entry is None:
                gone.append(instruction_id)
                continue
            if entry.expires_at <= now:
                gone.append(instruction_id)
                continue
            self.core.instructions.restore(w.instruction_of(instruction_id, entry), now, actions)
        return actions, gone

    def inherit_watches(self, journal: Mapping[str, bytes], now: float) -> InheritedWatches:
        """The dead authority's journal of watches (id -> `wire.JournalWatch`): the ones this
        core does not have are over; each watcher's stop is recorded, and the watchers and the
        officer are told (the walls watch again; the phone closes that uplink); the driver
        has every media node close the watch's room (`rooms`) without waiting for the phone."""
        actions: list[Action] = []
        ended: list[str] = []
        rooms: dict[str, str] = {}
        for watch_id, value in journal.items():
            if watch_id in self.core.watches.table:
                continue
            entry = self._entry("watches", watch_id, value, w.decode_journal_watch)
            if entry is None:
                continue
            for data in entry.stopped:
                actions.append(Record(TraceEvent(kind="watch_stopped", at=now, data=data)))
            for watcher in entry.watchers:
                ended_msg = p.WatchEnded(
                    watch_id=watch_id, officer=entry.officer, reason="node_lost"
                )
                actions.append(Send((watcher,), ended_msg))
            actions.append(Send((entry.officer,), p.WatchClosed(watch_id=watch_id)))
            ended.append(watch_id)
            rooms[watch_id] = entry.officer
        return InheritedWatches(actions, ended, rooms)

    def inherit_sessions(
        self, before: Mapping[str, bytes], now_in_journal: Mapping[str, bytes], now: float
    ) -> InheritedSessions:
        """The dead authority's journal of sessions as found (`before`) and a node timeout
        later (`now_in_journal`): each session there that this core did not take over
        (adopt, from a gateway's report) was served by nobody alive, and is recorded
        signed out. That includes the session of a user who reconnected meanwhile and,
        their resume token unknown here, signed in again: their journal field now holds
        the new session, which is left alone (and so is its field)."""
        actions: list[Action] = []
        closed: list[str] = []
        adopted, self.adopted = self.adopted, set()
        for user, value in before.items():
            left = self._entry("sessions", user, value, w.decode_journal_session)
            if left is None:
                continue
            current = self.core.session(user)
            if left.session_id in adopted or (
                current is not None and current.session_id == left.session_id
            ):
                continue
            actions.append(Record(TraceEvent(kind="sign_out", at=now, data=left.sign_out)))
            if now_in_journal.get(user) == value:
                closed.append(user)
        return InheritedSessions(actions, closed)

    def hold_emergencies(self, journal: Mapping[str, bytes]) -> None:
        """The dead authority's journal of emergencies (officer -> `wire.JournalEmergency`),
        read before any gateway's report is applied: each is carried on as its officer's
        session is adopted (`reconcile`), flagged before the session is first shown."""
        for officer, value in journal.items():
            entry = self._entry("emergencies", officer, value, w.decode_journal_emergency)
            self.held_emergencies[officer] = (
                None if entry is None else w.emergency_of(officer, entry)
            )

    def _held_emergency(self, info: w.ConnectionInfo) -> EmergencyFacts | None:
        """The held emergency of the session `info` reports, taken for its adoption; one
        left for another session of the officer stays, to be dropped."""
        facts = self.held_emergencies.get(info.user)
        if facts is None or facts.session_id != info.session_id:
            return None
        del self.held_emergencies[info.user]
        return facts

    def inherit_emergencies(self, now: float) -> tuple[list[Action], list[str]]:
        """The held emergencies no adoption took, once the sessions the dead authority left
        are taken over: each is carried on if its officer's session is here after all
        (`actions`); the list is the fields to delete (officer gone, signed in anew, or
        unreadable)."""
        actions: list[Action] = []
        gone: list[str] = []
        held, self.held_emergencies = self.held_emergencies, {}
        for officer, facts in held.items():
            carried = [] if facts is None else self.core.carry_over_emergency(facts, now)
            if not carried:
                gone.append(officer)
            actions.extend(carried)
        return actions, gone

    def _entry(
        self, journal: str, key: str, value: bytes, decode: Callable[[bytes], _T]
    ) -> _T | None:
        """`value` decoded, or None (kept in `unreadable`) for an entry no node of ours
        wrote: garbage, a wrong shape, or nested so deep that decoding it recurses out."""
        try:
            return decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            self.unreadable.append(Unreadable(journal, key, f"{type(exc).__name__}: {exc}"))
            return None

    def take_over_waiting(self, waiting: Iterable[WaitingCall], now: float) -> list[Action]:
        """Queue again, in the order they were placed, the calls that were waiting."""
        actions: list[Action] = []
        for call in sorted(waiting, key=lambda c: c.created_at):
            actions.extend(self.core.take_over(call, now))
        return actions


def pick_media_node(
    alive: Sequence[NodeRecord], rooms: collections.Counter[str], fallback: str
) -> str:
    """The live node with media to host a new call's media: the fewest rooms assigned by
    this authority (it assigns them all, and sees its own assignments at once, not a
    heartbeat later), then the least CPU; nodes near full CPU only if all are."""
    candidates = [r for r in alive if r.status.media_address]
    if not candidates:
        return fallback
    return min(candidates, key=_by_load(rooms)).node_id


def _by_load(
    rooms: collections.Counter[str],
) -> Callable[[NodeRecord], tuple[bool, int, float, str]]:
    """The media nodes' order, least loaded first: not near full CPU, then the fewest rooms
    this authority assigned, then the least CPU (the node id breaks ties)."""
    return lambda r: (
        r.status.load.cpu >= OVERLOADED_CPU,
        rooms[r.node_id],
        r.status.load.cpu,
        r.node_id,
    )


@dataclass
class Spread:
    """A conference over the media nodes: its home node (its router), each member's node,
    the key sealing its cascade (drawn by the driver, never logged), the nodes told of it,
    and its latest room (replayed when a node dies)."""

    home: str
    key: bytes = field(repr=False)
    sites: dict[str, str] = field(default_factory=dict)
    told: set[str] = field(default_factory=set)
    room: Room | None = None
    # Each shown call's officer: the node of the call's media, as last sent.
    feeds: dict[str, str] = field(default_factory=dict)


def spread_sites(
    *, home: str, members: Iterable[str], placed: Mapping[str, str], nodes: Sequence[str]
) -> dict[str, str]:
    """Each member's media node: one already placed on a node still in `nodes` stays; a
    newcomer goes to the node with the fewest of the conference's sites (home first on a
    tie, then `nodes`' order: the least loaded first). So the sites spread evenly over the
    live nodes, and a member placed stays while its node lives."""
    order = sorted(dict.fromkeys(nodes), key=lambda n: n != home)
    if not order:
        return {}
    where: dict[str, str] = {}
    counts = collections.Counter({n: 0 for n in order})
    members = list(dict.fromkeys(members))
    for member in members:
        kept = placed.get(member)
        if kept is not None and kept in counts:
            where[member] = kept
            counts[kept] += 1
    for member in members:
        if member not in where:
            node = min(order, key=lambda n: counts[n])
            where[member] = node
            counts[node] += 1
    return where


def moved_home(spread: Spread, dead: str, nodes: Sequence[str]) -> str:
    """A new home node for a conference whose home died: the live node with the most of
    its sites, else the first of `nodes` (the least loaded)."""
    counts = collections.Counter(n for n in spread.sites.values() if n != dead and n in nodes)
    if counts:
        return max(sorted(counts), key=counts.__getitem__)
    return nodes[0]


def cascade_nodes(alive: Sequence[NodeRecord], rooms: collections.Counter[str]) -> list[str]:
    """The live nodes that can take part in a cascade (media and a cascade address), the
    least loaded first, by `pick_media_node`'s order."""
    candidates = [r for r in alive if r.status.media_address and r.status.cascade_address]
    return [r.node_id for r in sorted(candidates, key=_by_load(rooms))]


def identity_of(info: w.ConnectionInfo) -> Identity:
    """Who a gateway's connection is, as its verified token said."""
    return Identity(
        user_id=info.user,
        name=info.name,
        role=Role(info.role),
        court=info.court,
        expires_at=info.expires_at,
        scope=info.scope,
    )


def _replaced(node: str, info: w.ConnectionInfo, reason: str) -> DisconnectOn:
    return DisconnectOn(node, info.user, info.session_id, CLOSE_REPLACED, reason)


__all__ = [
    "AuthorityState",
    "DisconnectOn",
    "InheritedCalls",
    "InheritedSessions",
    "Location",
    "NodeLost",
    "Reconciled",
    "Spread",
    "cascade_nodes",
    "moved_home",
    "pick_media_node",
    "spread_sites",
]
