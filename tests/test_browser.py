"""The web client in headless Chromium against the real server: sign-in, a call placed and
answered from pages, and media both ways through the server with fake camera and microphone.

One run of tests/browser_scenario.py, in a network namespace of its own, holds every phase
(starting Chromium and the server once keeps these tests to seconds); each test asserts on
its phase of the JSON line it prints. A failing phase carries the server's log tail and the
pages' console output, printed with the failure.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run, phase
from tests.browser_scenario import OFFICER, OPERATOR, PHASES, SUPERVISOR

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 100.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_scenario", list(PHASES), RUN_TIMEOUT_S)


def test_pages_sign_in_and_an_officer_call_is_answered_from_the_operator_page(
    run: dict[str, Any],
) -> None:
    done = phase(run, "signalling")
    assert done["users"] == {u: u for u in (OFFICER, OPERATOR, SUPERVISOR)}
    assert done["call_id"]
    # getUserMedia gave the officer's page the fake camera and microphone.
    assert done["local_tracks"] == ["audio", "video"]


def test_operator_and_officer_decode_each_others_video_and_hear_their_audio(
    run: dict[str, Any],
) -> None:
    done = phase(run, "media")
    for seen in (done["operator_sees_officer"], done["officer_sees_operator"]):
        first, later = seen["frames_decoded"]
        assert later > first > 0
        assert seen["frame_width"] > 0
        assert seen["total_audio_energy"] > 0
    assert done["officer_connection"] == "connected"


def test_chromium_offers_loopback_addresses_not_mdns_names(run: dict[str, Any]) -> None:
    """With camera permission Chromium exposes real addresses; in the namespace, 127.0.0.1."""
    candidates = phase(run, "signalling")["officer_candidates"]
    assert candidates
    assert not [c for c in candidates if ".local" in c]
    assert all(" 127.0.0.1 " in c for c in candidates)


def test_a_supervisor_joining_mid_call_decodes_the_officers_video(run: dict[str, Any]) -> None:
    done = phase(run, "join")
    first, later = done["officer"]["frames_decoded"]
    assert later > first > 0
    assert done["officer"]["frame_width"] > 0
    assert OFFICER in done["remote_streams"]


def test_a_killed_media_worker_is_recovered_from_by_every_page(run: dict[str, Any]) -> None:
    """`media_restart`: each page offers again on a new peer connection and decodes the
    others' video again."""
    done = phase(run, "restart")
    for seen in ("operator_sees_officer", "supervisor_sees_officer", "officer_sees_operator"):
        first, later = done[seen]["frames_decoded"]
        assert later > first > 0
    assert done["kill_to_first_frame_s"] < 15.0


def test_an_officer_closing_the_page_is_noticed_and_no_longer_fed_to_the_operator(
    run: dict[str, Any],
) -> None:
    # The phase itself waited for the officer's frame count at the operator to stand still.
    done = phase(run, "leave")
    assert done["operator_told"]
    assert set(done["operator_told"]) <= {"party_away", "call_ended"}
    assert OFFICER not in done["operator_remote_streams"]
    assert done["operator_connection"] == "connected"
    assert done["operator_hung_up"]


def test_the_pages_run_under_their_content_security_policy(run: dict[str, Any]) -> None:
    """Every phase ran with /app/'s policy in force (no inline code, nothing from elsewhere):
    Chromium reports each blocked load or script in the console, and none was."""
    assert "error" not in run, run.get("error")
    assert run["csp_blocked"] == []
