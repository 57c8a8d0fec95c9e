"""The web client in headless Chromium against three nodes sharing a Redis: the officer's
page on one node, the operator's on a second, the supervisor's on the third. Their call is
decided by the authority, its media relayed by one node, and every page decodes the others'
video as against one node (tests/browser_cluster_scenario.py, in a network namespace)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run, phase
from tests.browser_scenario import OFFICER, OPERATOR, SUPERVISOR

# Three nodes on a redis-server of the scenario's own; their traces in memory, no PostgreSQL.
pytestmark = [pytest.mark.browser, pytest.mark.cluster]

RUN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_cluster_scenario", [], RUN_TIMEOUT_S)


def test_pages_on_three_nodes_sign_in_and_a_call_is_answered_across_nodes(
    run: dict[str, Any],
) -> None:
    done = phase(run, "signalling")
    assert done["users"] == {u: u for u in (OFFICER, OPERATOR, SUPERVISOR)}
    assert done["local_tracks"] == ["audio", "video"]


def test_officer_and_operator_on_two_nodes_see_and_hear_each_other(run: dict[str, Any]) -> None:
    done = phase(run, "media")
    for seen in (done["operator_sees_officer"], done["officer_sees_operator"]):
        first, later = seen["frames_decoded"]
        assert later > first > 0
        assert seen["total_audio_energy"] > 0
    # One node relays the call, whichever nodes its members came through.
    assert sorted(run["media_rooms"].values()) == [0, 0, 1]


def test_a_supervisor_on_the_third_node_joins_and_decodes_the_officers_video(
    run: dict[str, Any],
) -> None:
    done = phase(run, "join")
    first, later = done["officer"]["frames_decoded"]
    assert later > first > 0
    assert OFFICER in done["remote_streams"]
