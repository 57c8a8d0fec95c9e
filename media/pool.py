"""The media server as worker processes: `WorkerPool`, the hub's `MediaPort` in the server
process, starts `[media] workers` processes, each running a `MediaService` of its own on its
own share of the ICE port range, and places every room on one of them (media.worker_placement).

Each worker is reached over a Unix socket pair with the frames of media.worker_wire. The pool
is the worker's only way out: deliveries go to the hub's `deliver`, trace events to the
server's recorder, recordings and snapshots to the server's evidence sink (a recording's path
must lie under the worker's own directory), so nothing a worker does escapes the checks the
server applies.

Lifecycle: the pool starts the workers at `start`, watches each, and starts it again when it
dies, after a pause that doubles with each quick death (up to `RESTART_MAX_S`). A worker's
rooms do not wait for it: they are placed again on a live worker at once (the latest `Room`
of each replayed there), and every member is sent `media_restart` to make a new peer
connection and offer again. With no live worker, the rooms wait for the restarted one.
Workers die with the server (media_worker.py: PR_SET_PDEATHSIG, end of socket).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import itertools
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Final

import msgspec
import structlog

from media import worker_wire as w
from media.capture import recover
from media.cascade import CascadeGateway
from media.cascade_frames import CascadePlan, moved_elsewhere
from media.errors import WrongState
from media.evidence_sink import EvidenceSink
from media.settings import MediaConfig
from media.sink import SinkSpec
from media.sink_control import RequestRefused, SinkControl
from media.worker_placement import WorkerLoad, conference_sites, least_loaded
from sessions.recorder import SessionRecorder, TraceEvent
from signalling import protocol as p
from signalling.core import actions
from signalling.errors import ClientError, MediaUnavailable
from signalling.media_port import Cascade, Deliver, MediaMessage

log = structlog.get_logger(__name__)

# How long `ready` waits by default for every worker to be up (import, recovery).
START_WAIT_S: Final = 30.0
# How long a media message waits for its call's worker to be (re)started (a loaded machine
# takes seconds to start one: aiortc's import).
READY_WAIT_S: Final = 30.0
# How long a worker has to carry out one media message (a snapshot waits for a keyframe).
SIGNAL_TIMEOUT_S: Final = 30.0
# Pauses before restarting a worker that died: doubled per death within RESTART_STABLE_S of
# its start, from RESTART_MIN_S to RESTART_MAX_S.
RESTART_MIN_S: Final = 0.2
RESTART_MAX_S: Final = 10.0
RESTART_STABLE_S: Final = 30.0
# How long `stop` waits for a worker to finish its calls' recordings before killing it.
STOP_WAIT_S: Final = 10.0


class WorkerRefused(ClientError):
    """A member's media message its worker refused as the member's fault: the worker's
    ClientError, with its code, reason and field, answered by the hub as if raised here."""

    def __init__(self, code: str, reason: str, field: str | None) -> None:
        super().__init__(reason, field)
        self.code = code


def port_ranges(low: int, high: int, count: int) -> list[tuple[int, int]]:
    """`low..high` (inclusive) split into `count` contiguous shares as even as can be; (0, 0)
    stays ephemeral for every worker. Raises ValueError with fewer ports than workers."""
    if (low, high) == (0, 0):
        return [(0, 0)] * count
    ports = high - low + 1
    if ports < count:
        raise ValueError(f"{ports} UDP ports cannot be shared by {count} media workers")
    shares = []
    start = low
    for i in range(count):
        size = ports // count + (1 if i < ports % count else 0)
        shares.append((start, start + size - 1))
        start += size
    return shares


@dataclasses.dataclass(eq=False)
class _Worker:
    index: int
    config: MediaConfig
    recordings_dir: Path | None
    proc: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    pid: int | None = None
    load: w.Load | None = None
    restarts: int = 0
    # Signals sent and not yet answered, by id.
    pending: dict[int, asyncio.Future[w.Signalled]] = dataclasses.field(default_factory=dict)
    # Bench-only sink requests (media.sink) not yet answered, by id.
    sink_pending: dict[int, asyncio.Future[w.SinksState]] = dataclasses.field(default_factory=dict)

    def send(self, record: w.ToWorker) -> bool:
        """Write `record` to the worker; False if it has no live socket (it died: its rooms
        are replayed to whichever worker they are placed on next)."""
        if self.writer is None or self.writer.is_closing():
            return False
        self.writer.write(w.frame(record))
        return True


class WorkerPool:
    def __init__(
        self,
        *,
        config: MediaConfig,
        count: int,
        command: Sequence[str],
        clock: Callable[[], float],
        evidence: EvidenceSink | None = None,
        recordings_dir: Path | None = None,
        recorder: SessionRecorder | None = None,
        log_format: str = "json",
        log_level: str = "info",
        node_id: str = "server",
    ) -> None:
        """`command`: argv starting a worker (commandcenter.media_worker), to which the pool
        adds `--fd` and `--parent`. The other arguments are MediaService's, and how workers
        log. Raises ValueError if the port range cannot be shared by `count` workers."""
        if count < 1:
            raise ValueError("a worker pool has at least one worker")
        self.config = config
        self.command = tuple(command)
        self.clock = clock
        self.evidence = evidence
        self.recordings_dir = recordings_dir if evidence is not None else None
        self.recorder = recorder
        self.log_format = log_format
        self.log_level = log_level
        self.node_id = node_id
        self.deliver: Deliver = _not_started
        shares = port_ranges(config.udp_port_min, config.udp_port_max, count)
        self.workers = [
            _Worker(
                index=i,
                config=msgspec.structs.replace(config, udp_port_min=low, udp_port_max=high),
                recordings_dir=(
                    self.recordings_dir / f"worker-{i}" if self.recordings_dir is not None else None
                ),
            )
            for i, (low, high) in enumerate(shares)
        ]
        # The fabric's sockets (media.fabric), one per worker, in a directory of this pool's
        # own (mode 0700, so no other user reaches a conference's packets; short, for
        # sockaddr_un's 107 bytes), when there is more than one worker to span.
        # Made at start (`_open_fabric`), removed at stop.
        self._fabric_dir: str | None = None
        self.fabric_paths: dict[int, str] = {}
        # The node's end of the cascade between nodes (media.cascade), on the fabric as one
        # more worker (index `len(workers)`), when `media.cascade_address` is set.
        self.cascade: CascadeGateway | None = None
        # Conferences spread over several nodes: the authority's placement, and the members
        # whose media other nodes terminate (to the workers, they are on the cascade).
        self.plans: dict[str, Cascade] = {}
        self.remote: dict[str, frozenset[str]] = {}
        # Members that moved between two other nodes, to be withdrawn once (cascade_changed).
        self._moved: dict[str, frozenset[str]] = {}
        # The latest Room of every room with media, and the worker it is placed on.
        self.rooms: dict[str, actions.Room] = {}
        self.home: dict[str, int] = {}
        # A conference's members' workers (media.worker_placement.conference_sites).
        self.where: dict[str, dict[str, int]] = {}
        # A conference's shown calls here: each officer's call's worker (that worker exports
        # the feed to the conference's router, media.span).
        self.feeds: dict[str, dict[str, int]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._supervisors: list[asyncio.Task[None]] = []
        self._stopping = False
        # Bad frames refused from workers (each logged), for tests and health.
        self.refused_frames = 0
        # Bench-only (media.sink): the control socket, with `media.bench_sink_socket` only,
        # and each conference's sinks' workers.
        self.sink_control: SinkControl | None = None
        self.sink_where: dict[str, dict[str, int]] = {}

    # ---- MediaPort --------------------------------------------------------------------

    def room_changed(self, change: actions.Room) -> None:
        call_id = change.call_id
        plan = self.plans.get(call_id) if change.stage is not None else None
        if plan is not None and change.members:
            here = self.node_id
            remote = frozenset(m for m in change.members if plan.sites.get(m, here) != here)
            self.remote[call_id] = remote
            feeding = here in plan.feeds.values()
            if plan.home != here and not set(change.members) - remote and not feeding:
                # No site of it here any more, not its home, no call of it shown from here:
                # it leaves this node.
                change = dataclasses.replace(change, members=(), silent=())
        if not change.members:
            self.remote.pop(call_id, None)
            self.plans.pop(call_id, None)
            self._moved.pop(call_id, None)
            if self.cascade is not None:
                self.cascade.place(call_id, None, 0)
            self.rooms.pop(call_id, None)
            self.sink_where.pop(call_id, None)
            home = self.home.pop(call_id, None)
            sites = self.where.pop(call_id, {})
            feeders = {i for i in self.feeds.pop(call_id, {}).values() if i < len(self.workers)}
            for fed in feeders - {home, *sites.values()}:
                # A worker with only a shown call of it: its span goes, it had no room.
                ended = w.ConferencePlacement(conference_id=call_id, home=fed, where={})
                self._worker(fed).send(ended)
            for index in {home, *sites.values()} - {None}:
                assert index is not None
                if change.stage is not None:
                    # Its spans first: else home's router would keep the room for sites
                    # elsewhere (media.span.Spans.routes).
                    gone = w.ConferencePlacement(conference_id=call_id, home=index, where={})
                    self._worker(index).send(gone)
                self._worker(index).send(w.RoomChanged(room=change))
            self._refeed(call_id)
            return
        if call_id not in self.home:
            self.home[call_id] = self._place(change)
        self.rooms[call_id] = change
        self._forward(call_id)
        self._refeed(call_id)

    async def signal(self, user: str, message: MediaMessage) -> None:
        call_id = message.call_id
        index = self.where.get(call_id, {}).get(user, self.home.get(call_id))
        if index is None:
            raise WrongState("this call has no media")
        worker = self._worker(index)
        if not worker.ready.is_set():
            try:
                await asyncio.wait_for(worker.ready.wait(), READY_WAIT_S)
            except TimeoutError:
                raise MediaUnavailable("the media server is restarting; try again") from None
        request = w.Signal(id=next(self._ids), user=user, message=message)
        done = asyncio.get_running_loop().create_future()
        worker.pending[request.id] = done
        try:
            if not worker.send(request):
                raise MediaUnavailable("the call's media moved; offer again")
            answer = await asyncio.wait_for(done, SIGNAL_TIMEOUT_S)
        finally:
            worker.pending.pop(request.id, None)
        if answer.internal:
            raise RuntimeError(f"media worker {index} failed to carry out {type(message).__name__}")
        if answer.code is not None:
            raise WorkerRefused(answer.code, answer.reason, answer.field)

    async def start(self, deliver: Deliver) -> None:
        """Deliver from now on to `deliver`; file what the previous run left in the
        recordings directory and every worker's (before any worker runs: a worker restarted
        later files its own directory's); start every worker. The server serves meanwhile
        (signalling needs no worker; /readyz says when all are up): rooms are sent to a
        worker once it is ready, and a media message waits for its worker (READY_WAIT_S)."""
        self.deliver = deliver
        if self.evidence is not None and self.recordings_dir is not None:
            # Every worker-<i>, not only this run's: the previous run may have had more.
            left = [self.recordings_dir, *sorted(self.recordings_dir.glob("worker-*"))]
            for directory in left:
                await recover(directory, self.evidence, self.clock)
        self._open_fabric()
        if self.config.bench_sink_socket:
            self.sink_control = SinkControl(self.config.bench_sink_socket, self)
            await self.sink_control.start()
        for worker in self.workers:
            if worker.recordings_dir is not None:
                worker.recordings_dir.mkdir(parents=True, exist_ok=True)
            self._supervisors.append(asyncio.get_running_loop().create_task(self._run(worker)))

    async def ready(self, timeout_s: float = START_WAIT_S) -> bool:
        """Wait until every worker is up (at most `timeout_s`); whether they are."""
        waits = [asyncio.ensure_future(worker.ready.wait()) for worker in self.workers]
        _, waiting = await asyncio.wait(waits, timeout=timeout_s)
        for task in waiting:
            task.cancel()
        return not waiting

    @property
    def started(self) -> bool:
        """Every worker is up (for /readyz)."""
        return all(worker.ready.is_set() for worker in self.workers)

    def health(self) -> dict[str, object]:
        """The figures as the workers last reported them (every second, and after each
        change); each live worker is asked again, for the next look."""
        for worker in self.workers:
            if worker.ready.is_set():
                worker.send(w.LoadQuery())
        loads = [worker.load for worker in self.workers if worker.ready.is_set()]
        return {
            # The rooms as placed here (at once), the peers as the workers last said.
            "media_rooms": len(self.home),
            "media_peers": sum(load.peers for load in loads if load is not None),
            "media_workers": [self._worker_health(worker) for worker in self.workers],
            **({"media_cascade": self.cascade.health()} if self.cascade is not None else {}),
        }

    def forwarded(self) -> tuple[int, int]:
        """Packets and bytes the live workers have forwarded (since each started)."""
        loads = [worker.load for worker in self.workers if worker.load is not None]
        return sum(load.forwarded_packets for load in loads), sum(
            load.forwarded_bytes for load in loads
        )

    def layer_dropped(self) -> int:
        """Packets the live workers left out for subscribers' temporal layers."""
        return sum(w.load.layer_dropped_packets for w in self.workers if w.load is not None)

    async def stop(self) -> None:
        """Stop every worker (each finishes and files its recordings), killing one that does
        not stop within STOP_WAIT_S."""
        self._stopping = True
        if self.sink_control is not None:
            await self.sink_control.stop()
        for worker in self.workers:
            worker.send(w.Stop())
        procs = [worker.proc for worker in self.workers if worker.proc is not None]
        if procs:
            waits = [asyncio.ensure_future(proc.wait()) for proc in procs]
            _, late = await asyncio.wait(waits, timeout=STOP_WAIT_S)
            for proc in procs:
                if proc.returncode is None:
                    log.warning("media worker killed at stop", pid=proc.pid)
                    proc.kill()
            if late:
                await asyncio.wait(late)
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.cascade is not None:
            self.cascade.close()
        if self._fabric_dir is not None:
            shutil.rmtree(self._fabric_dir, ignore_errors=True)

    def _open_fabric(self) -> None:
        cascading = bool(self.config.cascade_address)
        if (len(self.workers) > 1 or cascading) and self._fabric_dir is None:
            self._fabric_dir = tempfile.mkdtemp(prefix="cc-fabric-")
            self.fabric_paths = {
                worker.index: os.path.join(self._fabric_dir, f"w{worker.index}")
                for worker in self.workers
            }
            if cascading:
                index = len(self.workers)
                path = os.path.join(self._fabric_dir, "cascade")
                self.cascade = CascadeGateway(
                    node_id=self.node_id,
                    index=index,
                    path=path,
                    workers=dict(self.fabric_paths),
                    host=self.config.cascade_address,
                    port=self.config.cascade_port,
                )
                self.cascade.open()
                # Every worker has it for a sibling (Start's fabric_siblings).
                self.fabric_paths[index] = path

    # ---- the cascade between nodes (signalling.media_port.CascadePort) -------------------

    def cascade_address(self) -> str:
        return self.cascade.address() if self.cascade is not None else ""

    def cascade_changed(self, conference_id: str, cascade: Cascade | None) -> None:
        before = self.plans.pop(conference_id, None)
        if cascade is None:
            return
        self.plans[conference_id] = cascade
        if before is not None:
            # Members moved from one other node to another (their node died): the same
            # cascade place to the workers, but a new stream, which the slots must take as
            # a new source (`_forward` withdraws them once).
            moved = moved_elsewhere(before.sites, cascade.sites, self.node_id)
            if moved:
                self._moved[conference_id] = moved

    # ---- the benchmark's sinks (media.sink, media.sink_control) -------------------------

    async def add_sinks(self, conference_id: str, sinks: list[SinkSpec]) -> dict[str, int]:
        """Place pre-keyed sinks on the live workers that serve the conference, in turn as
        its sites are spread, and add them there; their workers."""
        serving = self._serving(conference_id)
        placed = self.sink_where.setdefault(conference_id, {})
        taken = {s.name for s in sinks}
        if len(taken) != len(sinks) or taken & set(placed):
            raise RequestRefused("sink names must be new and distinct")
        by_worker: dict[int, list[SinkSpec]] = {}
        turn = len(placed)
        for spec in sinks:
            index = serving[turn % len(serving)]
            turn += 1
            by_worker.setdefault(index, []).append(spec)
        await asyncio.gather(
            *(self._sinks(i, conference_id, add=specs) for i, specs in by_worker.items())
        )
        for index, specs in by_worker.items():
            for spec in specs:
                placed[spec.name] = index
        return {spec.name: placed[spec.name] for spec in sinks}

    async def remove_sinks(self, conference_id: str, names: list[str]) -> None:
        placed = self.sink_where.get(conference_id, {})
        by_worker: dict[int, list[str]] = {}
        for name in names:
            index = placed.pop(name, None)
            if index is not None:
                by_worker.setdefault(index, []).append(name)
        await asyncio.gather(
            *(self._sinks(i, conference_id, remove=gone) for i, gone in by_worker.items())
        )

    async def sink_status(self, conference_id: str) -> dict[str, object]:
        """The workers, the conference's placement, and its sinks with the packets each was
        sent (asked of every worker with sinks of it)."""
        placed = self.sink_where.get(conference_id, {})
        sent: dict[str, int] = {}
        for counts in await asyncio.gather(
            *(self._sinks(i, conference_id) for i in sorted(set(placed.values())))
        ):
            sent.update(counts)
        return {
            "workers": [
                {"index": x.index, "pid": x.pid, "up": x.ready.is_set()} for x in self.workers
            ],
            "home": self.home.get(conference_id),
            "where": self.where.get(conference_id, {}),
            "sinks": {
                name: {"worker": index, "sent": sent.get(name, 0)} for name, index in placed.items()
            },
        }

    def _serving(self, conference_id: str) -> list[int]:
        """The live workers that have the conference's room (sinks join only those)."""
        home = self.home.get(conference_id)
        if home is None or self.rooms.get(conference_id, None) is None:
            raise RequestRefused("no such conference with media on this server")
        room = self.rooms[conference_id]
        if room.stage is None:
            raise RequestRefused("sinks join conferences, not calls")
        indexes = {home, *self.where.get(conference_id, {}).values()}
        serving = sorted(i for i in indexes if self._worker(i).ready.is_set())
        if not serving:
            raise RequestRefused("the conference's media workers are restarting")
        return serving

    async def _sinks(
        self,
        index: int,
        conference_id: str,
        add: Sequence[SinkSpec] = (),
        remove: Sequence[str] = (),
    ) -> dict[str, int]:
        worker = self._worker(index)
        request = w.Sinks(
            id=next(self._ids),
            conference_id=conference_id,
            add=[w.SinkRecord(s.name, s.host, s.port, s.key) for s in add],
            remove=list(remove),
        )
        done = asyncio.get_running_loop().create_future()
        worker.sink_pending[request.id] = done
        try:
            if not worker.send(request):
                raise RequestRefused(f"media worker {index} is restarting")
            answer: w.SinksState = await asyncio.wait_for(done, SIGNAL_TIMEOUT_S)
        finally:
            worker.sink_pending.pop(request.id, None)
        if answer.error is not None:
            raise RequestRefused(f"media worker {index}: {answer.error}")
        return answer.sent

    # ---- placement ----------------------------------------------------------------------

    def _loads(self, exclude: int | None = None) -> list[WorkerLoad]:
        """The live workers' loads as placed by this pool (not as last reported: two calls
        answered at once must not both see the same worker empty)."""
        live = [
            worker.index
            for worker in self.workers
            if worker.ready.is_set() and worker.index != exclude
        ]
        if not live:
            live = [worker.index for worker in self.workers if worker.index != exclude]
        if not live:
            live = [worker.index for worker in self.workers]
        peers = dict.fromkeys(live, 0)
        rooms = dict.fromkeys(live, 0)
        for call_id, index in self.home.items():
            if index in peers:
                rooms[index] += 1
            spread = self.where.get(call_id)
            if spread is not None:
                for member_index in spread.values():
                    if member_index in peers:
                        peers[member_index] += 1
            elif index in peers and call_id in self.rooms:
                peers[index] += len(self.rooms[call_id].members)
        return [WorkerLoad(index, peers[index], rooms[index]) for index in live]

    def _place(self, room: actions.Room, exclude: int | None = None) -> int:
        loads = self._loads(exclude)
        if room.stage is not None:
            # A conference showing a live call goes where the call is: its feed's tracks are
            # read from the call's room in the same process.
            for _officer, feed in room.stage.feeds:
                index = self.home.get(feed)
                if index is not None and index in {load.worker for load in loads}:
                    return index
        return least_loaded(loads)

    def _forward(self, call_id: str) -> None:
        """Send the room's latest Room to its worker(s); a conference's placement first."""
        room = self.rooms[call_id]
        home = self.home[call_id]
        if room.stage is None:
            self._worker(home).send(w.RoomChanged(room=room))
            return
        before = self.where.get(call_id, {})
        live = [worker.index for worker in self.workers if worker.ready.is_set()]
        remote = self.remote.get(call_id, frozenset())
        where = conference_sites(
            home=home,
            members=[m for m in room.members if m not in remote],
            placed=before,
            workers=live or [home],
        )
        self.where[call_id] = where
        placement = dict(where)
        plan = self.plans.get(call_id)
        fed_before = self.feeds.get(call_id, {})
        feeds = self._feeds_of(room)
        self.feeds[call_id] = feeds
        if self.cascade is not None:
            if plan is not None and remote:
                # To the workers, the members other nodes terminate are on the cascade.
                placement.update(dict.fromkeys(remote, self.cascade.index))
            # A call shown from another node comes in through the cascade too.
            crossing = remote or any(at == self.cascade.index for at in feeds.values())
            self.cascade.place(call_id, _plan_of(plan) if crossing else None, home)
        records = plan is None or plan.home == self.node_id
        moved = self._moved.pop(call_id, frozenset())
        sited = {home, *before.values(), *where.values()}
        # (A feed through the cascade is the gateway's, no worker's.)
        feeders = {i for i in (*feeds.values(), *fed_before.values()) if i < len(self.workers)}
        for index in sorted(sited | feeders):
            worker = self._worker(index)
            if index not in sited and index not in feeds.values():
                # It showed a call of the conference and no longer does: its span goes.
                ended = w.ConferencePlacement(conference_id=call_id, home=index, where={})
                worker.send(ended)
                continue
            placed = functools.partial(
                w.ConferencePlacement,
                conference_id=call_id,
                home=home,
                records=records,
                feeds=feeds,
                stage=room.stage,
            )
            if moved and len(placement) > len(moved):
                # Gone for a moment: every worker's RemotePublication of them is withdrawn,
                # and their next packets (the new stream) make a new one.
                gone = {user: at for user, at in placement.items() if user not in moved}
                worker.send(placed(where=gone))
            worker.send(placed(where=placement))
            if index not in sited:
                # Only a shown call of it here: the placement's stage is all it needs.
                continue
            local = tuple(m for m in room.members if where.get(m) == index)
            silent = tuple(m for m in room.silent if where.get(m) == index)
            worker.send(w.RoomChanged(room=dataclasses.replace(room, members=local, silent=silent)))

    def _feeds_of(self, room: actions.Room) -> dict[str, int]:
        """Each officer shown to conference `room`: the worker of the call's media here, or
        the cascade's place when the authority's plan puts the call on another node."""
        assert room.stage is not None
        plan = self.plans.get(room.call_id)
        feeds: dict[str, int] = {}
        for officer, feed in room.stage.feeds:
            shown = self.rooms.get(feed)
            index = self.home.get(feed)
            if shown is not None and shown.stage is None and index is not None:
                feeds[officer] = index
            elif self.cascade is not None and plan is not None:
                node = plan.feeds.get(officer)
                if node is not None and node != self.node_id:
                    feeds[officer] = self.cascade.index
        return feeds

    def _rooms_on(self, index: int) -> list[str]:
        """The rooms homed on worker `index`, with a member there, or showing a call there."""
        return [
            call_id
            for call_id, home in self.home.items()
            if home == index
            or index in self.where.get(call_id, {}).values()
            or index in self.feeds.get(call_id, {}).values()
        ]

    def _worker(self, index: int) -> _Worker:
        return self.workers[index]

    # ---- the workers --------------------------------------------------------------------

    async def _run(self, worker: _Worker) -> None:
        """Start `worker`, and again whenever it dies, until the pool stops."""
        quick_deaths = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._spawn(worker)
            except OSError:
                log.exception("media worker not started", worker=worker.index)
            else:
                assert worker.proc is not None
                code = await worker.proc.wait()
                if self._stopping:
                    return
                self._died(worker, code)
            quick_deaths = quick_deaths + 1 if time.monotonic() - started < RESTART_STABLE_S else 1
            pause = min(RESTART_MAX_S, RESTART_MIN_S * 2 ** (quick_deaths - 1))
            log.error("media worker restarting", worker=worker.index, in_s=round(pause, 2))
            await asyncio.sleep(pause)
            worker.restarts += 1

    async def _spawn(self, worker: _Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            worker.proc = await asyncio.create_subprocess_exec(
                *self.command,
                "--fd",
                str(theirs.fileno()),
                "--parent",
                str(os.getpid()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=w.MAX_FRAME_BYTES + 64)
        worker.writer = writer
        worker.pid = worker.proc.pid
        worker.send(
            w.Start(
                worker=worker.index,
                media=worker.config,
                recordings_dir=(
                    str(worker.recordings_dir) if worker.recordings_dir is not None else None
                ),
                evidence=self.evidence is not None,
                log_format=self.log_format,
                log_level=self.log_level,
                node_id=self.node_id,
                fabric_path=self.fabric_paths.get(worker.index),
                fabric_siblings={
                    i: path for i, path in self.fabric_paths.items() if i != worker.index
                },
            )
        )
        log.info("media worker started", worker=worker.index, pid=worker.pid)
        self._spawn_task(self._read(worker, reader, worker.proc))

    async def _read(
        self,
        worker: _Worker,
        reader: asyncio.StreamReader,
        proc: asyncio.subprocess.Process,
    ) -> None:
        """Carry out what one incarnation of `worker` sends, until its socket ends."""
        while True:
            try:
                body = await w.read_frame(reader)
            except (w.WireError, asyncio.IncompleteReadError, ConnectionError) as exc:
                # The stream cannot be trusted past a bad length: the worker is replaced.
                self.refused_frames += 1
                log.error("media worker stream broken", worker=worker.index, reason=str(exc))
                if proc.returncode is None:
                    proc.kill()
                return
            if body is None:
                return
            try:
                record = w.decode_to_parent(body)
            except w.WireError as exc:
                self.refused_frames += 1
                log.error(
                    "bad frame from media worker refused", worker=worker.index, reason=str(exc)
                )
                continue
            try:
                self._received(worker, record)
            except Exception:
                log.exception("media worker record not carried out", worker=worker.index)

    def _received(self, worker: _Worker, record: w.ToParent) -> None:
        match record:
            case w.Deliver(user=user, message=message):
                self.deliver(user, message)
            case w.Signalled():
                done = worker.pending.get(record.id)
                if done is not None and not done.done():
                    done.set_result(record)
            case w.Load():
                worker.load = record
            case w.SinksState():
                waiting = worker.sink_pending.get(record.id)
                if waiting is not None and not waiting.done():
                    waiting.set_result(record)
            case w.Trace(events=events):
                if self.recorder is not None:
                    trace = [TraceEvent(e.kind, e.at, e.data) for e in events]
                    self._spawn_task(self._record(self.recorder, trace))
            case w.Register():
                self._spawn_task(self._register(worker, record))
            case w.Ready():
                # Its process id is the one this pool started, whatever the record says.
                worker.ready.set()
                log.info("media worker ready", worker=worker.index, pid=worker.pid)
                # Its rooms (all of them after a restart with no other worker live).
                for call_id in self._rooms_on(worker.index):
                    self._forward(call_id)

    def _died(self, worker: _Worker, code: int) -> None:
        """Place the dead worker's rooms elsewhere and tell their members to offer again."""
        worker.ready.clear()
        worker.load = None
        worker.writer = None
        for done in worker.pending.values():
            if not done.done():
                done.set_exception(MediaUnavailable("the call's media moved; offer again"))
        for waiting in worker.sink_pending.values():
            if not waiting.done():
                waiting.set_exception(RequestRefused(f"media worker {worker.index} died"))
        # Its sinks died with it (their sockets were its own).
        for placed in self.sink_where.values():
            for name in [n for n, i in placed.items() if i == worker.index]:
                del placed[name]
        index = worker.index
        # The rooms whose members' media it terminated (a conference only showing a call
        # there is placed again once the call has moved, `_refeed`).
        moved = [
            call_id
            for call_id in self._rooms_on(index)
            if self.home[call_id] == index or index in self.where.get(call_id, {}).values()
        ]
        log.error(
            "media worker died", worker=worker.index, pid=worker.pid, code=code, rooms=len(moved)
        )
        # Conferences first: a call one of them shows is then exported to where they went.
        for call_id in sorted(moved, key=lambda c: self.rooms[c].stage is None):
            if self.rooms[call_id].stage is not None and self._spread_elsewhere(call_id, worker):
                # A conference with sites on other workers: only the dead worker's sites
                # offer again (elsewhere); the others keep their connections and their
                # stream (a new home takes the router on, its state from the core's Room).
                self._resite(call_id, worker.index)
                continue
            # The whole room moves, so that its members meet again in one process.
            self._move(call_id, self._place(self.rooms[call_id], exclude=worker.index))

    def _spread_elsewhere(self, call_id: str, dead: _Worker) -> bool:
        """Whether conference `call_id` has sites on a live worker other than `dead`."""
        return any(
            index != dead.index and self._worker(index).ready.is_set()
            for index in self.where.get(call_id, {}).values()
        )

    def _resite(self, call_id: str, dead: int) -> None:
        """Worker `dead` of a conference spread over several died: its sites are placed on
        the live workers and told to offer again; home moves to a live worker with sites if
        it was the dead one."""
        where = self.where.get(call_id, {})
        lost = [user for user, index in where.items() if index == dead]
        kept = {user: index for user, index in where.items() if index != dead}
        if self.home[call_id] == dead:
            counts = collections.Counter(kept.values())
            self.home[call_id] = max(sorted(counts), key=counts.__getitem__)
            log.warning(
                "conference router moved", conference=call_id, to=self.home[call_id], was=dead
            )
        self.where[call_id] = kept
        self._forward(call_id)
        room = self.rooms[call_id]
        for user in dict.fromkeys(u for u in (*room.members, *room.silent) if u in lost):
            self.deliver(user, p.MediaRestart(call_id=call_id))

    def _refeed(self, call_id: str) -> None:
        """Call `call_id`'s media started, moved or ended: every conference showing it is
        placed again, so that the call's worker (wherever it is) exports the feed. The call
        stays where it is (its members keep their peer connections)."""
        for conference, room in list(self.rooms.items()):
            if room.stage is None or conference not in self.home:
                continue
            if not any(feed == call_id for _, feed in room.stage.feeds):
                continue
            if self.feeds.get(conference, {}) != self._feeds_of(room):
                self._forward(conference)

    def _move(self, call_id: str, to: int) -> None:
        """Place room `call_id` on worker `to`: ended where it was (a live worker files its
        recordings), its latest Room replayed there, every member told `media_restart`."""
        room = self.rooms[call_id]
        was = {self.home[call_id], *self.where.pop(call_id, {}).values()}
        self.home[call_id] = to
        for index in was:
            self._worker(index).send(w.RoomChanged(room=dataclasses.replace(room, members=())))
        if self._worker(to).ready.is_set():
            self._forward(call_id)
        self._refeed(call_id)
        remote = self.remote.get(call_id, frozenset())
        for user in dict.fromkeys((*room.members, *room.silent)):
            if user not in remote:
                self.deliver(user, p.MediaRestart(call_id=call_id))

    async def _record(self, recorder: SessionRecorder, events: list[TraceEvent]) -> None:
        try:
            await recorder.record(events)
        except Exception:
            log.exception(
                "media worker's trace events not recorded", kinds=[e.kind for e in events]
            )

    async def _register(self, worker: _Worker, request: w.Register) -> None:
        try:
            evidence_id = await self._file(worker, request)
        except Exception as exc:
            log.warning(
                "media worker's evidence not filed", worker=worker.index, call=request.call_id
            )
            worker.send(w.Registered(id=request.id, error=type(exc).__name__))
        else:
            worker.send(w.Registered(id=request.id, evidence_id=evidence_id))

    async def _file(self, worker: _Worker, request: w.Register) -> str:
        if self.evidence is None or worker.recordings_dir is None:
            raise MediaUnavailable("this server keeps no evidence")
        body: Path | bytes
        if request.data is not None:
            body = request.data
        elif request.path is not None:
            body = Path(request.path)
            # Only the worker's own recordings: a confused worker must not file other files.
            if not body.resolve().is_relative_to(worker.recordings_dir.resolve()):
                raise ValueError(f"{request.path!r} is not under the worker's recordings")
        else:
            raise ValueError("neither a file nor bytes")
        return await self.evidence.register(
            call_id=request.call_id,
            case_number=request.case_number,
            court=request.court,
            officer=request.officer,
            path_or_bytes=body,
            media_type=request.media_type,
            file_name=request.file_name,
            captured_at_ms=request.captured_at_ms,
            ended_at_ms=request.ended_at_ms,
            sha256=request.sha256,
            requested_by=request.requested_by,
        )

    def _spawn_task(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _worker_health(self, worker: _Worker) -> dict[str, object]:
        load = worker.load
        return {
            "worker": worker.index,
            "pid": worker.pid,
            "up": worker.ready.is_set(),
            "restarts": worker.restarts,
            "rooms": load.rooms if load is not None else 0,
            "peers": load.peers if load is not None else 0,
            "cpu_s": round(load.cpu_s, 3) if load is not None else 0.0,
            # Open conferences routed here: sites per other worker whose audio came lately.
            "audio_sites_in": dict(load.audio_sites_in) if load is not None else {},
        }

    def cpu_seconds(self) -> dict[int, float]:
        """Each live worker's CPU seconds (user and system) as it last reported them."""
        return {
            worker.index: worker.load.cpu_s for worker in self.workers if worker.load is not None
        }


def _plan_of(cascade: Cascade | None) -> CascadePlan | None:
    if cascade is None:
        return None
    return CascadePlan(
        cascade.home, cascade.sites, cascade.addresses, cascade.key, dict(cascade.feeds)
    )


def _not_started(user: str, message: p.ServerMessage) -> None:
    raise RuntimeError("the worker pool delivers nothing before start()")


__all__ = ["WorkerPool", "WorkerRefused", "port_ranges"]
