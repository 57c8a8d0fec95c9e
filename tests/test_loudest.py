"""media.loudest: a worker's preselection of an open conference's voices, driven directly
with levels and times (no event loop)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.loudest import Loudest

PACKET_S = 0.02


def speak(
    loudest: Loudest, levels: Mapping[str, int | None], start: float, seconds: float
) -> float:
    """Every site sends a packet each 20 ms at its level for `seconds`; the time after."""
    now = start
    for _ in range(round(seconds / PACKET_S)):
        for owner, level in levels.items():
            loudest.heard(owner, level, now)
        now += PACKET_S
    return now


def names(loudest: Loudest, now: float) -> list[str]:
    return [u for u, _ in loudest.candidates(now)]


def test_the_three_loudest_of_many_speakers_are_the_candidates_loudest_first() -> None:
    loudest = Loudest(3)
    levels = {"a": 40, "b": 10, "c": 30, "d": 20, "e": 45}
    now = speak(loudest, levels, 0.0, 1.0)
    assert names(loudest, now) == ["b", "d", "c"]
    assert [lvl for _, lvl in loudest.candidates(now)] == [10, 20, 30]


def test_a_first_loud_packet_is_forwarded_itself_when_a_place_is_free() -> None:
    loudest = Loudest(3)
    assert loudest.heard("a", 127, 0.0) is False
    assert loudest.heard("a", 30, 0.02) is True
    assert loudest.is_candidate("a")


def test_silent_sites_and_packets_without_a_level_are_never_candidates() -> None:
    loudest = Loudest(3)
    now = speak(loudest, {"a": 127, "b": None, "c": 51}, 0.0, 1.0)
    assert names(loudest, now) == []
    assert loudest.heard("a", 127, now) is False


def test_a_slightly_louder_newcomer_does_not_displace_a_candidate_but_a_much_louder_does() -> None:
    loudest = Loudest(3)
    now = speak(loudest, {"a": 20, "b": 25, "c": 30}, 0.0, 0.5)
    # 4 dB louder than c: within the margin, c keeps its place.
    now = speak(loudest, {"a": 20, "b": 25, "c": 30, "d": 26}, now, 1.0)
    assert names(loudest, now) == ["a", "b", "c"]
    assert loudest.heard("d", 26, now) is False
    # 20 dB louder: it takes the quietest's place with its very first packet.
    assert loudest.heard("e", 10, now) is True
    assert names(loudest, now) == ["e", "a", "b"]


def test_a_tie_keeps_the_candidate_already_forwarded() -> None:
    loudest = Loudest(1)
    now = speak(loudest, {"a": 30, "b": 30}, 0.0, 2.0)
    assert names(loudest, now) == ["a"]
    assert loudest.heard("b", 30, now) is False


def test_a_pause_between_words_keeps_the_place_and_silence_gives_it_up() -> None:
    loudest = Loudest(1)
    now = speak(loudest, {"a": 20}, 0.0, 0.5)
    # 0.4 s of breath: every packet of a still goes to home, b (quiet) waits.
    for _ in range(20):
        assert loudest.heard("a", 127, now) is True
        assert loudest.heard("b", 60, now) is False
        now += PACKET_S
    assert names(loudest, now) == ["a"]
    # Silent beyond the hold (0.6 s): the place goes to the next one speaking.
    now = speak(loudest, {"a": 127}, now, 0.4)
    assert names(loudest, now) == []
    assert loudest.heard("a", 127, now) is False
    assert loudest.heard("b", 45, now) is True
    assert names(loudest, now) == ["b"]


def test_a_candidate_gone_quiet_is_displaced_sooner_than_the_hold_by_a_loud_voice() -> None:
    """The running level includes quiet packets, so a speaker trailing off is soon quieter
    than a newcomer by the margin."""
    loudest = Loudest(1)
    now = speak(loudest, {"a": 20}, 0.0, 0.5)
    now = speak(loudest, {"a": 127}, now, 0.2)
    assert loudest.heard("b", 20, now) is True
    assert names(loudest, now) == ["b"]


def test_expire_alone_frees_the_places_of_finished_speakers() -> None:
    loudest = Loudest(3)
    now = speak(loudest, {"a": 20, "b": 30}, 0.0, 0.2)
    assert names(loudest, now) == ["a", "b"]
    loudest.expire(now + 1.0)
    assert names(loudest, now + 1.0) == []


def test_forget_frees_a_place() -> None:
    loudest = Loudest(1)
    loudest.heard("a", 20, 0.0)
    loudest.forget("a")
    assert loudest.heard("b", 40, 0.02) is True


def test_a_preselection_keeps_at_least_one_site() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Loudest(0)


@given(
    st.lists(
        st.tuples(
            st.sampled_from("abcdefgh"),
            st.one_of(st.none(), st.integers(-10, 200)),
            st.floats(0.0, 0.5),
        ),
        max_size=300,
    ),
    st.integers(1, 4),
)
def test_never_more_candidates_than_places_and_each_one_was_loud_lately(
    events: list[tuple[str, int | None, float]], size: int
) -> None:
    loudest = Loudest(size)
    now = 0.0
    for owner, level, step in events:
        now += step
        forwarded = loudest.heard(owner, level, now)
        assert forwarded == loudest.is_candidate(owner)
        listed = loudest.candidates(now)
        assert len(listed) <= size
        assert all(0 <= lvl <= 127 for _, lvl in listed)
