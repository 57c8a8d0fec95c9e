"""The fabric's pure parts: the frame codec (any bytes give a frame or a BadFrame), what may
cross between workers, and the roll-in's keyframe schedule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.fabric_frames import (
    MAX_FRAME,
    MAX_PAYLOAD,
    MAX_VOICES,
    BadFrame,
    Frame,
    KeyframeRequest,
    Packet,
    RollinNotice,
    Sites,
    Stop,
    Voices,
    decode,
    encode,
    resend,
)
from media.placement import Placement, Rollin, crosses, grid_sites
from signalling.core.actions import Stage

names = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 200)
tracks = st.builds(lambda o, k: f"{o}:{k}", names, st.sampled_from(["audio", "video"]))
workers = st.integers(0, 0xFFFF)

packets = st.builds(
    Packet,
    sender=workers,
    conference=names,
    track=tracks,
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    payload_type=st.integers(0, 127),
    keyframe_start=st.booleans(),
    audio_level=st.none() | st.tuples(st.booleans(), st.integers(0, 127)),
    payload=st.binary(min_size=1, max_size=MAX_PAYLOAD),
)
frames: st.SearchStrategy[Frame] = st.one_of(
    packets,
    st.builds(KeyframeRequest, workers, names, tracks),
    st.builds(Sites, workers, names),
    st.builds(Stop, workers, names),
    st.builds(RollinNotice, workers, names, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.builds(
        Voices,
        workers,
        names,
        st.lists(st.tuples(names, st.integers(0, 127)), max_size=MAX_VOICES).map(tuple),
    ),
)


@given(frames)
def test_every_frame_decodes_to_itself(frame: Frame) -> None:
    data = encode(frame)
    assert len(data) <= MAX_FRAME
    assert decode(data) == frame


@given(st.binary(max_size=MAX_FRAME + 10))
def test_any_bytes_give_a_frame_or_a_bad_frame_never_another_error(data: bytes) -> None:
    try:
        frame = decode(data)
    except BadFrame:
        return
    assert encode(frame) == data


@given(frames, st.data())
def test_a_frame_cut_short_is_bad(frame: Frame, data: st.DataObject) -> None:
    """Control frames must be whole; a packet cut inside its names has no payload."""
    encoded = encode(frame)
    header = 4 + (9 if isinstance(frame, Packet | RollinNotice) else 0)
    cut = data.draw(st.integers(0, header + len(frame.conference.encode()) - 1))
    with pytest.raises(BadFrame):
        decode(encoded[:cut])


@given(packets, workers)
def test_the_router_resends_a_packet_as_its_own(frame: Packet, router: int) -> None:
    again = decode(resend(encode(frame), router))
    assert isinstance(again, Packet)
    assert again.sender == router
    assert again.payload == frame.payload
    assert again.track == frame.track


def test_bad_frames_are_named_for_what_is_wrong() -> None:
    good = encode(Sites(1, "conf-1"))
    cases = {
        "too_short": b"\x01",
        "version": b"\x02" + good[1:],
        "unknown_kind": good[:1] + b"\x09" + good[2:],
        "bad_length": good + b"x",
        "too_long": b"\x01" * (MAX_FRAME + 1),
        "bad_name": good[:-1] + b"\xff",
        "bad_track": encode(KeyframeRequest(1, "c", "owner:video")).replace(b"video", b"vidoe"),
    }
    for reason, data in cases.items():
        with pytest.raises(BadFrame) as bad:
            decode(data)
        assert bad.value.reason == reason


# ---- VOICES: a worker's candidates in an open conference (media.loudest) ----------------------

longest = st.text(min_size=1, max_size=255).filter(lambda s: len(s.encode()) <= 255)


@given(
    st.builds(
        Voices,
        workers,
        longest,
        st.lists(st.tuples(longest, st.integers(0, 127)), max_size=MAX_VOICES).map(tuple),
    ),
    st.data(),
)
def test_a_voices_frame_round_trips_within_the_frame_bound_and_any_cut_is_bad(
    frame: Voices, data: st.DataObject
) -> None:
    encoded = encode(frame)
    assert len(encoded) <= MAX_FRAME
    assert decode(encoded) == frame
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(BadFrame):
        decode(encoded[:cut])


def test_voices_frames_out_of_bounds_are_refused_both_ways() -> None:
    seven = tuple((f"site{i}", 20) for i in range(MAX_VOICES + 1))
    with pytest.raises(ValueError, match="at most"):
        encode(Voices(1, "c", seven))
    with pytest.raises(ValueError, match="0 to 127"):
        encode(Voices(1, "c", (("a", 128),)))
    with pytest.raises(ValueError, match="1 to 255 bytes"):
        encode(Voices(1, "c", (("", 20),)))
    good = encode(Voices(1, "c", (("a", 20),)))
    # A count over the bound, a level over 127, an owner cut off, a byte too many, no name.
    for reason, data in {
        "bad_header": good[:4] + bytes([MAX_VOICES + 1]) + good[5:],
        "too_short": good[:-1],
        "bad_length": good + b"x",
        "empty_name": good[:-2] + b"\x00",
    }.items():
        with pytest.raises(BadFrame) as bad:
            decode(data)
        assert bad.value.reason == reason, reason
    level_at = len(good) - 3
    with pytest.raises(BadFrame) as bad:
        decode(good[:level_at] + b"\x80" + good[level_at + 1 :])
    assert bad.value.reason == "bad_header"


def test_frames_the_sender_cannot_encode_are_refused() -> None:
    with pytest.raises(ValueError, match="1 to 255 bytes"):
        encode(Sites(0, "x" * 256))
    with pytest.raises(ValueError, match="payload"):
        encode(Packet(0, "c", "a:audio", 1, 1, False, 111, True, None, b""))


# ---- what crosses ----------------------------------------------------------------------------

WHERE = {"chair": 0, "a": 0, "b": 1, "c": 1, "d": 2}


def test_only_audible_voices_and_the_spotlight_cross_between_workers() -> None:
    stage = Stage(audible=("chair", "b"), spotlight="c", moderators=("chair",))
    crossing = {
        f"{u}:{k}"
        for u in WHERE
        for k in ("audio", "video")
        if crosses(stage, WHERE, 0, f"{u}:{k}")
    }
    assert crossing == {"chair:audio", "b:audio", "c:video"}
    # Someone not in the conference: nothing of theirs crosses.
    assert not crosses(stage, WHERE, 0, "stranger:audio")


def test_an_open_conference_lets_every_voice_cross() -> None:
    stage = Stage(audible=(), spotlight=None, moderators=("chair",), open=True)
    assert all(crosses(stage, WHERE, 0, f"{u}:audio") for u in WHERE)
    assert not any(crosses(stage, WHERE, 0, f"{u}:video") for u in WHERE)


def test_the_grid_crosses_only_to_a_moderator_on_another_worker() -> None:
    stage = Stage(audible=(), spotlight=None, moderators=("chair",))
    assert grid_sites(stage, WHERE, 2) == ["a", "b"]
    # b's worker is not the chair's: b's video crosses; a sits with the chair; c is not in
    # the first two.
    assert crosses(stage, WHERE, 2, "b:video")
    assert not crosses(stage, WHERE, 2, "a:video")
    assert not crosses(stage, WHERE, 2, "c:video")


def test_placement_names_home_and_the_members_elsewhere() -> None:
    placement = Placement(here=1, home=0, where=WHERE)
    assert not placement.is_home
    assert placement.has_sites()
    assert placement.elsewhere() == ["a", "chair", "d"]
    assert not Placement(here=3, home=0, where=WHERE).has_sites()


def test_a_shown_calls_tracks_cross_from_its_worker_only_as_the_stage_shows_them() -> None:
    """A feed's officer is no member: its tracks cross from its call's worker while the
    stage shows the call (voice while audible, video while the spotlight), never else."""
    feeds = {"o-1": 2}
    shown = Stage(("chair", "o-1"), "o-1", ("chair",), feeds=(("o-1", "call-1"),))
    assert crosses(shown, WHERE, 2, "o-1:video", feeds)
    assert crosses(shown, WHERE, 2, "o-1:audio", feeds)
    quiet = Stage(("chair",), "chair", ("chair",), feeds=(("o-1", "call-1"),))
    assert not crosses(quiet, WHERE, 2, "o-1:video", feeds)
    assert not crosses(quiet, WHERE, 2, "o-1:audio", feeds)
    # Not shown (unshared), or not placed here: nothing crosses.
    unshared = Stage(("chair", "o-1"), "o-1", ("chair",))
    assert not crosses(unshared, WHERE, 2, "o-1:video", feeds)
    assert not crosses(shown, WHERE, 2, "o-1:video")
    placement = Placement(here=2, home=0, where=WHERE, feeds=feeds)
    assert placement.worker_of("o-1") == 2
    assert placement.feeds_here() == ["o-1"]
    # A worker with only the call is no site of the conference.
    assert not Placement(here=3, home=0, where=WHERE, feeds={"o-1": 3}).has_sites()


# ---- the roll-in -----------------------------------------------------------------------------


def test_the_rollin_asks_every_interval_until_it_ends() -> None:
    rollin = Rollin(started=100.0, length=10.0, every=2.5)
    asks = []
    now = 100.0
    while (due := rollin.next_ask(now)) is not None:
        asks.append(due)
        now = due
    assert asks == [102.5, 105.0, 107.5]
    assert rollin.next_ask(99.0) is None
    assert rollin.next_ask(110.0) is None


def test_joiners_requests_are_held_only_while_a_periodic_keyframe_is_still_to_come() -> None:
    rollin = Rollin(started=0.0, length=10.0, every=2.5)
    assert rollin.holds(0.0)
    assert rollin.holds(7.4)
    # After the last periodic keyframe (7.5 s) nothing would serve a held request.
    assert not rollin.holds(7.5)
    assert not rollin.holds(12.0)
    assert not Rollin(0.0, 0.0, 2.5).holds(0.0)


@given(
    st.floats(0, 1e6),
    st.floats(0.1, 600),
    st.floats(1, 10),
    st.floats(0, 700),
)
def test_the_next_ask_is_within_one_interval_and_inside_the_rollin(
    started: float, length: float, every: float, after: float
) -> None:
    rollin = Rollin(started, length, every)
    now = started + after
    due = rollin.next_ask(now)
    if due is not None:
        assert now < due <= now + every + 1e-6
        assert due - started < length
