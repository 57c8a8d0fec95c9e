"""How a node of a cluster reaches users and media: the hub's `Router` and `MediaPort` when
`[redis] url` is set (signalling/cluster/link.py builds them; docs/cluster.md).

`ClusterRouter`: on the authority each delivery goes to the node serving its recipient (the
authority's `where`); elsewhere (error replies, a media node's answers) to this node's
connections, or through the recipients' presence keys. `ClusterMedia`: each call's media on
one node, chosen (`authority.pick_media_node`) when the call first has media.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING

import structlog

from signalling import protocol as p
from signalling.cluster import wire as w
from signalling.cluster.authority import (
    AuthorityState,
    Spread,
    cascade_nodes,
    moved_home,
    spread_sites,
)
from signalling.connection import Connection
from signalling.core.actions import Room
from signalling.errors import MediaUnavailable
from signalling.media_port import Cascade, CascadePort, Deliver, MediaMessage, MediaPort

if TYPE_CHECKING:
    from signalling.cluster.link import RedisCoreLink

log = structlog.get_logger(__name__)


class ClusterRouter:
    """The hub's `Router` on a node of a cluster. On the authority, each delivery goes to
    the node serving its recipient; elsewhere (error replies, media answers) to this node's
    connections, or through the recipients' presence keys."""

    def __init__(self, node: RedisCoreLink) -> None:
        self.node = node

    def attach(self, conn: Connection) -> None:
        self.node.local.attach(conn)

    def detach(self, conn: Connection) -> None:
        self.node.local.detach(conn)

    def connections(self) -> list[Connection]:
        return self.node.local.connections()

    def deliver(self, to: Iterable[str], message: p.ServerMessage) -> None:
        gateway = self.node.gateway
        state = self.node.leader.state
        if state is None:
            gateway.deliver_anywhere(list(to), message)
            return
        to = list(to)
        if isinstance(message, p.Welcome):
            state.welcomed(to)
        by_node: dict[str, list[str]] = {}
        where = state.where
        here = gateway.node_id
        unknown: list[str] = []
        for user in to:
            location = where.get(user)
            if location is None:
                unknown.append(user)
            else:
                by_node.setdefault(location[0], []).append(user)
        if unknown:
            # Not welcomed by this core (yet): wherever their presence says.
            gateway.deliver_anywhere(unknown, message)
        for target, users in by_node.items():
            if target == here:
                gateway.deliver_local(users, message)
            else:
                gateway.publish_to(target, users, message)

    def reply(self, conn: Connection, message: p.ServerMessage) -> None:
        self.node.gateway.reply_local(conn, message)

    def disconnect(self, user: str, session_id: str, code: int, reason: str) -> None:
        gateway = self.node.gateway
        state = self.node.leader.state
        location = state.where.get(user) if state is not None else None
        target = gateway.node_id if location is None else location[0]
        gateway.disconnect_on(target, user, session_id, code, reason)


class ClusterMedia:
    """The hub's `MediaPort` on a node of a cluster: each call's media goes to its media
    node, chosen by load when the call first has media (`pick_media_node`)."""

    def __init__(self, node: RedisCoreLink, local: MediaPort | None) -> None:
        self.node = node
        self.local = local

    async def start(self, deliver: Deliver) -> None:
        if self.local is not None:
            await self.local.start(deliver)

    async def stop(self) -> None:
        if self.local is not None:
            await self.local.stop()

    def health(self) -> dict[str, object]:
        return self.local.health() if self.local is not None else {}

    def room_changed(self, change: Room) -> None:
        node = self.node
        state = node.leader.state
        if state is None:
            return
        if change.stage is not None and (
            change.call_id in state.spreads
            or (change.call_id not in state.media_nodes and change.members and self._nodes(state))
        ):
            self._conference_changed(change, state)
            return
        if not change.members and change.call_id not in state.media_nodes:
            return
        placed = change.call_id in state.media_nodes
        target = state.media_node(change.call_id, node.registry.alive(), node.node_id)
        if not change.members:
            del state.media_nodes[change.call_id]
        if change.stage is not None and (not placed or not change.members):
            # A conference's media node, for the next authority should this one die.
            node.journal.media_placed(change.call_id, target if change.members else None, {})
        self._refeed(change.call_id, state)
        if target == node.node_id:
            if self.local is not None:
                self.local.room_changed(change)
            return
        envelope = w.RoomChanged(
            node=node.node_id,
            run=node.run,
            call_id=change.call_id,
            members=list(change.members),
            silent=list(change.silent),
            court=change.court,
            officer=change.officer,
            case_number=change.case_number,
            stage=change.stage,
            watch=change.watch,
        )
        node.gateway.publish_node(target, envelope)

    async def signal(self, user: str, message: MediaMessage) -> None:
        node = self.node
        state = node.leader.state
        target = state.media_nodes.get(message.call_id) if state is not None else None
        spread = state.spreads.get(message.call_id) if state is not None else None
        if spread is not None:
            # A conference over several nodes: the member's own media node.
            target = spread.sites.get(user, spread.home)
        if target is None or target == node.node_id:
            if self.local is None:
                raise MediaUnavailable("this server relays no media")
            await self.local.signal(user, message)
            return
        node.gateway.publish_node(
            target, w.Signal(node=node.node_id, run=node.run, user=user, message=message)
        )

    # ---- one conference over every node (docs/cluster.md) -------------------------------

    def _nodes(self, state: AuthorityState, dead: str | None = None) -> list[str]:
        """The live nodes that can take a conference's sites, the least loaded first."""
        rooms = collections.Counter(state.media_nodes.values())
        alive = [r for r in self.node.registry.alive() if r.node_id != dead]
        return cascade_nodes(alive, rooms)

    def _conference_changed(self, change: Room, state: AuthorityState) -> None:
        """A conference placed with the cascade: its sites spread over the live nodes, its
        home node (its router) chosen by load when its media starts."""
        call_id = change.call_id
        spread = state.spreads.get(call_id)
        if not change.members:
            if spread is not None:
                for target in sorted(spread.told):
                    self._tell(target, call_id, None, change)
            state.spreads.pop(call_id, None)
            state.media_nodes.pop(call_id, None)
            self.node.journal.media_placed(call_id, None, {})
            return
        nodes = self._nodes(state)
        if spread is None:
            # The key is drawn here, by the driver (authority.py is pure), and travels only
            # in the node channels' CascadeChanged.
            spread = Spread(home=nodes[0], key=secrets.token_bytes(32))
            state.spreads[call_id] = spread
            state.media_nodes[call_id] = spread.home
        spread.room = change
        self._place(call_id, spread, nodes)

    def _place(self, call_id: str, spread: Spread, nodes: list[str]) -> None:
        room = spread.room
        assert room is not None
        if spread.home not in nodes:
            nodes = [spread.home, *nodes]
        before = spread.sites
        spread.sites = spread_sites(
            home=spread.home, members=room.members, placed=spread.sites, nodes=nodes
        )
        if spread.sites != before or not spread.told:
            # Where its media is, for the next authority should this one die (never the key).
            self.node.journal.media_placed(call_id, spread.home, spread.sites)
        alive = {r.node_id: r.status.cascade_address for r in self.node.registry.alive()}
        # A shown call's node sends its feed to home (it needs a cascade of its own).
        spread.feeds = {
            officer: at for officer, at in self._feeds_of(room).items() if alive.get(at)
        }
        involved = {*spread.sites.values(), spread.home, *spread.feeds.values()}
        addresses = {at: address for at, address in alive.items() if at in involved}
        cascade = Cascade(
            spread.home, dict(spread.sites), addresses, spread.key, dict(spread.feeds)
        )
        for target in sorted(involved):
            self._tell(target, call_id, cascade, room)
        for target in sorted(spread.told - involved):
            self._tell(target, call_id, None, dataclasses.replace(room, members=(), silent=()))
        spread.told = involved

    def _feeds_of(self, room: Room) -> dict[str, str]:
        """Each officer shown to conference `room`: the node of the call's media."""
        state = self.node.leader.state
        if room.stage is None or state is None:
            return {}
        return {
            officer: state.media_nodes[call_id]
            for officer, call_id in room.stage.feeds
            if call_id in state.media_nodes and call_id not in state.spreads
        }

    def _refeed(self, call_id: str, state: AuthorityState) -> None:
        """Call `call_id`'s media started or ended: each spread conference showing it is
        placed again, so that the call's node sends the feed to home."""
        for conference_id, spread in list(state.spreads.items()):
            room = spread.room
            if room is None or room.stage is None:
                continue
            if all(feed != call_id for _, feed in room.stage.feeds):
                continue
            if self._feeds_of(room) != spread.feeds:
                self._place(conference_id, spread, self._nodes(state))

    def _tell(self, target: str, call_id: str, cascade: Cascade | None, room: Room) -> None:
        """Node `target`'s media: the conference's placement over the nodes, then its room
        (one node channel, so in this order)."""
        node = self.node
        if target == node.node_id:
            if isinstance(self.local, CascadePort):
                self.local.cascade_changed(call_id, cascade)
            if self.local is not None:
                self.local.room_changed(room)
            return
        placed = w.CascadeChanged(
            node=node.node_id, run=node.run, conference_id=call_id, cascade=cascade
        )
        node.gateway.publish_node(target, placed)
        node.gateway.publish_node(
            target,
            w.RoomChanged(
                node=node.node_id,
                run=node.run,
                call_id=call_id,
                members=list(room.members),
                silent=list(room.silent),
                court=room.court,
                officer=room.officer,
                case_number=room.case_number,
                stage=room.stage,
                watch=room.watch,
            ),
        )

    def node_lost(self, dead: str) -> None:
        """Node `dead` died: the sites whose media it terminated are placed on the live
        nodes and told `media_restart` (they offer again); a conference it was home of moves
        home to the live node with the most of its sites, its state being the core's. The
        other sites keep their peer connections."""
        state = self.node.leader.state
        if state is None:
            return
        nodes = self._nodes(state, dead)
        for call_id, spread in list(state.spreads.items()):
            if dead not in spread.told or spread.room is None or not nodes:
                continue
            lost = [user for user, at in spread.sites.items() if at == dead]
            if spread.home == dead:
                spread.home = moved_home(spread, dead, nodes)
                state.media_nodes[call_id] = spread.home
                log.warning("conference home moved", conference=call_id, to=spread.home, was=dead)
            spread.told.discard(dead)
            spread.sites = {user: at for user, at in spread.sites.items() if at != dead}
            self._place(call_id, spread, nodes)
            if lost:
                self.node.router.deliver(lost, p.MediaRestart(call_id=call_id))


__all__ = ["ClusterMedia", "ClusterRouter"]
