"""Text instructions in headless Chromium against the real server: the console (1920x1080)
sends to an officer whose phone page (390x844) is open, and to the whole court; one run of
tests/browser_instructions_scenario.py in a network namespace of its own."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_instructions_scenario import MORE, PAGE

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 150.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_instructions_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_the_phone_shows_an_instruction_and_the_console_sees_it_delivered(
    run: dict[str, Any],
) -> None:
    assert seen(run, "phone_shows") == ["请立即前往二号现场，注意安全。"]
    assert seen(run, "console_delivered") == "delivered"
    assert seen(run, "console_delivered_text").startswith("已送达 ")


def test_f5_on_the_phone_before_acknowledging_shows_it_again(run: dict[str, Any]) -> None:
    assert seen(run, "after_f5_shows") == ["请立即前往二号现场，注意安全。"]
    assert seen(run, "after_f5_console") == "delivered"


def test_tapping_acknowledge_shows_read_on_the_console(run: dict[str, Any]) -> None:
    assert seen(run, "console_read") == "read"
    assert seen(run, "console_read_text").startswith("已读 ")


def test_a_court_wide_instruction_reaches_the_phone_and_comes_back_read(
    run: dict[str, Any],
) -> None:
    assert seen(run, "phone_shows_court_wide") == ["今晚十点前各组上报执行进展"]
    assert seen(run, "court_wide_from").endswith("（全院）")
    assert seen(run, "court_wide_read") == "read"
    assert seen(run, "court_wide_target").startswith("全院：")


def test_the_console_lists_the_receipts_after_f5(run: dict[str, Any]) -> None:
    assert seen(run, "listed_after_f5") == [
        ["今晚十点前各组上报执行进展", "read"],
        ["请立即前往二号现场，注意安全。", "read"],
    ]


def test_the_console_lists_the_newest_page_and_brings_older_ones_on_request(
    run: dict[str, Any],
) -> None:
    newest = [f"第{n}号通报" for n in range(MORE, MORE - PAGE, -1)]
    assert seen(run, "first_page") == newest
    assert seen(run, "older_offered") is True
    assert seen(run, "after_older") == [
        *newest,
        "第1号通报",
        "今晚十点前各组上报执行进展",
        "请立即前往二号现场，注意安全。",
    ]
    assert seen(run, "older_after_all") is False


def test_every_step_is_in_the_trace_and_it_verifies(run: dict[str, Any]) -> None:
    assert seen(run, "trace_kinds")[:6] == [
        "instruction_sent",
        "instruction_delivered",
        "instruction_read",
        "instruction_sent",
        "instruction_delivered",
        "instruction_read",
    ]
    assert seen(run, "trace_kinds").count("instruction_sent") == 2 + MORE
    assert (seen(run, "audit_exit"), seen(run, "audit_ok")) == (0, True)


def test_no_page_error(run: dict[str, Any]) -> None:
    assert seen(run, "phone_errors") == []
    assert seen(run, "console_errors") == []
