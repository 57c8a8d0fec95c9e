"""The console's desk (会商主持) as the whole moderator's view, and witness invitations, in
headless Chromium against the real server: one run of tests/browser_desk_scenario.py in a
network namespace of its own (`make console` builds the console first; `make test` does)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_desk_scenario import (
    CAMERA,
    FAR,
    FIELD,
    HOSTED,
    JOINED,
    MANY,
    OTHER,
    PICKED,
    PLAYING_S,
    SITE,
    SUPERVISOR,
    WITNESS_NAME,
)
from tests.browser_signin_scenario import SCREENSHOTS

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 200.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_desk_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_the_desk_is_folded_while_none_of_the_users_conferences_runs(run: dict[str, Any]) -> None:
    assert seen(run, "folded") == [False, "false"]
    assert seen(run, "fold_stored") == "0"


def test_the_moderator_spotlights_a_site_and_every_site_is_told(run: dict[str, Any]) -> None:
    assert seen(run, "spotlight_told") == SITE[0]
    assert seen(run, "spotlight_desk") == SITE[0]


def test_a_locked_conference_refuses_a_new_site_until_unlocked(run: dict[str, Any]) -> None:
    assert seen(run, "locked_told") is True
    assert seen(run, "late_refused") == ["invalid_state", "conference is locked"]
    assert seen(run, "unlocked") is False


def test_a_co_moderator_is_named_and_removed_and_a_site_removed_after_confirming(
    run: dict[str, Any],
) -> None:
    assert seen(run, "moderators") == [SUPERVISOR[0], OTHER[0]]
    assert seen(run, "moderators_after") == [SUPERVISOR[0]]
    assert seen(run, "removed") == ["removed", SUPERVISOR[0]]


def test_a_witness_watches_from_the_link_until_revoked(run: dict[str, Any]) -> None:
    assert seen(run, "qr") == "data:image/png;base64,"
    assert seen(run, "link") == "/app/conference.html"
    assert seen(run, "listed").startswith(WITNESS_NAME)
    assert seen(run, "witness_role") == "witness"
    assert seen(run, "witness_closed") == 4403
    [[_, revoked]] = seen(run, "revoked_listed")
    assert revoked is True
    assert seen(run, "page_errors") == []


def test_three_hundred_sites_raising_hands_at_once_stay_smooth_on_the_desk(
    run: dict[str, Any],
) -> None:
    """Every row is there with its place within seconds, and no single task blocks the page
    for long (a redraw of the whole list at each batch would)."""
    assert seen(run, "many_rows") == MANY + 1
    assert seen(run, "many_shown_s") < 10
    _, longest_ms, _ = seen(run, "many_long_tasks")
    assert longest_ms < 500


def test_the_desk_invites_a_signed_in_user_and_withdraws_the_invitation(
    run: dict[str, Any],
) -> None:
    assert seen(run, "invited") is True
    assert seen(run, "withdrawn") == ["withdrawn", SUPERVISOR[0]]


def test_the_desk_shows_the_spotlit_sites_picture(run: dict[str, Any]) -> None:
    """The desk receives the conference's media as the conferences page does: the spotlight
    slot carries the spotlit site's camera, decoded and playing on."""
    width, advanced_s = seen(run, "desk_video")
    assert width > 0
    assert advanced_s >= PLAYING_S
    assert "spotlight" in seen(run, "desk_media")["slots"]
    assert seen(run, "desk_video_caption").startswith(f"会商画面：{CAMERA[1]}")


def test_the_desk_plays_the_voice_of_the_site_with_the_floor(run: dict[str, Any]) -> None:
    """The conference's audio slots are played on the desk: an <audio> per slot, its track
    live and receiving, bytes arriving, and the desk's mute toggle mutes them all."""
    audio = seen(run, "desk_audio")
    assert [v["slot"] for v in audio["voices"] if v["track"] == "live"]
    assert all(v["slot"].startswith("audio-") for v in audio["voices"])
    first, later = audio["bytes"]
    assert later > first > 0
    assert audio["muted"][0] is True
    assert audio["muted"][1]
    assert all(audio["muted"][1])
    assert audio["unmuted"][0] is False
    assert not any(audio["unmuted"][1])


def test_the_picker_lists_only_whom_the_moderator_may_invite(run: dict[str, Any]) -> None:
    """Part of a Chinese name lists the operator and the officer of the supervisor's courts,
    each with role, court and state in Chinese; not the site already in, nor the operator of
    a court outside the supervisor's."""
    rows = {row.split()[0]: row for row in seen(run, "picker_rows")}
    assert set(rows) == {PICKED[1], FIELD[1]}
    assert rows[PICKED[1]] == f"{PICKED[1]} 值班员 一中院辖区第一基层人民法院 空闲"
    assert rows[FIELD[1]] == f"{FIELD[1]} 执行干警 一中院辖区第二基层人民法院 在线"
    assert JOINED[1] not in " ".join(rows.values())
    assert FAR[1] not in " ".join(rows.values())


def test_the_moderator_picks_with_the_keyboard_and_the_users_console_rings(
    run: dict[str, Any],
) -> None:
    """Arrows and Enter ring the user picked: their console shows the invitation (and stops
    when they decline); the picker no longer offers someone being rung."""
    assert seen(run, "picker_active").startswith(PICKED[1])
    text, ringing = seen(run, "picker_rung")
    assert text.startswith(f"{SUPERVISOR[1]} 邀请您参加会商「{HOSTED}」")
    assert len(ringing) == 1
    assert [t.split()[0] for t in seen(run, "picker_after")] == [FIELD[1]]
    assert seen(run, "picker_declined") is True


def test_the_picker_does_not_offer_a_site_already_in_by_its_id(run: dict[str, Any]) -> None:
    """An id typed is offered as typed only when it names no one the console knows; a site's
    id lists nothing and the picker says whom it leaves out."""
    count, hint = seen(run, "picker_by_id_of_a_site")
    assert count == 0
    assert hint.startswith("没有可邀请的人员")


def test_the_picker_fits_a_phone_screen(run: dict[str, Any]) -> None:
    """At 390x844 the field, the list and every row's words stay on the screen, uncut."""
    assert seen(run, "picker_phone") == []
    assert seen(run, "picker_phone_width") <= 390
    assert (SCREENSHOTS / "desk-picker-390x844.png").stat().st_size > 0
