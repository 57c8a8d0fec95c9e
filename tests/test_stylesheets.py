"""The stylesheets are whole: every block closed. A brace lost in a merge does not fail the
build (the CSS parser recovers by swallowing every rule after it into the open block, here a
`@media` one), it silently drops those rules on a wide screen; this finds it at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHEETS = sorted([*REPO.glob("console/src/*.css"), *REPO.glob("commandcenter/static/*.css")])
# Comments and strings may hold braces that are not blocks.
_NOT_CODE = re.compile(r"/\*.*?\*/|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'", re.S)


@pytest.mark.parametrize("sheet", SHEETS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_block_is_closed_before_the_next_top_level_rule(sheet: Path) -> None:
    depth = 0
    for number, line in enumerate(_NOT_CODE.sub("", sheet.read_text("utf-8")).splitlines(), 1):
        if depth > 0 and line[:1] not in ("", " ", "}", "\t") and not line.startswith("@"):
            # A rule written at the left margin is meant to be top level.
            pytest.fail(f"{sheet.name}:{number}: a block is still open at a top-level rule")
        depth += line.count("{") - line.count("}")
        assert depth >= 0, f"{sheet.name}:{number}: a closing brace too many"
    assert depth == 0, f"{sheet.name}: {depth} block(s) never closed"


def test_there_are_stylesheets_to_check() -> None:
    assert len(SHEETS) >= 4
