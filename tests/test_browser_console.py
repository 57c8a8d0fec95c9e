"""The operator console in headless Chromium against the real server: one run of
tests/browser_console_scenario.py in a network namespace of its own (`make console` builds
the console first; `make test` does)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_console_scenario import OFFICERS

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_console_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_todays_client_opened_after_the_officers_gets_its_roster(run: dict[str, Any]) -> None:
    assert seen(run, "old_client_roster") == ["o-1", "o-2"]


def test_the_console_sends_a_person_who_is_not_signed_in_to_sign_in_and_back(
    run: dict[str, Any],
) -> None:
    assert seen(run, "signin_url") == "/app/signin.html?next=%2Fapp%2Fconsole%2Findex.html"
    assert seen(run, "console_url") == "/app/console/index.html"
    assert seen(run, "heading") == "执行指挥中心 · 值班台"


def test_the_roster_shows_officers_who_were_online_before_the_console_opened(
    run: dict[str, Any],
) -> None:
    assert seen(run, "roster_names") == sorted(name for name, _, _ in OFFICERS.values())
    assert seen(run, "roster_statuses") == ["在线", "在线"]
    assert seen(run, "search_rows") == 1
    assert seen(run, "my_status") == "free"


def test_with_its_tile_server_down_the_offline_map_shows_both_officers_and_the_court(
    run: dict[str, Any],
) -> None:
    # The console did try the configured server (the policy let its images through).
    assert seen(run, "tile_requests_refused") > 0
    assert seen(run, "map_offline") is True
    assert seen(run, "offline_note_visible") is True
    assert seen(run, "map_officers") == ["o-1", "o-2"]
    assert seen(run, "map_markers_visible") == 2
    assert seen(run, "map_court_markers") == 1


def test_with_a_tile_server_that_answers_the_map_draws_its_tiles(run: dict[str, Any]) -> None:
    assert seen(run, "tiles_drawn") > 0
    assert seen(run, "tiles_requested") > 0
    assert seen(run, "tiles_offline") is False
    assert seen(run, "tiles_errors") == []


def test_a_call_rings_with_a_waiting_time_that_turns_amber_then_red(run: dict[str, Any]) -> None:
    assert seen(run, "queue_waiting_text").startswith("已等待")
    assert seen(run, "queue_sound") == "ring"
    assert seen(run, "queue_amber") is True
    assert seen(run, "queue_red") is True


def test_the_operator_accepts_and_the_officers_video_is_decoded(run: dict[str, Any]) -> None:
    assert seen(run, "frames_decoded") > 20
    assert seen(run, "my_status_in_call") == "busy"
    assert seen(run, "muted_label") == "麦克风已关闭"


def test_a_call_that_queues_behind_the_busy_operator_shows_its_place_and_age(
    run: dict[str, Any],
) -> None:
    queued = seen(run, "queued_call")
    assert queued["who"] == OFFICERS["o-2"][0]
    assert queued["note"] == "排队第 1 位"
    assert queued["wait"].startswith("已等待")


def test_a_snapshot_is_kept_as_evidence_and_shown(run: dict[str, Any]) -> None:
    assert seen(run, "snapshot_width") > 0
    assert seen(run, "snapshot_caption").startswith("已存证 SHA-256 ")


def test_an_sos_takes_over_the_screen_with_the_alarm_and_is_cleared(run: dict[str, Any]) -> None:
    assert seen(run, "sos_heading") == "紧急求助"
    assert "李娜" in seen(run, "sos_text")
    assert seen(run, "sos_sound") == "alarm"
    assert seen(run, "sos_sound_running") is True
    name, lat, lon = OFFICERS["o-2"]
    centre = seen(run, "sos_map_centre")
    assert abs(centre[0] - lat) < 1e-3
    assert abs(centre[1] - lon) < 1e-3
    assert seen(run, "sos_dialog_after_answer") is False
    assert name in seen(run, "sos_strip")
    assert "已由 王芳 接警" in seen(run, "sos_strip")


def test_the_officers_note_shows_in_the_alarm_and_a_reload_shows_who_took_the_sos(
    run: dict[str, Any],
) -> None:
    """The SOS's note, then the one added after it, in the alarm; after F5 the console shows
    the SOS as taken by the operator (from the roster), with no fresh alarm over it."""
    assert "test: exit blocked" in seen(run, "sos_note")
    assert "两人受伤，需要救护车" in seen(run, "sos_note_added")
    after = seen(run, "sos_strip_after_reload")
    assert "已由 王芳 接警" in after
    assert "李娜" in after
    assert "两人受伤" in after
    assert seen(run, "sos_dialog_after_reload") is False
    assert seen(run, "sos_cleared") is True
    assert seen(run, "sos_outcome_at_officer") == "false_alarm"
    assert seen(run, "sound_after_clear") == "none"


def test_the_operator_calls_an_officer_picked_on_the_map(run: dict[str, Any]) -> None:
    assert seen(run, "outgoing_text") == f"正在呼叫 {OFFICERS['o-1'][0]}…"
    assert seen(run, "called_officer_video") is True


def test_f5_keeps_the_roster_and_english_is_remembered(run: dict[str, Any]) -> None:
    assert seen(run, "roster_after_reload") == ["o-1", "o-2"]
    assert seen(run, "english_roster_heading").startswith("Officers online")
    assert seen(run, "english_after_reload") == "Enforcement command center · console"


def test_after_a_reconnect_with_a_new_token_the_roster_is_as_it_is_now(
    run: dict[str, Any],
) -> None:
    assert seen(run, "console_missed_updates") is True
    assert seen(run, "reconnect") == {
        "same_session": True,
        "resumed": True,
        "new_tokens": 1,
        "roster_replies": 1,
    }


def test_the_console_page_logged_no_errors(run: dict[str, Any]) -> None:
    assert seen(run, "errors_in_console") == []


def test_an_officers_track_of_today_is_drawn_from_the_recorded_positions(
    run: dict[str, Any],
) -> None:
    _, lat, lon = OFFICERS["o-1"]
    assert seen(run, "track") == [[lat, lon], [lat + 0.004, lon + 0.003]]
    assert seen(run, "track_lines") == 1
    assert seen(run, "track_note") == "张伟 今日轨迹：2 个位置"


def test_f5_on_both_sides_keeps_the_sessions_and_the_call(run: dict[str, Any]) -> None:
    assert seen(run, "f5_console") == {"resumed": True, "same_call": True}
    assert seen(run, "f5_officer_same_call") is True
    assert seen(run, "f5_call_state") == "active"


def test_the_console_offers_again_when_the_calls_media_worker_dies(run: dict[str, Any]) -> None:
    """`media_restart`: a new peer connection, and the officer's video decoded on it."""
    assert seen(run, "worker_killed_frames") >= 20
    assert seen(run, "worker_killed_call_state") == "active"


def test_a_recorded_call_says_so_and_the_conferences_page_is_a_click_away(
    run: dict[str, Any],
) -> None:
    assert seen(run, "recording_light") == "● 录像中"
    assert seen(run, "conferences_user") == "op-1"
    assert seen(run, "conferences_kept_session") is True
