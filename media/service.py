"""The media server behind the hub's MediaPort: rooms of aiortc peer connections, one per
answered call, forwarding RTP between members and feeding each call's recording.

Each member's media messages are carried out one at a time, in the order they arrived
(an `ice_candidate` right behind its `offer` must find the peer connection made), with a
lock per member; different members and calls proceed concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from commandcenter.config import MediaConfig
from media import ice
from media.errors import WrongState
from media.forwarder import Publication
from media.room import PublicationHook, Room
from signalling import protocol as p
from signalling.media_port import MediaMessage

log = structlog.get_logger(__name__)

Deliver = Callable[[str, p.ServerMessage], None]


class MediaService:
    def __init__(
        self,
        *,
        config: MediaConfig,
        deliver: Deliver,
        clock: Callable[[], float],
        on_room_opened: Callable[[Room], None] | None = None,
        on_room_closed: Callable[[Room], asyncio.Future[None] | None] | None = None,
        on_publication: PublicationHook | None = None,
    ) -> None:
        self.config = config
        self.deliver = deliver
        self.clock = clock
        self.rooms: dict[str, Room] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._on_room_opened = on_room_opened
        self._on_room_closed = on_room_closed
        self._on_publication = on_publication
        self._closing: set[asyncio.Task[None]] = set()
        ice.use_addresses(config.ice_addresses)

    # ---- MediaPort --------------------------------------------------------------------

    def room_changed(self, call_id: str, members: tuple[str, ...], silent: tuple[str, ...]) -> None:
        room = self.rooms.get(call_id)
        if not members:
            if room is not None:
                del self.rooms[call_id]
                self._close(room)
            return
        if room is None:
            room = Room(
                call_id=call_id,
                config=self.config,
                clock=self.clock,
                send_offer=self._send_offer,
                on_publication=self._on_publication,
            )
            self.rooms[call_id] = room
            if self._on_room_opened is not None:
                self._on_room_opened(room)
        room.update(frozenset(members), frozenset(silent))

    async def signal(self, user: str, message: MediaMessage) -> None:
        lock = self._locks.setdefault((message.call_id, user), asyncio.Lock())
        try:
            async with lock:
                await self._carry_out(user, message)
        finally:
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._locks.pop((message.call_id, user), None)

    def health(self) -> dict[str, object]:
        return {
            "media_rooms": len(self.rooms),
            "media_peers": sum(len(r.peers) for r in self.rooms.values()),
        }

    async def stop(self) -> None:
        for call_id in list(self.rooms):
            self._close(self.rooms.pop(call_id))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # ---- internals --------------------------------------------------------------------

    async def _carry_out(self, user: str, message: MediaMessage) -> None:
        room = self._room(message.call_id)
        match message:
            case p.Offer():
                sdp = await room.offer(user, message.sdp)
                self.deliver(user, p.ServerAnswer(ref=message.id, call_id=room.call_id, sdp=sdp))
                # Queued behind the answer: the client must have applied it first.
                room.start_receiving(user)
            case p.Answer():
                await room.peer(user).accept_answer(message.sdp)
                self.deliver(user, p.Ack(ref=message.id))
            case p.IceCandidate():
                await room.peer(user).add_candidate(
                    message.candidate, message.sdp_mid, message.sdp_mline_index
                )
                self.deliver(user, p.Ack(ref=message.id))

    def _room(self, call_id: str) -> Room:
        room = self.rooms.get(call_id)
        if room is None:
            raise WrongState("this call has no media")
        return room

    def _send_offer(self, user: str, call_id: str, sdp: str) -> None:
        self.deliver(user, p.ServerOffer(call_id=call_id, sdp=sdp))

    def _close(self, room: Room) -> None:
        async def close() -> None:
            await room.close()
            if self._on_room_closed is not None:
                result = self._on_room_closed(room)
                if result is not None:
                    await result

        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def publications(self) -> list[Publication]:
        return [pub for room in self.rooms.values() for pub in room.publications.values()]
