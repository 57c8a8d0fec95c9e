"""The cascade between nodes, pure: a conference's plan over the nodes (who is where, which
node routes it, where to send), and the UDP datagram that carries one fabric frame from node
to node, sealed with the conference's key.

A conference spread over several nodes has a home node (the authority's choice) whose router
is the hub of a star: it sends one copy of each selected packet to every other node with
sites, and every other node sends it the uplinks the stage lets cross (media.cascade carries
this out). What travels is a media.fabric_frames frame, as between the workers of one node,
sealed with AES-256-GCM under a key the authority draws per conference and hands the nodes
over Redis (never logged, never on the wire in clear):

    version (1) | conference length | node length | stream (8) | counter (8)   "!BBB8sQ"
    conference id | sender node id | AES-GCM(fabric frame) with its 16-byte tag

Each sender draws a random `stream` when it starts and numbers its datagrams from 1
(`counter`). Its key is HKDF-SHA256(conference key, info = node id + stream), so two senders
never share a (key, nonce) pair and a node restarted with the same id starts a new stream;
the nonce is the counter. The header is authenticated (associated data), so a datagram
cannot be moved to another conference, sender or counter. The receiver keeps a window of the
last 1,024 counters per stream (`ReplayWindow`): a datagram seen before, or older than the
window, is dropped. Everything is checked before use; a datagram that fails is dropped and
counted by reason (`Rejected.reason`), never raised past media.cascade.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION: Final = 1
KEY_BYTES: Final = 32
STREAM_BYTES: Final = 8
_TAG_BYTES: Final = 16
_HEADER: Final = struct.Struct("!BBB8sQ")
MAX_NAME: Final = 255
# The longest fabric frame (media.fabric_frames.MAX_FRAME is below it) and its seal.
MAX_DATAGRAM: Final = _HEADER.size + 2 * MAX_NAME + 2048 + _TAG_BYTES
# Counters remembered per stream: a reordering of a second of a busy router's output.
WINDOW: Final = 1024


class Rejected(ValueError):
    """A datagram dropped; `reason` is what the counters name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CascadePlan:
    """A conference over the nodes, as the authority placed it: `home` routes it, `sites`
    says each member's node, `addresses` each node's cascade UDP address ("host:port"),
    `key` seals its datagrams."""

    home: str
    sites: Mapping[str, str]
    addresses: Mapping[str, str]
    key: bytes = field(repr=False)
    # Each shown call's officer: the node of the call's media (a node with only a feed
    # sends it to home, and gets none of the conference's media).
    feeds: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise ValueError(f"a cascade key is {KEY_BYTES} bytes")

    def nodes(self) -> set[str]:
        """The nodes with sites, and home."""
        return {*self.sites.values(), self.home}

    def senders(self) -> set[str]:
        """The nodes whose datagrams are taken: those with sites, home, and the nodes of
        the shown calls."""
        return {*self.nodes(), *self.feeds.values()}

    def local(self, here: str) -> list[str]:
        """The members whose media `here` terminates."""
        return [user for user, node in self.sites.items() if node == here]

    def downstream(self, here: str) -> list[str]:
        """Where a frame of `here`'s router goes: from home to every other node with sites,
        from any other node to home."""
        if here == self.home:
            return sorted(self.nodes() - {here})
        return [self.home]

    def relayed(self, here: str, sender: str) -> list[str]:
        """Where home sends on a packet that came from node `sender` (its sites' uplink, for
        the nodes other than the two); nowhere on any other node."""
        if here != self.home:
            return []
        return sorted(self.nodes() - {here, sender})

    def keyframe_to(self, here: str, owner: str) -> str | None:
        """Where `here`'s router sends a keyframe request for `owner`'s track: home to the
        owner's node, any other node to home (whose router coalesces them all)."""
        target = self.sites.get(owner, self.feeds.get(owner)) if here == self.home else self.home
        return None if target is None or target == here else target


def moved_elsewhere(
    before: Mapping[str, str], after: Mapping[str, str], here: str
) -> frozenset[str]:
    """The members that moved from one other node to another (their node died): to `here`'s
    workers they stay on the cascade, but come as a new stream."""
    return frozenset(
        user
        for user, node in after.items()
        if node != here and before.get(user, node) not in (node, here)
    )


def parse_address(address: str) -> tuple[str, int]:
    """ "host:port" as advertised; ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a cascade address is host:port, got {address!r}")
    return host.strip("[]"), int(port)


def stream_key(key: bytes, node: bytes, stream: bytes) -> AESGCM:
    """The sender's own key: HKDF-SHA256 of the conference key over its node id and stream."""
    derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=node + stream)
    return AESGCM(derived.derive(key))


def _nonce(counter: int) -> bytes:
    return counter.to_bytes(12, "big")


class Sealer:
    """One sender's datagrams for one conference."""

    __slots__ = ("_aead", "_conference", "_counter", "_node", "_stream")

    def __init__(self, key: bytes, conference: str, node: str, stream: bytes) -> None:
        if len(stream) != STREAM_BYTES:
            raise ValueError(f"a stream is {STREAM_BYTES} bytes")
        self._conference = _name(conference)
        self._node = _name(node)
        self._stream = stream
        self._aead = stream_key(key, self._node, stream)
        self._counter = 0

    def seal(self, frame: bytes) -> bytes:
        self._counter += 1
        head = (
            _HEADER.pack(
                VERSION, len(self._conference), len(self._node), self._stream, self._counter
            )
            + self._conference
            + self._node
        )
        return head + self._aead.encrypt(_nonce(self._counter), frame, head)


@dataclass(frozen=True, slots=True)
class Header:
    conference: str
    node: str
    stream: bytes
    counter: int
    # Where the sealed frame starts.
    body: int


def header(data: bytes) -> Header:
    """The clear header of a datagram (nothing verified yet but its shape)."""
    if len(data) > MAX_DATAGRAM:
        raise Rejected("too_long")
    if len(data) < _HEADER.size + _TAG_BYTES + 2:
        raise Rejected("too_short")
    version, conf_len, node_len, stream, counter = _HEADER.unpack_from(data)
    if version != VERSION:
        raise Rejected("version")
    if not conf_len or not node_len or counter == 0:
        raise Rejected("bad_header")
    body = _HEADER.size + conf_len + node_len
    if len(data) < body + _TAG_BYTES + 1:
        raise Rejected("too_short")
    try:
        conference = data[_HEADER.size : _HEADER.size + conf_len].decode()
        node = data[_HEADER.size + conf_len : body].decode()
    except UnicodeDecodeError:
        raise Rejected("bad_name") from None
    return Header(conference, node, stream, counter, body)


def open_sealed(aead: AESGCM, head: Header, data: bytes) -> bytes:
    """The fabric frame inside; Rejected("bad_key") if it was not sealed with this key (or
    anything of it was changed)."""
    try:
        return aead.decrypt(_nonce(head.counter), data[head.body :], data[: head.body])
    except InvalidTag:
        raise Rejected("bad_key") from None


class ReplayWindow:
    """The counters of one stream seen lately: each is accepted once; one older than the
    window is refused (it may have been seen)."""

    __slots__ = ("_highest", "_seen")

    def __init__(self) -> None:
        self._highest = 0
        # Bit i: counter `_highest - i` was seen.
        self._seen = 0

    def check(self, counter: int) -> bool:
        """Whether `counter` is new (without noting it: a forged datagram must not move the
        window, so note only after the seal verified)."""
        if counter > self._highest:
            return True
        age = self._highest - counter
        return age < WINDOW and not (self._seen >> age) & 1

    def note(self, counter: int) -> None:
        if counter > self._highest:
            shift = counter - self._highest
            self._seen = ((self._seen << shift) | 1) & ((1 << WINDOW) - 1)
            self._highest = counter
        else:
            self._seen |= 1 << (self._highest - counter)


def _name(value: str) -> bytes:
    data = value.encode()
    if not data or len(data) > MAX_NAME:
        raise ValueError(f"a cascade name is 1 to {MAX_NAME} bytes: {value!r}")
    return data


__all__ = [
    "KEY_BYTES",
    "MAX_DATAGRAM",
    "STREAM_BYTES",
    "CascadePlan",
    "Header",
    "Rejected",
    "ReplayWindow",
    "Sealer",
    "header",
    "moved_elsewhere",
    "open_sealed",
    "parse_address",
    "stream_key",
]
