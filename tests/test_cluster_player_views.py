"""The evidence player's views across a cluster: two real hub processes on the real Redis
(under the test's key prefix), one PostgreSQL trace and one evidence directory. A view
opened on one node is kept in Redis, so the ranges another node serves for it are parts of
that one recorded view, not downloads (commandcenter/view_keepers.py)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import aiohttp
import pytest

from commandcenter.evidence_api import PLAYER_COOKIE
from sessions import evidence as ev
from sessions.store import StoredRecord
from tests.clusternodes import Cluster, Node, cluster, token
from tests.evidencehelpers import CASE

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

__all__ = ["cluster"]


async def upload(http: aiohttp.ClientSession, node: Node, auth: str, data: bytes) -> str:
    params = {
        "case": CASE,
        "kind": "video",
        "sha256": hashlib.sha256(data).hexdigest(),
        "device": "phone-7",
        "capture_time": str(int(time.time() * 1000) - 60_000),
        "file_name": "VID_0001.mp4",
    }
    headers = {"Authorization": f"Bearer {auth}", "Content-Type": "video/mp4"}
    async with http.post(
        f"{node.base}/api/evidence", params=params, data=data, headers=headers
    ) as resp:
        body = await resp.json()
        assert resp.status == 201, body
        return str(body["evidence_id"])


async def ranges(http: aiohttp.ClientSession, node: Node, url: str, auth: str) -> None:
    """A <video>'s requests for two parts: the player's cookie, the view in `url`."""
    for header in ("bytes=0-99", "bytes=1000-"):
        headers = {"Cookie": f"{PLAYER_COOKIE}={auth}", "Range": header}
        async with http.get(f"{node.base}{url}", headers=headers) as resp:
            assert resp.status == 206, await resp.text()
            await resp.read()


async def of_item(cluster: Cluster, kind: str, evidence_id: str) -> list[StoredRecord]:
    store = await cluster.pg.open(readonly=True)
    try:
        return await store.find(kinds=[kind], data_equals={"evidence_id": evidence_id})
    finally:
        await store.close()


async def test_ranges_served_by_another_node_count_in_the_view_opened_on_the_first(
    cluster: Cluster, tmp_path: Path
) -> None:
    shared = str(tmp_path / "evidence")
    n1 = cluster.start("n1", COMMANDCENTER_EVIDENCE_DIR=shared)
    n2 = cluster.start("n2", COMMANDCENTER_EVIDENCE_DIR=shared)
    await cluster.formed("n1", "n2")
    officer = token("o1", "officer", "P0101")
    data = os.urandom(20_000)
    async with aiohttp.ClientSession() as http:
        evidence_id = await upload(http, n1, officer, data)
        content = f"/api/evidence/{evidence_id}/content"
        headers = {"Authorization": f"Bearer {officer}"}
        async with http.post(f"{n1.base}/api/evidence/{evidence_id}/view", headers=headers) as r:
            assert r.status == 201, await r.text()
            view = (await r.json())["view"]
        # Both nodes serve the view's ranges: one look, recorded once, by n1.
        await ranges(http, n2, f"{content}?view={view}", officer)
        await ranges(http, n1, f"{content}?view={view}", officer)
        reads = [r for r in await of_item(cluster, ev.READ, evidence_id) if r.data.get("via")]
        assert [(r.data["via"], r.data["view"]) for r in reads] == [("player", view)]
        assert await of_item(cluster, ev.DOWNLOADED, evidence_id) == []
        # A view nobody opened covers nothing on either node: each range is a download.
        await ranges(http, n2, f"{content}?view={'x' * 22}", officer)
        assert len(await of_item(cluster, ev.DOWNLOADED, evidence_id)) == 2
