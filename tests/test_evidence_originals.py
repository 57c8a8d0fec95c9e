"""Originals that changed on disk behind the server's back: a download never delivers them
complete, a missing one is a documented error and an alarm, and `audit verify --files`
re-hashes every original against the trace."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from commandcenter.cli import main
from commandcenter.keys import EVIDENCE
from sessions import evidence as ev
from tests.evidencehelpers import Api, body_of, sha, start_api, uploaded


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, tmp_path: Path) -> Api:
    return await start_api(aiohttp_client, tmp_path)


def flip_a_bit(path: Path, offset: int) -> None:
    os.chmod(path, 0o600)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


async def test_an_intact_original_downloads_byte_for_byte(api: Api) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    item = await uploaded(api, "o1", data, sha256=sha(data), kind="video", content_type="video/mp4")
    resp = await api.get(f"/api/evidence/{item['evidence_id']}/content", "o1")
    assert resp.status == 200
    assert resp.headers["X-Evidence-SHA256"] == sha(data)
    assert int(resp.headers["Content-Length"]) == len(data)
    assert await resp.read() == data


@pytest.mark.parametrize("offset", [0, 2 * 1024 * 1024 + 7, -1])
async def test_a_flipped_bit_is_never_delivered_complete(api: Api, offset: int) -> None:
    """The first piece may already be on its way when the hash fails; the download is cut
    short of its Content-Length, which the client reports, and an alarm is raised."""
    data = os.urandom(3 * 1024 * 1024 + 5)
    item = await uploaded(api, "o1", data, sha256=sha(data), kind="video", content_type="video/mp4")
    flip_a_bit(api.dir / sha(data), offset)
    store = api.app[EVIDENCE]
    resp = await api.get(f"/api/evidence/{item['evidence_id']}/content", "o1")
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert store.alarms == 1


async def test_a_truncated_original_is_refused_before_any_byte(api: Api) -> None:
    item = await uploaded(api, "o1")
    path = api.dir / item["sha256"]
    os.chmod(path, 0o600)
    path.write_bytes(path.read_bytes()[:-10])
    resp = await api.get(f"/api/evidence/{item['evidence_id']}/content", "o1")
    body = await body_of(resp)
    assert (resp.status, body["error"]) == (500, "original_corrupt")
    assert api.app[EVIDENCE].alarms == 1


async def test_a_missing_original_is_a_documented_error_not_a_traceback(api: Api) -> None:
    item = await uploaded(api, "o1")
    (api.dir / item["sha256"]).unlink()
    resp = await api.get(f"/api/evidence/{item['evidence_id']}/content", "o1")
    body = await body_of(resp)
    assert resp.status == 500
    assert body["error"] == "original_missing"
    assert "missing" in body["reason"]
    assert api.app[EVIDENCE].alarms == 1
    # Nothing was handed out, so no download is recorded.
    assert await api.records(ev.DOWNLOADED) == []


def _verify(config_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> Any:
    code = main(["audit", "verify", "--config", str(config_path), "--files", *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


async def test_audit_verify_files_rehashes_every_original(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intact = await uploaded(api, "o1", b"a" * 5000)
    changed = await uploaded(api, "o1", b"b" * 5000)
    gone = await uploaded(api, "o2", b"c" * 5000)
    # The CLI reads the very trace and evidence directory the server writes.
    config_path = tmp_path / "config.toml"
    config_path.write_text(f'[server]\ndata_dir = "{api.config.server.data_dir}"\n')
    code, line, err = await asyncio.to_thread(_verify, config_path, capsys, "--progress")
    assert (code, line["ok"], line["files"]["checked"], line["files"]["problems"]) == (
        0,
        True,
        3,
        [],
    )
    assert "originals" in err  # the progress bar
    flip_a_bit(api.dir / changed["sha256"], 100)
    (api.dir / gone["sha256"]).unlink()
    code, line, err = await asyncio.to_thread(_verify, config_path, capsys)
    assert code == 1
    assert line["ok"] is False
    problems = {p["problem"]: p for p in line["files"]["problems"]}
    assert problems["corrupt"]["evidence_ids"] == [changed["evidence_id"]]
    assert problems["missing"]["evidence_ids"] == [gone["evidence_id"]]
    assert intact["sha256"] not in {p["sha256"] for p in line["files"]["problems"]}
    assert "missing" in err
    assert "corrupt" in err
