"""Loud failures for an aiortc, aioice or pylibsrtp upgrade that moves what media.hooks and
media.jitterbuffer reach into: every internal name they use (found by reading them) is
checked here, on real objects of the pinned versions, for the shape and behaviour they rely
on."""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import inspect
import re
import socket
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aioice
import aioice.ice
import aiortc.codecs
import aiortc.jitterbuffer
import pylibsrtp
import pytest
from aiortc import (
    RTCIceCandidate,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.clock import current_ntp_time
from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from aiortc.sdp import candidate_from_sdp
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from media import hooks, ice, jitterbuffer
from tools.internals_contract import is_module


def test_aiortc_is_the_pinned_version() -> None:
    """media.hooks was written against this release; review it before changing the pin."""
    assert importlib.metadata.version("aiortc") == "1.16.0"
    assert importlib.metadata.version("aioice") == "0.13.0"


async def test_private_names_used_by_the_hooks_exist() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        sender, receiver = transceiver.sender, transceiver.receiver
        for name in (hooks._TX_MID, hooks._TX_PACKETS, hooks._TX_OCTETS, hooks._TX_NTP):
            assert hasattr(sender, name), name
        assert hasattr(sender, hooks._TX_RTP_TS)
        assert callable(getattr(receiver, hooks._RX_STOP_DECODER))
        for name in ("_handle_rtp_packet", "_send_rtcp_pli", "_enabled", "receive"):
            assert hasattr(receiver, name), name
        for name in ("_handle_rtcp_packet", "_ssrc", "_stream_id", "send"):
            assert hasattr(sender, name), name
        assert hasattr(transceiver, "_offerDirection")
        assert hasattr(transceiver, "_codecs")
        dtls = sender.transport
        assert isinstance(dtls, RTCDtlsTransport)
        for name in ("_state", "_tx_srtp", "_rtp_header_extensions_map"):
            assert hasattr(dtls, name), name
        assert hasattr(dtls.transport, "_connection")
        assert hasattr(dtls.transport._connection, "_nominated")
    finally:
        await pc.close()


def test_use_addresses_replaces_aioice_host_scan() -> None:
    ice.use_addresses(["127.0.0.1", "::1"])
    try:
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    finally:
        ice.use_addresses([])
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)


def test_mdns_candidates_are_recognised_and_stripped() -> None:
    cand = "candidate:1 1 udp 2122260223 3f1e2d4c-1111-2222-3333-444455556666.local 54321 typ host"
    assert ice.is_mdns(cand)
    assert not ice.is_mdns("candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host")
    sdp = "v=0\r\na=candidate:" + cand[len("candidate:") :] + "\r\na=mid:0\r\n"
    assert ".local" not in ice.strip_mdns(sdp)
    assert "a=mid:0" in ice.strip_mdns(sdp)


async def test_port_range_confines_host_candidates() -> None:
    """With a port range set, every host candidate binds a port inside it."""
    ice.use_addresses(["127.0.0.1"])
    ice.use_port_range(47000, 47009)
    pcs = [RTCPeerConnection() for _ in range(3)]
    try:
        for pc in pcs:
            pc.addTransceiver("audio")
            await pc.setLocalDescription(await pc.createOffer())
            ports = [
                int(line.split()[5])
                for line in pc.localDescription.sdp.splitlines()
                if line.startswith("a=candidate:")
            ]
            assert ports
            assert all(47000 <= port <= 47009 for port in ports), ports
    finally:
        ice.use_port_range(0, 0)
        ice.use_addresses([])
        for pc in pcs:
            await pc.close()
    assert aioice.ice.asyncio is asyncio  # type: ignore[attr-defined]


# ---- the contract: every internal name media.hooks and media.jitterbuffer use ------------------

ADAPTERS: tuple[ModuleType, ...] = (hooks, jitterbuffer)
ROOT = Path(__file__).resolve().parent.parent
EXTERNALS = ("aiortc", "aioice", "pylibsrtp")
# A name-mangled attribute, as media.hooks spells the ones it reaches with getattr.
MANGLED = re.compile(r"^_[A-Za-z]\w*__\w+$")
STREAM = "pinned-stream"


def public_modules() -> frozenset[str]:
    """The modules anyone may use, as the `internals` import-linter contract lists them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c["type"] == "internals"]
    return frozenset(contract["public_modules"])


def internal_names(module: ModuleType) -> set[str]:
    """What `module` takes of aiortc's and aioice's internals: each attribute starting with
    `_` (the adapters name none of their own so), each name-mangled attribute it spells out,
    and each name it takes from a module that is not public ("aiortc.sdp.candidate_from_sdp"),
    imported or reached through an attribute path ("aioice.ice.asyncio")."""
    public = public_modules()
    tree = ast.parse(inspect.getsource(module))
    names: set[str] = set()
    # Local name -> the external module it stands for.
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] in EXTERNALS:
                    bound[alias.asname or alias.name.partition(".")[0]] = (
                        alias.name if alias.asname else alias.name.partition(".")[0]
                    )
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.partition(".")[0] not in EXTERNALS:
                continue
            for alias in node.names:
                if is_module(f"{node.module}.{alias.name}"):
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif node.module not in public:
                    names.add(f"{node.module}.{alias.name}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and MANGLED.match(node.value)
        ):
            names.add(node.value)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr.startswith("_") and not node.attr.startswith("__"):
            names.add(node.attr)
        path: list[str] = []
        at: ast.expr = node
        while isinstance(at, ast.Attribute):
            path.append(at.attr)
            at = at.value
        if not isinstance(at, ast.Name) or at.id not in bound:
            continue
        found = bound[at.id]
        for part in reversed(path):
            if not is_module(f"{found}.{part}"):
                if found not in public:
                    names.add(f"{found}.{part}")
                break
            found = f"{found}.{part}"
    return names


@dataclass
class World:
    """Two aiortc peer connections on loopback, connected: the offerer sends video."""

    offerer: RTCPeerConnection
    answerer: RTCPeerConnection
    sending: RTCRtpTransceiver
    # The answerer's transceiver, negotiated from the offer.
    receiving: RTCRtpTransceiver
    offer: str

    @property
    def sender(self) -> RTCRtpSender:
        return self.sending.sender


async def until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    ice.use_addresses(["127.0.0.1"])
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        sending = offerer.addTransceiver("video", direction="sendonly")
        hooks.set_stream_id(sending.sender, STREAM)
        await offerer.setLocalDescription(await offerer.createOffer())
        offer = offerer.localDescription.sdp
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        await until(
            lambda: offerer.connectionState == answerer.connectionState == "connected",
            "the peer connections to connect",
        )
        [receiving] = answerer.getTransceivers()
        yield World(offerer, answerer, sending, receiving, offer)
    finally:
        await offerer.close()
        await answerer.close()
        ice.use_addresses([])


Check = Callable[[World], Awaitable[None]]
# Internal name -> the check of what the adapters rely on it for. One check may pin several.
CONTRACT: dict[str, Check] = {}


def pins(*names: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        for name in names:
            assert name not in CONTRACT, name
            CONTRACT[name] = check
        return check

    return register


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def no_tap(_packets: list[int]) -> None:
    pass


def nothing() -> None:
    pass


@pins(hooks._RX_STOP_DECODER, "_handle_rtp_packet", "_enabled")
async def receivers_hand_every_packet_over_and_can_stop_decoding(w: World) -> None:
    receiver = w.receiving.receiver
    assert parameters(getattr(receiver, hooks._RX_STOP_DECODER)) == []
    assert inspect.iscoroutinefunction(receiver._handle_rtp_packet)
    assert parameters(receiver._handle_rtp_packet) == ["packet", "arrival_time_ms"]
    assert parameters(receiver.receive) == ["parameters"]
    assert receiver._enabled is True


@pins("_send_rtcp_pli")
async def receivers_send_a_picture_loss_indication(w: World) -> None:
    receiver = w.receiving.receiver
    assert inspect.iscoroutinefunction(receiver._send_rtcp_pli)
    assert parameters(receiver._send_rtcp_pli) == ["media_ssrc"]


@pins("_id")
async def a_track_id_is_its_private_id(_w: World) -> None:
    assert hooks.IdleTrack("video", "pinned-track").id == "pinned-track"


@pins("_ssrc")
async def a_sender_ssrc_is_the_one_it_offers(w: World) -> None:
    assert isinstance(w.sender._ssrc, int)
    assert f"a=ssrc:{w.sender._ssrc} " in w.offer


@pins("_handle_rtcp_packet")
async def senders_take_every_rtcp_packet_in_one_method(w: World) -> None:
    assert inspect.iscoroutinefunction(w.sender._handle_rtcp_packet)
    assert parameters(w.sender._handle_rtcp_packet) == ["packet"]
    assert parameters(w.sender.send) == ["parameters"]


@pins(hooks._TX_MID)
async def a_sender_keeps_its_mid_once_sending(w: World) -> None:
    assert w.sending.mid is not None
    assert getattr(w.sender, hooks._TX_MID) == w.sending.mid


@pins(hooks._TX_PACKETS, hooks._TX_OCTETS, hooks._TX_RTP_TS, hooks._TX_NTP)
async def sender_reports_count_what_the_tap_adds(w: World) -> None:
    sender = w.sender
    for name in (hooks._TX_PACKETS, hooks._TX_OCTETS, hooks._TX_RTP_TS, hooks._TX_NTP):
        assert isinstance(getattr(sender, name), int), name
    before = [getattr(sender, n) for n in (hooks._TX_PACKETS, hooks._TX_OCTETS)]
    tap = hooks.SenderTap(sender, on_nack=no_tap, on_keyframe_request=nothing, on_ready=nothing)
    tap.count(3, 300, 123456)
    [stats] = [s for s in (await sender.getStats()).values() if s.type == "outbound-rtp"]
    assert (stats.packetsSent, stats.bytesSent) == (before[0] + 3, before[1] + 300)
    assert getattr(sender, hooks._TX_RTP_TS) == 123456
    assert getattr(sender, hooks._TX_NTP) > 0
    # The time a caller read once for a frame's many senders is the one recorded.
    tap.count(1, 10, 123457, ntp=42 << 32)
    assert getattr(sender, hooks._TX_NTP) == 42 << 32
    assert getattr(sender, hooks._TX_RTP_TS) == 123457


@pins("_rtp_header_extensions_map")
async def the_transport_maps_header_extensions_for_serialising(w: World) -> None:
    extensions = w.sender.transport._rtp_header_extensions_map
    assert isinstance(extensions, HeaderExtensionsMap)
    packet = RtpPacket(payload_type=96, ssrc=1)
    packet.extensions.mid = "0"
    # The extension bit: the map knows the negotiated mid extension's id.
    assert packet.serialize(extensions)[0] & 0x10


@pins("_state", "aiortc.rtcdtlstransport.State")
async def a_connected_dtls_transport_says_so(w: World) -> None:
    dtls = w.sender.transport
    assert isinstance(dtls, RTCDtlsTransport)
    assert dtls._state == DtlsState.CONNECTED


@pins("_tx_srtp", "_connection", "_nominated", "_sock")
async def a_connected_sender_has_a_socket_an_address_and_srtp(w: World) -> None:
    dtls = w.sender.transport
    assert callable(dtls._tx_srtp.protect)
    connection = dtls.transport._connection
    assert isinstance(connection, aioice.Connection)
    pair = connection._nominated.get(1)
    assert isinstance(pair, aioice.ice.CandidatePair)
    sock = pair.protocol.transport._sock  # type: ignore[attr-defined]
    assert isinstance(sock, socket.socket)
    assert sock.type == socket.SOCK_DGRAM
    tap = hooks.SenderTap(w.sender, on_nack=no_tap, on_keyframe_request=nothing, on_ready=nothing)
    channel = tap.channel()
    assert channel is not None
    assert channel[0] is sock
    assert channel[1] == pair.remote_addr
    header = RtpPacket(payload_type=96, ssrc=w.sender._ssrc).serialize()
    assert len(channel[2](header + b"payload")) > len(header) + len(b"payload")


@pins("_srtp", "pylibsrtp._binding.ffi", "pylibsrtp._binding.lib")
async def a_senders_srtp_session_has_a_libsrtp_context_and_protect(w: World) -> None:
    session = w.sender.transport._tx_srtp
    assert isinstance(session, pylibsrtp.Session)
    tap = hooks.SenderTap(w.sender, on_nack=no_tap, on_keyframe_request=nothing, on_ready=nothing)
    assert tap.srtp_session() is session
    # An `srtp_t *`, whose target is what media/fanout.c passes to srtp_protect.
    assert srtp_ffi.typeof(session._srtp) is srtp_ffi.typeof("srtp_t *")
    assert hooks.srtp_context(session) == int(srtp_ffi.cast("uintptr_t", session._srtp[0])) != 0
    # The C fan-out's fanout_protect_fn: int (*)(void *, void *, int *).
    protect = srtp_ffi.typeof(srtp_lib.srtp_protect)
    assert [a.cname for a in protect.args] == ["struct srtp_ctx_t_ *", "void *", "int *"]
    assert protect.result.kind == "enum"
    assert hooks.srtp_protect_address() == int(
        srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, "srtp_protect"))
    )


@pins("_stream_id")
async def a_sender_stream_id_is_the_msid_it_offers(w: World) -> None:
    assert w.sender._stream_id == STREAM
    assert f"a=msid:{STREAM} " in w.offer


@pins("_offerDirection")
async def the_offered_direction_is_kept_as_seen_from_here(w: World) -> None:
    assert hooks.offered_direction(w.receiving) == "recvonly"


@pins("_codecs")
async def a_transceiver_keeps_the_codecs_it_negotiated(w: World) -> None:
    codecs = w.receiving._codecs
    assert codecs
    assert all(isinstance(c, RTCRtpCodecParameters) for c in codecs)
    assert all(isinstance(c.payloadType, int) for c in codecs)
    answer = w.answerer.localDescription.sdp
    for codec in codecs:
        assert f"a=rtpmap:{codec.payloadType} {codec.name}/{codec.clockRate}" in answer


@pins("_headerExtensions")
async def a_transceiver_keeps_the_header_extensions_it_negotiated(w: World) -> None:
    extensions = w.receiving._headerExtensions
    assert all(isinstance(e, RTCRtpHeaderExtensionParameters) for e in extensions)
    answer = w.answerer.localDescription.sdp
    assert extensions
    for extension in extensions:
        assert f"a=extmap:{extension.id} {extension.uri}" in answer


@pins("aiortc.codecs.CODECS", "aiortc.codecs.HEADER_EXTENSIONS")
async def offers_are_built_from_the_module_wide_tables(_w: World) -> None:
    codecs, extensions = hooks.default_tables()
    assert codecs is aiortc.codecs.CODECS
    assert extensions is aiortc.codecs.HEADER_EXTENSIONS
    assert set(codecs) == set(extensions) == {"audio", "video"}
    assert all(isinstance(c, RTCRtpCodecParameters) for cs in codecs.values() for c in cs)
    assert all(
        isinstance(e, RTCRtpHeaderExtensionParameters) for es in extensions.values() for e in es
    )
    vp8 = next(c for c in codecs["video"] if c.name == "VP8")
    mid = next(e for e in extensions["video"] if e.uri.endswith("sdes:mid"))
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video")
        table = {"video": [RTCRtpCodecParameters(**{**vars(vp8), "payloadType": 120})]}
        ext_table = {"video": [RTCRtpHeaderExtensionParameters(id=9, uri=mid.uri)]}
        with hooks.offer_tables(table, ext_table):
            sdp = (await pc.createOffer()).sdp
    finally:
        await pc.close()
    assert "a=rtpmap:120 VP8/90000" in sdp
    assert f"a=extmap:9 {mid.uri}" in sdp
    assert vp8 in aiortc.codecs.CODECS["video"]


@pins("aiortc.sdp.candidate_from_sdp")
async def candidates_parse_from_their_sdp_form(_w: World) -> None:
    assert parameters(candidate_from_sdp) == ["sdp"]
    parsed = hooks.parse_candidate("1 1 udp 2122260223 192.0.2.7 54321 typ host")
    assert isinstance(parsed, RTCIceCandidate)
    assert (parsed.ip, parsed.port, parsed.protocol, parsed.type) == (
        "192.0.2.7",
        54321,
        "udp",
        "host",
    )
    for malformed in ("1 1 udp", "1 x udp 1 192.0.2.7 54321 typ host", "1 1 udp 1 h p typ"):
        with pytest.raises((ValueError, IndexError, AssertionError)):
            candidate_from_sdp(malformed)
        with pytest.raises(ValueError, match="not an ICE candidate"):
            hooks.parse_candidate(malformed)


@pins("aiortc.clock.current_ntp_time")
async def the_ntp_clock_is_now_in_64_bits(_w: World) -> None:
    assert parameters(current_ntp_time) == []
    seconds = current_ntp_time() >> 32
    # NTP counts from 1900, Unix time from 1970.
    assert abs(seconds - 2_208_988_800 - time.time()) < 5
    assert abs((hooks.ntp_now() >> 32) - seconds) < 5


@pins("aioice.ice.get_host_addresses", "aioice.ice.asyncio")
async def ice_gathers_on_the_addresses_and_through_the_loop_given(_w: World) -> None:
    assert parameters(hooks._aioice_host_addresses) == ["use_ipv4", "use_ipv6"]
    bound: list[Any] = []

    def addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    class Loop:
        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            self.loop = loop

        def __getattr__(self, name: str) -> Any:
            return getattr(self.loop, name)

        async def create_datagram_endpoint(self, *args: Any, **kwargs: Any) -> Any:
            bound.append(kwargs.get("local_addr"))
            return await self.loop.create_datagram_endpoint(*args, **kwargs)

    assert aioice.ice.asyncio is asyncio  # type: ignore[attr-defined]
    connection = aioice.Connection(ice_controlling=True, use_ipv6=False)
    hooks.use_host_addresses(addresses)
    hooks.use_ice_loop(Loop)
    try:
        await connection.gather_candidates()
        assert [c.host for c in connection.local_candidates] == ["127.0.0.1"]
        assert bound == [("127.0.0.1", 0)]
    finally:
        hooks.use_ice_loop(None)
        ice.use_addresses(["127.0.0.1"])
        await connection.close()


def buffered(seq: int, timestamp: int, data: bytes) -> RtpPacket:
    return jitterbuffer.buffered(RtpPacket(sequence_number=seq, timestamp=timestamp), data)


@pins(
    "aiortc.jitterbuffer.JitterBuffer",
    "aiortc.jitterbuffer.JitterFrame",
    "_data",
    "_remove_frame",
    "_origin",
    "_packets",
)
async def the_jitter_buffer_joins_packet_data_into_frames_one_at_a_time(_w: World) -> None:
    assert parameters(aiortc.jitterbuffer.JitterBuffer) == ["capacity", "prefetch", "is_video"]
    buffer = aiortc.jitterbuffer.JitterBuffer(8, prefetch=0, is_video=True)
    assert buffer._origin is None
    assert buffer._packets == [None] * 8
    assert parameters(buffer._remove_frame) == ["sequence_number"]
    assert parameters(buffer.smart_remove) == ["count"]
    # Frames at timestamps 10 (two packets), 20 and 30; 10's second packet comes last.
    for seq, timestamp, data in ((100, 10, b"a"), (102, 20, b"c"), (103, 30, b"d")):
        assert buffer.add(buffered(seq, timestamp, data)) == (False, None)
    assert buffer._origin == 100
    held = buffer._packets[103 % 8]
    assert held is not None
    assert held.sequence_number == 103
    lost, frame = buffer.add(buffered(101, 10, b"b"))
    assert not lost
    assert isinstance(frame, aiortc.jitterbuffer.JitterFrame)
    assert (frame.data, frame.timestamp) == (b"ab", 10)
    # One frame per add: the next whole one waits for _remove_frame.
    after = buffer._remove_frame(0)
    assert after is not None
    assert (after.data, after.timestamp) == (b"c", 20)
    assert buffer._remove_frame(0) is None
    assert buffer._origin == 103


@pins("aiortc.codecs.vpx.vp8_depayload", "aiortc.codecs.h264.h264_depayload")
async def depayloaders_give_frame_bytes_or_value_error(_w: World) -> None:
    assert parameters(vp8_depayload) == parameters(h264_depayload) == ["payload"]
    # VP8 (RFC 7741): a one-byte descriptor, start of partition 0, then the frame's bytes.
    assert jitterbuffer.depayloader("VP8")(b"\x10frame") == b"frame"
    # H264 (RFC 6184): a single NAL unit becomes Annex B.
    assert jitterbuffer.depayloader("H264")(b"\x65\x88") == b"\x00\x00\x00\x01\x65\x88"
    assert jitterbuffer.depayloader("OPUS")(b"opus") == b"opus"
    for name, malformed in (("VP8", b""), ("H264", b"\x65")):
        with pytest.raises(ValueError, match="too short"):
            jitterbuffer.depayloader(name)(malformed)


def test_every_internal_name_the_adapters_use_is_pinned_here() -> None:
    """Reading media.hooks and media.jitterbuffer finds exactly the names CONTRACT checks: a
    new reach into aiortc needs its check, and a check for a name no longer used goes."""
    used = set().union(*(internal_names(module) for module in ADAPTERS))
    assert used == set(CONTRACT)


async def test_the_pinned_aiortc_has_what_the_adapters_rely_on(world: World) -> None:
    """Every check runs, and every failure is reported at once, by the names it pins."""
    failures: dict[str, str] = {}
    for check in dict.fromkeys(CONTRACT.values()):
        try:
            await check(world)
        except Exception as exc:
            names = ", ".join(n for n, c in CONTRACT.items() if c is check)
            failures[names] = f"{check.__name__}: {type(exc).__name__}: {exc}"
    assert not failures, "aiortc/aioice changed under media.hooks:\n" + "\n".join(
        f"{names}: {why}" for names, why in failures.items()
    )
