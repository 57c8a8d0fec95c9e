"""GET /api/console/settings: the console's map and queue settings, for operators,
supervisors and admins only; `[console]` is checked when the config is built; a configured
tile server is let into the pages' img-src and nothing else is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.config import ConfigError, load_config
from sessions.recorder import MemoryRecorder
from tests.conftest import make_config
from tests.wsclient import token_for

PATH = "/api/console/settings"


async def settings_as(
    aiohttp_client: AiohttpClient, tmp_path: Path, role: str, court: str, **console: Any
) -> tuple[int, Any, str]:
    config = make_config(tmp_path, console=console)
    client = await aiohttp_client(create_app(config, recorder=MemoryRecorder()))
    headers = {"Authorization": f"Bearer {token_for(config, 'u-1', role, court)}"}
    async with client.get(PATH, headers=headers) as resp:
        body = await resp.json()
    async with client.get("/app/index.html") as page:
        policy = page.headers["Content-Security-Policy"]
    return resp.status, body, policy


async def test_an_operator_gets_the_map_settings_and_the_courts_of_its_scope(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    status, body, policy = await settings_as(
        aiohttp_client, tmp_path, "operator", "P0101", court_positions=("P0101 32.06 118.79",)
    )
    assert status == 200
    assert body == {
        "tile_url": "",
        "tile_attribution": "",
        "queue_amber_s": 30.0,
        "queue_red_s": 90.0,
        "wall_max_feeds": 16,
        "wall_rotate_s": 20.0,
        "position_stale_s": 300.0,
        "supervisor_join": "visible",
        # An in-memory recorder keeps no evidence: no call is recorded.
        "recording": False,
        "courts": [
            {
                "code": "P0101",
                "name": "一中院辖区第一基层人民法院",
                "parent": "P01",
                "position": {"lat": 32.06, "lon": 118.79},
            }
        ],
    }
    assert "img-src 'self' data: blob:;" in policy


async def test_a_supervisor_gets_every_court_below_its_own(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    status, body, _ = await settings_as(aiohttp_client, tmp_path, "supervisor", "P01")
    assert status == 200
    assert [c["code"] for c in body["courts"]] == ["P01", "P0101", "P0102"]
    assert body["courts"][0]["position"] is None


@pytest.mark.parametrize("role", ["officer", "auditor"])
async def test_roles_without_a_console_are_refused(
    aiohttp_client: AiohttpClient, tmp_path: Path, role: str
) -> None:
    status, body, _ = await settings_as(aiohttp_client, tmp_path, role, "P0101")
    assert (status, body["error"]) == (403, "forbidden")


async def test_without_a_token_it_is_401(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path), recorder=MemoryRecorder()))
    async with client.get(PATH) as resp:
        assert (resp.status, (await resp.json())["error"]) == (401, "unauthorized")


async def test_a_tile_server_is_allowed_to_serve_the_pages_images(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    url = "https://{s}.tiles.court.example:8443/{z}/{x}/{y}.png"
    status, body, policy = await settings_as(
        aiohttp_client, tmp_path, "operator", "P0101", tile_url=url
    )
    assert (status, body["tile_url"]) == (200, url)
    assert "img-src 'self' data: blob: https://*.tiles.court.example:8443;" in policy
    assert "script-src 'self';" in policy


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"COMMANDCENTER_CONSOLE_TILE_URL": "tiles.example/{z}/{x}/{y}"}, "console.tile_url"),
        ({"COMMANDCENTER_CONSOLE_TILE_URL": "https://t.example/tile.png"}, "console.tile_url"),
        ({"COMMANDCENTER_CONSOLE_QUEUE_RED_S": "10"}, "console.queue_amber_s"),
        ({"COMMANDCENTER_CONSOLE_POSITION_STALE_S": "5"}, "console.position_stale_s"),
    ],
)
def test_bad_console_settings_are_config_errors(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, env)


@pytest.mark.parametrize("entry", ["X9 1 2", "P0101 91 2", "P0101 north 2", "P0101 1"])
def test_a_court_position_that_is_not_a_known_court_at_a_place_is_a_config_error(
    tmp_path: Path, entry: str
) -> None:
    with pytest.raises(ConfigError, match=r"console\.court_positions"):
        make_config(tmp_path, console={"court_positions": (entry,)})


async def test_the_console_is_told_calls_are_recorded_when_they_are(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """With the durable recorder (and so an evidence store) and `media.record`, calls are
    recorded and the console says so; with `media.record = false` they are not."""
    for record, expected in ((True, True), (False, False)):
        config = make_config(tmp_path / str(record), media={"record": record})
        client = await aiohttp_client(create_app(config))
        headers = {"Authorization": f"Bearer {token_for(config, 'u-1', 'operator', 'P0101')}"}
        async with client.get(PATH, headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["recording"] is expected
