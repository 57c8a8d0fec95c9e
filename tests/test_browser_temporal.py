"""Chromium and VP8 temporal layers, against the real server with its media workers
(tests/browser_temporal_scenario.py, in a network namespace of its own): Chromium honours
the L1T3 the conference page asks of its camera (getStats says so, and the server counts
packets of TIDs 0, 1 and 2), and decodes every frame of what the relay sends a site when it
leaves upper layers out (`media.temporal_max_layer` 1 and 0: half and a quarter of the
frames, with their sequence numbers and PictureIDs closed up), without asking for a packet
or a picture again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run, phase

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 150.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_temporal_scenario", [], RUN_TIMEOUT_S)


def test_the_page_reports_that_its_camera_is_encoded_l1t3(run: dict[str, Any]) -> None:
    for name in ("all", "half", "base"):
        assert phase(run, name)["scalability_mode"] == "L1T3"


def test_the_server_receives_every_temporal_layer_of_the_camera(run: dict[str, Any]) -> None:
    """Packets with TID 0, 1 and 2 and none with 3 in every worker that has the host's
    publication; about twice as many frames of TID 2 as of each other layer (the pattern
    0, 2, 1, 2), so more packets of it than of TID 1."""
    lines = phase(run, "all")["server_layers"]
    assert lines
    for line in lines:
        tid0, tid1, tid2, tid3 = line["tid_packets"]
        assert tid0 > 0
        assert tid1 > 0
        assert tid2 > tid1
        assert tid3 == 0
        assert line["layers_dropped"] == 0


def test_with_every_layer_the_site_decodes_every_frame_the_host_encodes(
    run: dict[str, Any],
) -> None:
    done = phase(run, "all")
    seen = done["site_spotlight"]
    assert seen["framesDecoded"] >= 0.8 * done["host_frames_encoded"], done
    assert seen["framesDropped"] == 0, done
    assert seen["pliCount"] == 0, done


@pytest.mark.parametrize(
    ("name", "share"), [("half", 0.5), ("base", 0.25)], ids=["tid-0-1", "tid-0"]
)
def test_sent_fewer_layers_the_site_decodes_every_frame_it_gets_and_sees_no_gap(
    run: dict[str, Any], name: str, share: float
) -> None:
    """TIDs 0-1 are half the frames, TID 0 a quarter; every one sent decodes (none
    dropped), and the site asks for no packet (the dropped ones' numbers are closed up) and
    no picture (the PictureIDs are consecutive, so no reference looks missing)."""
    done = phase(run, name)
    seen = done["site_spotlight"]
    encoded = done["host_frames_encoded"]
    assert (share - 0.1) * encoded <= seen["framesDecoded"] <= (share + 0.1) * encoded, done
    assert seen["framesDecoded"] == seen["framesReceived"], done
    assert seen["framesDropped"] == 0, done
    assert seen["nackCount"] == 0, done
    assert seen["pliCount"] == 0, done
    assert any(line["layers_dropped"] > 0 for line in done["server_layers"]), done
