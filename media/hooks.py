"""Where the media server reaches into aiortc's and aioice's internals (both pinned exactly for
it): private attributes of their live objects, and their modules that are not public API; and
into pylibsrtp's (pinned too), for the C fan-out (`srtp_context`, `srtp_protect_address`).

aiortc decodes every received track and encodes every sent one. The relay needs neither:
- `tap_receiver` hands each received RTP packet (RTX unwrapped) to a callback before aiortc's
  own handling, which still generates NACKs and receiver reports towards the publisher, and
  stops the receiver's decoder thread, so nothing is ever decoded;
- `SenderTap` sends ready-made RTP packets through a sender's SRTP session and ICE pair,
  keeps the sender's counters right for its sender reports, and takes the subscriber's NACKs
  and keyframe requests for the relay instead of aiortc's encoder.
Negotiation reads what a transceiver negotiated and names a sender's stream
(`offered_direction`, `negotiated_codecs`, `set_stream_id`, ...), builds each offer from the
client's own codec tables (`offer_tables`) and parses candidates (`parse_candidate`). ICE
gathers on the configured addresses and ports (`use_host_addresses`, `use_ice_loop`). Each
function's docstring says which internals it relies on.

This module and media.jitterbuffer (aiortc's frame reassembly, borrowed for recording) are the
only two that do this: `lint-imports` holds every other module to the public API (the
`internals` contract in pyproject.toml). tests/test_media_hooks.py checks every internal name
the two use, on real objects, so an upgrade that moves one fails loudly there rather than
silently in a call. Every attribute starting with `_` in this module is aiortc's, aioice's or
pylibsrtp's (one, `_sock`, is asyncio's); our own state has plain names, so that test finds them
all by reading this file.

Public API, for this purpose (the contract's `public_modules`): what `aiortc` and `aioice`
export at their top level; the modules that define the types and errors of that API
(`aiortc.rtcrtpparameters`, `aiortc.mediastreams`, `aiortc.exceptions`); the RTP/RTCP packet
classes of `aiortc.rtp`; the documented helpers of `aiortc.contrib.media`. Not public:
`aiortc.codecs` (the codec registry and depayloaders RTCRtpSender and RTCRtpReceiver use
inside: undocumented, and its tables are module-wide state), `aiortc.sdp`, `aiortc.clock`,
`aiortc.jitterbuffer`, `aiortc.utils`, `aioice.ice`, and the other modules that define the
classes `aiortc` exports (import those from `aiortc`: the modules hold internals beside them,
such as `aiortc.rtcdtlstransport.State`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import types
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol

import aioice.ice
from aiortc import (
    MediaStreamError,
    MediaStreamTrack,
    RTCIceCandidate,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.clock import current_ntp_time
from aiortc.codecs import CODECS, HEADER_EXTENSIONS
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    unwrap_rtx,
)
from aiortc.sdp import candidate_from_sdp
from pylibsrtp import Session as SrtpSession
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from media.numbering import Codecs, CodecTable, Extensions, ExtensionTable, is_rtx

# Name-mangled attributes of aiortc 1.16.0 used below.
_RX_STOP_DECODER: Final = "_RTCRtpReceiver__stop_decoder"
_TX_MID: Final = "_RTCRtpSender__mid"
_TX_PACKETS: Final = "_RTCRtpSender__packet_count"
_TX_OCTETS: Final = "_RTCRtpSender__octet_count"
_TX_NTP: Final = "_RTCRtpSender__ntp_timestamp"
_TX_RTP_TS: Final = "_RTCRtpSender__rtp_timestamp"

RtpCallback = Callable[[RtpPacket, RTCRtpCodecParameters], None]

# ---- receiving ----------------------------------------------------------------------------


def tap_receiver(receiver: RTCRtpReceiver, on_rtp: RtpCallback) -> None:
    """Call `on_rtp(packet, codec)` for every RTP packet `receiver` gets, and never decode.

    Relies on: `receive(parameters)` starting the decoder thread, which `__stop_decoder()`
    stops; every packet passing through `_handle_rtp_packet(packet, arrival_time_ms)`, RTX
    included; `_enabled` being false while the receiver is stopped."""
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
    """Send the publisher a Picture Loss Indication for its stream `media_ssrc`.

    Relies on: `RTCRtpReceiver._send_rtcp_pli(media_ssrc)`, what aiortc's receiver sends
    after a loss itself."""
    await receiver._send_rtcp_pli(media_ssrc)


# ---- sending ------------------------------------------------------------------------------


class IdleTrack(MediaStreamTrack):
    """The track a relay sender holds: aiortc's send loop waits on it forever (instead of
    polling every 20 ms, as it does with no track), while the relay sends the packets.

    Relies on: `MediaStreamTrack.id` reading `_id`, so the track keeps the publication's id."""

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._id = track_id
        self.stopped = asyncio.Event()

    async def recv(self) -> Any:
        await self.stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self.stopped.set()
        super().stop()


class SenderTap:
    """Sends relayed RTP through one aiortc sender, bypassing its encoder.

    `on_nack(seqs)` and `on_keyframe_request()` receive the subscriber's feedback, and
    `on_loss(fraction_lost)` each receiver report block about this sender (RTCP's fraction
    lost, 0-255); receiver reports and bitrate estimates still reach aiortc (for its
    statistics).

    Relies on: the sender's `_ssrc`; `send(parameters)` negotiating the codec and setting the
    `__mid`; every RTCP packet for the sender passing through `_handle_rtcp_packet(packet)`;
    the counters `__packet_count`, `__octet_count`, `__rtp_timestamp` and `__ntp_timestamp`
    from which it builds sender reports; and, for `channel`, the DTLS transport's `_state`,
    `_tx_srtp` and `_rtp_header_extensions_map`, its ICE transport's aioice `_connection`
    with the `_nominated` pair per component, and that pair's asyncio transport's `_sock`.
    """

    def __init__(
        self,
        sender: RTCRtpSender,
        *,
        on_nack: Callable[[list[int]], None],
        on_keyframe_request: Callable[[], None],
        on_ready: Callable[[], None],
        on_loss: Callable[[int], None] | None = None,
    ) -> None:
        self.sender = sender
        self.ssrc: int = sender._ssrc
        self.payload_type: int | None = None
        self.codec: RTCRtpCodecParameters | None = None
        self.mid: str | None = None
        self.ready = False
        self.on_ready = on_ready
        original_send = sender.send
        original_rtcp = sender._handle_rtcp_packet

        async def send(parameters: RTCRtpSendParameters) -> None:
            await original_send(parameters)
            self.codec = parameters.codecs[0]
            self.payload_type = self.codec.payloadType
            self.mid = getattr(sender, _TX_MID)
            self.ready = True
            self.on_ready()

        async def handle_rtcp_packet(packet: Any) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                on_nack(list(packet.lost))
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (
                RTCP_PSFB_FIR,
                RTCP_PSFB_PLI,
            ):
                on_keyframe_request()
            else:
                if on_loss is not None and isinstance(packet, RtcpRrPacket | RtcpSrPacket):
                    for report in packet.reports:
                        if report.ssrc == self.ssrc:
                            on_loss(report.fraction_lost)
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

    def srtp_session(self) -> SrtpSession | None:
        """The sender's SRTP session, once connected: the C fan-out protects with its
        context (`srtp_context`), so that the rollover counter and replay state stay the
        ones aiortc uses for this sender's retransmissions and RTCP."""
        session: SrtpSession | None = self.sender.transport._tx_srtp
        return session

    def count(self, packets: int, octets: int, timestamp: int, ntp: int | None = None) -> None:
        """Add to the sender's counters, from which aiortc builds its sender reports.
        `ntp`: when `timestamp` was sent (`ntp_now()`; None: now), so that a caller counting
        one frame for many senders reads the clock once."""
        sender = self.sender
        setattr(sender, _TX_PACKETS, getattr(sender, _TX_PACKETS) + packets)
        setattr(sender, _TX_OCTETS, getattr(sender, _TX_OCTETS) + octets)
        setattr(sender, _TX_RTP_TS, timestamp)
        setattr(sender, _TX_NTP, current_ntp_time() if ntp is None else ntp)


def ntp_now() -> int:
    """Now as a 64-bit NTP timestamp, as aiortc's sender reports carry it.

    Relies on: `aiortc.clock.current_ntp_time()`, what aiortc's own sender records."""
    return current_ntp_time()


def srtp_context(session: SrtpSession) -> int:
    """The address of `session`'s libsrtp context (`srtp_t`), for C code that calls
    `srtp_protect` itself (media.fanout). Valid while `session` lives: keep a reference.

    Relies on: pylibsrtp's Session keeping its context in `_srtp`, an `srtp_t *`."""
    return int(srtp_ffi.cast("uintptr_t", session._srtp[0]))


def srtp_protect_address() -> int:
    """The address of libsrtp's `srtp_protect` inside pylibsrtp's own library, the one whose
    contexts `srtp_context` gives (a second copy of libsrtp would not know them).

    Relies on: pylibsrtp's cffi module `pylibsrtp._binding` exporting `lib.srtp_protect`."""
    return int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, "srtp_protect")))


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """Name the stream `sender`'s track belongs to (the msid the remote peer sees).

    Relies on: RTCPeerConnection writing the sender's `_stream_id` into the msid of the
    sections it offers or answers (aiortc has no public setter, and picks a random one)."""
    sender._stream_id = stream_id


# ---- negotiation --------------------------------------------------------------------------


def offered_direction(transceiver: RTCRtpTransceiver) -> str | None:
    """The direction the remote offer gave this transceiver's section, as seen from here:
    "recvonly" means the remote peer sends. None before a remote offer.

    Relies on: `setRemoteDescription` keeping it in `_offerDirection`, already reversed."""
    return transceiver._offerDirection


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs (RTX included) negotiated for this transceiver, with their payload types.

    Relies on: `_codecs`, which aiortc fills when it applies a description."""
    return list(transceiver._codecs)


def negotiated_header_extensions(
    transceiver: RTCRtpTransceiver,
) -> list[RTCRtpHeaderExtensionParameters]:
    """The RTP header extensions negotiated for this transceiver, with their ids.

    Relies on: `_headerExtensions`, which aiortc fills when it applies a description."""
    return list(transceiver._headerExtensions)


def default_tables() -> tuple[CodecTable, ExtensionTable]:
    """aiortc's own codec and header-extension tables, by kind, which media.numbering
    renumbers per client.

    Relies on: `aiortc.codecs.CODECS` and `HEADER_EXTENSIONS`, module-wide dicts (kind ->
    list) from which aiortc builds every offer; read here, never changed."""
    return CODECS, HEADER_EXTENSIONS


@contextlib.contextmanager
def offer_tables(codecs: Codecs, extensions: Extensions) -> Iterator[None]:
    """While aiortc builds one offer, use these codec and extension tables instead of its
    module-wide ones (see media.numbering). `createOffer` reads them synchronously, with no
    await in between, so no other peer connection can see the swap.

    Relies on: `createOffer` reading `aiortc.codecs.CODECS` and `HEADER_EXTENSIONS` (through
    `RTCRtpSender.getCapabilities` and the section builder) on each call."""
    saved_codecs = {kind: CODECS[kind] for kind in codecs}
    saved_extensions = {kind: HEADER_EXTENSIONS[kind] for kind in extensions}
    CODECS.update(codecs)
    HEADER_EXTENSIONS.update(extensions)
    try:
        yield
    finally:
        CODECS.update(saved_codecs)
        HEADER_EXTENSIONS.update(saved_extensions)


def parse_candidate(text: str) -> RTCIceCandidate:
    """An ICE candidate from its SDP form without the "candidate:" prefix. Raises
    ValueError for text that is not one.

    Relies on: `aiortc.sdp.candidate_from_sdp`, the parser aiortc applies to candidates in
    a description, raising ValueError, IndexError or AssertionError for a malformed one."""
    try:
        return candidate_from_sdp(text)
    except (ValueError, IndexError, AssertionError):
        raise ValueError("not an ICE candidate") from None


# ---- ICE ----------------------------------------------------------------------------------


class HostAddresses(Protocol):
    """What replaces aioice's host address scan; aioice passes both by keyword."""

    def __call__(self, use_ipv4: bool, use_ipv6: bool) -> list[str]: ...


LoopWrapper = Callable[[asyncio.AbstractEventLoop], Any]

_aioice_host_addresses: Final = aioice.ice.get_host_addresses


def use_host_addresses(lookup: HostAddresses | None) -> None:
    """Have every ICE connection in this process gather host candidates on the addresses
    `lookup(use_ipv4, use_ipv6)` returns; None: on aioice's own scan of the interfaces.

    Relies on: `aioice.ice.Connection.gather_candidates` calling the module's global
    `get_host_addresses(use_ipv4=..., use_ipv6=...)`, so replacing the global reaches every
    connection (aioice has no per-connection setting)."""
    aioice.ice.get_host_addresses = lookup or _aioice_host_addresses


class _AsyncioForIce(types.SimpleNamespace):
    """asyncio, as aioice.ice sees it, but for the loop it hands out."""

    def __init__(self, wrap: LoopWrapper) -> None:
        super().__init__()
        self.wrap = wrap

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    def get_running_loop(self) -> Any:
        return self.wrap(asyncio.get_running_loop())


def use_ice_loop(wrap: LoopWrapper | None) -> None:
    """Have aioice bind its host candidates' sockets through `wrap(loop)` rather than the
    running loop itself; None: through the loop itself.

    Relies on: `aioice.ice` looking asyncio up through its module global `asyncio`, and
    `Connection.get_component_candidates` binding each host candidate with
    `asyncio.get_running_loop().create_datagram_endpoint(factory, local_addr=(address, 0))`."""
    if wrap is None:
        aioice.ice.asyncio = asyncio  # type: ignore[attr-defined]
    else:
        aioice.ice.asyncio = _AsyncioForIce(wrap)  # type: ignore[attr-defined,assignment]
