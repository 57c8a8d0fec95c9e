"""VP8 temporal layers, pure (media.temporal): the payload descriptor from any bytes, the
layer selector's steps on reported loss, and the munger thinning an L1T3 stream so that what
a subscriber gets has no sequence or PictureID gaps and never a frame whose reference was
left out."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media import rtp
from media.temporal import (
    TOP,
    TRANSITIONS,
    LayerPolicy,
    LayerSelector,
    Munger,
    Vp8Descriptor,
    has_tid,
    parse_vp8,
    with_picture_id,
)


def descriptor_bytes(
    *,
    picture_id: int | None,
    long_id: bool = True,
    tl0: int | None = None,
    tid: int | None = None,
    sync: bool = False,
    keyidx: int | None = None,
    start: bool = True,
    partition: int = 0,
) -> bytes:
    """An RFC 7741 payload descriptor, as a publisher writes it."""
    ext = 0
    tail = b""
    if picture_id is not None:
        ext |= 0x80
        if long_id:
            tail += bytes([0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF])
        else:
            tail += bytes([picture_id & 0x7F])
    if tl0 is not None:
        ext |= 0x40
        tail += bytes([tl0])
    if tid is not None or keyidx is not None:
        ext |= (0x20 if tid is not None else 0) | (0x10 if keyidx is not None else 0)
        tail += bytes([((tid or 0) << 6) | (0x20 if sync else 0) | (keyidx or 0)])
    first = (0x80 if ext else 0) | (0x10 if start else 0) | partition
    return bytes([first]) + (bytes([ext]) if ext else b"") + tail


# ---- the descriptor ---------------------------------------------------------------------------


@settings(max_examples=2000)
@given(st.binary(max_size=12))
def test_any_bytes_give_a_descriptor_or_none(data: bytes) -> None:
    """Any payload parses to a descriptor within its bytes, or to None; never an exception."""
    parsed = parse_vp8(data)
    if parsed is not None:
        assert parsed.size <= len(data)
        assert parsed.picture_id_bits in (0, 7, 15)
        assert (parsed.picture_id is None) == (parsed.picture_id_bits == 0)
        assert parsed.tid is None or 0 <= parsed.tid <= 3
        assert has_tid(data) == (parsed.tid is not None)


@given(
    st.integers(0, 0x7FFF),
    st.booleans(),
    st.none() | st.integers(0, 255),
    st.none() | st.integers(0, 3),
    st.booleans(),
    st.none() | st.integers(0, 31),
    st.booleans(),
    st.integers(0, 7),
)
def test_every_field_reads_back_as_written(
    picture_id: int,
    long_id: bool,
    tl0: int | None,
    tid: int | None,
    sync: bool,
    keyidx: int | None,
    start: bool,
    partition: int,
) -> None:
    """S, PID, PictureID (7 or 15 bits), TL0PICIDX, TID, Y and KEYIDX read back as written."""
    head = descriptor_bytes(
        picture_id=picture_id,
        long_id=long_id,
        tl0=tl0,
        tid=tid,
        sync=sync,
        keyidx=keyidx,
        start=start,
        partition=partition,
    )
    parsed = parse_vp8(head + b"\x9d\x01\x2a")
    assert parsed is not None
    assert parsed.size == len(head)
    assert parsed.start == start
    assert parsed.partition == partition
    assert parsed.picture_id == (picture_id if long_id else picture_id & 0x7F)
    assert parsed.picture_id_bits == (15 if long_id else 7)
    assert parsed.tl0picidx == tl0
    assert parsed.tid == tid
    assert parsed.layer_sync == (sync and tid is not None)
    assert parsed.keyidx == keyidx


def test_a_descriptor_cut_short_is_none() -> None:
    """Flags announcing bytes that are not there give None."""
    full = descriptor_bytes(picture_id=300, tl0=4, tid=1)
    for cut in range(len(full)):
        assert parse_vp8(full[:cut]) is None


@given(st.integers(0, 0x7FFF), st.booleans(), st.integers(-70000, 70000))
def test_rewriting_the_picture_id_keeps_its_form_and_wraps(
    picture_id: int, long_id: bool, new: int
) -> None:
    """The rewritten PictureID keeps the 7- or 15-bit form and wraps modulo it; the rest of
    the payload is untouched."""
    head = descriptor_bytes(picture_id=picture_id, long_id=long_id, tl0=9, tid=2, sync=True)
    payload = head + b"frame"
    parsed = parse_vp8(payload)
    assert parsed is not None
    out = with_picture_id(payload, parsed, new)
    again = parse_vp8(out)
    assert again is not None
    bits = 15 if long_id else 7
    assert again.picture_id == new % (1 << bits)
    assert again.picture_id_bits == bits
    assert (again.tl0picidx, again.tid, again.layer_sync) == (9, 2, True)
    assert out[len(head) :] == b"frame"
    assert len(out) == len(payload)


# ---- the selector -----------------------------------------------------------------------------

POLICY = LayerPolicy(down_loss=0.10, down_reports=2, up_loss=0.02, up_after_s=5.0)
LOSSY = 40  # 40/256: 15.6 %
FAIR = 13  # 5 %: between the thresholds
CLEAR = 2  # 0.8 %


def test_sustained_loss_steps_down_one_layer_per_two_reports() -> None:
    """Two lossy reports in a row: down a layer; two more: down again; never below 0."""
    sel = LayerSelector(POLICY)
    assert sel.report(LOSSY, 0.0) is None
    assert sel.report(LOSSY, 1.0) == 1
    assert sel.report(LOSSY, 2.0) is None
    assert sel.report(LOSSY, 3.0) == 0
    assert sel.report(LOSSY, 4.0) is None
    assert sel.report(LOSSY, 5.0) is None
    assert sel.layer == 0


def test_one_lossy_report_between_others_moves_nothing() -> None:
    """A single lossy report (then a fair one) is not sustained loss."""
    sel = LayerSelector(POLICY)
    for now, loss in enumerate([LOSSY, FAIR, LOSSY, CLEAR, LOSSY, FAIR]):
        assert sel.report(loss, float(now)) is None
    assert sel.layer == TOP


def test_it_climbs_back_one_layer_per_clear_period() -> None:
    """Reports below 2 % for 5 s: up a layer; 5 s more: up again; a fair report restarts
    the wait (hysteresis)."""
    sel = LayerSelector(POLICY, layer=0)
    assert sel.report(CLEAR, 10.0) is None
    assert sel.report(CLEAR, 14.0) is None
    assert sel.report(FAIR, 14.5) is None
    assert sel.report(CLEAR, 15.0) is None
    assert sel.report(CLEAR, 19.9) is None
    assert sel.report(CLEAR, 20.0) == 1
    assert sel.report(CLEAR, 24.0) is None
    assert sel.report(CLEAR, 25.0) == 2
    assert sel.report(CLEAR, 40.0) is None
    assert sel.layer == TOP
    assert sel.changes == 2


@given(st.lists(st.tuples(st.integers(0, 255), st.floats(0, 3)), max_size=60))
def test_the_layer_stays_in_range_and_moves_one_step_at_a_time(
    reports: list[tuple[int, float]],
) -> None:
    """Over any reports the layer is 0-2, changes by one, down only after a lossy report
    and up only after a clear one."""
    sel = LayerSelector(POLICY)
    now = 0.0
    for loss, gap in reports:
        now += gap
        before = sel.layer
        after = sel.report(loss, now)
        assert 0 <= sel.layer <= TOP
        if after is None:
            assert sel.layer == before
        else:
            assert abs(after - before) == 1
            assert (after < before) == (loss / 256 > POLICY.down_loss)
            assert (after > before) == (loss / 256 < POLICY.up_loss)


def test_every_layer_and_step_has_a_transition() -> None:
    assert set(TRANSITIONS) == {(layer, step) for layer in range(3) for step in ("down", "up")}


def test_thresholds_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="up_loss < down_loss"):
        LayerPolicy(down_loss=0.01, up_loss=0.02)
    with pytest.raises(ValueError, match="down_reports >= 1"):
        LayerPolicy(down_reports=0)


# ---- the munger -------------------------------------------------------------------------------

PATTERN = (0, 2, 1, 2)


@dataclass(frozen=True)
class Packet:
    seq: int
    frame: int  # the frame's index in the stream
    tid: int
    payload: bytes


def l1t3(
    frames: int, packets_per_frame: list[int], seq: int, picture_id: int, long_id: bool
) -> list[Packet]:
    """An L1T3 stream as libwebrtc sends it: TIDs 0, 2, 1, 2, ..., TL0PICIDX counting TID-0
    frames, the layer-sync bit on frames that reference only TID 0 (the first TID-1 and
    TID-2 frames after a TID-0 one)."""
    out = []
    tl0 = 200
    for frame in range(frames):
        tid = PATTERN[frame % 4]
        if tid == 0 and frame:
            tl0 = (tl0 + 1) & 0xFF
        sync = frame % 4 in (1, 2)
        count = packets_per_frame[frame % len(packets_per_frame)]
        for k in range(count):
            head = descriptor_bytes(
                picture_id=(picture_id + frame) & (0x7FFF if long_id else 0x7F),
                long_id=long_id,
                tl0=tl0,
                tid=tid,
                sync=sync,
                start=k == 0,
            )
            out.append(Packet(seq & 0xFFFF, frame, tid, head + bytes([frame & 0xFF, k])))
            seq += 1
    return out


def reference(frame: int) -> int | None:
    """The frame a frame of the pattern references (None: the first)."""
    tid = PATTERN[frame % 4]
    if frame == 0:
        return None
    if tid == 0:
        return frame - 4
    if tid == 1:
        return frame - 2
    return frame - 1  # TID 2: the TID-0 or TID-1 frame just before


@settings(max_examples=300, deadline=None)
@given(
    frames=st.integers(1, 120),
    packets_per_frame=st.lists(st.integers(1, 4), min_size=1, max_size=5),
    seq=st.integers(0, 0xFFFF),
    picture_id=st.integers(0, 0x7FFF),
    long_id=st.booleans(),
    targets=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 2)), max_size=12),
)
def test_a_thinned_stream_stays_decodable(
    frames: int,
    packets_per_frame: list[int],
    seq: int,
    picture_id: int,
    long_id: bool,
    targets: list[tuple[int, int]],
) -> None:
    """For an L1T3 stream and any changes of the target layer, what the subscriber gets has
    consecutive sequence numbers and PictureIDs, every TID-0 frame, unchanged TL0PICIDX,
    and no frame whose reference was left out."""
    stream = l1t3(frames, packets_per_frame, seq, picture_id, long_id)
    changes = dict(targets)
    munger = Munger()
    numbering = rtp.Renumbering(seq_base=1000, timestamp_base=0)
    out: list[tuple[int, Vp8Descriptor, Packet]] = []
    for i, packet in enumerate(stream):
        if i in changes:
            munger.target = changes[i]
        desc = parse_vp8(packet.payload)
        verdict = munger.admit(packet.seq, desc)
        if verdict == "drop":
            numbering.seq_offset = (numbering.seq_offset - 1) & 0xFFFF
            continue
        assert verdict == "forward"
        mapped = numbering.map(packet.seq, 0, i == 0)
        assert mapped is not None
        rewritten = parse_vp8(munger.rewrite(packet.payload, desc))
        assert rewritten is not None
        out.append((mapped[0], rewritten, packet))
    seqs = [s for s, _, _ in out]
    assert seqs == [(1000 + k) & 0xFFFF for k in range(len(seqs))]
    modulo = 1 << (15 if long_id else 7)
    sent_frames: list[int] = []
    pids: list[int] = []
    for _, desc, packet in out:
        if not sent_frames or sent_frames[-1] != packet.frame:
            sent_frames.append(packet.frame)
            assert desc.picture_id is not None
            pids.append(desc.picture_id)
    for a, b in itertools.pairwise(pids):
        assert (b - a) % modulo == 1
    assert {p.frame for p in stream if p.tid == 0} <= set(sent_frames)
    sent = set(sent_frames)
    for frame in sent_frames:
        ref = reference(frame)
        assert ref is None or ref in sent, f"frame {frame} sent without its reference {ref}"
    original = {p.frame: parse_vp8(p.payload) for p in stream}
    for _, desc, packet in out:
        source = original[packet.frame]
        assert source is not None
        assert desc.tl0picidx == source.tl0picidx
        assert desc.tid == source.tid
    # Everything not forwarded was dropped, and counted.
    assert munger.dropped == len(stream) - len(out)


@settings(max_examples=300, deadline=None)
@given(
    frames=st.integers(1, 80),
    packets_per_frame=st.lists(st.integers(1, 4), min_size=1, max_size=5),
    seq=st.integers(0, 0xFFFF),
    targets=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 2)), max_size=10),
    delays=st.lists(st.tuples(st.integers(0, 300), st.integers(1, 8)), max_size=20),
)
def test_late_packets_take_their_place_or_are_left_out(
    frames: int,
    packets_per_frame: list[int],
    seq: int,
    targets: list[tuple[int, int]],
    delays: list[tuple[int, int]],
) -> None:
    """With packets arriving late (reordered, or retransmitted by the publisher), every
    packet sent gets a number of its own in publisher order, the packets of a frame one
    PictureID, PictureIDs rise by one per frame decided forwarded, gaps are only where a
    late packet was left out, and no frame is sent whose reference was dropped."""
    stream = l1t3(frames, packets_per_frame, seq, 0, True)
    order = list(range(len(stream)))
    for at, by in delays:
        if at < len(order):
            order.insert(min(len(order) - 1, at + by), order.pop(at))
    changes = dict(targets)
    munger = Munger()
    numbering = rtp.Renumbering(seq_base=1000, timestamp_base=0)
    sent: dict[int, tuple[int, int]] = {}  # stream index -> (out seq, PictureID)
    verdicts: dict[int, str] = {}
    for step, i in enumerate(order):
        if step in changes:
            munger.target = changes[step]
        packet = stream[i]
        desc = parse_vp8(packet.payload)
        verdict = munger.admit(packet.seq, desc)
        verdicts[i] = verdict
        if verdict == "drop":
            if not numbering.waiting:  # as the forwarder: nothing to close up before a start
                numbering.seq_offset = (numbering.seq_offset - 1) & 0xFFFF
            continue
        if verdict == "stale":
            continue
        start = numbering.start_seq
        if start is not None and rtp.seq_newer(start, packet.seq):
            continue  # older than the subscriber's start: never sent (as the forwarder)
        # The subscriber starts on the first packet sent (a keyframe, say).
        mapped = numbering.map((packet.seq + munger.shift) & 0xFFFF, 0, numbering.waiting)
        assert mapped is not None
        rewritten = parse_vp8(munger.rewrite(packet.payload, desc))
        assert rewritten is not None
        assert rewritten.picture_id is not None
        sent[i] = (mapped[0], rewritten.picture_id)
    indices = sorted(sent)
    outs = [sent[i][0] for i in indices]
    # Numbers distinct and in publisher order (the base is far from wrapping).
    assert outs == sorted(set(outs))
    stale = sum(v == "stale" for v in verdicts.values())
    if outs:
        assert outs[-1] - outs[0] + 1 - len(outs) <= stale
    by_frame: dict[int, set[int]] = {}
    for i in indices:
        by_frame.setdefault(stream[i].frame, set()).add(sent[i][1])
    assert all(len(ids) == 1 for ids in by_frame.values())
    decided_dropped = {stream[i].frame for i, v in verdicts.items() if v == "drop"}
    forwarded = sorted(by_frame)
    for a, b in itertools.pairwise(forwarded):
        between = [f for f in range(a + 1, b) if f not in decided_dropped]
        assert (next(iter(by_frame[b])) - next(iter(by_frame[a]))) % (1 << 15) == 1 + len(between)
    for frame in forwarded:
        ref = reference(frame)
        assert ref not in decided_dropped, f"frame {frame} sent, its reference {ref} dropped"


def test_going_up_waits_for_a_switch_point() -> None:
    """At target 0 only TID-0 frames pass; raised to 2 in the middle of the group, the
    layers come back at the next layer-sync or TID-0 frame, not before."""
    stream = l1t3(12, [1], 0, 0, True)
    munger = Munger(target=0)
    passed = []
    for packet in stream:
        if packet.frame == 3:
            munger.target = TOP
        if munger.admit(packet.seq, parse_vp8(packet.payload)) == "forward":
            passed.append(packet.frame)
    # Frame 3 (TID 2, not sync) waits; frame 4 (TID 0) switches up.
    assert passed == [0, 4, 5, 6, 7, 8, 9, 10, 11]


def test_a_packet_reordered_across_a_dropped_frame_takes_its_place() -> None:
    """A late packet of a frame sent, behind a frame dropped since, is moved up by the
    packets dropped after it: the number it would have had."""
    stream = l1t3(4, [2], 100, 0, True)
    munger = Munger(target=1)
    verdicts = {}
    shifts = {}
    late = stream[1]  # frame 0's second packet arrives after frame 1 (TID 2, dropped)
    for packet in [stream[0], stream[2], stream[3], late, *stream[4:]]:
        verdicts[packet.seq] = munger.admit(packet.seq, parse_vp8(packet.payload))
        shifts[packet.seq] = munger.shift
    assert verdicts[late.seq] == "forward"
    assert shifts[late.seq] == 2
    assert [verdicts[p.seq] for p in stream[2:4]] == ["drop", "drop"]


def test_a_late_packet_of_a_dropped_or_unseen_frame_is_left_out() -> None:
    """Late packets of a frame dropped, or of a frame none of whose packets came before a
    newer one (its reference may be gone), are stale."""
    stream = l1t3(4, [2], 100, 0, True)
    munger = Munger(target=0)
    order = [stream[0], stream[1], stream[2], stream[4], stream[5], stream[3]]
    verdicts = [munger.admit(p.seq, parse_vp8(p.payload)) for p in order]
    # Frame 1 (TID 2) dropped, its late second packet stale; frame 2 (TID 1) dropped.
    assert verdicts == ["forward", "forward", "drop", "drop", "drop", "stale"]
    munger = Munger()
    late_frame = [stream[0], stream[1], stream[4], stream[2], stream[3]]
    verdicts = [munger.admit(p.seq, parse_vp8(p.payload)) for p in late_frame]
    assert verdicts == ["forward", "forward", "forward", "stale", "stale"]


def test_an_unlayered_stream_passes_untouched() -> None:
    """Without a TID the packet is forwarded as it is, whatever the target."""
    munger = Munger(target=0)
    payload = descriptor_bytes(picture_id=5) + b"x"
    assert munger.admit(1, parse_vp8(payload)) == "forward"
    assert munger.admit(2, None) == "forward"
    assert munger.rewrite(payload, parse_vp8(payload)) == payload


def test_a_capped_selector_never_climbs_above_its_top() -> None:
    """`top` 1: the selector starts there and clear reports never take it higher."""
    sel = LayerSelector(LayerPolicy(top=1))
    assert sel.layer == 1
    for now in range(0, 30, 2):
        assert sel.report(CLEAR, float(now)) is None
    assert sel.report(LOSSY, 40.0) is None
    assert sel.report(LOSSY, 41.0) == 0
    for now in range(50, 80, 2):
        sel.report(CLEAR, float(now))
    assert sel.layer == 1
