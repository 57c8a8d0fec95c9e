"""A conference's span takes any sequence of frames from its siblings without failing: every
frame is used, or dropped and counted, on home and on any other worker."""

from __future__ import annotations

import asyncio
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.fabric import Fabric, FabricEndpoint
from media.fabric_frames import Frame, KeyframeRequest, Packet, RollinNotice, Sites, Stop, encode
from media.placement import Placement
from media.settings import MediaConfig
from media.span import ConferenceSpan
from signalling.core.actions import Stage

CID = "conf-1"
WHERE = {"chair": 0, "s1": 1, "s2": 2}
CONFIG = MediaConfig(conference_rollin_s=30.0, conference_rollin_keyframe_s=1.0)
STAGE = Stage(audible=("chair", "s1"), spotlight="s2", moderators=("chair",))

senders = st.sampled_from([1, 2, 0, 7])
conferences = st.sampled_from([CID, CID, CID, "other"])
tracks = st.sampled_from(
    ["chair:audio", "chair:video", "s1:audio", "s1:video", "s2:audio", "s2:video", "x:video"]
)
packets = st.builds(
    Packet,
    sender=senders,
    conference=conferences,
    track=tracks,
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    payload_type=st.sampled_from([96, 111, 0, 127]),
    keyframe_start=st.booleans(),
    audio_level=st.none() | st.tuples(st.booleans(), st.integers(0, 127)),
    payload=st.binary(min_size=1, max_size=64),
)
frames: st.SearchStrategy[Frame] = st.one_of(
    packets,
    st.builds(KeyframeRequest, senders, conferences, tracks),
    st.builds(Sites, senders, conferences),
    st.builds(Stop, senders, conferences),
    st.builds(RollinNotice, senders, conferences, st.integers(0, 100_000), st.integers(0, 5000)),
)


async def _take_all(here: int, home: int, sequence: list[Frame | bytes]) -> Fabric:
    siblings = {i: f"/nonexistent/w{i}.sock" for i in (0, 1, 2) if i != here}
    fabric = Fabric(FabricEndpoint(here, f"/nonexistent/w{here}.sock", siblings))
    span = ConferenceSpan(
        conference_id=CID, fabric=fabric, config=CONFIG, clock=time.monotonic, room=lambda: None
    )
    span.place(Placement(here, home, WHERE))
    span.stage = STAGE
    for item in sequence:
        fabric.take(item if isinstance(item, bytes) else encode(item))
    span.close()
    return fabric


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([(0, 0), (1, 0), (2, 0)]),
    # Raw bytes, of a version nobody speaks: dropped before any conference sees them.
    st.lists(frames | st.binary(max_size=40).map(lambda b: b"\x09\x01\x00\x01" + b), max_size=40),
)
def test_any_frames_are_used_or_dropped_and_counted_never_a_failure(
    placement: tuple[int, int], sequence: list[Frame | bytes]
) -> None:
    here, home = placement
    fabric = asyncio.run(_take_all(here, home, sequence))
    assert fabric.dropped["handler_failed"] == 0
    assert fabric.received == 0  # nothing came through the socket: take() was called directly
    framed = [f for f in sequence if not isinstance(f, bytes)]
    assert fabric.dropped["version"] == len(sequence) - len(framed)
    strangers = [f for f in framed if f.sender == here or f.sender not in (0, 1, 2)]
    assert fabric.dropped["unknown_worker"] == len(strangers)
    others = [f for f in framed if f not in strangers and f.conference != CID]
    assert fabric.dropped["unknown_conference"] == len(others)
