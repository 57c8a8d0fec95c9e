"""Forwarding one published track to its subscribers, packet by packet, without decoding.

A `Publication` is one member's audio or video track as the server receives it. Each other
member who receives it has a `Subscription`: the sender on their peer connection, their
renumbering (media.rtp.Renumbering) and the packets recently sent to them, kept for NACKs.
The hot path is `Publication.forward`: per subscriber one header, one SRTP protect, one
`sendto`. With `media.fanout = "c"` (the default) a subscriber whose numbering is steady
(`rtp.Renumbering.steady`: between keyframe restarts, a constant offset) is carried by the C
fan-out instead (media.fanout): one C call per packet sends to all of them, and Python keeps
the rules (a subscriber that would block goes back to Python and restarts on a keyframe) and
the counts. A subscriber waiting for a keyframe, or switching source, is forwarded here.

Keyframes: a new subscriber waits for one, and so does a subscriber whose socket backlog
went over the limit (it restarts clean instead of queueing). Either way the publisher is asked
(PLI) through media.rtp.KeyframeRequests, which holds back bursts without losing requests.

A conference's subscriber receives through slots instead (media.stage): a subscription whose
publication changes (`switch`) while the subscriber's sender, numbering and history stay, so
the subscriber sees one continuous stream that shows whoever the slot carries now.

VP8 temporal layers (media.temporal; docs/media.md, *Temporal layers*): a publication whose
packets carry a TID counts them per layer; a subscriber whose receiver reports loss is sent
fewer layers by its `Munger`, in Python (frames are dropped and their numbers closed up), and
goes back to the C fan-out once it gets every layer again, the lane lowering PictureIDs by the
frames it was not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final, Literal

import structlog
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from pylibsrtp import Error as SrtpError
from pylibsrtp import Session as SrtpSession

from media import fanout, rtp, temporal
from media.fanout import unavailable as fanout_unavailable
from media.hooks import SenderTap, ntp_now, request_keyframe
from media.temporal import LayerPolicy, LayerSelector, Munger

log = structlog.get_logger(__name__)

# Packets kept per subscriber for retransmission: about 2 s of 1 Mbit/s video.
HISTORY: Final = 256
_HISTORY_MASK: Final = HISTORY - 1

_HEADER: Final = struct.Struct("!BBHII")

PacketSink = Callable[[RtpPacket, RTCRtpCodecParameters, float], None]

# How often, at most, the senders' counters (their RTCP sender reports, getStats) of the
# subscribers the C fan-out carries are brought up to date, at the end of a frame. Per frame
# it was one Python call per subscriber 80 times a second (Opus marks every packet as a
# frame's end): at 150 subscribers a worker, a quarter of its CPU (bench.conference --sites).
COUNT_EVERY_S: Final = 0.25

Fanout = Literal["c", "python"]


class Forwarded:
    """RTP packets and their bytes (before SRTP) this process has sent on to subscribers,
    every call and conference together: what /metrics reports as forwarded. Per process,
    not per subscription, so that the count survives the subscriptions it came from."""

    __slots__ = ("bytes", "layer_dropped", "packets")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        # Packets not sent to a subscriber for its temporal layers (media.temporal): how
        # much thinning lossy sites' links are spared.
        self.layer_dropped = 0


FORWARDED: Final = Forwarded()


class Subscription:
    def __init__(
        self,
        publication: Publication | None,
        subscriber: str,
        sender: RTCRtpSender,
        max_backlog: int,
        *,
        key: str | None = None,
        engine: Fanout = "python",
        layers: LayerPolicy | None = None,
    ) -> None:
        # None: an idle slot (nothing to send until `switch`).
        self.publication = publication
        self.subscriber = subscriber
        # Its key in the publication's subscriptions: the subscriber, or their slot.
        self.key = key if key is not None else subscriber
        self.max_backlog = max_backlog
        self.tap = SenderTap(
            sender,
            on_nack=self._on_nack,
            on_keyframe_request=self._on_keyframe_request,
            on_ready=self._on_ready,
            on_loss=self._on_loss if layers is not None else None,
        )
        self._numbering = rtp.Renumbering(
            seq_base=random.getrandbits(15), timestamp_base=random.getrandbits(32)
        )
        self._history_seq: list[int] = [-1] * HISTORY
        self._history: list[bytes] = [b""] * HISTORY
        self._packets_sent = 0
        # The C fan-out's state for this subscriber (once connected, if it is used), and
        # whether the publication's C group carries it now (then the lane holds the numbering
        # and counts; see carry / release).
        self.use_c = engine == "c" and fanout_unavailable() is None
        self.lane: fanout.Lane | None = None
        self.carried = False
        self.retransmitted = 0
        self.restarts = 0
        self.active = False
        # Set once connected (see _on_ready): the hot path reads only these.
        self._sock: socket.socket | None = None
        self._addr: Any = None
        self._protect: Callable[[bytes], bytes] | None = None
        self._session: SrtpSession | None = None
        self._first_byte = 0x80
        self._payload_type = 0
        self._ssrc = self.tap.ssrc
        self._extensions = b""
        # Sent since the sender's counters were last updated (once per frame, not per packet).
        self._uncounted_packets = 0
        self._uncounted_octets = 0
        # Packets sent from earlier sources, by their owner (`sent_from`).
        self._sent_before: dict[str, int] = {}
        self._sent_at_switch = 0
        # Temporal layers: which this subscriber gets (None: every layer, always), and, once
        # it has been sent fewer, what was left out (media.temporal).
        self.selector = LayerSelector(layers) if layers is not None else None
        self.munger: Munger | None = None
        if layers is not None and layers.top < temporal.TOP:
            self.munger = Munger(target=layers.top, current=layers.top)

    def _on_ready(self) -> None:
        tap = self.tap
        channel = tap.channel()
        session = tap.srtp_session()
        if channel is None or session is None:
            log.warning("subscriber not connected", user_id=self.subscriber)
            return
        payload_type = tap.payload_type or 0
        extensions = b""
        if tap.mid is not None:
            template = RtpPacket(payload_type=payload_type, ssrc=tap.ssrc)
            template.extensions.mid = tap.mid
            extensions = template.serialize(tap.extensions_map())[12:]
        sock, addr, _ = channel
        self.connect(sock, addr, session, payload_type=payload_type, extensions=extensions)

    def connect(
        self,
        sock: socket.socket,
        addr: Any,
        session: SrtpSession,
        *,
        payload_type: int,
        extensions: bytes,
    ) -> None:
        """Send through `sock` to `addr`, protected by `session`, from the next keyframe on:
        what the connected sender gives (`_on_ready`), or a benchmark's own."""
        self._sock, self._addr, self._protect = sock, addr, session.protect
        self._session = session
        # The socket buffer is the subscriber's whole queue: when it is full, sendto fails
        # and the subscriber restarts on a keyframe (see forward).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.max_backlog)
        self._payload_type = payload_type
        self._extensions = extensions
        self._first_byte = 0x90 if extensions else 0x80
        if self.lane is not None:
            self._relane()
        elif self.use_c:
            self.lane = self._new_lane()
        self.active = True
        if self.publication is not None:
            self.publication.need_keyframe()

    def _new_lane(self) -> fanout.Lane | None:
        session = self._session
        if self._sock is None or session is None:
            return None
        try:
            return fanout.Lane(
                self._sock,
                self._addr,
                session,
                ssrc=self._ssrc,
                payload_type=self._payload_type,
                first_byte=self._first_byte,
                extensions=self._extensions,
            )
        except (ValueError, OSError) as exc:
            log.warning("subscriber forwarded in Python", user_id=self.subscriber, why=str(exc))
            return None

    @property
    def numbering(self) -> rtp.Renumbering:
        """This subscriber's renumbering, brought up to date if the C fan-out carries it."""
        if self.carried and self.lane is not None:
            self._numbering.resume(self.lane.steady())
        return self._numbering

    @property
    def packets_sent(self) -> int:
        lane = self.lane
        return self._packets_sent + (lane.sent() if lane is not None else 0)

    def redirect(self, sock: socket.socket, address: Any) -> None:
        """Send to `address` through `sock` from now on, on either path (tests: a peer that
        never reads, whose full buffer makes the next send block)."""
        self._sock, self._addr = sock, address
        self._relane()

    def _relane(self) -> None:
        """A new lane for a new socket or address: back to Python until steady again."""
        old = self.lane
        if old is None:
            return
        if self.carried and self.publication is not None:
            self.publication.uncarry(self)
        self._packets_sent += old.sent()
        self.lane = self._new_lane()
        # The packets dropped when a subscriber would block are a gap it asks for again.
        if self.lane is not None:
            self.lane.take_history(old)
        old.close()

    def carry(self) -> fanout.Lane | None:
        """Hand the numbering and counts to the lane, if steady: the C fan-out carries this
        subscriber from the next packet. None: it stays in Python."""
        lane = self.lane
        steady = self._numbering.steady()
        if lane is None or steady is None or not self.active:
            return None
        munger = self.munger
        if munger is not None:
            if self._thinning():
                return None
            # Nothing older than the last packet left out may be numbered any more (its
            # closing up moved the offset): the lane skips what is older than its start.
            if munger.last_dropped is not None:
                start = rtp.seq_add(munger.last_dropped, 1)
                if steady.start_seq is None or rtp.seq_newer(start, steady.start_seq):
                    steady = replace(steady, start_seq=start)
            lane.lower_picture_ids(munger.picture_offset)
            munger.resume()
        lane.load(steady)
        lane.add_uncounted(self._uncounted_packets, self._uncounted_octets)
        self._uncounted_packets = 0
        self._uncounted_octets = 0
        self.carried = True
        return lane

    def release(self) -> None:
        """Take the numbering and counts back from the lane: forwarded in Python again."""
        lane = self.lane
        if not self.carried or lane is None:
            return
        self.carried = False
        self._numbering.resume(lane.steady())
        packets, octets = lane.take_uncounted()
        self._uncounted_packets += packets
        self._uncounted_octets += octets

    def too_slow(self) -> None:
        """The subscriber's socket buffer is full: it cannot keep up. Drop, and start over
        clean on the next keyframe rather than queue."""
        self._numbering.restart()
        self.restarts += 1
        if self.publication is not None:
            self.publication.need_keyframe()

    def _on_nack(self, lost: list[int]) -> None:
        sock, protect = self._sock, self._protect
        if sock is None or protect is None:
            return
        lane = self.lane
        for seq in lost:
            if lane is not None:
                data = lane.recall(seq)
            else:
                i = seq & _HISTORY_MASK
                data = self._history[i] if self._history_seq[i] == seq else None
            if data is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(protect(data), self._addr)
                    self.retransmitted += 1

    def _on_keyframe_request(self) -> None:
        if self.publication is not None:
            self.publication.need_keyframe()

    def _on_loss(self, fraction_lost: int) -> None:
        """A receiver report about this sender: fewer temporal layers on sustained loss,
        more once it stops (only for a publication whose packets carry a TID)."""
        pub, selector = self.publication, self.selector
        if pub is None or selector is None or not pub.layered:
            return
        layer = selector.report(fraction_lost, pub.clock())
        if layer is not None:
            self.set_layer(layer)

    def set_layer(self, layer: int) -> None:
        """Send temporal layers 0 to `layer` from the next switch point on."""
        munger = self.munger
        if munger is None:
            if layer >= temporal.TOP:
                return
            munger = self.munger = Munger()
        munger.target = layer
        if self._thinning() and self.carried and self.publication is not None:
            # Frames are left out in Python; back to C once every layer is sent again.
            self.publication.uncarry(self)

    def _thinning(self) -> bool:
        """Whether frames of this publication may be left out for this subscriber now (then
        it is forwarded in Python). A publication without layers never is."""
        munger, pub = self.munger, self.publication
        return munger is not None and munger.thinning and pub is not None and pub.layered

    @property
    def layer(self) -> int:
        """The highest temporal layer this subscriber is sent now."""
        return self.munger.current if self.munger is not None else temporal.TOP

    @property
    def layers_dropped(self) -> int:
        """Packets of a layered publication not sent to this subscriber for its layers."""
        return self.munger.dropped if self.munger is not None else 0

    def switch(self, publication: Publication | None, ts_advance: int) -> None:
        """Carry `publication` from its next keyframe on (None: nothing), continuing this
        subscriber's stream (`Renumbering.switch`)."""
        old = self.publication
        if old is publication:
            return
        if old is not None:
            old.detach(self.key)
            sent = self.packets_sent - self._sent_at_switch
            self._sent_before[old.owner] = self._sent_before.get(old.owner, 0) + sent
        self.release()
        self._sent_at_switch = self.packets_sent
        self.publication = publication
        self._numbering.switch(ts_advance)
        if self.munger is not None:
            # Another stream: its PictureIDs and sequence numbers say nothing of the last.
            self.munger.resume()
        if publication is not None:
            publication.attach(self)
            if self.active:
                publication.need_keyframe()

    def sent_from(self, owner: str) -> int:
        """How many packets of `owner`'s this subscription has sent (the proof that a
        source without the floor was never forwarded)."""
        before = self._sent_before.get(owner, 0)
        current = self.publication
        if current is not None and current.owner == owner:
            return before + self.packets_sent - self._sent_at_switch
        return before

    def forward(self, packet: RtpPacket, starts_keyframe: bool) -> bool:
        """The Python path: runs for every packet and every subscriber the C fan-out does
        not carry. True: sent, and the C fan-out could carry this subscriber from now on."""
        if not self.active:
            return False
        payload = packet.payload
        munger = self.munger
        if munger is not None and self.publication is not None:
            descriptor = self.publication.descriptor
            verdict = munger.admit(packet.sequence_number, descriptor)
            if verdict != "forward":
                self.publication.layers_dropped += 1
                FORWARDED.layer_dropped += 1
                numbering = self._numbering
                if verdict == "drop" and not numbering.waiting:
                    # Closed up: the next packet sent takes this one's number.
                    numbering.seq_offset = (numbering.seq_offset - 1) & 0xFFFF
                return False
            payload = munger.rewrite(payload, descriptor)
            if munger.shift:
                # Late, behind packets dropped since: its place in the closed-up stream.
                start = self._numbering.start_seq
                if start is not None and rtp.seq_newer(start, packet.sequence_number):
                    return False
                seq = (packet.sequence_number + munger.shift) & 0xFFFF
                mapped = self._numbering.map(seq, packet.timestamp, starts_keyframe)
            else:
                mapped = self._numbering.map(
                    packet.sequence_number, packet.timestamp, starts_keyframe
                )
        else:
            mapped = self._numbering.map(packet.sequence_number, packet.timestamp, starts_keyframe)
        if mapped is None:
            return False
        seq, timestamp = mapped
        marker = packet.marker
        data = (
            _HEADER.pack(
                self._first_byte,
                (0x80 | self._payload_type) if marker else self._payload_type,
                seq,
                timestamp,
                self._ssrc,
            )
            + self._extensions
            + payload
        )
        lane = self.lane
        if lane is not None:
            lane.remember(seq, data)
        else:
            i = seq & _HISTORY_MASK
            self._history_seq[i] = seq
            self._history[i] = data
        try:
            self._sock.sendto(self._protect(data), self._addr)  # type: ignore[union-attr,misc]
        except BlockingIOError:
            self.too_slow()
            return False
        except (OSError, SrtpError):
            # SrtpError: libsrtp refuses a number far behind the newest it protected (a late
            # retransmission from the publisher); the C fan-out skips it likewise.
            return False
        self._packets_sent += 1
        self._uncounted_packets += 1
        self._uncounted_octets += len(payload)
        forwarded = FORWARDED
        forwarded.packets += 1
        forwarded.bytes += len(data)
        if marker:
            self.tap.count(self._uncounted_packets, self._uncounted_octets, timestamp)
            self._uncounted_packets = 0
            self._uncounted_octets = 0
        return lane is not None and (munger is None or not self._thinning())

    def close(self) -> None:
        self.active = False
        # Out of the C group before its lane is freed.
        if self.carried and self.publication is not None:
            self.publication.uncarry(self)
        self.release()
        if self.lane is not None:
            # Its count stays in packets_sent.
            self._packets_sent += self.lane.sent()
            self.lane.close()
            self.lane = None


class Publication:
    """One member's track as received, fanned out to every subscription."""

    def __init__(
        self,
        *,
        owner: str,
        kind: str,
        receiver: RTCRtpReceiver | None,
        keyframe_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.owner = owner
        self.kind = kind
        self.receiver = receiver
        self.codec: RTCRtpCodecParameters | None = None
        self.subscriptions: dict[str, Subscription] = {}
        # The subscriptions forwarded in Python, and those the C fan-out carries.
        self._in_python: dict[str, Subscription] = {}
        self._carried: fanout.Group[Subscription] | None = None
        self.sinks: list[PacketSink] = []
        # An open conference listens for who speaks: (owner, RFC 6464 level) per audio packet.
        self.on_level: Callable[[str, int], None] | None = None
        # Called once when the publication ends (its member left, or offered again).
        self.on_close: list[Callable[[], None]] = []
        self.keyframes = rtp.KeyframeRequests(interval=keyframe_interval)
        # True while subscribers' keyframe requests are held back: a conference's roll-in,
        # whose periodic keyframe serves them (media.placement.Rollin).
        self.held: Callable[[], bool] | None = None
        self.keyframes_held = 0
        self.clock = clock
        self.media_ssrc: int | None = None
        # Whether the packet being fanned out starts a keyframe (its sinks read this rather
        # than parse the payload again: media.span's exporter).
        self.keyframe_starts = False
        self.packets_received = 0
        self.keyframes_requested = 0
        # VP8 temporal layers: packets received per TID (0-3), whether any carried one, and
        # the descriptor of the packet being fanned out (None: no TID) for the mungers.
        self.tid_packets = [0, 0, 0, 0]
        self.layered = False
        # Packets of it not sent to a subscriber for its layers, every subscriber together.
        self.layers_dropped = 0
        self.descriptor: temporal.Vp8Descriptor | None = None
        self._closed = False
        # When the carried subscribers' sender counters were last brought up to date.
        self._counted_at = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def track_id(self) -> str:
        return f"{self.owner}:{self.kind}"

    def forward(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        """aiortc hands every received packet here (media.hooks.tap_receiver)."""
        if self.codec is None:
            self.codec = codec
        elif codec.payloadType != self.codec.payloadType:
            # Subscribers were negotiated for the first codec; another cannot reach them.
            return
        self.packets_received += 1
        self.media_ssrc = packet.ssrc
        starts = self.kind == "audio" or rtp.keyframe_start(codec.name, packet.payload)
        self.fan_out(packet, codec, starts)

    def fan_out(self, packet: RtpPacket, codec: RTCRtpCodecParameters, starts: bool) -> None:
        """A received packet to every subscription, the level listener and the sinks."""
        if self.kind == "video":
            if starts:
                self.keyframes.keyframe_seen()
            descriptor = None
            if temporal.has_tid(packet.payload) and codec.name.upper() == "VP8":
                descriptor = temporal.parse_vp8(packet.payload)
                if descriptor is not None and descriptor.tid is not None:
                    self.tid_packets[descriptor.tid] += 1
                    self.layered = True
            self.descriptor = descriptor
        self.keyframe_starts = starts
        carried = self._carried
        if carried:
            self._forward_in_c(carried, packet)
        steady: list[Subscription] | None = None
        for sub in self._in_python.values():
            if sub.forward(packet, starts):
                if steady is None:
                    steady = []
                steady.append(sub)
        if steady is not None:
            for sub in steady:
                self._carry(sub)
        if self.on_level is not None:
            level = packet.extensions.audio_level
            if level is not None:
                self.on_level(self.owner, level[1])
        if self.sinks:
            now = self.clock()
            for sink in self.sinks:
                sink(packet, codec, now)

    def _forward_in_c(self, carried: fanout.Group[Subscription], packet: RtpPacket) -> None:
        marker = packet.marker
        sent = carried.send(packet.sequence_number, packet.timestamp, marker, packet.payload)
        forwarded = FORWARDED
        forwarded.packets += sent.packets
        forwarded.bytes += sent.bytes
        if sent.would_block:
            for sub, _ in carried.with_status(fanout.WOULD_BLOCK):
                self.uncarry(sub)
                sub.too_slow()
        if marker and sent.packets:
            now = time.monotonic()
            if now - self._counted_at >= COUNT_EVERY_S:
                self._counted_at = now
                self.count_carried()

    def count_carried(self) -> None:
        """Bring the senders' counters of the carried subscribers that were sent the last
        packet up to date: packets and octets, and that packet's timestamp with the time now,
        the pair an RTCP sender report maps (so it is called at the end of a frame). The
        others' counts wait for the next time."""
        carried = self._carried
        if carried is None:
            return
        ntp = ntp_now()
        for sub, lane in carried.with_status(fanout.SENT):
            packets, octets = lane.take_uncounted()
            sub.tap.count(packets, octets, lane.timestamp(), ntp)

    @property
    def carried(self) -> fanout.Group[Subscription] | None:
        """The subscriptions the C fan-out carries now (None before the first)."""
        return self._carried

    def _carry(self, sub: Subscription) -> None:
        lane = sub.carry()
        if lane is None:
            return
        self._in_python.pop(sub.key, None)
        if self._carried is None:
            self._carried = fanout.Group()
        self._carried.add(sub, lane)

    def uncarry(self, sub: Subscription) -> None:
        """Forward `sub` in Python again (it would block, switches away, or has a new
        lane)."""
        if not sub.carried:
            return
        if self._carried is not None:
            self._carried.remove(sub)
        sub.release()
        if self.subscriptions.get(sub.key) is sub:
            self._in_python[sub.key] = sub

    def subscribe(
        self,
        subscriber: str,
        sender: RTCRtpSender,
        max_backlog: int,
        engine: Fanout = "python",
        layers: LayerPolicy | None = None,
    ) -> Subscription:
        sub = Subscription(self, subscriber, sender, max_backlog, engine=engine, layers=layers)
        self.attach(sub)
        return sub

    def attach(self, sub: Subscription) -> None:
        """A slot's subscription switched to this publication."""
        self.subscriptions[sub.key] = sub
        self._in_python[sub.key] = sub

    def detach(self, key: str) -> Subscription | None:
        """A slot's subscription switched away (it stays open for its next source)."""
        sub = self.subscriptions.get(key)
        if sub is not None:
            self.uncarry(sub)
        self._in_python.pop(key, None)
        return self.subscriptions.pop(key, None)

    def unsubscribe(self, subscriber: str) -> None:
        sub = self.detach(subscriber)
        if sub is not None:
            sub.close()

    def need_keyframe(self) -> None:
        """A subscriber needs a keyframe."""
        if self.held is not None and self.kind == "video" and self.held():
            self.keyframes_held += 1
            return
        self.pace_keyframe()

    def pace_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per interval."""
        if self.kind != "video":
            return
        now = self.clock()
        if self.keyframes.request(now):
            self._send_pli()
        else:
            self._arm(now)

    def _arm(self, now: float) -> None:
        due = self.keyframes.due()
        if due is None or self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, due - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.clock()
        if self.keyframes.fire(now):
            self._send_pli()
        self._arm(now)

    def _send_pli(self) -> None:
        self.keyframes_requested += 1
        if self.media_ssrc is None or self.receiver is None:
            # Nothing received yet, so no stream to name: ask again when the pacing
            # interval ends (by then packets have come, or the publisher is gone).
            self.keyframes.pending = True
            self._arm(self.clock())
            return
        task = asyncio.get_running_loop().create_task(
            request_keyframe(self.receiver, self.media_ssrc)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        if self.layered and not self._closed:
            # The per-layer counts, once per layered publication (the browser test reads
            # them: Chromium's L1T3 seen from the server).
            log.info(
                "temporal layers",
                owner=self.owner,
                tid_packets=self.tid_packets,
                layers_dropped=self.layers_dropped,
            )
        self._closed = True
        callbacks, self.on_close = self.on_close, []
        for callback in callbacks:
            callback()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sub in list(self.subscriptions.values()):
            self.uncarry(sub)
            sub.close()
        self.subscriptions.clear()
        self._in_python.clear()
        self.sinks.clear()
