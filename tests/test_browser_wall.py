"""The video wall in headless Chromium against the real server: one run of
tests/browser_wall_scenario.py in a network namespace of its own (two phone pages with fake
cameras, the console's wall in the 4-tile and 1-tile layouts, a short rotation)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_wall_scenario import COURT_NAME, OFFICERS, WATCHED

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_wall_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_four_tiles_show_both_officers_live_at_once(run: dict[str, Any]) -> None:
    assert seen(run, "wall_heading") == "视频墙"
    assert seen(run, "layout_4") == 4
    assert seen(run, "tile_officers") == ["o-1", "o-2"]
    assert all(width > 0 for width in seen(run, "tile_widths"))
    assert seen(run, "time_advanced") is True
    assert seen(run, "watch_ids_distinct") is True


def test_tiles_are_labelled_with_name_and_court_not_ids(run: dict[str, Any]) -> None:
    assert seen(run, "tile_labels") == sorted(f"{n} · {COURT_NAME}" for n in OFFICERS.values())


def test_a_watched_phone_says_so_and_sends_video_only(run: dict[str, Any]) -> None:
    assert seen(run, "phones_watched_before") == [False, False]
    assert seen(run, "phone_watched_text") == WATCHED
    assert seen(run, "phone_watch_tracks") == [["video"]]


def test_one_tile_rotates_to_the_other_officer_and_releases_the_first(
    run: dict[str, Any],
) -> None:
    first = seen(run, "one_tile_first")
    assert first in OFFICERS
    assert seen(run, "other_phone_watched_while_not_shown") is False
    assert seen(run, "rotated_to") == next(o for o in OFFICERS if o != first)
    assert seen(run, "first_phone_watched_after_rotation") is False
    assert seen(run, "rotated_phone_watched") is True


def test_a_tile_enlarges_and_calls_its_officer(run: dict[str, Any]) -> None:
    assert seen(run, "enlarged") == ["o-1"]
    assert seen(run, "outgoing_from_wall") == f"正在呼叫 {OFFICERS['o-1']}…"


def test_closing_the_wall_ends_every_watch(run: dict[str, Any]) -> None:
    assert seen(run, "phones_watched_after_close") == [False, False]


def test_the_wall_logged_no_errors(run: dict[str, Any]) -> None:
    assert seen(run, "errors_in_console") == []


def test_a_sixteen_tile_wall_receives_small_slow_video(run: dict[str, Any]) -> None:
    """Each phone is told the 16-tile cap and applies it: the wall decodes about 180 lines
    (at most 200) at no more than about 12 frames a second, and frames still come."""
    cap = {"max_height": 180, "max_fps": 12, "max_kbps": 200}
    assert seen(run, "phone_policy_16") == {o: [cap] for o in OFFICERS}
    assert all(0 < h <= 200 for h in seen(run, "height_16").values())
    assert all(2.0 <= fps <= 13.0 for fps in seen(run, "fps_16").values()), run["fps_16"]
    # Back to 4 tiles, the cap is the 4-tile one.
    assert seen(run, "phone_policy_4") == [{"max_height": 540, "max_fps": 25, "max_kbps": 1200}]
