"""The operator's controls in a call (camera, add a supervisor, push into a conference) and
the officer card's pull video, in headless Chromium against the real server: one run of
tests/browser_incall_scenario.py in a network namespace of its own (`make console` builds
the console first; `make test` does)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_incall_scenario import OFFICER, OPERATOR, SITE, SUPERVISOR

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 150.0
# P0101 as config.toml names it: the console shows courts by name.
COURT_NAME = "一中院辖区第一基层人民法院"


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_incall_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_the_operators_camera_starts_off_and_the_phone_says_so(run: dict[str, Any]) -> None:
    assert seen(run, "phone_says_off") == f"{OPERATOR[1]} 已关闭摄像头"
    assert seen(run, "frames_while_off") == 0


def test_camera_on_sends_video_the_phone_shows_and_off_says_so_again(
    run: dict[str, Any],
) -> None:
    assert seen(run, "camera_on") is True
    assert seen(run, "phone_frames_on") > 10
    assert seen(run, "phone_notice_on") is None
    assert seen(run, "phone_says_off_again") == f"{OPERATOR[1]} 已关闭摄像头"
    assert seen(run, "camera_off") is True


def test_the_console_says_when_the_officer_turns_the_camera_off(run: dict[str, Any]) -> None:
    assert seen(run, "console_says_officer_off") == f"{OFFICER[1]} 已关闭摄像头"
    assert seen(run, "console_officer_on_again") is True


def test_a_camera_turned_off_stays_shown_off_after_f5_on_either_side(run: dict[str, Any]) -> None:
    assert seen(run, "console_after_reload") == f"{OFFICER[1]} 已关闭摄像头"
    assert seen(run, "phone_camera_after_reload") is True
    assert seen(run, "phone_button_after_reload") == "打开摄像头"
    assert seen(run, "console_after_phone_reload") == f"{OFFICER[1]} 已关闭摄像头"


def test_an_invited_supervisor_sees_the_invitation_and_joins(run: dict[str, Any]) -> None:
    invited = f"{OPERATOR[1]} 邀请您加入与 {OFFICER[1]}（{COURT_NAME}）的通话"
    assert seen(run, "invitation_text") == invited
    assert seen(run, "operator_lists") == [SUPERVISOR[1]]
    assert seen(run, "invitation_gone") is True


def test_the_call_is_pushed_into_a_running_conference_and_stopped(run: dict[str, Any]) -> None:
    call_id = seen(run, "call_id")
    assert seen(run, "feed") == [call_id, OFFICER[0], OPERATOR[0]]
    assert seen(run, "share_status") == "正在推送到「年终执行调度会商」"
    assert seen(run, "feeds_after_stop") == []
    assert seen(run, "shared_after_stop") is True
    assert seen(run, "share_ended") == "推送的会商「年终执行调度会商」已结束，推送随之停止"


def test_a_supervisor_moderates_a_conference_from_the_console(run: dict[str, Any]) -> None:
    assert seen(run, "desk_hand") == [
        f"{SITE[1]}（{COURT_NAME}）",
        "举手第",
        "1",
        "位",
        "给予发言",
        "设为焦点",
        "设为主持人",
        "移出",
    ]
    assert seen(run, "site_floor") == "permitted"
    assert seen(run, "desk_holders") == [SITE[0]]
    assert seen(run, "site_told_ended") == ["ended", SUPERVISOR[0]]
    assert seen(run, "desk_after_end") is True


def test_pull_video_opens_a_watch_large_and_call_still_calls(run: dict[str, Any]) -> None:
    assert seen(run, "wall_tile") == {"officer": OFFICER[0], "watch": True}
    assert seen(run, "phone_ringing_on_pull") == []
    assert seen(run, "phone_watched") == 1
    assert len(seen(run, "call_rings_phone")) == 1
    assert seen(run, "page_errors") == []
