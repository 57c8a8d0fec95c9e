"""VP8 temporal layers, pure: the payload descriptor (RFC 7741 section 4.2), which layers one
subscriber gets (its `LayerSelector`, fed its receiver's reported loss) and how its copy of
the stream is thinned to them (`Munger`).

Theory of operation. A publisher asked for `scalabilityMode: "L1T3"` sends each frame with a
temporal layer id (TID) in the pattern 0, 2, 1, 2, 0, ...: a TID-0 frame references only
earlier TID-0 frames, a TID-1 frame the TID-0 frame before it, a TID-2 frame the TID-0 or
TID-1 frame before it. Nothing references a frame of a higher layer than its own, so a
subscriber whose receiver reports loss can be sent only layers 0-1 (half the frames) or 0
(a quarter) and still decode every frame it gets. Going down is safe at any frame; going up
only at a frame that starts a layer afresh: a TID-0 frame, or a frame with the layer-sync
bit (Y: it references only TID-0 frames) one layer above the current one.

The subscriber's decoder must still see one unbroken stream: the frames left out must not
show as a loss. So every dropped packet closes its sequence number up (the caller moves the
subscriber's sequence offset back by one), and every dropped frame its PictureID (the
forwarded frames' PictureIDs are rewritten down by the number of frames dropped, in the
7- or 15-bit form the publisher uses). TL0PICIDX counts TID-0 frames, which are never
dropped, so it stays consecutive as it is.

Nothing here reads a clock or touches a socket: time is an argument (`now`), packets are
bytes and numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, Literal

# The highest temporal layer of L1T3.
TOP: Final = 2

# Payload descriptor bits (RFC 7741 section 4.2).
_X: Final = 0x80
_S: Final = 0x10
_PARTITION: Final = 0x07
_I: Final = 0x80
_L: Final = 0x40
_T: Final = 0x20
_K: Final = 0x10
_M: Final = 0x80
_Y: Final = 0x20


@dataclass(frozen=True, slots=True)
class Vp8Descriptor:
    """One packet's VP8 payload descriptor. `picture_id_bits` is 7 or 15 (0: no PictureID),
    `picture_id_at` the offset of its first byte in the payload (for rewriting)."""

    start: bool
    partition: int
    picture_id: int | None
    picture_id_bits: int
    picture_id_at: int
    tl0picidx: int | None
    tid: int | None
    layer_sync: bool
    keyidx: int | None
    size: int

    @property
    def frame_start(self) -> bool:
        """The first packet of a frame: the start of partition 0."""
        return self.start and self.partition == 0


def parse_vp8(payload: bytes) -> Vp8Descriptor | None:
    """The descriptor at the start of a VP8 RTP payload; None if the bytes are too short for
    what its flags announce (or empty). Never raises."""
    n = len(payload)
    if n == 0:
        return None
    first = payload[0]
    pos = 1
    picture_id: int | None = None
    bits = 0
    picture_id_at = -1
    tl0: int | None = None
    tid: int | None = None
    sync = False
    keyidx: int | None = None
    if first & _X:
        if n < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & _I:
            if n <= pos:
                return None
            picture_id_at = pos
            if payload[pos] & _M:
                if n <= pos + 1:
                    return None
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                bits = 15
                pos += 2
            else:
                picture_id = payload[pos] & 0x7F
                bits = 7
                pos += 1
        if ext & _L:
            if n <= pos:
                return None
            tl0 = payload[pos]
            pos += 1
        if ext & (_T | _K):
            if n <= pos:
                return None
            byte = payload[pos]
            if ext & _T:
                tid = byte >> 6
                sync = bool(byte & _Y)
            if ext & _K:
                keyidx = byte & 0x1F
            pos += 1
    return Vp8Descriptor(
        start=bool(first & _S),
        partition=first & _PARTITION,
        picture_id=picture_id,
        picture_id_bits=bits,
        picture_id_at=picture_id_at,
        tl0picidx=tl0,
        tid=tid,
        layer_sync=sync,
        keyidx=keyidx,
        size=pos,
    )


def has_tid(payload: bytes) -> bool:
    """Cheaply, whether a VP8 payload's descriptor carries a TID (the T bit): the test on
    every packet of a VP8 publication before it is parsed."""
    return len(payload) > 1 and bool(payload[0] & _X) and bool(payload[1] & _T)


def with_picture_id(payload: bytes, descriptor: Vp8Descriptor, picture_id: int) -> bytes:
    """`payload` with its PictureID replaced, in the same 7- or 15-bit form (wrapping)."""
    at = descriptor.picture_id_at
    if descriptor.picture_id_bits == 15:
        value = picture_id & 0x7FFF
        return payload[:at] + bytes([_M | (value >> 8), value & 0xFF]) + payload[at + 2 :]
    if descriptor.picture_id_bits == 7:
        return payload[:at] + bytes([picture_id & 0x7F]) + payload[at + 1 :]
    return payload


# ---- which layers a subscriber gets --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerPolicy:
    """When a subscriber's layers change, from its receiver's reports (RTCP fraction lost,
    in 256ths): down one layer after `down_reports` reports in a row above `down_loss`;
    up one layer after `up_after_s` seconds of reports all below `up_loss`. Between the two
    thresholds nothing moves (hysteresis), and each step up waits its own `up_after_s`.
    `top`: the highest layer anyone is sent (below 2: every subscriber is thinned, always)."""

    down_loss: float = 0.10
    down_reports: int = 2
    up_loss: float = 0.02
    up_after_s: float = 5.0
    top: int = TOP

    def __post_init__(self) -> None:
        if not 0 <= self.up_loss < self.down_loss <= 1:
            raise ValueError("need 0 <= up_loss < down_loss <= 1")
        if self.down_reports < 1 or self.up_after_s < 0:
            raise ValueError("need down_reports >= 1 and up_after_s >= 0")
        if not 0 <= self.top <= TOP:
            raise ValueError(f"need 0 <= top <= {TOP}")


Step = Literal["down", "up"]

# The selector's transitions: (layer forwarded, step) -> the layer after it. The bottom
# stays down and the top stays up; every key is here, so a lookup that fails is a bug.
TRANSITIONS: Final[dict[tuple[int, Step], int]] = {
    (2, "down"): 1,
    (1, "down"): 0,
    (0, "down"): 0,
    (0, "up"): 1,
    (1, "up"): 2,
    (2, "up"): 2,
}


@dataclass(slots=True)
class LayerSelector:
    """One subscriber's highest temporal layer to forward, from its receiver's reports."""

    policy: LayerPolicy
    layer: int = TOP
    lossy_reports: int = 0
    # Since when every report has been below `up_loss` (None: the last one was not).
    clear_since: float | None = None
    # How many times the layer changed.
    changes: int = 0

    def __post_init__(self) -> None:
        self.layer = min(self.layer, self.policy.top)

    def report(self, fraction_lost: int, now: float) -> int | None:
        """A receiver report's fraction lost (0-255) at `now`: the new layer if it changes."""
        loss = fraction_lost / 256
        policy = self.policy
        step: Step | None = None
        if loss > policy.down_loss:
            self.clear_since = None
            self.lossy_reports += 1
            if self.lossy_reports >= policy.down_reports:
                self.lossy_reports = 0
                step = "down"
        elif loss < policy.up_loss:
            self.lossy_reports = 0
            if self.clear_since is None:
                self.clear_since = now
            elif now - self.clear_since >= policy.up_after_s:
                self.clear_since = now
                step = "up"
        else:
            self.lossy_reports = 0
            self.clear_since = None
        if step is None:
            return None
        layer = min(TRANSITIONS[(self.layer, step)], policy.top)
        if layer == self.layer:
            return None
        self.layer = layer
        self.changes += 1
        return layer


# ---- thinning one subscriber's stream --------------------------------------------------------

Verdict = Literal["forward", "drop", "stale"]

# Frames whose verdict a late packet may still look up (PictureIDs wrap at 128 in the
# 7-bit form: well under that), and dropped packets a late one may still be placed behind.
_FRAMES_KEPT: Final = 64
_DROPS_KEPT: Final = 512


@dataclass(slots=True)
class Munger:
    """Which of a layered VP8 stream's packets one subscriber is sent, and their PictureIDs.

    `admit` says per packet: "forward" (then `shift` and `rewrite` give its numbers),
    "drop" (a frame above the layer forwarded: the caller closes its sequence number up),
    or "stale" (a late packet that cannot be sent: of a frame dropped, or of a frame never
    seen before it, whose reference may have been dropped. It is left out and shows as a
    loss, which the subscriber asks for in vain: the frames around it still decode). A
    packet without TID or PictureID is forwarded untouched: the stream is not layered.

    A late packet of a frame forwarded (reordered, or a retransmission the publisher was
    asked for) still takes its place: `shift` is the number of packets dropped after it,
    whose closing up moved the numbers of the packets after it, and its PictureID is moved
    down by the frames dropped before its frame, as its frame's other packets were.
    """

    target: int = TOP
    # The layer forwarded now: follows `target` down at the next frame, up only at a
    # switch point.
    current: int = TOP
    # Frames dropped so far (PictureIDs of forwarded frames are moved down by it).
    picture_offset: int = 0
    # The recent frames by PictureID: forwarded or not, and the picture offset of their
    # packets; oldest first.
    frames: dict[int, tuple[bool, int]] = field(default_factory=dict)
    # Newest publisher sequence number seen, and the recent dropped ones, oldest first.
    newest: int | None = None
    drops: deque[int] = field(default_factory=lambda: deque(maxlen=_DROPS_KEPT))
    dropped: int = 0
    # For the packet just admitted and forwarded: how far to move its sequence number up
    # (packets dropped after it), and how far down its PictureID.
    shift: int = 0
    offset: int = 0

    def admit(self, seq: int, descriptor: Vp8Descriptor | None) -> Verdict:
        self.shift = 0
        if descriptor is None or descriptor.tid is None or descriptor.picture_id is None:
            self.offset = 0
            return "forward"
        picture_id = descriptor.picture_id
        known = self.frames.get(picture_id)
        newest = self.newest
        if newest is not None and 0 < ((newest - seq) & 0xFFFF) < 0x8000:
            return self._late(seq, known)
        self.newest = seq
        if known is None:
            known = (self._decide(descriptor.tid, descriptor), self.picture_offset)
            frames = self.frames
            frames[picture_id] = known
            if len(frames) > _FRAMES_KEPT:
                del frames[next(iter(frames))]
        forwarded, self.offset = known
        if forwarded:
            return "forward"
        self.drops.append(seq)
        self.dropped += 1
        return "drop"

    def _late(self, seq: int, known: tuple[bool, int] | None) -> Verdict:
        """A packet older than the newest seen."""
        if known is None or not known[0]:
            self.dropped += 1
            return "stale"
        drops = self.drops
        shift = 0
        for dropped in reversed(drops):
            if not 0 < ((dropped - seq) & 0xFFFF) < 0x8000:
                break
            shift += 1
        if shift == len(drops) == drops.maxlen:
            # Drops after it may have been forgotten: its place is not known.
            self.dropped += 1
            return "stale"
        self.shift = shift
        self.offset = known[1]
        return "forward"

    @property
    def last_dropped(self) -> int | None:
        """The newest publisher sequence number dropped (None: none since `resume`)."""
        return self.drops[-1] if self.drops else None

    def _decide(self, tid: int, descriptor: Vp8Descriptor) -> bool:
        """A new frame: whether it is forwarded (the layer moves here, at frame starts).
        A TID-0 frame always is: `current` never goes below 0. A frame first seen after its
        start (its start lost, or sent by the C fan-out before this subscriber came here)
        moves nothing: its start may have been sent, and the rest of it must follow."""
        if descriptor.frame_start:
            if self.target < self.current:
                self.current = self.target
            elif self.target > self.current:
                if tid == 0:
                    self.current = self.target
                elif descriptor.layer_sync and tid == self.current + 1 and tid <= self.target:
                    self.current = tid
        forwarded = tid <= self.current
        if not forwarded:
            self.picture_offset += 1
        return forwarded

    def rewrite(self, payload: bytes, descriptor: Vp8Descriptor | None) -> bytes:
        """The payload of the packet just admitted and forwarded, as this subscriber gets
        it: its PictureID moved down by the frames dropped before its frame."""
        if self.offset == 0 or descriptor is None or descriptor.picture_id is None:
            return payload
        return with_picture_id(payload, descriptor, descriptor.picture_id - self.offset)

    def resume(self) -> None:
        """Forget the packets seen (not the PictureIDs left out): another forwarder carried
        the stream meanwhile, or another stream follows."""
        self.frames.clear()
        self.newest = None
        self.drops.clear()
        self.shift = 0

    @property
    def thinning(self) -> bool:
        """Whether frames are being left out, or may be (then packets must pass `admit`)."""
        return self.target < TOP or self.current < TOP
