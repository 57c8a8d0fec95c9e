"""The records side of the console in headless Chromium against the real server: one run of
tests/browser_records_scenario.py in a network namespace of its own (`make console` builds
the console first; `make test` does)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_records_scenario import CASE, MAP_AT, OFFICER, OPERATOR, SUPERVISOR

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_records_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_the_evidence_browser_finds_the_calls_snapshot_by_its_case_number(
    run: dict[str, Any],
) -> None:
    # The snapshot and the call's recordings, all evidence of the case.
    assert seen(run, "case_items") == ["audio", "photo", "video"]
    assert seen(run, "search_rows") == 5
    assert "共 5 条" in seen(run, "search_status")
    assert seen(run, "search_row_kinds") == ["录音", "录音", "录音", "照片", "视频"]
    assert CASE in seen(run, "search_row_text")
    assert seen(run, "shown_case") == CASE


def test_the_item_shows_the_hash_the_server_stored_and_the_picture_with_those_bytes(
    run: dict[str, Any],
) -> None:
    stored = seen(run, "stored_sha256")
    assert seen(run, "shown_sha256") == stored
    assert seen(run, "photo_sha256") == stored
    assert seen(run, "photo_check_text") == "本机计算的 SHA-256 与记录一致"
    assert seen(run, "photo_width") > 0
    assert seen(run, "shown_received")
    assert seen(run, "shown_offset")


def test_the_calls_recording_plays_in_the_page_and_seeks(run: dict[str, Any]) -> None:
    assert seen(run, "video_ready") > 0
    assert seen(run, "video_seeked") == 0.5
    src = seen(run, "video_src")
    assert src.startswith("/api/evidence/ev-")
    assert src.endswith("/content")


def test_a_recording_played_and_sought_is_one_view_in_the_trace_not_a_download_per_range(
    run: dict[str, Any],
) -> None:
    assert seen(run, "video_ranges") >= 1
    trail = seen(run, "video_trail")
    assert trail.count("evidence_read:player") == 1
    assert "evidence_downloaded" not in trail


def test_the_item_names_its_call_and_its_audit_trail(run: dict[str, Any]) -> None:
    assert seen(run, "call_id") in seen(run, "shown_call")
    events = seen(run, "trail_events")
    assert events[0] == "存储"
    assert "通话取证" in events


def test_verify_runs_the_chain_check_on_the_server_and_says_ok(run: dict[str, Any]) -> None:
    assert seen(run, "verify_ok") == "true"
    # The first check reads everything; the next one only what was written since.
    assert seen(run, "verify_text").startswith("校验通过：全部 ")
    again = seen(run, "verify_again_text")
    assert again.startswith("校验通过：自第 ")
    assert "条起新增" in again
    assert "已校验" in again
    assert seen(run, "verify_full_text").startswith("校验通过：全部 ")
    proof = seen(run, "proof")
    assert proof["sha256"] == seen(run, "stored_sha256")
    assert proof["ok"] is True
    assert proof["anchors"] >= 2


def test_a_recording_is_hashed_in_the_page_on_request_and_matches_its_record(
    run: dict[str, Any],
) -> None:
    local = seen(run, "video_local")
    assert local["ok"] == "true"
    assert local["sha256"] == seen(run, "video_sha256")
    assert local["text"] == "本机计算的 SHA-256 与记录一致"
    # The whole file was fetched for it: a download in the trail, after the player's view.
    assert seen(run, "video_trail_checked").count("evidence_downloaded") == 1


def test_an_items_position_is_on_a_small_offline_map_in_the_item_view(run: dict[str, Any]) -> None:
    shown = seen(run, "map")
    assert (shown["lat"], shown["lon"]) == (MAP_AT[0], MAP_AT[1])
    assert shown["offline"] == "true"
    assert shown["note"] == "离线地图：无底图，仅显示经纬度网格与比例尺"
    assert shown["points"] == 1
    # The accuracy circle and the grid's lines.
    assert shown["grid_lines"] >= 3
    # The point is where the map is centred.
    assert all(abs(px) <= 3 for px in shown["centre"]), shown["centre"]
    assert seen(run, "map_photo_check") == "本机计算的 SHA-256 与记录一致"


@pytest.mark.parametrize("where", ["evidence", "call_audit", "stats", "map_item"])
def test_the_records_pages_show_no_untranslated_english_in_chinese(
    run: dict[str, Any], where: str
) -> None:
    assert seen(run, f"untranslated_{where}") == []


def test_the_calls_audit_view_lists_the_supervisor_among_who_watched(run: dict[str, Any]) -> None:
    assert seen(run, "supervisor_frames") > 0
    rows = seen(run, "watched_rows")
    # By name: the supervisor is the one looking, the operator's name comes from the
    # accounts (GET /api/users/names).
    supervisor = f"{SUPERVISOR[1]}（{SUPERVISOR[0]}）"
    assert any(row.startswith(supervisor) and "指挥长" in row for row in rows), rows
    operator = f"{OPERATOR[1]}（{OPERATOR[0]}）"
    assert any(row.startswith(operator) and "值班员" in row for row in rows), rows
    events = seen(run, "timeline_events")
    assert events[0] == "发起通话"
    for event in ("接听", "指挥长加入", "开始观看视频", "通话取证", "停止观看视频", "通话结束"):
        assert event in events


def test_users_who_are_not_accounts_are_named_as_they_signed_in_or_labelled(
    run: dict[str, Any],
) -> None:
    # The officer signed in with a token (not an account) that named them: that name, said so.
    assert f"{OFFICER[1]}（{OFFICER[0]}，非账号用户，登录时名称）" in seen(run, "timeline_people")
    # The server files snapshots (the uploader); the auditor's token (no account, never
    # signed in over the WebSocket) has no name on record.
    assert "系统（@server）" in seen(run, "search_row_text")
    assert "au-1（未登记姓名）" in seen(run, "trail_people")


def test_the_dashboards_figures_equal_the_clis_for_the_same_query(run: dict[str, Any]) -> None:
    dashboard = seen(run, "dashboard")
    assert dashboard == seen(run, "cli")
    assert dashboard["evidence_items"] == "5"  # the snapshot and four recordings
    assert dashboard["officer_calls"] == "1"
    # The instruction to the officer, shown and acknowledged (收到) on their page.
    assert dashboard["instructions_sent"] == "1"
    assert dashboard["instructions_delivered"] == "1"
    assert dashboard["instructions_read"] == "1"
    assert dashboard["instructions_acknowledged"] == "1"
    assert dashboard["instructions_median_time_to_read_s"] != "\u2013"
    assert "evidence_stored" in seen(run, "dashboard_how_evidence")
    assert seen(run, "charts") == 2


def test_the_records_side_speaks_english_too(run: dict[str, Any]) -> None:
    assert seen(run, "english_figure") == "Evidence items"
    assert seen(run, "english_nav").split() == [
        "Evidence",
        "Call",
        "records",
        "Conferences",
        "Statistics",
    ]


def test_no_errors_in_the_page(run: dict[str, Any]) -> None:
    assert seen(run, "page_errors") == []
