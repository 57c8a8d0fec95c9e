"""The console's call flow across two hub processes on the real Redis and one PostgreSQL
trace: a transfer offered by an operator on one node to an operator on the other, declined,
offered again and accepted; an operator's availability shown across nodes; the call sent back
to the queue and answered on the other node; a supervisor on the other node invited into a
call and told of a camera turned off."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.clusternodes import Cluster, cluster
from tests.polling import wait_until
from tests.test_cluster_hub import about, call, trace_kinds

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

__all__ = ["cluster"]

COURT = "P0101"


def status_of(user: str, status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: bool(m["entry"]["user"]["id"] == user and m["entry"]["status"] == status)


async def test_a_transfer_between_operators_on_two_nodes(cluster: Cluster) -> None:
    for n in ("n1", "n2"):
        cluster.start(n)
    await cluster.formed()
    a, b = cluster.nodes["n1"], cluster.nodes["n2"]
    op1 = await a.connect("op-1", "operator", COURT)
    op2 = await b.connect("op-2", "operator", COURT)
    officer = await a.connect("of-1", "officer", COURT)
    assert (op1.welcome["node_id"], op2.welcome["node_id"]) == ("n1", "n2")
    call_id = await call(officer, op1)

    # op-2, on the other node, sees op-1 busy and is offered the call.
    await op2.expect("operator_status", timeout=5.0, where=status_of("op-1", "busy"))
    await op1.request("transfer", call_id=call_id, to="op-2")
    offered = await op2.expect("transfer_offered", timeout=5.0, where=about(call_id))
    assert offered["from_operator"]["id"] == "op-1"
    await op2.request("decline_transfer", call_id=call_id)
    ended = await op1.expect("transfer_ended", timeout=5.0, call_id=call_id)
    assert (ended["outcome"], ended["by"]) == ("declined", "op-2")

    await op1.request("transfer", call_id=call_id, to="op-2")
    await op2.expect("transfer_offered", timeout=5.0, where=about(call_id))
    await op2.request("accept_transfer", call_id=call_id)
    for client in (officer, op1, op2):
        moved = await client.expect("call_transferred", timeout=5.0, where=about(call_id))
        assert moved["call"]["operator"]["id"] == "op-2"
    await op1.expect("operator_status", timeout=5.0, where=status_of("op-2", "busy"))

    # op-1, free again on n1, says it is away; op-2 on n2 sees it.
    await op1.request("set_availability", status="away")
    await op2.expect("operator_status", timeout=5.0, where=status_of("op-1", "away"))
    # op-2 sends the call back to the queue: op-1 is away, so it waits, and rings at op-1 on
    # the other node once they are back.
    await op2.request("send_back", call_id=call_id)
    await officer.expect("call_requeued", timeout=5.0, call_id=call_id)
    await officer.expect("call_queued", timeout=5.0, call_id=call_id)
    await op1.request("set_availability", status="available")
    await op1.expect("call_ringing", timeout=5.0, where=about(call_id))
    await op1.request("accept", call_id=call_id)
    await officer.expect("call_answered", timeout=5.0, where=about(call_id))
    await op1.request("hangup", call_id=call_id)
    await officer.expect("call_ended", timeout=5.0, call_id=call_id)

    async def recorded() -> bool:
        return "operator_away" in [k for k, _ in await trace_kinds(cluster)]

    await wait_until(recorded, within=5.0, what="operator_away recorded")
    kinds = [k for k, d in await trace_kinds(cluster) if d.get("call") == call_id]
    assert kinds[kinds.index("call_answered") :] == [
        "call_answered",
        "transfer_offered",
        "transfer_declined",
        "transfer_offered",
        "transfer_accepted",
        "call_transferred",
        "call_sent_back",
        "call_queued",
        "call_ringing",
        "call_answered",
        "call_ended",
    ]


async def test_a_supervisor_on_another_node_is_invited_and_told_of_cameras(
    cluster: Cluster,
) -> None:
    """invite_supervisor and set_camera across nodes: the supervisor on n2 is asked into a
    call answered on n1, joins, and hears of the operator's camera going off."""
    for n in ("n1", "n2"):
        cluster.start(n)
    await cluster.formed()
    a, b = cluster.nodes["n1"], cluster.nodes["n2"]
    op1 = await a.connect("op-1", "operator", COURT)
    officer = await a.connect("of-1", "officer", COURT)
    sup = await b.connect("sv-1", "supervisor", "P01")
    call_id = await call(officer, op1)
    await op1.request("invite_supervisor", call_id=call_id)
    invited = await sup.expect("supervisor_invited", timeout=5.0, where=about(call_id))
    assert invited["by"]["id"] == "op-1"
    await sup.request("join_call", call_id=call_id)
    await op1.expect("participant_joined", timeout=5.0, call_id=call_id)
    await op1.request("set_camera", call_id=call_id, on=False)
    for client in (officer, sup):
        changed = await client.expect("camera_changed", timeout=5.0, call_id=call_id)
        assert (changed["user"], changed["on"]) == ("op-1", False)

    async def recorded() -> bool:
        return "supervisor_invited" in [k for k, _ in await trace_kinds(cluster)]

    await wait_until(recorded, within=5.0, what="supervisor_invited recorded")
