"""A call's media: the members' peer connections and the tracks they publish.

The switchboard decides who is in a call; the room follows (`update`). Every member who has
offered has a `MemberPeer`; every track a member publishes is a `Publication` that every other
member receives. Covert supervisors receive but are never forwarded to anyone. A member who
leaves, goes away, or whose connection fails loses their peer, and everyone stops receiving
their tracks (the server renegotiates those m-lines to inactive).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from media.errors import WrongState
from media.forwarder import Publication
from media.peer import MemberPeer
from media.settings import MediaConfig

log = structlog.get_logger(__name__)

PublicationHook = Callable[["Room", Publication], None]
# Called with (user, publication, started) when the room starts or stops forwarding a video
# track to a member: who watched a call's video is part of its record.
WatchHook = Callable[[str, Publication, bool], None]


class Room:
    def __init__(
        self,
        *,
        call_id: str,
        config: MediaConfig,
        clock: Callable[[], float],
        send_offer: Callable[[str, str, str], None],
        on_publication: PublicationHook | None = None,
        on_watch: WatchHook | None = None,
        kinds: frozenset[str] = frozenset({"audio", "video"}),
    ) -> None:
        self.call_id = call_id
        self._on_watch = on_watch
        # (user, track id) of every video track being forwarded to a member.
        self.watching: set[tuple[str, str]] = set()
        # What this room forwards: a video wall's watch carries video only (the officer is in
        # no call with a watcher; nobody may listen in through a wall), whatever is sent.
        self.kinds = kinds
        self.config = config
        self.clock = clock
        self._send_offer = send_offer
        self._on_publication = on_publication
        self.members: frozenset[str] = frozenset()
        self.silent: frozenset[str] = frozenset()
        self.peers: dict[str, MemberPeer] = {}
        self.publications: dict[str, Publication] = {}
        self.closed = False
        self._closing: set[asyncio.Task[None]] = set()

    def update(self, members: frozenset[str], silent: frozenset[str]) -> None:
        self.members = members
        self.silent = silent
        for user in [u for u in self.peers if u not in members]:
            self._drop(self.peers[user])

    async def offer(self, user: str, sdp: str) -> str:
        """A member's (new) peer connection: answer it and start forwarding both ways."""
        if user not in self.members or self.closed:
            raise WrongState("you have no media in this call")
        old = self.peers.pop(user, None)
        if old is not None:
            self._drop(old)
        peer = MemberPeer(
            call_id=self.call_id,
            user=user,
            publishes=user not in self.silent,
            config=self.config,
            clock=self.clock,
            send_offer=lambda offer_sdp: self._send_offer(user, self.call_id, offer_sdp),
            on_publication=self._published,
            on_failed=self._failed,
        )
        self.peers[user] = peer
        try:
            answer = await peer.answer(sdp)
        except BaseException:
            self._drop(peer)
            raise
        if self.peers.get(user) is not peer:
            # Left, or offered again, while this offer was being answered.
            raise WrongState("media session was replaced")
        return answer

    def start_receiving(self, user: str) -> None:
        """After the member has the answer: send them everything already published."""
        peer = self.peers.get(user)
        if peer is None:
            return
        peer.ready = True
        self._deliver_existing(peer)

    def _deliver_existing(self, peer: MemberPeer) -> None:
        for pub in list(self.publications.values()):
            if pub.owner != peer.user and pub.owner not in self.silent:
                peer.receive(pub)
                self._sent(peer, pub)

    def peer(self, user: str) -> MemberPeer:
        peer = self.peers.get(user)
        if peer is None:
            raise WrongState("no media session: send an offer first")
        return peer

    def _published(self, pub: Publication) -> None:
        if pub.kind not in self.kinds:
            log.info("track not forwarded", call_id=self.call_id, user_id=pub.owner, kind=pub.kind)
            return
        old = self.publications.get(pub.track_id)
        if old is not None:
            self._withdraw(old)
        self.publications[pub.track_id] = pub
        log.info(
            "track published",
            call_id=self.call_id,
            user_id=pub.owner,
            kind=pub.kind,
            codec=pub.codec.mimeType if pub.codec else None,
        )
        if self._on_publication is not None:
            try:
                self._on_publication(self, pub)
            except Exception:
                # Recording is not worth losing the call's media over.
                log.exception("capture failed", call_id=self.call_id, track=pub.track_id)
        if pub.owner in self.silent:
            return
        self._distribute(pub)

    def _distribute(self, pub: Publication) -> None:
        """A call forwards every member's tracks to every other member."""
        for user, peer in self.peers.items():
            if user != pub.owner:
                peer.receive(pub)
                self._sent(peer, pub)

    def _sent(self, peer: MemberPeer, pub: Publication) -> None:
        key = (peer.user, pub.track_id)
        if pub.kind != "video" or pub.track_id not in peer.receiving or key in self.watching:
            return
        self.watching.add(key)
        self._tell_watch(peer.user, pub, True)

    def _unsent(self, user: str, pub: Publication) -> None:
        key = (user, pub.track_id)
        if key in self.watching:
            self.watching.discard(key)
            self._tell_watch(user, pub, False)

    def _tell_watch(self, user: str, pub: Publication, started: bool) -> None:
        if self._on_watch is None:
            return
        try:
            self._on_watch(user, pub, started)
        except Exception:
            # The record of who watched is not worth losing the call's media over.
            log.exception("watch hook failed", call_id=self.call_id, user_id=user)

    def _withdraw(self, pub: Publication) -> None:
        if self.publications.get(pub.track_id) is pub:
            del self.publications[pub.track_id]
        for peer in self.peers.values():
            peer.stop_receiving(pub)
        for user, track in sorted(self.watching):
            if track == pub.track_id:
                self._unsent(user, pub)
        pub.close()

    def _failed(self, peer: MemberPeer) -> None:
        if self.peers.get(peer.user) is peer:
            log.info("media peer lost", call_id=self.call_id, user_id=peer.user)
            del self.peers[peer.user]
        self._drop(peer)

    def _drop(self, peer: MemberPeer) -> None:
        if self.peers.get(peer.user) is peer:
            del self.peers[peer.user]
        for pub in peer.publications:
            self._withdraw(pub)
        replaced = self.peers.get(peer.user) is not None
        for user, track in sorted(self.watching):
            # A peer replaced by a newer one: what the user watches now is the newer one's.
            if user == peer.user and track in self.publications and not replaced:
                self._unsent(user, self.publications[track])
        task = asyncio.get_running_loop().create_task(peer.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        self.closed = True
        for peer in list(self.peers.values()):
            self._drop(peer)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
