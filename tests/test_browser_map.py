"""Map clustering at the console for 300 officers, in headless Chromium against the real
server: one run of tests/browser_map_scenario.py in a network namespace of its own (`make
console` builds the console first; `make test` does)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_map_scenario import (
    AGING_MARGIN_S,
    LOST_AFTER,
    LOST_BEFORE,
    OFFICERS,
    PER_GROUP,
    SOS,
    STALE,
)

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 150.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_map_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_three_hundred_officers_are_drawn_as_a_few_clusters(run: dict[str, Any]) -> None:
    assert seen(run, "drawn") == OFFICERS
    before = seen(run, "before")
    # Each group of 100 is one bubble (or a few), not 100 pins.
    assert 3 <= len(before["clusters"]) <= 9
    assert sum(before["clusters"]) + len(before["alone"]) == OFFICERS
    assert before["alone"] == []
    assert seen(run, "cluster_bubbles") == len(before["clusters"])


def badges(bubbles: list[dict[str, Any]]) -> list[str]:
    return sorted(b["text"] for bubble in bubbles for b in bubble["badges"])


def test_a_bubble_says_how_many_of_its_officers_are_in_a_call_or_lost_their_signal(
    run: dict[str, Any],
) -> None:
    before = seen(run, "bubbles_before")
    # Spread over a group's bubbles: the one in a call and the five lost are counted once.
    in_call = [b for b in before if any(x["kind"] == "in_call" for x in b["badges"])]
    assert len(in_call) == 1
    assert in_call[0]["label"].endswith("1 人通话中")
    assert "通话 1" in badges(before)
    lost = [x for b in before for x in b["badges"] if x["kind"] == "away"]
    assert sum(x["count"] for x in lost) == len(LOST_BEFORE)
    assert all(x["text"] == f"中断 {x['count']}" for x in lost)
    # Bubbles with nobody busy say they are all online, and have no badge.
    plain = [b for b in before if not b["badges"]]
    assert plain
    assert all(b["label"].endswith("名干警，均在线") for b in plain)


def test_a_bubble_is_redrawn_when_its_officers_lose_their_signal(run: dict[str, Any]) -> None:
    after = seen(run, "bubbles_after_drop")
    lost = [x for b in after for x in b["badges"] if x["kind"] == "away"]
    assert sum(x["count"] for x in lost) == len(LOST_BEFORE) + len(LOST_AFTER)


def test_an_emergency_is_never_hidden_in_a_cluster(run: dict[str, Any]) -> None:
    after = seen(run, "after")
    # The map jumped to the officer: the officers round them stay clustered.
    assert after["alone"] == [SOS]
    assert after["clusters"]
    assert max(after["clusters"]) < PER_GROUP
    assert sum(after["clusters"]) <= OFFICERS - 1
    assert seen(run, "emergency_pin_visible") is True
    assert seen(run, "pin_after_acknowledged") is True
    assert seen(run, "page_errors") == []


def test_a_bubble_says_how_many_of_its_officers_positions_are_stale(run: dict[str, Any]) -> None:
    before = seen(run, "bubbles_before")
    stale = [x for b in before for x in b["badges"] if x["kind"] == "stale"]
    assert sum(x["count"] for x in stale) == len(STALE)
    assert all(x["text"] == f"旧位 {x['count']}" for x in stale)
    labelled = [b for b in before if any(x["kind"] == "stale" for x in b["badges"])]
    assert all("人位置已旧" in b["label"] for b in labelled)
    # A fresh report from one of them: its bubble counts one fewer.
    after = seen(run, "bubbles_after_refresh")
    assert sum(x["count"] for b in after for x in b["badges"] if x["kind"] == "stale") == (
        len(STALE) - 1
    )


def test_an_officer_alone_on_the_map_with_an_old_position_is_marked_stale(
    run: dict[str, Any],
) -> None:
    assert seen(run, "selected_pin_badge") == "旧位"


# Grey as the map's stale pin (#9e9e9e); a fresh age keeps the muted colour.
GREY = "rgb(158, 158, 158)"


def test_the_roster_marks_a_stale_position_grey_with_its_badge(run: dict[str, Any]) -> None:
    stale = seen(run, "roster_stale")
    assert stale["age"].endswith("前")
    assert stale["color"] == GREY
    assert stale["badge"] == "旧位"
    refreshed = seen(run, "roster_refreshed")
    assert refreshed["color"] != GREY
    assert refreshed["badge"] == ""
    assert refreshed["badge_shown"] is False


def test_a_roster_position_turns_stale_as_time_passes_without_a_message(
    run: dict[str, Any],
) -> None:
    fresh = seen(run, "aging_fresh")
    assert fresh["badge_shown"] is False
    assert fresh["color"] != GREY
    stale = seen(run, "aging_stale")
    assert stale["badge"] == "旧位"
    assert stale["color"] == GREY
    # Marked within a few ticks of crossing the threshold, not before it (but for the
    # console's estimate of the server's clock).
    assert -1 <= seen(run, "aging_stale_after_s") <= AGING_MARGIN_S
