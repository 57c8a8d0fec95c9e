"""The authority's journal in Redis: every live call, session and conference as its end would
be recorded were the authority lost now, and a new authority's inheritance of it.

The authority's hub records facts as on one node; after each batch the journal brings the
fields of the calls and sessions those facts are about up to date (`ClusterKeys.journal_calls`,
`journal_sessions`, written through the ordered `RedisWriter`). A node taking the lease from
a dead authority reads what it left (`inherit`): its calls end at once (`node_lost`), its
conferences are carried on from their snapshots (`journal:media` keeping where their media
is; one that cannot be restored ends `node_lost`), its sessions that no
gateway reports within a node timeout are recorded signed out, and the calls that were
waiting for an operator are queued again. What to do is decided by the pure
`AuthorityState` (signalling/cluster/authority.py); this module reads and writes Redis.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import structlog
from redis.asyncio import Redis

from sessions.recorder import TraceEvent
from signalling.clock import Clock, Timer
from signalling.cluster import wire as w
from signalling.cluster.authority import AuthorityState
from signalling.cluster.keys import ClusterKeys
from signalling.cluster.retry import REDIS_ERRORS, RedisHealth, RetryLoop
from signalling.cluster.writer import RedisWriter
from signalling.core.actions import Action
from signalling.core.conference_snapshot import SnapshotError, snapshot
from signalling.core.switchboard import Switchboard

log = structlog.get_logger(__name__)

# Records that open or close a session (the journal follows them).
_SESSION_KINDS: Final = frozenset({"sign_in", "session_continued", "session_adopted", "sign_out"})
# A conference's snapshot is written at most this often by default (`redis.
# journal_conference_s`; its end at once): a 300-site one is ~50 kB and 0.4 ms to take
# (bench.conference_journal), and a join burst records each join.
JOURNAL_EVERY_S: Final = 0.5
# What a moderator decides: journalled at once (a human's rate, a few a second at most), so
# that the next authority carries on with it, while site churn waits for the period. Its
# creation too: other nodes answer the conference's witness routes from the journal.
DECISION_KINDS: Final = frozenset(
    {
        "conference_created",
        "conference_started",
        "conference_locked",
        "conference_muted",
        "conference_spotlight",
        "conference_recording_started",
        "conference_recording_stopped",
        "floor_granted",
        "floor_revoked",
        "floor_released",
        "floor_policy",
        "moderator_named",
        "moderator_removed",
        "chair_changed",
        "call_shared",
        "call_unshared",
    }
)


class Journal:
    def __init__(
        self,
        *,
        redis: Redis,
        writer: RedisWriter,
        keys: ClusterKeys,
        node_id: str,
        run: float,
        clock: Clock,
        node_timeout_s: float,
        authority: Callable[[], AuthorityState | None],
        emit: Callable[[list[Action]], None],
        alive: Callable[[], list[str]],
        health: RedisHealth,
        stopping: asyncio.Event,
        conference_every_s: float = JOURNAL_EVERY_S,
    ) -> None:
        """`authority()` is this node's authority state while it holds the lease; `emit`
        performs what it decided outside a client's message; `alive()` the live nodes;
        `conference_every_s` how often a conference's site churn is written at most."""
        self._redis = redis
        self._writer = writer
        self._keys = keys
        self._node_id = node_id
        self._run = run
        self._clock = clock
        self._node_timeout_s = node_timeout_s
        self._authority = authority
        self._emit = emit
        self._alive = alive
        self._health = health
        self._stopping = stopping
        self._conference_every_s = conference_every_s
        # Conference -> when its snapshot was last written (monotonic), and its next write.
        self._conference_written: dict[str, float] = {}
        self._conference_due: dict[str, Timer] = {}

    # ---- writing ------------------------------------------------------------------------------

    def recorded(self, events: Sequence[TraceEvent]) -> None:
        """The authority's hub recorded `events`: bring the journal of the calls and
        sessions they are about up to date."""
        state = self._authority()
        if state is None:
            return
        users: set[str] = set()
        calls: set[str] = set()
        conferences: set[str] = set()
        decided: set[str] = set()
        instructions: set[str] = set()
        watches: set[str] = set()
        emergencies: set[str] = set()
        for event in events:
            if event.kind in _SESSION_KINDS:
                users.add(str(event.data["user"]))
            if event.kind == "sign_out":
                # A signed-out officer's emergency ends with the session. (Not on an
                # adoption: a session taken over from a dead authority has its emergency
                # flagged with it, recorded `emergency_carried_over`, which writes it.)
                emergencies.add(str(event.data["user"]))
            officer = event.data.get("officer")
            if event.kind.startswith("emergency_") and isinstance(officer, str):
                emergencies.add(officer)
            call = event.data.get("call")
            if isinstance(call, str):
                calls.add(call)
            conference = event.data.get("conference")
            if isinstance(conference, str):
                conferences.add(conference)
                if event.kind in DECISION_KINDS:
                    decided.add(conference)
            instruction = event.data.get("instruction")
            if isinstance(instruction, str):
                instructions.add(instruction)
            watch = event.data.get("watch")
            if isinstance(watch, str):
                watches.add(watch)
        for user in users:
            self._session(state.core, user)
        for call_id in calls:
            self._call(state.core, call_id)
        for conference_id in conferences:
            self._conference(state.core, conference_id, at_once=conference_id in decided)
        for instruction_id in instructions:
            self._instruction(state.core, instruction_id)
        for watch_id in watches:
            self._watch(state.core, watch_id)
        for officer in emergencies:
            self._emergency(state.core, officer)

    def rewrite(self, core: Switchboard) -> None:
        """Write every live session and call of `core` again (Redis may have lost them)."""
        for user in list(core.presence.sessions):
            self._session(core, user)
        for call_id in list(core.calls.table):
            self._call(core, call_id)
        for conference_id in list(core.conferences.table):
            self._conference(core, conference_id)
        for instruction_id in list(core.instructions.table):
            self._instruction(core, instruction_id)
        for watch_id in list(core.watches.table):
            self._watch(core, watch_id)
        for officer in core.alarms.pending() + core.alarms.taken():
            self._emergency(core, officer)

    def _session(self, core: Switchboard, user: str) -> None:
        facts = core.session_facts(user)
        value = None
        if facts is not None:
            entry = w.JournalSession(session_id=str(facts["session"]), sign_out=facts)
            value = w.encode(entry)
        self._writer.hash_field(self._keys.journal_sessions, user, value)

    def _call(self, core: Switchboard, call_id: str) -> None:
        facts = core.call_facts(call_id)
        value = None
        if facts is not None:
            entry = w.JournalCall(
                notify=list(facts.notify), ended=facts.ended, waiting=facts.waiting
            )
            value = w.encode(entry)
        self._writer.hash_field(self._keys.journal_calls, call_id, value)

    def _conference(self, core: Switchboard, conference_id: str, *, at_once: bool = False) -> None:
        """Its end and a moderator's decision (`at_once`) at once; other changes at most
        every `conference_every_s` (the write then takes the state as it is by then)."""
        if core.conference_facts(conference_id) is None:
            due = self._conference_due.pop(conference_id, None)
            if due is not None:
                due.cancel()
            self._conference_written.pop(conference_id, None)
            self._writer.hash_field(self._keys.journal_conferences, conference_id, None)
            self._writer.hash_field(self._keys.journal_media, conference_id, None)
            return
        if at_once:
            due = self._conference_due.pop(conference_id, None)
            if due is not None:
                due.cancel()
            self._write_conference(core, conference_id)
            return
        if conference_id in self._conference_due:
            return
        last = self._conference_written.get(conference_id, -math.inf)
        wait = last + self._conference_every_s - self._clock.monotonic()
        if wait <= 0:
            self._write_conference(core, conference_id)
            return
        self._conference_due[conference_id] = self._clock.call_at(
            self._clock.now() + wait, lambda: self._conference_due_now(core, conference_id)
        )

    def _conference_due_now(self, core: Switchboard, conference_id: str) -> None:
        self._conference_due.pop(conference_id, None)
        state = self._authority()
        if state is not None and state.core is core:
            self._write_conference(core, conference_id)

    def _write_conference(self, core: Switchboard, conference_id: str) -> None:
        facts = core.conference_facts(conference_id)
        conf = core.conferences.table.get(conference_id)
        if facts is None or conf is None:
            return
        try:
            state = snapshot(conf, self._clock.now())
        except SnapshotError:
            state = None
        entry = w.JournalConference(notify=list(facts.notify), ended=facts.ended, snapshot=state)
        self._writer.hash_field(self._keys.journal_conferences, conference_id, w.encode(entry))
        self._conference_written[conference_id] = self._clock.monotonic()

    def media_placed(self, conference_id: str, home: str | None, sites: Mapping[str, str]) -> None:
        """The authority placed `conference_id`'s media (None: its media ended)."""
        value = None if home is None else w.encode(w.JournalMedia(home=home, sites=dict(sites)))
        self._writer.hash_field(self._keys.journal_media, conference_id, value)

    def _instruction(self, core: Switchboard, instruction_id: str) -> None:
        instruction = core.instructions.table.get(instruction_id)
        value = None if instruction is None else w.encode(w.journal_instruction(instruction))
        self._writer.hash_field(self._keys.journal_instructions, instruction_id, value)

    def _watch(self, core: Switchboard, watch_id: str) -> None:
        facts = core.watch_facts(watch_id)
        value = None
        if facts is not None:
            entry = w.JournalWatch(
                officer=facts.officer, watchers=list(facts.watchers), stopped=list(facts.stopped)
            )
            value = w.encode(entry)
        self._writer.hash_field(self._keys.journal_watches, watch_id, value)

    def _emergency(self, core: Switchboard, officer: str) -> None:
        facts = core.emergency_facts(officer)
        value = None if facts is None else w.encode(w.journal_emergency(facts))
        self._writer.hash_field(self._keys.journal_emergencies, officer, value)

    # ---- inheriting -------------------------------------------------------------------------

    def _room_closed(self, watch_id: str, officer: str) -> w.RoomChanged:
        """A watch's room with no members: its media node closes it."""
        return w.RoomChanged(
            node=self._node_id,
            run=self._run,
            call_id=watch_id,
            members=[],
            silent=[],
            court="",
            officer=officer,
            case_number=None,
            watch=True,
        )

    async def inherit(self, state: AuthorityState, ready: Callable[[], None]) -> None:
        """Close what a dead authority left open: its calls end at once (their members are
        told, the end is recorded); its sessions that no gateway reports within a node
        timeout are recorded signed out. Retried until Redis answers or we are deposed.

        Its emergencies are read first, and only then is `ready()` called (the inbox
        started, gateways asked for their connections): so each officer's session is
        flagged as it is adopted, and no roster shows the officer without the flag."""
        keys = self._keys
        retry = RetryLoop(self._stopping, self._health)

        def still() -> bool:
            return self._authority() is state

        emergencies = await retry.until_answered(self._read_emergencies, still=still)
        if emergencies is None or not still():
            return
        state.hold_emergencies(emergencies)
        ready()
        journal = await retry.until_answered(self._read, still=still)
        if journal is None:
            return
        calls, sessions, conferences, instructions, watches, media = journal
        now = self._clock.now()
        inherited = state.inherit_calls(calls, now)
        for call_id in inherited.ended:
            self._writer.hash_field(keys.journal_calls, call_id, None)
        # A new cascade key for each conference carried on: the dead node's is void.
        lost = state.inherit_conferences(
            conferences,
            now,
            media=media,
            alive=self._alive(),
            new_key=lambda: secrets.token_bytes(32),
        )
        for conference_id in lost.ended:
            self._writer.hash_field(keys.journal_conferences, conference_id, None)
            self._writer.hash_field(keys.journal_media, conference_id, None)
        for conference_id, error in lost.refused.items():
            log.warning("conference not carried on", conference=conference_id, error=error)
        closed = state.inherit_watches(watches, now)
        for watch_id in closed.ended:
            self._writer.hash_field(keys.journal_watches, watch_id, None)
        for watch_id, officer in closed.rooms.items():
            # Which node relayed the watch died with the authority: every media node (this
            # one too) closes the room if it has it, and with it the officer's uplink.
            self._writer.publish(keys.broadcast, w.encode(self._room_closed(watch_id, officer)))
        log.info(
            "calls and conferences of the previous authority ended",
            node_id=self._node_id,
            calls=len(inherited.ended),
            conferences=len(lost.ended),
            conferences_adopted=len(lost.adopted),
            watches=len(closed.ended),
        )
        carried, gone = state.inherit_instructions(instructions, now)
        for instruction_id in gone:
            self._writer.hash_field(keys.journal_instructions, instruction_id, None)
        self._emit(inherited.actions + lost.actions + closed.actions + carried)
        self._skip_unreadable(state)
        # Gateways report their connections on our resync request; what is left unreported
        # after a node timeout was served by nobody alive.
        if not await retry.pause(self._node_timeout_s) or self._authority() is not state:
            return
        try:
            current = _decoded(await self._redis.hgetall(keys.journal_sessions))
        except REDIS_ERRORS as exc:
            retry.failed(exc)
            return
        now = self._clock.now()
        left = state.inherit_sessions(sessions, current, now)
        for user in left.closed:
            self._writer.hash_field(keys.journal_sessions, user, None)
        log.info(
            "sessions of the previous authority closed",
            node_id=self._node_id,
            sessions=len(left.closed),
        )
        # Emergencies were carried on as their sessions were adopted; the rest are dropped
        # here, before the waiting calls are taken over (an emergency call finds its officer
        # flagged, and the alarm goes on from where it was).
        flagged, cleared = state.inherit_emergencies(now)
        for officer in cleared:
            self._writer.hash_field(keys.journal_emergencies, officer, None)
        log.info(
            "emergencies of the previous authority carried on",
            node_id=self._node_id,
            emergencies=len(emergencies) - len(cleared),
            dropped=len(cleared),
        )
        self._emit(left.actions + flagged + state.take_over_waiting(inherited.waiting, now))
        self._skip_unreadable(state)

    def _skip_unreadable(self, state: AuthorityState) -> None:
        """Log and delete the journal entries the inheritance could not read: one bad
        entry (garbage, or nested deep enough to overflow the decoder) is skipped, never
        fatal to the rest."""
        hashes = {
            "calls": self._keys.journal_calls,
            "sessions": self._keys.journal_sessions,
            "conferences": self._keys.journal_conferences,
            "instructions": self._keys.journal_instructions,
            "watches": self._keys.journal_watches,
            "emergencies": self._keys.journal_emergencies,
        }
        skipped, state.unreadable = state.unreadable, []
        for entry in skipped:
            log.warning(
                "unreadable journal entry skipped",
                node_id=self._node_id,
                journal=entry.journal,
                key=entry.key,
                error=entry.error[:200],
            )
            # An instruction's field is deleted by its caller already; deleting twice is harmless.
            self._writer.hash_field(hashes[entry.journal], entry.key, None)

    async def _read_emergencies(self) -> dict[str, bytes]:
        return _decoded(await self._redis.hgetall(self._keys.journal_emergencies))

    async def _read(
        self,
    ) -> tuple[
        dict[str, bytes],
        dict[str, bytes],
        dict[str, bytes],
        dict[str, bytes],
        dict[str, bytes],
        dict[str, bytes],
    ]:
        media = await self._redis.hgetall(self._keys.journal_media)
        calls = await self._redis.hgetall(self._keys.journal_calls)
        sessions = await self._redis.hgetall(self._keys.journal_sessions)
        conferences = await self._redis.hgetall(self._keys.journal_conferences)
        instructions = await self._redis.hgetall(self._keys.journal_instructions)
        watches = await self._redis.hgetall(self._keys.journal_watches)
        return (
            _decoded(calls),
            _decoded(sessions),
            _decoded(conferences),
            _decoded(instructions),
            _decoded(watches),
            _decoded(media),
        )


def _decoded(fields: Mapping[bytes | str, bytes | str]) -> dict[str, bytes]:
    # The client may or may not have been built with decode_responses.
    return {_text(k): v.encode() if isinstance(v, str) else v for k, v in fields.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


__all__ = ["Journal"]
