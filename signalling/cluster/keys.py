"""Every Redis key and pub/sub channel the nodes of one deployment share, in one place.

All names start with the configured `[redis] key_prefix` (default "cc:"), used verbatim, so
several deployments (or test runs) can share one Redis without seeing each other. Each name
below says its Redis type, who writes it, who reads it, and its payload. Pub/sub payloads and
stored records are msgpack (msgspec), like the binary WebSocket frames; the few plain values
(a node id, a decimal timestamp, a counter) are stored as Redis strings so Lua scripts can
compare and update them.

Nothing here opens a connection: `ClusterKeys(prefix)` only builds names.
"""

from __future__ import annotations

from typing import Final

# ---- node registry (signalling/cluster/registry.py) ---------------------------------------

# Hash. Field: node id. Value: msgpack `registry.NodeStatus` {node_id, http_address,
# media_address, started_at, load: {connections, calls, media_peers, cpu, media_workers}}.
# Written by each node for itself every heartbeat; read whole by every node. Fields of nodes
# dead for `forget_s` are removed by whichever node notices first.
NODES: Final = "nodes"

# Hash. Field: node id. Value: decimal string, Redis server time (TIME) of that node's latest
# heartbeat in integer milliseconds. Written in the same Lua script as NODES (the server's
# clock, so no node's clock is trusted); a node silent past `node_timeout_s` is dead.
NODES_HEARD: Final = "nodes:heard"

# ---- the authority lease (signalling/cluster/lease.py) ------------------------------------

# String with a PX expiry: the node id of the one node that currently runs the core (the
# authority). Set with SET NX PX, renewed and deleted only by its holder (Lua compare-and-set).
AUTHORITY: Final = "authority"

# String: decimal integer, the fencing epoch of the current holding: raised on every new
# acquisition, never lowered, and at least the server time in ms so it keeps rising even if
# Redis loses its data. A write stamped with an older epoch comes from a deposed authority.
AUTHORITY_EPOCH: Final = "authority:epoch"

# String, no expiry: the node id of the latest node to take the lease (set in the same Lua
# script). A node taking the lease learns from it whether anyone held it since its own last
# holding, and so whether its switchboard's state is still current.
AUTHORITY_LAST: Final = "authority:last"

# Channel. What gateways tell the core, published by the node the client is connected to,
# consumed by the authority only: a `signalling.cluster.wire.InboxMessage` (msgpack map
# tagged by "kind"): "connect", "message" (a client message, already validated), "closed",
# "report" (every connection of the node, for a resync). PUBLISH answering 0 receivers
# means no authority is listening: the gateway tells its client `unavailable`.
AUTHORITY_INBOX: Final = "authority:inbox"

# Channel. Messages for every node, published by the authority: a `wire.ResyncRequest`
# (report your connections) when it takes the lease or its subscription was interrupted.
BROADCAST: Final = "broadcast"

# ---- the authority's journal (signalling/cluster/journal.py) ------------------------------

# Hash. Field: call id. Value: msgpack `wire.JournalCall` {notify: [user id...],
# ended: the data of the call's `call_ended` record were it lost now}. Written by the authority
# for every live call as its records are made, deleted when the call ends. A node that takes
# the lease from a dead authority ends each call left here: its members are told and the end
# is recorded, so the trace has no call without its end.
JOURNAL_CALLS: Final = "journal:calls"

# Hash. Field: user id. Value: msgpack `wire.JournalSession` {session_id, sign_out:
# the data of its `sign_out` record were it lost now}. As JOURNAL_CALLS, for sessions: those
# no gateway reports to the new authority within a node timeout are recorded signed out.
JOURNAL_SESSIONS: Final = "journal:sessions"

# Hash. Field: conference id. Value: msgpack `wire.JournalConference` {notify: [user id...],
# ended: the data of its `conference_ended` record were it lost now, snapshot: its state
# (signalling.core.conference_snapshot), written at most every JOURNAL_EVERY_S per conference
# and at once on its end}. The next authority restores each (`conference_adopted`); one it
# cannot restore ends `node_lost`, its sites told, the trace holding its end.
JOURNAL_CONFERENCES: Final = "journal:conferences"

# Hash. Field: conference id. Value: msgpack `wire.JournalMedia` {home: node id, sites:
# {user id: node id}}. Written by the authority as it places a conference's media; the next
# authority keeps the placement on the nodes still alive, with a new cascade key.
JOURNAL_MEDIA: Final = "journal:media"

# Hash. Field: instruction id. Value: msgpack `wire.JournalInstruction` {by, court, officer,
# text, sent_at, expires_at, recipients with their receipts}. Written by the authority as an
# instruction's records are made, deleted when it expires. Unlike a call, an instruction
# outlives its authority: a node taking the lease from a dead one carries each on (sent again
# to its officers until read), so an instruction is not lost to a failover.
JOURNAL_INSTRUCTIONS: Final = "journal:instructions"
# Hash. Field: watch id (the video wall). Value: msgpack `wire.JournalWatch` {officer,
# watchers, stopped: the data of each watcher's `watch_stopped` record were it lost now}. As
# JOURNAL_CALLS, for watches: a new authority records each stopped `node_lost` and tells the
# watchers and the officer, so the trace has no watch without its end.
JOURNAL_WATCHES: Final = "journal:watches"
# Hash. Field: officer id. Value: msgpack `wire.JournalEmergency` {court, session_id,
# raised_at, note, taken_by, escalated_to, repeats, repeating}. Written by the authority as an
# emergency's records are made, deleted when it is cleared or the officer signs out. Like an
# instruction, an emergency outlives its authority: the next one flags the officer again for
# the session it took over and carries the alarm on (`emergency_carried_over`).
JOURNAL_EMERGENCIES: Final = "journal:emergencies"

# ---- per node -----------------------------------------------------------------------------

# Channel "<prefix>node:<node id>". Messages for that node, consumed by that node only: a
# `signalling.cluster.wire.NodeMessage` (msgpack map tagged by "kind"): "deliver" (a server
# message for some of its users), "disconnect" (close a session's connection), from the
# authority or a media node; "room" and "signal" (a call's media, for its media node), from
# the authority.
NODE_CHANNEL: Final = "node:"

# ---- presence -----------------------------------------------------------------------------

# String with a PX expiry, "<prefix>presence:<user id>": where a user is connected. Payload:
# msgpack map {node: node id, session_id: str, connected_at: float (that node's clock,
# informational)}. Written by the user's node on connect and refreshed every heartbeat with
# TTL `node_timeout_s`, so a dead node's users drop out by themselves; deleted on disconnect
# (only if it still names this node and session: compare in Lua).
PRESENCE: Final = "presence:"


class ClusterKeys:
    """The names above under one prefix (the `[redis] key_prefix` setting)."""

    __slots__ = (
        "authority",
        "authority_epoch",
        "authority_inbox",
        "authority_last",
        "broadcast",
        "journal_calls",
        "journal_conferences",
        "journal_emergencies",
        "journal_instructions",
        "journal_media",
        "journal_sessions",
        "journal_watches",
        "nodes",
        "nodes_heard",
        "prefix",
    )

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes = prefix + NODES
        self.nodes_heard = prefix + NODES_HEARD
        self.authority = prefix + AUTHORITY
        self.authority_epoch = prefix + AUTHORITY_EPOCH
        self.authority_inbox = prefix + AUTHORITY_INBOX
        self.authority_last = prefix + AUTHORITY_LAST
        self.broadcast = prefix + BROADCAST
        self.journal_calls = prefix + JOURNAL_CALLS
        self.journal_sessions = prefix + JOURNAL_SESSIONS
        self.journal_conferences = prefix + JOURNAL_CONFERENCES
        self.journal_instructions = prefix + JOURNAL_INSTRUCTIONS
        self.journal_media = prefix + JOURNAL_MEDIA
        self.journal_watches = prefix + JOURNAL_WATCHES
        self.journal_emergencies = prefix + JOURNAL_EMERGENCIES

    def node_channel(self, node_id: str) -> str:
        return self.prefix + NODE_CHANNEL + node_id

    def presence(self, user: str) -> str:
        return self.prefix + PRESENCE + user

    def presence_pattern(self) -> str:
        """SCAN MATCH pattern of every presence key (glob characters in the prefix escaped)."""
        return _glob_escape(self.prefix + PRESENCE) + "*"

    def all_pattern(self) -> str:
        """SCAN MATCH pattern of every key of this deployment (tests clean up with it)."""
        return _glob_escape(self.prefix) + "*"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


__all__ = [
    "AUTHORITY",
    "AUTHORITY_EPOCH",
    "AUTHORITY_INBOX",
    "AUTHORITY_LAST",
    "BROADCAST",
    "JOURNAL_CALLS",
    "JOURNAL_CONFERENCES",
    "JOURNAL_SESSIONS",
    "NODES",
    "NODES_HEARD",
    "NODE_CHANNEL",
    "PRESENCE",
    "ClusterKeys",
]
