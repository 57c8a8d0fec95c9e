"""The officer's phone page in headless Chromium at 390x844 against the real server: one run
of tests/browser_phone_scenario.py in a network namespace of its own."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_phone_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_the_phone_signs_in_and_reports_its_position_to_the_console(run: dict[str, Any]) -> None:
    assert seen(run, "phone_url") == "/app/phone.html"
    assert seen(run, "idle_line") == "空闲"
    assert seen(run, "position_at_operator") == [23.1291, 113.2644]


def test_one_touch_call_shows_ringing_and_can_be_cancelled(run: dict[str, Any]) -> None:
    assert seen(run, "ringing_line") == "指挥中心响铃中…"
    assert seen(run, "cancelled_line") == "通话已结束（已取消）"


def test_an_answered_call_sends_video_and_mute_stops_the_microphone(run: dict[str, Any]) -> None:
    assert seen(run, "active_line") == "通话中：operator op-1"
    assert seen(run, "operator_decodes_phone") is True
    assert seen(run, "muted_tracks") == [["audio", False], ["video", True]]
    assert seen(run, "ended_line") == "通话已结束（挂断）"


def test_sos_needs_a_long_press_and_shows_who_cleared_it(run: dict[str, Any]) -> None:
    assert seen(run, "short_press_emergency") is False
    assert seen(run, "short_press_rang") == []
    assert seen(run, "sos_state") == "紧急求助已发出，等待指挥中心处理"
    assert seen(run, "taken_state") == "operator op-1 已接警，正在处理"
    assert seen(run, "cleared_state") == "紧急状态已由 operator op-1 解除"
    # The SOS button says the alarm is out (and who took it), then asks to be held again.
    assert seen(run, "sos_label") == "已发出紧急求助"
    assert seen(run, "taken_label") == "已发出紧急求助 · operator op-1 已接警"
    assert seen(run, "cleared_label") == "长按 2 秒紧急求助"


def test_the_phone_sends_a_note_after_the_sos_and_names_its_court(run: dict[str, Any]) -> None:
    assert seen(run, "note_at_operator") == "嫌疑人持械，两人受伤"
    assert seen(run, "note_sent") == "已发送说明：嫌疑人持械，两人受伤"
    assert seen(run, "note_form_after_clear") is False
    assert seen(run, "who").endswith("一中院辖区第一基层人民法院")


def test_the_page_is_installable(run: dict[str, Any]) -> None:
    assert seen(run, "manifest") == "/app/phone.html"


def test_evidence_is_hashed_on_the_phone_uploaded_and_queued_while_offline(
    run: dict[str, Any],
) -> None:
    assert seen(run, "no_case_message") == "请先填写案号"
    assert seen(run, "photo_hash_matches") is True
    assert seen(run, "stored") == [200, True, "(2025)粤0101执12号", "photo"]
    assert seen(run, "offline_state") == "queued"
    assert seen(run, "after_online") == [False, True]
