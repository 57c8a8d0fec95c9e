"""The call flow at the console in headless Chromium against the real server: one run of
tests/browser_callflow_scenario.py (two operator consoles and an officer's phone) in a
network namespace of its own (`make console` builds the console first; `make test` does)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_callflow_scenario import OFFICER, OP_A, OP_B, SUPERVISOR

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 150.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_callflow_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_each_console_lists_the_other_operator_with_their_status(run: dict[str, Any]) -> None:
    assert seen(run, "a_sees_b") == "free"
    assert seen(run, "b_sees_a_busy") == "busy"


def test_a_transfer_waits_for_the_other_operator_who_sees_it_and_accepts(
    run: dict[str, Any],
) -> None:
    assert seen(run, "a_waiting_text") == f"已向 {OP_B[1]} 发起转接，等待对方接受…"
    assert seen(run, "b_offer_text").startswith(f"{OP_A[1]} 请求将与 {OFFICER[1]}")
    # Until B accepts, the call stays A's.
    assert seen(run, "a_still_operator") == OP_A[0]
    assert seen(run, "a_status_after") == "free"
    assert seen(run, "phone_line_after").startswith("通话中")


def test_a_call_pushed_by_its_operator_stops_being_shown_when_it_is_transferred(
    run: dict[str, Any],
) -> None:
    assert seen(run, "feed_ended") == ["transferred", OP_A[0], OP_B[0]]
    assert seen(run, "feeds_after_transfer") == []
    assert seen(run, "a_shared_after_transfer") is True
    assert seen(run, "a_notice") == "通话已转接，推送到「年终执行调度会商」随之停止"
    assert seen(run, "b_notice") == (
        f"此通话原由 {OP_A[1]} 推送到「年终执行调度会商」，转接后已停止推送；如需要请重新推送"
    )


def test_an_away_operator_is_shown_away_and_not_rung(run: dict[str, Any]) -> None:
    assert seen(run, "a_header_button") == "恢复空闲"
    assert seen(run, "b_sees_a_away") == "away"
    assert seen(run, "b_lists_a").split() == [OP_A[1], "暂离"]
    assert seen(run, "a_ringing_while_away") == []
    assert seen(run, "page_errors") == []


def test_a_call_sent_back_waits_in_the_queue_and_rings_at_another_operator(
    run: dict[str, Any],
) -> None:
    assert seen(run, "phone_line_requeued").startswith("排队等候")
    # B sent it back: it rings at A, back from away, and not at B.
    assert seen(run, "b_ringing_after_send_back") == []
    assert seen(run, "phone_line_reanswered").startswith("通话中")
    assert OFFICER[0] in seen(run, "reanswered_media_from")


def test_a_supervisor_joins_silently_or_openly_as_policy_allows(run: dict[str, Any]) -> None:
    assert seen(run, "card_offers_visible_join") == 1
    assert seen(run, "silent_talk_label") == "监看中（仅收听）"
    assert seen(run, "a_lists_silent") == []
    assert seen(run, "a_lists_visible") == [SUPERVISOR[1]]
    assert seen(run, "visible_talk_label") == "对讲中"


def test_an_sos_nobody_takes_on_alarms_again_at_the_consoles(run: dict[str, Any]) -> None:
    notice = seen(run, "repeat_notice")
    assert notice.startswith("第 1 次提醒：")
    assert OFFICER[1] in notice
    assert notice.endswith("仍无人接警")
