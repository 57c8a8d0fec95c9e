"""Which addresses and ports ICE offers, and the ICE servers a peer connection is given.

aioice gathers host candidates from every interface but loopback, on any free port. A
deployment needs to pin media to one interface and to a port range a firewall opens, and the
tests need 127.0.0.1; aioice has no setting for either, so this module decides the addresses
and ports and media.hooks makes aioice use them, for the whole process.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from media import hooks
from media.settings import MediaConfig


def use_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly `addresses` as host candidates in this process; empty: aioice's scan."""
    if not addresses:
        hooks.use_host_addresses(None)
        return
    fixed = list(addresses)
    v4 = [a for a in fixed if ":" not in a]
    v6 = [a for a in fixed if ":" in a]

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return (v4 if use_ipv4 else []) + (v6 if use_ipv6 else [])

    hooks.use_host_addresses(get_host_addresses)


def use_port_range(low: int, high: int) -> None:
    """Bind ICE host candidates to a UDP port in [low, high] (both 0: any ephemeral port),
    so a firewall can open exactly that range to the media address. aioice binds port 0 and
    has no setting for it: the loop it binds through picks the port instead."""
    if low == 0 and high == 0:
        hooks.use_ice_loop(None)
        return
    hooks.use_ice_loop(lambda loop: _PortRangeLoop(loop, low, high))


class _PortRangeLoop:
    """The running loop, except that a datagram endpoint asked for on port 0 (any port) gets
    a free port in the range instead."""

    def __init__(self, loop: asyncio.AbstractEventLoop, low: int, high: int) -> None:
        self._loop = loop
        self._ports = range(low, high + 1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self, factory: Any, local_addr: Any = None, **kw: Any
    ) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(factory, local_addr=local_addr, **kw)
        # Start at a random port, so that calls do not all contend for the first ones.
        start = random.randrange(len(self._ports))
        for i in range(len(self._ports)):
            port = self._ports[(start + i) % len(self._ports)]
            try:
                return await self._loop.create_datagram_endpoint(
                    factory, local_addr=(local_addr[0], port), **kw
                )
            except OSError:
                continue
        raise OSError(f"no free UDP port in {self._ports.start}-{self._ports.stop - 1}")


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
