"""Chromium honours the L1T3 the conference page asks of its camera: the page's getStats
reports scalabilityMode "L1T3", and the server's publication of that camera counts packets
of temporal layers 0, 1 and 2 (tests/browser_temporal_scenario.py, in a network namespace
of its own, against the real server with its media workers)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_temporal_scenario", [], RUN_TIMEOUT_S)


def test_the_page_reports_that_its_camera_is_encoded_l1t3(run: dict[str, Any]) -> None:
    assert "error" not in run, run
    assert run["scalability_mode"] == "L1T3", run["outbound_video"]


def test_the_server_receives_every_temporal_layer_of_the_camera(run: dict[str, Any]) -> None:
    """Packets with TID 0, 1 and 2 and none with 3; about twice as many frames of TID 2 as
    of each other layer (the pattern 0, 2, 1, 2), so more packets of it than of TID 1."""
    assert "error" not in run, run
    [line] = [line for line in run["server_layers"] if line["owner"] == "sv-p"]
    tid0, tid1, tid2, tid3 = line["tid_packets"]
    assert tid0 > 0
    assert tid1 > 0
    assert tid2 > tid1
    assert tid3 == 0
    assert line["layers_dropped"] == 0
