"""The walk through the product as its users take it (tests/browser_walk_scenario.py, one
run in a network namespace of its own): every page and state of the console at 1366x768
and 1920x1080 and of the phone at 390x844, photographed into build/screenshots/walk/ and
held to what an operator would stumble on (`make console` builds the console first)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_walk_scenario import SCREENSHOTS

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 180.0
# The roster's table at 1366x768: room for four officers' rows at least (one is ~32 px).
ROSTER_MIN_PX = 150
TOUCH_MIN_PX = 44
CONSOLE_STATES = ("roster", "queue", "call", "sos", "wall")
RECORDS = ("evidence", "calls", "conferences", "stats")
PHONE_STATES = ("idle", "ringing", "call", "sos")


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_walk_scenario", [], RUN_TIMEOUT_S)


def looks(run: dict[str, Any]) -> dict[str, Any]:
    if not run.get("walked"):
        pytest.fail(f"the walk stopped: {run}")
    found: dict[str, Any] = run["looks"]
    return found


def test_every_page_and_state_is_photographed_at_each_size(run: dict[str, Any]) -> None:
    names = [f"console-{s}" for s in CONSOLE_STATES] + [f"console-records-{r}" for r in RECORDS]
    expected = {f"{n}@{size}" for n in [*names, "admin"] for size in ("1366x768", "1920x1080")}
    expected |= {f"phone-{s}@390x844" for s in PHONE_STATES}
    assert set(looks(run)) == expected
    for key in expected:
        name, size = key.split("@")
        assert (SCREENSHOTS / f"{name}-{size}.png").stat().st_size > 0


def test_nothing_sticks_out_of_the_viewport_sideways(run: dict[str, Any]) -> None:
    out = {key: look["overflow"] for key, look in looks(run).items() if look["overflow"]}
    assert out == {}


def test_no_raw_wire_code_shows_as_text(run: dict[str, Any]) -> None:
    codes = {key: look["codes"] for key, look in looks(run).items() if look["codes"]}
    assert codes == {}


def test_on_the_laptop_the_roster_keeps_room_for_its_officers(run: dict[str, Any]) -> None:
    """At 1366x768 the side's panels used to squeeze the roster to a cut-off row."""
    for state in CONSOLE_STATES:
        look = looks(run)[f"console-{state}@1366x768"]
        assert look["rosterRows"] == 1, state
        assert look["rosterHeight"] >= ROSTER_MIN_PX, state


def test_every_control_on_the_phone_is_a_thumbs_size(run: dict[str, Any]) -> None:
    small = {
        key: look["small"]
        for key, look in looks(run).items()
        if key.startswith("phone-") and look["small"]
    }
    assert small == {}, f"under {TOUCH_MIN_PX} px"


def test_the_evidence_browser_says_what_to_do_before_the_first_search(
    run: dict[str, Any],
) -> None:
    looks(run)
    assert "不填条件则查询最近 90 天的证据" in run["records_evidence_text"]


def test_the_statistics_name_their_days_and_court_not_wire_timestamps(
    run: dict[str, Any],
) -> None:
    looks(run)
    text = run["records_stats_text"]
    assert "T00:00:00" not in text
    assert "一中院辖区第一基层人民法院" in text.split("范围：", 1)[1].splitlines()[0]
