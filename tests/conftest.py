"""Shared fixtures: a real app on a loopback port, with a test config and an in-memory
recorder, and the typed WebSocket client of `tests.wsclient` to talk to it."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

import pytest
from hypothesis import settings
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.config import Config, ServerConfig, replace_section
from sessions.recorder import MemoryRecorder
from signalling.clock import Clock
from tests.wsclient import Server

# Property tests check behaviour, not speed (timings live in bench/): no per-example
# deadline, which an example of a test otherwise passing can miss on a loaded CI machine.
settings.register_profile("commandcenter", deadline=None)
settings.load_profile("commandcenter")

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256"

# Timings short enough for fast tests, long enough not to fire in tests about other things.
DEFAULT_SECTIONS: dict[str, dict[str, Any]] = {
    "calls": {"ring_timeout_s": 30.0, "queue_timeout_s": 60.0},
    "presence": {"grace_s": 5.0, "position_interval_s": 0.2},
    # Media in the test's own process: quicker, and its rooms are there to inspect. The
    # worker processes are tested on purpose (tests/test_media_workers.py) and run in every
    # test that starts `commandcenter serve`.
    "media": {"workers": 0},
}


def make_config(data_dir: Path, **sections: dict[str, Any]) -> Config:
    """The test config: private data dir, fixed secret, then `sections` changes applied
    on top of DEFAULT_SECTIONS (e.g. `calls={"ring_timeout_s": 0.3}`)."""
    config = Config(server=ServerConfig(data_dir=str(data_dir), node_id="test-node"))
    config = replace_section(config, "auth", jwt_secret=TEST_SECRET)
    merged = {k: dict(v) for k, v in DEFAULT_SECTIONS.items()}
    for section, changes in sections.items():
        merged.setdefault(section, {}).update(changes)
    for section, changes in merged.items():
        config = replace_section(config, section, **changes)
    return config


class Serve(Protocol):
    def __call__(
        self,
        *,
        recorder: MemoryRecorder | None = None,
        clock: Clock | None = None,
        **sections: dict[str, Any],
    ) -> Awaitable[Server]: ...


@pytest.fixture
def serve(aiohttp_client: AiohttpClient, tmp_path: Path) -> Serve:
    """Start the real app with the test config changed by `sections`, recording into
    `recorder` (default: a fresh MemoryRecorder) and reading the time from `clock` (default:
    the machine's; a `tests.fakeclock.FakeClock` makes timers fire when the test says)."""

    async def start(
        *,
        recorder: MemoryRecorder | None = None,
        clock: Clock | None = None,
        **sections: dict[str, Any],
    ) -> Server:
        config = make_config(tmp_path / "var", **sections)
        recorder = recorder if recorder is not None else MemoryRecorder()
        http = await aiohttp_client(create_app(config, recorder=recorder, clock=clock))
        return Server(http, config, recorder)

    return start


@pytest.fixture
async def server(serve: Serve) -> Server:
    """The app with the default test config."""
    return await serve()


# A browser scenario runs once per module, inside the first test's setup, and bounds itself
# (its RUN_TIMEOUT_S, at most 240 s): pytest-timeout's 120 s must not cut it short first, or
# a slow run is reported as a bare timeout instead of with the scenario's own error and the
# server's log.
BROWSER_TIMEOUT_S = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(BROWSER_TIMEOUT_S))
