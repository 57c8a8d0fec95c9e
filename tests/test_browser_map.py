"""Map clustering at the console for 300 officers, in headless Chromium against the real
server: one run of tests/browser_map_scenario.py in a network namespace of its own (`make
console` builds the console first; `make test` does)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_map_scenario import OFFICERS, PER_GROUP, SOS

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 150.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_map_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_three_hundred_officers_are_drawn_as_a_few_clusters(run: dict[str, Any]) -> None:
    assert seen(run, "drawn") == OFFICERS
    before = seen(run, "before")
    # Each group of 100 is one bubble (or a few), not 100 pins.
    assert 3 <= len(before["clusters"]) <= 9
    assert sum(before["clusters"]) + len(before["alone"]) == OFFICERS
    assert before["alone"] == []
    assert seen(run, "cluster_bubbles") == len(before["clusters"])


def test_an_emergency_is_never_hidden_in_a_cluster(run: dict[str, Any]) -> None:
    after = seen(run, "after")
    # The map jumped to the officer: the officers round them stay clustered.
    assert after["alone"] == [SOS]
    assert after["clusters"]
    assert max(after["clusters"]) < PER_GROUP
    assert sum(after["clusters"]) <= OFFICERS - 1
    assert seen(run, "emergency_pin_visible") is True
    assert seen(run, "pin_after_acknowledged") is True
    assert seen(run, "page_errors") == []
