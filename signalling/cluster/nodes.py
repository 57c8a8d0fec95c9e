"""The nodes of the cluster as the registry knows them: their records, who is alive, whose
death to report. Pure: no Redis, no clock, no tasks; every time is an argument, and is Redis
server time (signalling/cluster/registry.py, the driver, says why).

Modelled on LiveKit's Redis router: every node writes its status (id, addresses, start time,
load) every `heartbeat_s`; a node not heard from for `node_timeout_s` is dead, and each
node is told of each death once, to end that node's calls and drop its users.

Theory of operation
-------------------
* A vanished record is not a death. A Redis restart without persistence wipes every record,
  and a live node writes its own back within a heartbeat. So the core keeps the last record
  of a node and lets the timeout decide: a node is dead when its newest heartbeat, from
  Redis or remembered, is older than `node_timeout_s`.
* Nobody can be judged while we cannot look. When a read succeeds after failed ones (Redis
  down, restarted, or unreachable from here), every node gets a fresh `node_timeout_s` from
  that moment (`Registry.resume`): the others were as cut off as we were, and must have the
  time to write again before they are judged. A real death is then seen one timeout late;
  an outage never kills the cluster's calls.
* A node restarted under the same id (its `started_at` changed) is reported dead once: its
  previous run's calls and connections are gone even though the id is back.
* Records silent for `forget_s` are ignored (and deleted from Redis by the driver), so they
  are reported at most once and do not pile up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import msgspec

# Defaults until [redis] carries them (LiveKit's figures: stats every 2 s, dead after 5 s).
HEARTBEAT_S: Final = 2.0
NODE_TIMEOUT_S: Final = 5.0
# Dead records older than this are deleted and no longer reported to nodes that start later.
FORGET_S: Final = 60.0
# A node using this fraction of its CPU or more takes new media only when all nodes do.
OVERLOADED_CPU: Final = 0.9


class NodeLoad(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """What a node carries now. `cpu`: the process's CPU use as a fraction of the machine's
    (0.0 idle to 1.0 every core busy)."""

    connections: int = 0
    calls: int = 0
    media_peers: int = 0
    cpu: float = 0.0
    # Its media worker processes (media.pool; 0: media in the node's own process).
    media_workers: int = 0


class NodeStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """What a node publishes about itself every heartbeat (msgpack, the `NODES` hash).
    Unknown fields are ignored so that a newer node's record still reads on an older one."""

    node_id: str
    # host:port of its HTTP/WebSocket listener, as other nodes and load balancers reach it.
    http_address: str
    # Where its media (ICE) is served, e.g. "10.0.0.5" or "10.0.0.5:40000-40100"; "" when
    # the node has no media.
    media_address: str
    # Its own wall clock at start, seconds since the epoch: names this run of the node.
    started_at: float
    load: NodeLoad = NodeLoad()
    # host:port of its cascade UDP socket (media.cascade): a conference may spread its sites
    # over the nodes that have one. "" when it has none.
    cascade_address: str = ""


@dataclass(frozen=True)
class NodeRecord:
    """A node's status and the Redis server time of its heartbeat, seconds since the epoch."""

    status: NodeStatus
    heard_at: float

    @property
    def node_id(self) -> str:
        return self.status.node_id


@dataclass
class _Node:
    record: NodeRecord
    # Its death has been reported (by `reap`); reset if it speaks again.
    reported: bool = False


def _media_cost(record: NodeRecord) -> tuple[bool, int, float, str]:
    # Media peers are what costs a relay CPU and bandwidth; CPU breaks ties and keeps calls
    # off a node busy with something else; the id makes the choice the same on every node.
    load = record.status.load
    return (load.cpu >= OVERLOADED_CPU, load.media_peers, load.cpu, record.node_id)


class Registry:
    """The pure core: the nodes known, their latest records, and which deaths were reported.
    Every time is Redis server time in seconds (see the module docstring)."""

    def __init__(self, node_timeout_s: float = NODE_TIMEOUT_S, forget_s: float = FORGET_S):
        if not 0 < node_timeout_s < forget_s:
            raise ValueError("need 0 < node_timeout_s < forget_s")
        self.node_timeout_s = node_timeout_s
        self.forget_s = forget_s
        self._nodes: dict[str, _Node] = {}
        # Ends of previous runs of restarted nodes, waiting for `reap`.
        self._ended_runs: list[str] = []
        # Nobody is judged on silence from before this time (see `resume`).
        self._observed_from = -math.inf

    # ---- events -----------------------------------------------------------------------

    def apply(self, record: NodeRecord, now: float) -> bool:
        """Take a record read at `now`. True if it makes its node alive and it was not
        (a node joining, or speaking again after its death was reported)."""
        if now - record.heard_at > self.forget_s:
            return False
        node_id = record.node_id
        node = self._nodes.get(node_id)
        # Judged on the record alone: an old heartbeat read after an outage is no sign of life.
        alive = now - record.heard_at <= self.node_timeout_s
        if node is None:
            self._nodes[node_id] = _Node(record)
            return alive
        known = node.record
        if record.status.started_at < known.status.started_at:
            # A previous run's record (a stale read, or two processes misconfigured with
            # one id): the newest run is the node.
            return False
        if record.status.started_at > known.status.started_at:
            if not node.reported:
                self._ended_runs.append(node_id)
            self._nodes[node_id] = _Node(record)
            return alive
        if record.heard_at <= known.heard_at:
            return False
        node.record = record
        if node.reported and alive:
            node.reported = False
            return True
        return False

    def resume(self, now: float) -> None:
        """We could not read the registry until `now`: no node is judged on silence from
        before it, so each gets `node_timeout_s` from now to be heard."""
        self._observed_from = max(self._observed_from, now)

    def reap(self, now: float) -> list[str]:
        """The nodes that died since the last call, each death reported once: silent past
        the timeout, or restarted (the previous run is over)."""
        deaths, self._ended_runs = self._ended_runs, []
        for node_id, node in sorted(self._nodes.items()):
            if not node.reported and self._silent(node.record, now):
                node.reported = True
                deaths.append(node_id)
        return deaths

    def forget_expired(self, now: float) -> list[str]:
        """Drop reported-dead nodes silent for `forget_s`; returns their ids."""
        gone = [
            node_id
            for node_id, node in self._nodes.items()
            if node.reported and now - node.record.heard_at > self.forget_s
        ]
        for node_id in gone:
            del self._nodes[node_id]
        return gone

    # ---- queries ----------------------------------------------------------------------

    def record(self, node_id: str) -> NodeRecord | None:
        node = self._nodes.get(node_id)
        return None if node is None else node.record

    def alive(self, now: float) -> list[NodeRecord]:
        """Records of the live nodes by node id: not silent past the timeout, and not
        reported dead since they last spoke."""
        return [
            node.record
            for _, node in sorted(self._nodes.items())
            if not node.reported and not self._silent(node.record, now)
        ]

    def dead(self, now: float) -> list[str]:
        """Ids of the known nodes that are not alive (reported or not yet), sorted."""
        return sorted(
            node_id
            for node_id, node in self._nodes.items()
            if node.reported or self._silent(node.record, now)
        )

    def least_loaded_media_node(self, now: float) -> NodeRecord | None:
        """The live node with media that should host a new call's media: fewest media
        peers, then least CPU, nodes at `OVERLOADED_CPU` or more only if all are; None if no
        live node has media."""
        candidates = [r for r in self.alive(now) if r.status.media_address]
        return min(candidates, key=_media_cost, default=None)

    def _silent(self, record: NodeRecord, now: float) -> bool:
        return now - max(record.heard_at, self._observed_from) > self.node_timeout_s


__all__ = [
    "FORGET_S",
    "HEARTBEAT_S",
    "NODE_TIMEOUT_S",
    "OVERLOADED_CPU",
    "NodeLoad",
    "NodeRecord",
    "NodeStatus",
    "Registry",
]
