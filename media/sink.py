"""Bench-only: pre-keyed SRTP sinks, conference sites without ICE or DTLS
(docs/media.md, *300 sites: the benchmark's sinks*).

A 300-site conference cannot be simulated on a 2-core machine with 300 aiortc receivers: each
costs more CPU than the server spends on it. A `SinkSite` stands in for one receive-only site
of a `ConferenceRoom`: it gets the same slots a site gets (the audio slots and the spotlight),
each a `media.forwarder.Subscription` that the room switches between sources as it switches a
real site's, carried by the same C fan-out (renumbering, header, SRTP protect with the site's
own libsrtp session, one `sendto` per packet from a UDP socket of the site's own, as aiortc
gives each peer connection) and asking for keyframes through the same pacing. It differs from
a real site only in how it was keyed: the benchmark hands the SRTP master key and the
address to send to (`SinkSpec`), instead of ICE and DTLS agreeing on them. So a sink sends no
RTCP and answers none: no NACKs come back, no sender reports go out, no ICE consent checks.

Sinks exist only on a server started with `media.bench_sink_socket` (off by default), and are
added over that Unix socket (media.sink_control), never from the network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpSender,
)
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy
from pylibsrtp import Session as SrtpSession

from media.forwarder import Fanout, Subscription

# SRTP_AES128_CM_HMAC_SHA1_80, the profile aiortc's DTLS negotiates: a 16-byte master key
# and a 14-byte salt.
KEY_BYTES: Final = 30
# The payload types a sink's slots send with (what a Chromium offer maps VP8 and Opus to).
PAYLOAD_TYPES: Final = {"audio": 111, "video": 96}
# The one header extension the server writes on a slot's packets (RFC 8843's mid), with the
# id aiortc's offer gives it.
_MID_URI: Final = "urn:ietf:params:rtp-hdrext:sdes:mid"
_MID_ID: Final = 1


class SinkError(ValueError):
    """A sink that cannot be made as asked (bad address or key, a name in use)."""


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """One sink as the benchmark asks for it: its name (unique in the conference), where its
    packets go (an IP literal and a port) and its SRTP master key and salt."""

    name: str
    host: str
    port: int
    key: bytes

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64:
            raise SinkError("a sink's name is 1 to 64 characters")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise SinkError(f"sink {self.name}: {self.host!r} is not an IP address") from None
        if not 0 < self.port < 65536:
            raise SinkError(f"sink {self.name}: port {self.port} out of range")
        if len(self.key) != KEY_BYTES:
            raise SinkError(f"sink {self.name}: the SRTP key and salt are {KEY_BYTES} bytes")


def outbound_session(key: bytes) -> SrtpSession:
    """The sink's sending SRTP session, as aiortc makes a sender's from DTLS's keying."""
    policy = Policy(
        key=key,
        ssrc_type=Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    # aiortc's own setting: a NACKed packet is protected again with the same number.
    policy.allow_repeat_tx = True
    return SrtpSession(policy)


def inbound_session(key: bytes) -> SrtpSession:
    """The receiving side of `outbound_session(key)` (the benchmark's proof of the keying)."""
    policy = Policy(
        key=key,
        ssrc_type=Policy.SSRC_ANY_INBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    return SrtpSession(policy)


def _mid_extension(mid: str) -> bytes:
    """The header extension bytes a slot's packets carry (as Subscription._on_ready builds
    them from the negotiated map)."""
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=_MID_ID, uri=_MID_URI)]
        )
    )
    template = RtpPacket(payload_type=0)
    template.extensions.mid = mid
    return template.serialize(extensions)[12:]


class SenderFactory:
    """Unconnected aiortc senders for the sinks' subscriptions: a Subscription's SenderTap
    keeps its SSRC and its counters there. One DTLS transport (never started) for all, as its
    certificate costs milliseconds to make."""

    def __init__(self) -> None:
        self._dtls: RTCDtlsTransport | None = None

    def sender(self, kind: str) -> RTCRtpSender:
        if self._dtls is None:
            self._dtls = RTCDtlsTransport(
                RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
            )
        return RTCRtpSender(kind, self._dtls)


class SinkSite:
    """One sink in a conference room: its slots, its socket, its SRTP session."""

    def __init__(
        self,
        spec: SinkSpec,
        *,
        slots: Sequence[tuple[str, str]],
        bind_address: str,
        max_backlog: int,
        engine: Fanout,
        senders: SenderFactory,
    ) -> None:
        self.user = spec.name
        family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.bind((bind_address if family == socket.AF_INET else "::", 0))
            # One session for every slot, as one DTLS transport keys every sender of a
            # bundled peer connection.
            session = outbound_session(spec.key)
            self.slots: dict[str, Subscription] = {}
            for mid, (name, kind) in enumerate(slots):
                sub = Subscription(
                    None,
                    self.user,
                    senders.sender(kind),
                    max_backlog,
                    key=f"{self.user}/{name}",
                    engine=engine,
                )
                sub.connect(
                    self.sock,
                    (spec.host, spec.port),
                    session,
                    payload_type=PAYLOAD_TYPES[kind],
                    extensions=_mid_extension(str(mid)),
                )
                self.slots[name] = sub
        except BaseException:
            self.sock.close()
            raise

    def packets_sent(self) -> int:
        return sum(sub.packets_sent for sub in self.slots.values())

    def close(self) -> None:
        """Leave: every slot lets its source go, then the socket closes."""
        for sub in self.slots.values():
            sub.switch(None, 0)
            sub.close()
        self.slots.clear()
        with contextlib.suppress(OSError):
            self.sock.close()


__all__ = [
    "KEY_BYTES",
    "PAYLOAD_TYPES",
    "SenderFactory",
    "SinkError",
    "SinkSite",
    "SinkSpec",
    "inbound_session",
    "outbound_session",
]
