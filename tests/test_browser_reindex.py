"""The console's call audit in headless Chromium while the server indexes a trace written
before its subject index: one run of tests/browser_reindex_scenario.py in a network namespace
of its own (`make console` builds the console first; `make test` does)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import namespace_fixture_run
from tests.browser_reindex_scenario import RECORDS

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return namespace_fixture_run("tests.browser_reindex_scenario", [], RUN_TIMEOUT_S)


def seen(run: dict[str, Any], key: str) -> Any:
    if key not in run:
        pytest.fail(f"the run stopped before {key}: {run}")
    return run[key]


def test_a_call_audit_says_older_records_may_be_missing_while_the_index_is_built(
    run: dict[str, Any],
) -> None:
    note = seen(run, "note")
    assert note.startswith("审计索引仍在补建：较早的记录可能暂缺"), note
    # The first batch filed the call's first record; the others are still to file, as
    # many as /healthz says.
    left = seen(run, "reindex_remaining")
    assert left >= RECORDS - 1
    assert f"尚余 {left} 条待补" in note
    assert seen(run, "timeline_rows") < RECORDS
    assert seen(run, "untranslated") == []


def test_the_note_is_in_english_when_the_console_is(run: dict[str, Any]) -> None:
    note = seen(run, "english_note")
    assert note.startswith("The audit index is still being built: older records may be missing")
    assert f"({seen(run, 'reindex_remaining')} left to file)" in note
