"""Sites are paced into conferences' media per media worker (docs/protocol.md,
`conferences.joins_per_s`): the node's core paces them as one queue, and its pool spreads
them round-robin over its workers, so the node lets in the per-worker pace times them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from commandcenter.app import create_app
from commandcenter.keys import HUB
from signalling.link import LocalCoreLink
from tests.conftest import make_config


@pytest.mark.parametrize(
    ("media", "rate"),
    [({"workers": 3}, 24.0), ({"workers": 0}, 8.0), ({"enabled": False}, 8.0)],
)
def test_the_nodes_join_pace_is_the_per_worker_pace_times_its_workers(
    tmp_path: Path, media: dict[str, Any], rate: float
) -> None:
    config = make_config(tmp_path / "var", conferences={"joins_per_s": 8.0}, media=media)
    link = create_app(config)[HUB].link
    assert isinstance(link, LocalCoreLink)
    assert link.core.conferences.pace.rate == rate
