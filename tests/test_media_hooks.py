"""Loud failures for an aiortc or aioice upgrade that moves what media.hooks and media.ice
reach into: every private name they use is checked here, on real objects."""

from __future__ import annotations

import asyncio
import importlib.metadata

import aioice.ice
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport

from media import hooks, ice


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
