"""The one module that reaches into aiortc's internals (aiortc is pinned exactly for it).

aiortc decodes every received track and encodes every sent one. The relay needs neither:
- `tap_receiver` hands each received RTP packet (RTX unwrapped) to a callback before aiortc's
  own handling, which still generates NACKs and receiver reports towards the publisher, and
  stops the receiver's decoder thread, so nothing is ever decoded;
- `SenderTap` sends ready-made RTP packets through a sender's SRTP session and ICE pair,
  keeps the sender's counters right for its sender reports, and takes the subscriber's NACKs
  and keyframe requests for the relay instead of aiortc's encoder.
tests/test_media_hooks.py checks every name used here, so an aiortc upgrade that moves one
fails loudly there rather than silently in a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any, Final

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.clock import current_ntp_time
from aiortc.codecs import CODECS, HEADER_EXTENSIONS, is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unwrap_rtx,
)

from media.numbering import Codecs, Extensions

# Name-mangled attributes of aiortc 1.16.0 used below.
_RX_STOP_DECODER: Final = "_RTCRtpReceiver__stop_decoder"
_TX_MID: Final = "_RTCRtpSender__mid"
_TX_PACKETS: Final = "_RTCRtpSender__packet_count"
_TX_OCTETS: Final = "_RTCRtpSender__octet_count"
_TX_NTP: Final = "_RTCRtpSender__ntp_timestamp"
_TX_RTP_TS: Final = "_RTCRtpSender__rtp_timestamp"

RtpCallback = Callable[[RtpPacket, RTCRtpCodecParameters], None]


def tap_receiver(receiver: RTCRtpReceiver, on_rtp: RtpCallback) -> None:
    """Call `on_rtp(packet, codec)` for every RTP packet `receiver` gets, and never decode."""
    codecs: dict[int, RTCRtpCodecParameters] = {}
    rtx_ssrcs: dict[int, int] = {}
    original_receive = receiver.receive
    original_handle = receiver._handle_rtp_packet

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        for codec in parameters.codecs:
            if codec.payloadType is not None:
                codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                rtx_ssrcs[encoding.rtx.ssrc] = encoding.ssrc
        await original_receive(parameters)
        # The decoder thread aiortc just started would decode every frame; with it gone,
        # the receiver still reassembles frames (cheap) but hands them to nobody.
        getattr(receiver, _RX_STOP_DECODER)()

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = codecs.get(packet.payload_type)
        if codec is not None and receiver._enabled:
            if is_rtx(codec):
                apt = codec.parameters.get("apt")
                ssrc = rtx_ssrcs.get(packet.ssrc)
                if (
                    isinstance(apt, int)
                    and apt in codecs
                    and ssrc is not None
                    and len(packet.payload) >= 2
                ):
                    on_rtp(unwrap_rtx(packet, payload_type=apt, ssrc=ssrc), codecs[apt])
            else:
                on_rtp(packet, codec)
        await original_handle(packet, arrival_time_ms)

    receiver.receive = receive  # type: ignore[method-assign]
    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]


async def request_keyframe(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send the publisher a Picture Loss Indication for its stream `media_ssrc`."""
    await receiver._send_rtcp_pli(media_ssrc)


class IdleTrack(MediaStreamTrack):
    """The track a relay sender holds: aiortc's send loop waits on it forever (instead of
    polling every 20 ms, as it does with no track), while the relay sends the packets."""

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._id = track_id
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self._ended.set()
        super().stop()


class SenderTap:
    """Sends relayed RTP through one aiortc sender, bypassing its encoder.

    `on_nack(seqs)` and `on_keyframe_request()` receive the subscriber's feedback; receiver
    reports and bitrate estimates still reach aiortc (for its statistics).
    """

    def __init__(
        self,
        sender: RTCRtpSender,
        *,
        on_nack: Callable[[list[int]], None],
        on_keyframe_request: Callable[[], None],
        on_ready: Callable[[], None],
    ) -> None:
        self.sender = sender
        self.ssrc: int = sender._ssrc
        self.payload_type: int | None = None
        self.codec: RTCRtpCodecParameters | None = None
        self.mid: str | None = None
        self.ready = False
        self._on_ready = on_ready
        original_send = sender.send
        original_rtcp = sender._handle_rtcp_packet

        async def send(parameters: RTCRtpSendParameters) -> None:
            await original_send(parameters)
            self.codec = parameters.codecs[0]
            self.payload_type = self.codec.payloadType
            self.mid = getattr(sender, _TX_MID)
            self.ready = True
            self._on_ready()

        async def handle_rtcp_packet(packet: Any) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                on_nack(list(packet.lost))
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (
                RTCP_PSFB_FIR,
                RTCP_PSFB_PLI,
            ):
                on_keyframe_request()
            else:
                await original_rtcp(packet)

        sender.send = send  # type: ignore[method-assign]
        sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]

    def extensions_map(self) -> Any:
        return self.sender.transport._rtp_header_extensions_map

    def channel(self) -> tuple[socket.socket, Any, Callable[[bytes], bytes]] | None:
        """What sending needs, resolved once the sender is connected: the socket of the
        nominated ICE pair, the peer's address and the SRTP protect function. The relay
        writes to the socket itself: a full socket buffer then raises BlockingIOError, which
        the relay treats as a slow subscriber, instead of asyncio queueing without bound.
        aiortc cannot restart ICE, so the pair does not change for the connection's life."""
        dtls = self.sender.transport
        if dtls._state != DtlsState.CONNECTED or dtls._tx_srtp is None:
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return None
        sock: socket.socket = pair.protocol.transport._sock  # type: ignore[attr-defined]
        return sock, pair.remote_addr, dtls._tx_srtp.protect

    def count(self, packets: int, octets: int, timestamp: int) -> None:
        """Add to the sender's counters, from which aiortc builds its sender reports."""
        sender = self.sender
        setattr(sender, _TX_PACKETS, getattr(sender, _TX_PACKETS) + packets)
        setattr(sender, _TX_OCTETS, getattr(sender, _TX_OCTETS) + octets)
        setattr(sender, _TX_RTP_TS, timestamp)
        setattr(sender, _TX_NTP, current_ntp_time())


@contextlib.contextmanager
def offer_tables(codecs: Codecs, extensions: Extensions) -> Iterator[None]:
    """While aiortc builds one offer, use these codec and extension tables instead of its
    module-wide ones (see media.numbering). `createOffer` reads them synchronously, with no
    await in between, so no other peer connection can see the swap."""
    saved_codecs = {kind: CODECS[kind] for kind in codecs}
    saved_extensions = {kind: HEADER_EXTENSIONS[kind] for kind in extensions}
    CODECS.update(codecs)
    HEADER_EXTENSIONS.update(extensions)
    try:
        yield
    finally:
        CODECS.update(saved_codecs)
        HEADER_EXTENSIONS.update(saved_extensions)
