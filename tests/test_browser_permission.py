"""The console says plainly when the browser refuses the microphone: one run of
tests/browser_permission_scenario.py in a network namespace of its own."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_permission_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_a_refused_microphone_is_told_in_the_call_which_goes_on(run: dict[str, Any]) -> None:
    assert (
        seen(run, "message") == "无法使用摄像头或麦克风（NotAllowedError）：请在浏览器设置中允许。"
    )
    assert seen(run, "still_in_call") is True
    assert seen(run, "talk") == "麦克风不可用：只能收听"
    assert seen(run, "mute_offered") == 0
    assert seen(run, "message_en") == (
        "Camera or microphone not available (NotAllowedError): allow them in the browser settings."
    )


def test_a_loopback_page_is_secure_and_says_nothing_of_https(run: dict[str, Any]) -> None:
    assert seen(run, "insecure_shown_on_http_loopback") is False
