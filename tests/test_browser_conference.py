"""The conference page (commandcenter/static/conference.html) in headless Chromium against the
real server: a moderator and three sites with fake cameras and microphones, driven through
the page's buttons, their media counted with getStats per slot.

One run of tests/browser_conference_scenario.py, in a network namespace of its own, holds
every phase (starting Chromium and the server once keeps these tests to seconds); each test
asserts on its phase of the JSON line it prints. A failing phase carries the server's log
tail and the pages' state and console output, printed with the failure.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run, phase
from tests.browser_conference_scenario import (
    FLOOR_TALK_S,
    LATECOMER,
    MODERATOR,
    OFFICER,
    PHASES,
    REVOKE_GRACE_S,
    SITE_A,
    SITE_B,
    SITE_C,
    SITES,
    SPEAKING_MARK,
    TALK_S,
    WITNESS,
)

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 100.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_conference_scenario", list(PHASES), RUN_TIMEOUT_S)


def grew(counts: list[int]) -> bool:
    return counts[-1] > counts[0] >= 0 and counts[-1] > 0


def test_the_moderator_hosts_from_the_form_and_the_rung_sites_join_from_the_invitation(
    run: dict[str, Any],
) -> None:
    done = phase(run, "create")
    # The kind and the talk time chosen in the form, as the server has them.
    assert (done["kind"], done["talk_s"]) == ("action", FLOOR_TALK_S)
    assert done["kind_shown"]
    assert done["roles"] == {MODERATOR: "moderator", SITE_A: "site", SITE_B: "site", SITE_C: "site"}
    # Joining at once over the pace: at least one site waited, its page saying its place.
    assert done["waited"], done
    for place, text in done["waited"].values():
        assert place >= 1
        assert text.startswith(f"正在排队进入会商：第{place}位，约")
    assert done["rung"] == [*SITES, LATECOMER]
    # Each site answered for its court; the moderator sees who did.
    assert done["invitations"]["P01"] == ["joined", SITE_A]
    assert done["invitations"]["P0101"] == ["joined", SITE_B]
    assert done["invitations"]["P0102"] == ["joined", SITE_C]
    assert done["moderator_sites"] == [MODERATOR, *SITES]
    assert all(done["moderator_shows_sites"])
    # The latecomer's console of P0101 stopped ringing when B answered for the court.
    assert done["latecomer_stopped"] == [["answered", SITE_B]]
    assert done["latecomer_told"]


def test_every_site_hears_the_moderator_and_the_moderator_sees_the_sites_in_the_grid(
    run: dict[str, Any],
) -> None:
    done = phase(run, "media")
    assert set(done["connection"].values()) == {"connected"}
    for site in SITES:
        assert grew(done["sites_hear_moderator"][site]["packets"])
        assert done["sites_spotlight"][site]["source"] == MODERATOR
        assert grew(done["sites_spotlight"][site]["frames"])
    assert done["grid"][:3] == list(SITES)
    assert set(done["grid"][3:]) <= {None}
    assert all(grew(frames) for frames in done["grid_frames"].values())
    assert all(done["grid_labelled"])
    assert grew(done["a_sends_audio"])


def test_a_raised_hand_is_queued_for_the_moderator_and_once_granted_the_others_hear_it(
    run: dict[str, Any],
) -> None:
    done = phase(run, "floor")
    assert done["site_floor"]["state"] == "queued"
    assert done["site_floor"]["position"] == 1
    assert done["site_shows_queued"]
    assert (done["moderator_sees"]["state"], done["moderator_sees"]["position"]) == ("queued", 1)
    assert "已举手，排第1位" in done["moderator_row"]
    assert done["site_told_floor"]
    for site in (SITE_B, SITE_C):
        heard = done["heard"][site]
        assert heard["slot"].startswith("audio-")
        assert grew(heard["packets"])
        assert grew(heard["spotlight_frames"])
        assert heard["shows_spotlight"]
    # A's page counts its talk time down.
    first, later = done["countdown"]
    assert FLOOR_TALK_S - 30 <= first <= FLOOR_TALK_S
    assert later < first


def test_the_moderator_sees_who_is_speaking_and_the_mark_goes_when_they_stop(
    run: dict[str, Any],
) -> None:
    """conference_speaking from the fake microphones' beep: A (the floor) and B (without it,
    not heard, but trying) are marked in the moderator's table; B's microphone off, its own
    page says so, and its mark goes while A's stays; back on, B is speaking again."""
    done = phase(run, "floor")["talking"]
    assert {SITE_A, SITE_B} <= set(done["speaking"])
    assert SPEAKING_MARK in done["a_row"]
    assert SPEAKING_MARK in done["b_row"]
    assert done["b_mic"] == "off"
    assert done["b_mic_off_shown"]
    assert SITE_B not in done["quiet"]
    assert SITE_A in done["quiet"]
    assert SPEAKING_MARK not in done["b_row_quiet"]
    assert SPEAKING_MARK in done["a_row_still"]
    assert SITE_B in done["again"]


def test_a_revoked_floor_is_heard_through_the_grace_then_its_audio_stops_at_the_server(
    run: dict[str, Any],
) -> None:
    done = phase(run, "revoke")
    assert done["pending"]["state"] == "pending_revoke"
    assert 0 < done["grace_left_s"] <= REVOKE_GRACE_S + 0.5
    assert done["site_warned"]
    assert (done["taken"]["state"], done["taken_reason"]) == ("not_permitted", "moderator")
    assert done["taken_after_s"] >= REVOKE_GRACE_S * 0.8
    assert grew(done["b_packets_in_grace"])
    # Per slot: the one that carried A stands still at B and C, while A's page still sends.
    for site in (SITE_B, SITE_C):
        stopped = done["stopped"][site]
        assert stopped["first"] == stopped["last"] > 0
    assert grew(done["a_still_sends"])
    assert done["site_told_muted"]


def test_mute_all_takes_the_floor_at_once_and_silences_the_site(run: dict[str, Any]) -> None:
    done = phase(run, "mute_all")
    # A roll call: the floor given to a site that had not raised its hand.
    assert (done["called"]["state"], done["called"]["called"]) == ("permitted", True)
    for site in (SITE_B, SITE_C):
        assert grew(done["heard"][site]["packets"])
    assert set(done["opened"].values()) == {"open"}
    assert done["b_told_open"]
    assert (done["taken"]["state"], done["taken_reason"]) == ("not_permitted", "mute_all")
    # At once: no revoke grace.
    assert done["taken_after_s"] < REVOKE_GRACE_S
    assert done["a_told"]
    assert set(done["audio"].values()) == {"floor"}
    for site in (SITE_B, SITE_C):
        stopped = done["stopped"][site]
        assert stopped["first"] == stopped["last"] > 0
    assert done["b_told_muted"]


def test_the_spotlight_switches_every_sites_video_to_the_chosen_site(run: dict[str, Any]) -> None:
    done = phase(run, "spotlight")
    assert done["sources"] == {SITE_A: SITE_C, SITE_B: SITE_C}
    for site in (SITE_A, SITE_B):
        assert grew(done["frames"][site])
        assert done["shown"][site]
    # C's own video is never in its own slots; its page says the others see it.
    assert done["c_own_spotlight_slot"] is None
    assert done["c_told"]
    assert done["moderator_source"] == SITE_C


def test_a_witness_watches_the_spotlight_and_the_actions_grid_and_has_no_buttons(
    run: dict[str, Any],
) -> None:
    done = phase(run, "witness")
    assert done["role"] == "witness"
    assert done["spotlight"] == SITE_C
    assert grew(done["frames"])
    assert done["shown"]
    # A concentrated enforcement action: its witness watches every site.
    assert done["grid"] == list(SITES)
    assert grew(done["grid_frames"])
    assert done["told"]
    # No hand, no microphone, no moderation: only the way out.
    assert done["buttons"] == ["退出会商"]
    assert (done["mic"], done["local_tracks"]) == ("none", [])
    assert "监督员" in done["moderator_row"]
    assert done["moderator_row_buttons"] == ["移出", "移出并禁止再加入"]


def test_the_moderator_records_and_every_page_shows_it_until_stopped(run: dict[str, Any]) -> None:
    done = phase(run, "record")
    everyone = {MODERATOR, *SITES, WITNESS}
    assert done["recording"] == dict.fromkeys(everyone, True)
    assert done["shown"] == dict.fromkeys(everyone, True)
    assert done["stop_offered"]
    # Refused by the server, and said in Chinese.
    assert done["again"] == {"ok": False, "code": "invalid_state", "reason": "already recording"}
    assert done["again_told"]
    gone = {"recording": False, "indicator_gone": True}
    assert done["stopped"] == {user: gone for user in everyone}
    assert done["start_offered"]
    # What was recorded is filed as the conference's evidence: voices and the spotlight.
    kinds = {kind for kind, _ in done["evidence"]}
    assert kinds == {"audio", "video"}


def test_a_live_call_shared_from_the_form_is_listed_on_every_page_until_taken_back(
    run: dict[str, Any],
) -> None:
    done = phase(run, "feeds")
    pages = {MODERATOR, *SITES}
    refused = done["refused"]
    assert (refused["code"], refused["reason"]) == ("not_found", "no such call")
    assert done["told"]
    assert done["none_before"] == dict.fromkeys(pages, True)
    call_id = done["call_id"]
    for user in pages:
        shared = done["shared"][user]
        assert shared["feeds"] == [[call_id, OFFICER, MODERATOR]]
        # The officer of the call shown is the spotlight.
        assert shared["spotlight"] == OFFICER
        assert shared["listed"]
        # Only a moderator, or who shared it, may take it back.
        assert shared["may_stop"] == (user == MODERATOR)
        assert done["unshared"][user] == {"feeds": [], "none_shown": True}


def test_a_moderator_action_on_an_old_revision_is_refused_shown_and_the_state_refreshed(
    run: dict[str, Any],
) -> None:
    done = phase(run, "conflict")
    assert (done["result"]["ok"], done["result"]["code"]) == (False, "conflict")
    assert done["conflicts"] == 1
    assert done["revision"] == done["site_revision"] > 0
    # Nothing was done: the spotlight is still C.
    assert done["spotlight"] == SITE_C
    assert done["told"]


def test_a_locked_conference_refuses_a_new_site(run: dict[str, Any]) -> None:
    done = phase(run, "lock")
    assert set(done["locked"].values()) == {True}
    assert done["unlock_offered"]
    error = done["latecomer_error"]
    assert (error["code"], error["reason"]) == ("invalid_state", "conference is locked")
    assert not done["latecomer_in"]
    assert done["latecomer_told"]


def test_a_site_removed_with_a_ban_is_told_and_may_not_join_again(run: dict[str, Any]) -> None:
    done = phase(run, "remove")
    assert done["left"] == {
        "conference_id": run["create"]["conference_id"],
        "reason": "banned",
        "by": MODERATOR,
    }
    assert not done["in_conference"]
    assert done["media"] is None
    assert done["told"]
    assert done["moderator_sites"] == [MODERATOR, SITE_A, SITE_C]
    # Refused although the conference is unlocked again: the ban.
    error = done["rejoin_error"]
    assert (error["code"], error["reason"]) == (
        "forbidden",
        "you were removed from this conference",
    )
    assert not done["rejoin_in"]
    assert done["rejoin_told"]


def test_the_floor_rules_from_the_form_a_co_moderator_named_and_the_chair_handed_over(
    run: dict[str, Any],
) -> None:
    done = phase(run, "chair")
    for rules in done["applied"].values():
        assert rules == {"mode": "open", "max_speakers": 2, "max_talk_s": TALK_S}
    # An open floor grants a raised hand at once, for the talk time; the page counts it down.
    assert done["granted"]["state"] == "permitted"
    first, later = done["countdown"]
    assert TALK_S - 3 <= first <= TALK_S
    assert later < first
    # The named co-moderator's page is a moderator's now: the sites table, and the grid.
    assert done["c_role"] == "moderator"
    assert done["c_grid"][0] == SITE_A
    assert done["c_sees_sites"]
    assert grew(done["c_grid_frames"])
    assert set(done["chairs"].values()) == {SITE_C}
    # Only the chair names co-moderators.
    assert not done["old_chair_may_name"]
    assert done["new_chair_may_name"]
    # The chair's page rings a user by id and withdraws it, and takes a co-moderator's part
    # back (invite_to_conference, withdraw_invitation, remove_moderator).
    assert done["late_rung"]
    assert done["late_stopped"] == ["withdrawn", SITE_C]
    assert done["withdrawn_shown"]
    assert done["old_chair_roles"] == ["site", "moderator"]
    assert done["old_chair_page_role"] == "site"


def test_the_moderator_ends_the_conference_for_every_page(run: dict[str, Any]) -> None:
    done = phase(run, "end")
    for user in (MODERATOR, SITE_A, SITE_C):
        ended = done["ended"][user]
        assert (ended["ended"]["reason"], ended["ended"]["by"]) == ("ended", MODERATOR)
        assert not ended["in_conference"]
        assert ended["media"] is None
        assert done["told"][user]


def test_the_conference_pages_run_under_their_content_security_policy(run: dict[str, Any]) -> None:
    """Every phase ran with /app/'s policy in force: Chromium blocked nothing."""
    assert "error" not in run, run.get("error")
    assert run["csp_blocked"] == []
