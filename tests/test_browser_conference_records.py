"""The console's 会商记录 in headless Chromium against the real server: one run of
tests/browser_conference_records_scenario.py in a network namespace of its own (`make
console` builds the console first; `make test` does)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_conference_records_scenario import HOST, SITE, TITLE

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_conference_records_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_the_listing_shows_the_conference_by_number_with_the_statistics_figures(
    run: dict[str, Any],
) -> None:
    cid = seen(run, "conference_id")
    row = seen(run, "row")
    assert cid in row
    assert TITLE in row
    assert f"{HOST[1]}（{HOST[0]}，非账号用户，登录时名称）" in row
    assert "共 1 条" in seen(run, "status")
    cli = seen(run, "cli")
    assert cli == {"conferences": 1, "enforcement_actions": 0}
    conferences, actions = cli["conferences"], cli["enforcement_actions"]
    assert seen(run, "figures_text") == (
        f"本期执行会商 {conferences} 次，集中执行行动 {actions} 次（与统计一致）"
    )


def test_the_audit_view_shows_the_whole_timeline_in_chinese_with_names(
    run: dict[str, Any],
) -> None:
    assert seen(run, "shown_id") == seen(run, "conference_id")
    assert seen(run, "shown_title") == TITLE
    assert HOST[1] in seen(run, "shown_host")
    assert seen(run, "shown_grants") == "1"
    events = seen(run, "timeline_events")
    assert events[:2] == ["创建会商", "会商开始"]
    for event in ("会场加入", "申请发言", "准许发言", "全体静音", "会场离开", "会商结束"):
        assert event in events, events
    assert any(SITE[1] in who for who in seen(run, "timeline_people"))
    details = seen(run, "timeline_details")
    assert "主动离开" in details
    assert "主持人结束" in details


def test_the_conference_records_speak_english_too(run: dict[str, Any]) -> None:
    events = seen(run, "english_events")
    assert events[:2] == ["conference created", "conference started"]
    assert "floor granted" in events
    # The first look at the audit view is itself on the timeline the second look shows.
    assert events[-1] == "audit viewed"
    assert "Conferences" in seen(run, "english_nav")


def test_no_errors_in_the_page(run: dict[str, Any]) -> None:
    assert seen(run, "page_errors") == []
