"""The hub's port to the media server: one interface, whatever serves it.

The switchboard decides who is in which call and emits `Room` actions; the hub passes them
here, and hands over each member's `offer`, `answer` and `ice_candidate` once the switchboard
has checked that the sender is in the (answered) call. Replies and the server's own offers
come back through the `deliver` callback given at `start`, so they are queued behind
everything the hub already sent that user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

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
