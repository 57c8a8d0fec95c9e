"""Which addresses ICE offers, and the ICE servers a peer connection is given.

aioice gathers host candidates from every interface but loopback, process-wide, through
`aioice.ice.get_host_addresses`. A deployment needs to pin media to one interface, and the
tests need 127.0.0.1, so `use_addresses` replaces that lookup for the whole process (aioice
has no per-connection setting). The replacement is checked by tests/test_media_hooks.py, which
fails loudly if an aioice upgrade moves it.
"""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from commandcenter.config import MediaConfig

_original_get_host_addresses = aioice.ice.get_host_addresses


def use_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly `addresses` as host candidates in this process; empty: aioice's scan."""
    if not addresses:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return
    fixed = list(addresses)
    v4 = [a for a in fixed if ":" not in a]
    v6 = [a for a in fixed if ":" in a]

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return (v4 if use_ipv4 else []) + (v6 if use_ipv6 else [])

    aioice.ice.get_host_addresses = get_host_addresses


def rtc_configuration(media: MediaConfig) -> RTCConfiguration:
    servers = [RTCIceServer(urls=url) for url in media.stun_urls]
    servers += [
        RTCIceServer(urls=url, username=media.turn_username, credential=media.turn_password)
        for url in media.turn_urls
    ]
    # No servers: aiortc would add Google's public STUN server, which a court network must
    # not be made to contact (and which is unreachable here).
    # One transport for every section: a section added by a later offer (another member's
    # video) would otherwise get a transport of its own, which a browser that bundled
    # everything never connects.
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def is_mdns(candidate: str) -> bool:
    """A browser's `<uuid>.local` host candidate: resolving it costs aioice about a second of
    mDNS timeout and never succeeds across networks; the browser's checks reach us anyway
    (peer-reflexive), so it is dropped."""
    parts = candidate.split()
    return len(parts) > 4 and parts[4].lower().endswith(".local")


def strip_mdns(sdp: str) -> str:
    lines = sdp.split("\r\n")
    kept = [
        line
        for line in lines
        if not (line.startswith("a=candidate:") and is_mdns(line[len("a=") :]))
    ]
    return "\r\n".join(kept)
