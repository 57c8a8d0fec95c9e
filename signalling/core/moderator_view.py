"""The moderators' view of a conference's sites, sent as batched changes.

A moderator sees every site (joined, left, away or back, its hand and its floor) and every
invitation's answer. With 300 sites joining, answering and raising hands, a message per
change would be hundreds a second to each moderator, each site's entry sent again at every
step. So changes are noted here, by site and by invitation, and sent as one `sites_changed`
per conference at most every `conferences.moderator_delta_s`: the changes one input makes
together (`sync`, after every input the switchboard handles), at once after a quiet spell,
and those that follow within the interval together at its end (`ModeratorDelta`). A site or
invitation is sent as it is when the batch goes, so a site that joined and left within one
batch is only `left`, and one raising and lowering its hand is sent once. A moderator who
joins gets the whole view in `conference_joined` (a co-moderator when named, in a
`sites_changed` of its own), then the batches.

This module owns the pending changes and the `ModeratorDelta` timer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from signalling import protocol as p
from signalling.core.actions import Action, Send
from signalling.core.conference import Conference, invitation_info, site_info
from signalling.core.deadlines import Deadlines

if TYPE_CHECKING:
    from signalling.core.switchboard import Switchboard


@dataclass(frozen=True, slots=True)
class ModeratorDelta:
    """Deadline: a conference's batched changes go to its moderators."""

    conference_id: str


@dataclass
class _Pending:
    # Ordered sets: sites (user ids) and invitations (their keys) changed since the last batch.
    sites: dict[str, None] = field(default_factory=dict)
    invitations: dict[str, None] = field(default_factory=dict)
    # The raised hands moved up (a grant, a hand lowered): the queue goes whole, as ids, not
    # each site behind (hundreds of entries at every grant).
    queue: bool = False
    # When the last batch went (None: none yet).
    sent_at: float | None = None


class ModeratorViews:
    def __init__(self, board: Switchboard, interval_s: float, deadlines: Deadlines) -> None:
        self._board = board
        self.interval_s = interval_s
        self._deadlines = deadlines
        self._pending: dict[str, _Pending] = {}
        # Conferences with changes noted since the last `sync`.
        self._dirty: dict[str, None] = {}

    def sites(self, conf: Conference, users: list[str]) -> None:
        """`users`' sites of `conf` joined, changed or left."""
        pending = self._pending.setdefault(conf.conference_id, _Pending())
        for user in users:
            pending.sites[user] = None
        self._dirty[conf.conference_id] = None

    def invitations(self, conf: Conference, keys: list[str]) -> None:
        """The invitations of `conf` under `keys` ("court:P01", "user:o1") changed."""
        pending = self._pending.setdefault(conf.conference_id, _Pending())
        for key in keys:
            pending.invitations[key] = None
        self._dirty[conf.conference_id] = None

    def queue_moved(self, conf: Conference) -> None:
        """Places in `conf`'s queue of raised hands moved."""
        self._pending.setdefault(conf.conference_id, _Pending()).queue = True
        self._dirty[conf.conference_id] = None

    def flush_due(self, key: ModeratorDelta, now: float, out: list[Action]) -> None:
        conf = self._board.conferences.table.get(key.conference_id)
        pending = self._pending.get(key.conference_id)
        if conf is not None and pending is not None:
            self._flush(conf, pending, now, out)

    def forget(self, conf: Conference) -> None:
        """`conf` ended: nothing more goes to its moderators."""
        self._pending.pop(conf.conference_id, None)
        self._deadlines.cancel(ModeratorDelta(conf.conference_id))

    def sync(self, now: float, out: list[Action]) -> None:
        """After an input: the changes it made go now if the last batch is old enough, else
        at the end of the interval."""
        table = self._board.conferences.table
        for cid in self._dirty:
            conf, pending = table.get(cid), self._pending.get(cid)
            key = ModeratorDelta(cid)
            if conf is None or pending is None or self._deadlines.get(key) is not None:
                continue  # ended, or the batch under way takes it
            if pending.sent_at is None or now >= pending.sent_at + self.interval_s:
                self._flush(conf, pending, now, out)
            else:
                self._deadlines.set(key, pending.sent_at + self.interval_s)
        self._dirty.clear()

    def _flush(self, conf: Conference, pending: _Pending, now: float, out: list[Action]) -> None:
        if not pending.sites and not pending.invitations and not pending.queue:
            return
        info = self._board.presence.info
        sites = [site_info(conf, conf.sites[u], info) for u in pending.sites if u in conf.sites]
        left = [u for u in pending.sites if u not in conf.sites]
        invitations = [
            invitation_info(conf.invitations[k], info)
            for k in pending.invitations
            if k in conf.invitations
        ]
        queue = list(conf.floor.queue()) if pending.queue else None
        pending.sites.clear()
        pending.invitations.clear()
        pending.queue = False
        pending.sent_at = now
        moderators = conf.moderators_here()
        if moderators:
            changed = p.SitesChanged(
                conf.conference_id, conf.revision, sites, left, invitations, queue
            )
            out.append(Send(moderators, changed))
