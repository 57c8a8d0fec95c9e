"""Text instructions across two hub nodes on the real Redis (own key prefix) and one
PostgreSQL trace: the sender on one node and the officer on the other, receipts crossing
back, and an unread instruction sent again when the officer signs in on the other node."""

from __future__ import annotations

import pytest

from tests.clusterhelpers import private_redis
from tests.clusternodes import Cluster, cluster
from tests.test_cluster_hub import three, trace_kinds

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

__all__ = ["cluster", "private_redis"]

COURT = "P0101"


async def test_an_instruction_and_its_receipts_cross_nodes(cluster: Cluster) -> None:
    for n in ("n1", "n2"):
        cluster.start(n)
    authority = await cluster.formed()
    near, far = sorted(cluster.nodes.values(), key=lambda node: node.node_id == authority)
    # The operator is on the node that is not the authority: everything it says crosses
    # Redis to the core, and the officer is served by the other node.
    operator = await near.connect("op-1", "operator", COURT)
    watcher = await far.connect("op-2", "operator", COURT)
    officer = await far.connect("of-1", "officer", COURT)
    sent = await operator.request(
        "send_instruction", reply="instruction_sent", officer="of-1", text="请立即前往二号现场"
    )
    iid = sent["instruction_id"]
    push = await officer.expect("instruction", timeout=5.0, instruction_id=iid)
    assert push["by"]["id"] == "op-1"
    await watcher.expect("instruction_update", timeout=5.0)
    await officer.request("instruction_receipt", instruction_id=iid, state="delivered")
    update = await operator.expect("receipt_update", timeout=5.0, instruction_id=iid)
    assert update["recipient"]["state"] == "delivered"

    # The officer's phone comes back on the other node, a new sign-in: still unread, so
    # the instruction comes again, and the read receipt from there reaches both consoles.
    await officer.close()
    moved = await near.connect("of-1", "officer", COURT)
    again = await moved.expect("instruction", timeout=5.0, instruction_id=iid)
    assert again["state"] == "delivered"
    await moved.request("instruction_receipt", instruction_id=iid, state="read")
    for console in (operator, watcher):
        read = await console.expect(
            "receipt_update", timeout=5.0, where=lambda m: m["recipient"]["state"] == "read"
        )
        assert read["instruction_id"] == iid
    listed = await watcher.request("list_instructions", reply="instructions")
    assert [r["state"] for r in listed["instructions"][0]["recipients"]] == ["read"]

    kinds = [kind for kind, data in await trace_kinds(cluster) if data.get("instruction") == iid]
    assert kinds == ["instruction_sent", "instruction_delivered", "instruction_read"]


async def test_an_instruction_outlives_its_authority(cluster: Cluster) -> None:
    """The authority is SIGKILLed after the instruction was delivered: the next one carries
    it on from the journal, sends it again to the officer, and takes the read receipt."""
    _, (a, b, boss) = await three(cluster)
    officer = await a.connect("of-1", "officer", COURT)
    operator = await b.connect("op-1", "operator", COURT)
    sent = await operator.request(
        "send_instruction", reply="instruction_sent", officer="of-1", text="原地待命"
    )
    iid = sent["instruction_id"]
    await officer.expect("instruction", timeout=5.0, instruction_id=iid)
    await officer.request("instruction_receipt", instruction_id=iid, state="delivered")
    await operator.expect("receipt_update", timeout=5.0, instruction_id=iid)

    boss.kill()
    await cluster.formed(a.node_id, b.node_id)
    await officer.expect("welcome", timeout=15.0)
    again = await officer.expect("instruction", timeout=10.0, instruction_id=iid)
    assert (again["text"], again["state"]) == ("原地待命", "delivered")
    await operator.expect("welcome", timeout=10.0)
    await officer.request("instruction_receipt", instruction_id=iid, state="read")
    read = await operator.expect("receipt_update", timeout=5.0, instruction_id=iid)
    assert read["recipient"]["state"] == "read"
    listed = await operator.request("list_instructions", reply="instructions")
    assert [(i["instruction_id"], i["recipients"][0]["state"]) for i in listed["instructions"]] == [
        (iid, "read")
    ]
    kinds = [kind for kind, data in await trace_kinds(cluster) if data.get("instruction") == iid]
    assert kinds == ["instruction_sent", "instruction_delivered", "instruction_read"]
