"""The signalling hub's settings: the `[limits]`, `[presence]`, `[calls]`, `[conferences]`,
`[instructions]`, `[wall]` and `[redis]` sections of config.toml (and `[emergency]`), with
their defaults.
`commandcenter.config` reads them; the hub and the core receive them, never the file.

Frozen msgspec Structs rather than dataclasses: `msgspec.convert` ignores unknown keys for a
dataclass, while `forbid_unknown_fields` turns a misspelt key into an error naming its path.
"""

from __future__ import annotations

from typing import Literal

import msgspec

SupervisorJoin = Literal["visible", "silent", "either"]


class LimitsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Largest WebSocket frame accepted, bytes; larger frames get an error reply.
    max_frame_bytes: int = 65536
    # Sustained client messages per second, and the burst allowed above it.
    messages_per_s: float = 20.0
    message_burst: int = 40
    # Over the rate: a `rate_limited` error; this many in a row closes with 4429.
    rate_limited_before_close: int = 5
    # Bad frames tolerated within `bad_frame_window_s` before closing with 4400.
    bad_frames_before_close: int = 10
    bad_frame_window_s: float = 60.0
    # Longest SDP accepted in offer/answer, characters.
    max_sdp_chars: int = 32768
    # Bytes queued for one client that has stopped reading before it is closed with 1008.
    max_backlog_bytes: int = 1048576


class PresenceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # A reconnect within this many seconds resumes the session (no new sign-in, call kept).
    grace_s: float = 30.0
    # Position updates fanned out to the roster at most this often per officer, seconds.
    position_interval_s: float = 2.0
    # Interval at which clients are asked to send heartbeats, seconds.
    heartbeat_interval_s: float = 15.0


class CallsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Unanswered ringing becomes a missed call after this many seconds.
    ring_timeout_s: float = 30.0
    # A queued call that never rings is missed after this many seconds.
    queue_timeout_s: float = 300.0
    # Ring the parent court's operators when none of the officer's court is online.
    fallback_to_parent: bool = True
    # Allow supervisors to monitor without the parties being told (always recorded). The
    # same as supervisor_join = "either" (kept for the configs that set it).
    allow_covert_monitoring: bool = False
    # How supervisors join calls: "visible" (announced, heard), "silent" (never announced,
    # never heard, whatever they ask) or "either" (join_call's `covert` chooses).
    supervisor_join: SupervisorJoin = "visible"
    # Most calls waiting in one court's queue; beyond it a call is refused as `queue_full`.
    max_queue: int = 200
    # A transfer offered to another operator lapses unless accepted within this many seconds.
    transfer_timeout_s: float = 30.0
    # A call sent back to the queue does not ring again at the operator who sent it back for
    # this many seconds (others are rung first), seconds.
    send_back_hold_s: float = 60.0


class EmergencyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # An emergency nobody has acknowledged alarms again at every watcher this often, seconds.
    repeat_after_s: float = 30.0
    # Unacknowledged this long, it also alarms at the consoles of the parent court, seconds.
    escalate_after_s: float = 120.0


def supervisor_join(calls: CallsConfig) -> SupervisorJoin:
    """The policy in force: `allow_covert_monitoring` widens "visible" to "either"."""
    if calls.allow_covert_monitoring and calls.supervisor_join == "visible":
        return "either"
    return calls.supervisor_join


class ConferencesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Most sites (witnesses included) joined to one conference at once.
    max_sites: int = 300
    # Most conferences not ended (scheduled or running) at once in the province.
    max_open: int = 1000
    # Latest a conference may be scheduled ahead of now, seconds.
    max_schedule_ahead_s: float = 30 * 86400.0
    # An invitation rings this long before it counts as not answered, seconds.
    ring_s: float = 60.0
    # With no moderator connected, a running conference goes on this long, then ends, seconds.
    chairless_grace_s: float = 300.0
    # A holder whose floor is revoked keeps it this long (MCPTT T3), seconds.
    revoke_grace_s: float = 3.0
    # Most raised hands kept in one conference's queue.
    max_queue: int = 300
    # A moderator's view of the sites is sent as one batch of changes at most this often,
    # seconds (the first change after a quiet spell goes at once); 0: every change at once.
    moderator_delta_s: float = 0.5
    # Sites let into a conference's media per second, per media worker (1 second's worth
    # may come at once); a site beyond it is told `conference_waiting` and let in in turn.
    joins_per_s: float = 10.0
    # Most witness invitations issued for one conference (revoked ones count), 1 to 10,000.
    max_invitations: int = 1000


class InstructionsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # An instruction reaches officers who sign in this long after it was sent, and is listed
    # with its receipts on consoles until then, seconds.
    ttl_s: float = 8 * 3600.0
    # Longest text, characters (after NFKC normalisation).
    max_chars: int = 500
    # Most instructions an officer may have not yet read (their own and their court's);
    # beyond it a new one is refused as `busy`.
    max_pending: int = 20


class WallConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # The video wall's cap on a watched officer's uplink per layout, [most lines of height,
    # most frames a second, most kbit/s]; a wall of one tile (or one enlarged) has none.
    # When walls of several layouts watch one officer, the fewest tiles win.
    tiles_4: tuple[int, int, int] = (540, 25, 1200)
    tiles_9: tuple[int, int, int] = (360, 15, 500)
    tiles_16: tuple[int, int, int] = (180, 12, 200)

    def caps(self) -> dict[int, tuple[int, int, int]]:
        """Tiles -> (height, fps, kbit/s)."""
        return {4: self.tiles_4, 9: self.tiles_9, 16: self.tiles_16}


class RedisConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Empty: one node, everything in process. Set (redis://host:port/db) for many nodes.
    url: str = ""
    key_prefix: str = "cc:"
    # Each node writes its status (load, addresses) this often, seconds.
    heartbeat_s: float = 2.0
    # A node not heard from for this long is dead: its calls end with node_lost and its
    # users leave the roster. Also the TTL of each user's presence key.
    node_timeout_s: float = 5.0
    # The authority lease (the node running the province's switchboard) lasts this long
    # unless renewed (every third of it); a dead authority is replaced after about twice it.
    lease_ttl_s: float = 5.0
    # A client message forwarded to the authority and not answered within this long is
    # answered `unavailable` by the node the client is on (a reply lost between nodes, an
    # authority killed mid-message); a reply later than that is dropped. Seconds.
    reply_timeout_s: float = 10.0
    # A conference's site churn (joins, leaves, hands) is journalled at most this often, so
    # that a 300-site join burst writes a few snapshots, not 300; a moderator's decision
    # (floor, spotlight, mute, lock, mode, recording, co-moderators) is journalled at once,
    # so the next authority never loses one. Seconds.
    journal_conference_s: float = 0.5
    # The host:port other nodes and load balancers reach this node's HTTP listener at, as
    # published in the node registry. Empty: server.host:server.port.
    advertise_address: str = ""
