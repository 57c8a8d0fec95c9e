"""The hub's port to the media server: one interface, whatever serves it.

The switchboard decides who is in which call and emits `Room` actions; the hub passes them
here, and hands over each member's `offer`, `answer` and `ice_candidate` once the switchboard
has checked that the sender is in the (answered) call. Replies and the server's own offers
come back through the `deliver` callback given at `start`, so they are queued behind
everything the hub already sent that user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from signalling import protocol as p
from signalling.core.actions import Room

MediaMessage = p.MediaMessage
# Queues a message for a user behind everything already sent to them.
Deliver = Callable[[str, p.ServerMessage], None]


class MediaPort(Protocol):
    def room_changed(self, change: Room) -> None:
        """`change.members` may have media in the call now (empty: the call's media ends);
        `change.silent` (covert supervisors) receive but are never forwarded to anyone."""

    async def signal(self, user: str, message: MediaMessage) -> None:
        """Carry out a member's media message; raises a ClientError the hub answers."""

    async def start(self, deliver: Deliver) -> None:
        """Called once the trace is open, before the first connection; replies and the
        server's own offers go to `deliver`."""

    def health(self) -> dict[str, object]: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Cascade:
    """A conference spread over several media nodes (docs/cluster.md, *One conference over
    every node*): the authority's placement, sent to each of its nodes before each room
    change. `home` routes it; `sites` says each member's node; `addresses` each node's
    cascade UDP address ("host:port"); `key` (32 bytes) seals the datagrams between them.
    The key is a secret: never logged (it is left out of the repr). `feeds`: each shown
    call's officer (`Stage.feeds`) and the node of the call's media, which sends the feed
    to home like a site's uplink."""

    home: str
    sites: dict[str, str]
    addresses: dict[str, str]
    key: bytes = field(repr=False)
    feeds: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class CascadePort(Protocol):
    """A MediaPort that can take part in a conference spread over nodes."""

    def cascade_address(self) -> str:
        """This node's cascade UDP address ("host:port"); "" when it has none (yet)."""

    def cascade_changed(self, conference_id: str, cascade: Cascade | None) -> None:
        """The conference's placement over the nodes from now on (None: on this node only);
        its `room_changed` follows, with every member (the port keeps its own)."""
