"""The accounts admin page (用户管理) in headless Chromium against the real server: one run of
tests/browser_admin_scenario.py in a network namespace of its own."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_admin_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_the_admin_is_sent_to_sign_in_and_back_to_the_accounts_of_their_scope(
    run: dict[str, Any],
) -> None:
    assert seen(run, "redirected_to") == "/app/signin.html?next=%2Fapp%2Fconsole%2Fadmin.html"
    assert seen(run, "after_sign_in") == "/app/console/admin.html"
    assert seen(run, "heading") == "执行指挥中心 · 用户管理"
    assert seen(run, "first_rows") == ["adm-1", "op-1"]


def test_an_added_officers_password_is_shown_once(run: dict[str, Any]) -> None:
    assert seen(run, "made_password_length") >= 16
    assert seen(run, "secret_title") == "请立即记下：只显示这一次"
    assert seen(run, "secret_gone") is True


def test_a_csv_import_shows_its_progress_and_a_bad_file_names_its_lines(
    run: dict[str, Any],
) -> None:
    assert (
        seen(run, "import_text") == "导入完成：共 1201 个，新增 1201 个，更新 0 个，1200 个未设密码"
    )
    phases = seen(run, "import_phases")
    assert phases[0] == "hashing"
    assert phases[-1] == "done"
    saving = seen(run, "saving_done")
    assert saving[0] == 0
    assert saving[-1] == 1201
    assert len(saving) >= 3
    assert seen(run, "progress_value") == 1
    assert seen(run, "count_after_import") == "共 1204 个账号"
    assert seen(run, "bad_file_text") == "文件有错误，未导入任何账号："
    faults = seen(run, "faults")
    assert [f.split(":")[0] for f in faults] == ["line 3", "line 4"]
    assert "警官1" in seen(run, "o-0001_after_bad_file")


def test_a_disabled_officer_cannot_sign_in(run: dict[str, Any]) -> None:
    assert "o-new" in seen(run, "confirm_disable")
    assert "已停用" in seen(run, "disabled_row")
    assert seen(run, "disabled_sign_in") == "该账号已停用，请联系管理员"


def test_a_reset_password_signs_the_officer_in(run: dict[str, Any]) -> None:
    assert "未设密码" in seen(run, "imported_row")
    assert "未设密码" not in seen(run, "reset_row")
    assert seen(run, "reset_sign_in") == "signed in"


def test_a_one_time_code_is_shown_as_a_qr_code_of_its_otpauth_uri(run: dict[str, Any]) -> None:
    uri = seen(run, "totp_uri")
    assert uri.startswith("otpauth://totp/")
    assert "secret=" in uri
    assert seen(run, "qr_src_scheme") == "data:image/png;base64"
    assert seen(run, "qr_decoded") == [uri]
    assert seen(run, "qr_gone") is True


def test_the_page_speaks_english_and_refuses_a_non_admin(run: dict[str, Any]) -> None:
    assert seen(run, "english_heading") == "Accounts"
    assert seen(run, "operator_refused") == "用户管理仅供管理员使用；此账号不能使用"
    assert seen(run, "page_errors") == []
