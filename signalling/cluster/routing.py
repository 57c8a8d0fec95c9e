"""How a node of a cluster reaches users and media: the hub's `Router` and `MediaPort` when
`[redis] url` is set (signalling/cluster/link.py builds them; docs/cluster.md).

`ClusterRouter`: on the authority each delivery goes to the node serving its recipient (the
authority's `where`); elsewhere (error replies, a media node's answers) to this node's
connections, or through the recipients' presence keys. `ClusterMedia`: each call's media on
one node, chosen (`authority.pick_media_node`) when the call first has media.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from signalling import protocol as p
from signalling.cluster import wire as w
from signalling.connection import Connection
from signalling.core.actions import Room
from signalling.errors import MediaUnavailable
from signalling.media_port import Deliver, MediaMessage, MediaPort

if TYPE_CHECKING:
    from signalling.cluster.link import RedisCoreLink


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
        if not change.members and change.call_id not in state.media_nodes:
            return
        target = state.media_node(change.call_id, node.registry.alive(), node.node_id)
        if not change.members:
            del state.media_nodes[change.call_id]
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
        if target is None or target == node.node_id:
            if self.local is None:
                raise MediaUnavailable("this server relays no media")
            await self.local.signal(user, message)
            return
        node.gateway.publish_node(
            target, w.Signal(node=node.node_id, run=node.run, user=user, message=message)
        )


__all__ = ["ClusterMedia", "ClusterRouter"]
