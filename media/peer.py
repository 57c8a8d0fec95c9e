"""One call member's peer connection with the server, and its negotiation.

The client offers first (its own tracks); the server answers. Whenever the member should
receive a different set of tracks, the server offers and the client answers; the server has
at most one offer out at a time and folds changes made meanwhile into the next one. aiortc
cannot restart ICE or roll back, so a client that needs a new transport (a phone that changed
network) simply offers again: that replaces this object with a fresh one (see media.room).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Final

import structlog
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import (
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

from media import hooks, ice
from media.errors import NegotiationFailed, WrongState
from media.forwarder import Publication, Subscription
from media.numbering import Codecs, Extensions, client_tables, is_rtx
from media.settings import MediaConfig, layer_policy

log = structlog.get_logger(__name__)

# What aiortc raises for an SDP it cannot use.
_SDP_ERRORS: Final = (
    ValueError,
    TypeError,
    AssertionError,
    KeyError,
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)
_PUBLISHING: Final = ("sendrecv", "recvonly")


def _capabilities_for(codec: RTCRtpCodecParameters) -> list[RTCRtpCodecCapability]:
    """The codec preferences that hold a subscriber to the publisher's codec (plus RTX)."""
    kind = codec.mimeType.split("/")[0]
    chosen: list[RTCRtpCodecCapability] = []
    rtx: list[RTCRtpCodecCapability] = []
    for cap in RTCRtpSender.getCapabilities(kind).codecs:
        if is_rtx(cap):
            rtx.append(cap)
        elif cap.mimeType.lower() == codec.mimeType.lower() and _same_profile(cap, codec):
            chosen.append(cap)
    return chosen[:1] + rtx if chosen else []


def _capabilities_named(mime_type: str) -> list[RTCRtpCodecCapability]:
    """The codec preferences for a slot in `mime_type` (plus RTX for video)."""
    kind = mime_type.split("/")[0]
    chosen: list[RTCRtpCodecCapability] = []
    rtx: list[RTCRtpCodecCapability] = []
    for cap in RTCRtpSender.getCapabilities(kind).codecs:
        if is_rtx(cap):
            rtx.append(cap)
        elif cap.mimeType.lower() == mime_type.lower():
            chosen.append(cap)
    return chosen[:1] + rtx if chosen else []


def _same_profile(cap: RTCRtpCodecCapability, codec: RTCRtpCodecParameters) -> bool:
    if codec.mimeType.lower() != "video/h264":
        return True
    want = str(codec.parameters.get("profile-level-id", "")).lower()
    have = str(cap.parameters.get("profile-level-id", "")).lower()
    # Profile (first two bytes) decides decodability; the level is the decoder's ceiling.
    return want[:4] == have[:4] and str(cap.parameters.get("packetization-mode")) == str(
        codec.parameters.get("packetization-mode", "0")
    )


class MemberPeer:
    def __init__(
        self,
        *,
        call_id: str,
        user: str,
        publishes: bool,
        config: MediaConfig,
        clock: Callable[[], float],
        send_offer: Callable[[str], None],
        on_publication: Callable[[Publication], None],
        on_failed: Callable[[MemberPeer], None],
    ) -> None:
        self.call_id = call_id
        self.user = user
        self.publishes = publishes
        self.config = config
        self.clock = clock
        self._send_offer = send_offer
        self._on_publication = on_publication
        self._on_failed = on_failed
        self.pc = RTCPeerConnection(ice.rtc_configuration(config))
        self.publications: list[Publication] = []
        # Publication track id -> the transceiver and subscription feeding this member.
        self.receiving: dict[str, tuple[RTCRtpTransceiver, Subscription]] = {}
        # Numbers each track sent to this member: a publisher who comes back (F5, a media
        # restart) publishes `owner:kind` again, and the withdrawn track's inactive section
        # keeps its msid, so the same msid twice would make the browser refuse the offer
        # ("Duplicate a=msid lines").
        self._sent_serial = itertools.count(1)
        # A conference member's slots (media.stage), by name.
        self.slots: dict[str, Subscription] = {}
        self.offer_out = False
        self.needs_offer = False
        self.closed = False
        # False until the client has the answer to its offer: a server offer sent before it
        # would cross the answer (see Room.start_receiving).
        self.ready = False
        self._tables: tuple[Codecs, Extensions] | None = None
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.info("media peer state", call_id=self.call_id, user_id=self.user, state=state)
        if state in ("failed", "closed") and not self.closed:
            self._on_failed(self)

    # ---- the client's offer -----------------------------------------------------------

    async def answer(self, sdp: str) -> str:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(ice.strip_mdns(sdp), "offer"))
        except _SDP_ERRORS as exc:
            raise NegotiationFailed(f"offer rejected: {exc}") from None
        if not self.pc.getTransceivers():
            raise NegotiationFailed("offer has no audio or video section")
        pending: list[tuple[RTCRtpTransceiver, Publication]] = []
        for transceiver in self.pc.getTransceivers():
            # As seen from here: "recvonly" = the client sends.
            offered = hooks.offered_direction(transceiver)
            if self.publishes and offered in _PUBLISHING and transceiver.kind in ("audio", "video"):
                pub = Publication(
                    owner=self.user,
                    kind=transceiver.kind,
                    receiver=transceiver.receiver,
                    keyframe_interval=self.config.keyframe_interval_s,
                    clock=self.clock,
                )
                _tap(transceiver.receiver, pub)
                pending.append((transceiver, pub))
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except _SDP_ERRORS as exc:
            raise NegotiationFailed(f"no common media: {exc}") from None
        negotiated: dict[str, list[RTCRtpCodecParameters]] = {}
        extensions = []
        for transceiver in self.pc.getTransceivers():
            negotiated.setdefault(transceiver.kind, []).extend(hooks.negotiated_codecs(transceiver))
            extensions.extend(hooks.negotiated_header_extensions(transceiver))
        self._tables = client_tables(hooks.default_tables(), negotiated, extensions)
        for transceiver, pub in pending:
            codecs = [c for c in hooks.negotiated_codecs(transceiver) if not is_rtx(c)]
            if not codecs or transceiver.currentDirection not in ("recvonly", "sendrecv"):
                continue
            pub.codec = codecs[0]
            self.publications.append(pub)
            self._on_publication(pub)
        return str(self.pc.localDescription.sdp)

    async def add_candidate(self, candidate: str, sdp_mid: str | None, index: int | None) -> None:
        if not candidate:
            return  # end of candidates: aioice needs no telling
        if ice.is_mdns(candidate):
            return
        text = candidate[len("candidate:") :] if candidate.startswith("candidate:") else candidate
        try:
            parsed = hooks.parse_candidate(text)
        except ValueError:
            raise NegotiationFailed("candidate is not an ICE candidate") from None
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = index
        try:
            await self.pc.addIceCandidate(parsed)
        except _SDP_ERRORS as exc:
            raise NegotiationFailed(f"candidate rejected: {exc}") from None

    # ---- tracks this member receives --------------------------------------------------

    def receive(self, pub: Publication) -> None:
        """Start sending `pub` to this member (after the next offer is answered)."""
        if pub.track_id in self.receiving or pub.codec is None or self.closed:
            return
        if not self.ready:
            return  # start_receiving picks it up
        prefs = _capabilities_for(pub.codec)
        if not prefs:
            log.warning("codec cannot be relayed", codec=pub.codec.mimeType, user_id=self.user)
            return
        transceiver = self.pc.addTransceiver(pub.kind, direction="sendonly")
        transceiver.setCodecPreferences(prefs)
        sent_id = f"{pub.track_id}#{next(self._sent_serial)}"
        transceiver.sender.replaceTrack(hooks.IdleTrack(pub.kind, sent_id))
        # The client learns whose track it is from the stream id (msid).
        hooks.set_stream_id(transceiver.sender, pub.owner)
        sub = pub.subscribe(
            self.user,
            transceiver.sender,
            self.config.max_subscriber_backlog_bytes,
            engine=self.config.fanout,
            layers=layer_policy(self.config) if pub.kind == "video" else None,
        )
        self.receiving[pub.track_id] = (transceiver, sub)
        self.renegotiate()

    def open_slots(self, slots: list[tuple[str, str]], codecs: dict[str, str]) -> None:
        """Add a conference's slots, `(name, kind)`, each a sendonly track whose stream id is
        its name, held to `codecs[kind]` (a MIME type): what switches onto a slot later must
        be in that codec. They start idle; one offer carries them all."""
        added = False
        for name, kind in slots:
            if name in self.slots or self.closed:
                continue
            prefs = _capabilities_named(codecs[kind])
            transceiver = self.pc.addTransceiver(kind, direction="sendonly")
            if prefs:
                transceiver.setCodecPreferences(prefs)
            transceiver.sender.replaceTrack(hooks.IdleTrack(kind, f"{name}:{kind}"))
            hooks.set_stream_id(transceiver.sender, name)
            self.slots[name] = Subscription(
                None,
                self.user,
                transceiver.sender,
                self.config.max_subscriber_backlog_bytes,
                key=f"{self.user}/{name}",
                engine=self.config.fanout,
                layers=layer_policy(self.config) if kind == "video" else None,
            )
            added = True
        if added:
            self.renegotiate()

    def stop_receiving(self, pub: Publication) -> None:
        entry = self.receiving.pop(pub.track_id, None)
        pub.unsubscribe(self.user)
        if entry is None or self.closed:
            return
        transceiver, _ = entry
        transceiver.direction = "inactive"
        self.renegotiate()

    def renegotiate(self) -> None:
        if self.closed:
            return
        # Changes made before the pending offer is built are in it; later ones need another.
        self.needs_offer = True
        if self.offer_out or self.pc.signalingState != "stable":
            return
        self.offer_out = True
        task = asyncio.get_running_loop().create_task(self._offer())
        task.add_done_callback(_log_failure)

    async def _offer(self) -> None:
        self.needs_offer = False
        assert self._tables is not None
        with hooks.offer_tables(*self._tables):
            offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        if self.closed:
            return
        self._send_offer(str(self.pc.localDescription.sdp))

    async def accept_answer(self, sdp: str) -> None:
        if not self.offer_out or self.pc.signalingState != "have-local-offer":
            raise WrongState("no offer from the server is waiting for an answer")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(ice.strip_mdns(sdp), "answer"))
        except _SDP_ERRORS as exc:
            raise NegotiationFailed(f"answer rejected: {exc}") from None
        finally:
            self.offer_out = False
        if self.needs_offer:
            self.renegotiate()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for pub in self.publications:
            pub.close()
        for _, sub in self.receiving.values():
            if sub.publication is not None:
                sub.publication.unsubscribe(self.user)
        self.receiving.clear()
        for sub in self.slots.values():
            sub.switch(None, 0)
            sub.close()
        self.slots.clear()
        await self.pc.close()


def _tap(receiver: RTCRtpReceiver, pub: Publication) -> None:
    hooks.tap_receiver(receiver, pub.forward)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("renegotiation failed", exc_info=task.exception())
