"""Witness invitations (commandcenter/witness_api.py) across a cluster: two real hub processes
on the real Redis (under the test's key prefix) and one PostgreSQL trace. The routes answer on
the node that is not the authority too, reading the conference from the authority's journal
(`CoreLink.conference`), with the same rules: its moderator invites, lists and revokes; a
supervisor who does not moderate it is answered as if it did not exist."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.clusternodes import Cluster, Node, cluster, token
from tests.polling import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

__all__ = ["cluster"]

BODY = {"name": "王代表", "label": "人大代表", "expires_in_s": 600}


def path(node: Node, cid: str) -> str:
    return f"{node.base}/api/conferences/{cid}/witnesses"


def auth(user: str, role: str, court: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, role, court)}"}


async def test_the_witness_routes_answer_on_the_node_that_is_not_the_authority(
    cluster: Cluster,
) -> None:
    n1 = cluster.start("n1")
    n2 = cluster.start("n2")
    authority = await cluster.formed("n1", "n2")
    gateway = n2 if authority == "n1" else n1
    host = await gateway.connect("sup0", "supervisor", "P01")
    created = await host.request(
        "create_conference", reply="conference_created", title="会商", invite_below=["P01"]
    )
    cid: str = created["conference"]["conference_id"]
    await host.request("join_conference", reply="conference_joined", conference_id=cid)
    moderator = auth("sup0", "supervisor", "P01")
    async with aiohttp.ClientSession() as http:
        issued: dict[str, Any] = {}

        async def invited() -> bool:
            async with http.post(path(gateway, cid), json=BODY, headers=moderator) as resp:
                # The creation is journalled at once, through Redis.
                if resp.status == 404:
                    return False
                issued.update(await resp.json())
                assert resp.status == 201, issued
                return True

        await wait_until(invited, within=5.0, what="the gateway answers for the conference")
        assert issued["link"].startswith("/app/conference.html#token=")
        # Another supervisor of the court, not its moderator: as if there were none.
        async with http.get(path(gateway, cid), headers=auth("sup9", "supervisor", "P01")) as r:
            assert (r.status, (await r.json())["error"]) == (404, "not_found")
        async with http.get(path(gateway, "m-nosuchconference"), headers=moderator) as r:
            assert r.status == 404
        # Listed on both nodes; the witness signs in on the gateway.
        for node in (gateway, cluster.nodes[authority]):
            async with http.get(path(node, cid), headers=moderator) as r:
                listed = (await r.json())["witnesses"]
                assert r.status == 200
                assert [w["witness_id"] for w in listed] == [issued["witness_id"]]
        params = {"token": issued["token"]}
        ws = await cluster.http.ws_connect(f"{gateway.base}/ws", params=params)
        welcome = await ws.receive_json(timeout=5.0)
        assert (welcome["type"], welcome["user"]["role"]) == ("welcome", "witness")
        await ws.close()
        gone = f"{path(gateway, cid)}/{issued['witness_id']}"
        async with http.delete(gone, headers=moderator) as r:
            assert r.status == 204
        async with http.get(path(gateway, cid), headers=moderator) as r:
            [revoked] = (await r.json())["witnesses"]
            assert revoked["revoked_at"] is not None
        # Ended: gone from the journal, so no longer found on the gateway either.
        await host.request("end_conference", conference_id=cid)

        async def ended() -> bool:
            async with http.get(path(gateway, cid), headers=moderator) as r:
                return r.status == 404

        await wait_until(ended, within=5.0, what="the ended conference not found")
