"""The console's desk (会商主持) as the whole moderator's view, and witness invitations, in
headless Chromium against the real server: one run of tests/browser_desk_scenario.py in a
network namespace of its own (`make console` builds the console first; `make test` does)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_desk_scenario import (
    CAMERA,
    MANY,
    OTHER,
    PLAYING_S,
    SITE,
    SUPERVISOR,
    WITNESS_NAME,
)

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
