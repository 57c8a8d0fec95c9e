"""Sign-in with a password (and a one-time code) in headless Chromium against the real
server: one run of tests/browser_signin_scenario.py in a network namespace of its own."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_signin_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_the_client_without_a_sign_in_sends_the_person_to_a_chinese_sign_in_page(
    run: dict[str, Any],
) -> None:
    assert seen(run, "redirected_to") == "/app/signin.html?next=%2Fapp%2Findex.html"
    assert seen(run, "heading") == "登录"
    assert seen(run, "code_field_visible_at_first") is False
    assert seen(run, "wrong_password_message") == "用户名或密码错误"


def test_the_right_password_connects_and_f5_keeps_the_sign_in(run: dict[str, Any]) -> None:
    assert seen(run, "signed_in_url") == "/app/index.html"
    assert seen(run, "after_reload") == "o-1"


def test_signing_out_ends_the_browser_session(run: dict[str, Any]) -> None:
    assert seen(run, "token_after_signout") == 401


def test_an_account_with_a_second_factor_is_asked_for_its_code(run: dict[str, Any]) -> None:
    assert seen(run, "english_heading") == "Sign in"
    assert seen(run, "code_asked") == "Enter the one-time code"
    assert seen(run, "code_field_visible") is True
    assert seen(run, "operator_signed_in") is True
