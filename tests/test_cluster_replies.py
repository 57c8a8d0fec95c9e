"""Exactly one reply per client message across nodes: the gateway answers `unavailable` for a
message the authority never answered, and drops the reply if it comes after all. The pure
bookkeeping, and a real cluster whose authority is frozen (SIGSTOP) mid-conversation."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalling.cluster.replies import AwaitedReplies
from tests.clusternodes import Cluster, cluster

__all__ = ["cluster"]


def test_a_reply_in_time_is_delivered_and_nothing_is_due() -> None:
    awaited = AwaitedReplies(timeout_s=2.0)
    awaited.expect("o1", "m1", now=10.0)
    assert awaited.answered("o1", "m1")
    assert awaited.due(now=100.0) == []


def test_an_overdue_message_is_due_once_and_its_late_reply_dropped() -> None:
    awaited = AwaitedReplies(timeout_s=2.0)
    awaited.expect("o1", "m1", now=10.0)
    awaited.expect("o2", "m2", now=11.0)
    assert awaited.due(now=11.9) == []
    assert awaited.due(now=12.0) == [("o1", "m1")]
    assert awaited.due(now=12.5) == []
    # The gateway answered it itself (straight to the connection): the authority's late
    # reply is dropped, however often it comes.
    assert not awaited.answered("o1", "m1")
    assert not awaited.answered("o1", "m1")
    assert awaited.due(now=13.0) == [("o2", "m2")]


def test_a_user_gone_from_this_node_is_forgotten() -> None:
    awaited = AwaitedReplies(timeout_s=1.0)
    awaited.expect("o1", "m1", now=0.0)
    awaited.forget("o1")
    assert awaited.due(now=5.0) == []
    assert len(awaited) == 0


@given(
    st.lists(
        st.tuples(st.sampled_from(["send", "reply", "tick"]), st.integers(0, 5), st.floats(0, 3)),
        max_size=60,
    )
)
def test_every_message_gets_exactly_one_answer(steps: list[tuple[str, int, float]]) -> None:
    """Whatever the order of sends, replies and ticks: each sent message is answered once,
    by its reply or by the timeout, never both."""
    awaited = AwaitedReplies(timeout_s=1.0)
    now = 0.0
    answers: dict[str, int] = {}
    sent: set[str] = set()
    replied: set[str] = set()
    for n, (what, i, step) in enumerate(steps):
        now += step
        if what == "send":
            ref = f"m{n}"
            awaited.expect("u", ref, now)
            sent.add(ref)
        elif what == "reply" and sent - replied:
            # The authority answers each message once, in any order, maybe late.
            ref = sorted(sent - replied)[i % len(sent - replied)]
            replied.add(ref)
            if awaited.answered("u", ref):
                answers[ref] = answers.get(ref, 0) + 1
        for _user, ref in awaited.due(now):
            # The gateway's own `unavailable`, straight to the connection.
            answers[ref] = answers.get(ref, 0) + 1
    for _user, ref in awaited.due(now + 10):
        answers[ref] = answers.get(ref, 0) + 1
    # Replies the authority sends after all: none gets through.
    for ref in sent - replied:
        if awaited.answered("u", ref):
            answers[ref] = answers.get(ref, 0) + 1
    assert all(count == 1 for count in answers.values()), answers
    assert set(answers) == sent


@pytest.mark.cluster
@pytest.mark.postgres
async def test_a_frozen_authority_leaves_no_message_unanswered(cluster: Cluster) -> None:
    slow_failover = {
        "COMMANDCENTER_REDIS_REPLY_TIMEOUT_S": "1.0",
        # Frozen for less than its lease: nobody takes over, the replies are just late.
        "COMMANDCENTER_REDIS_LEASE_TTL_S": "10",
        "COMMANDCENTER_REDIS_NODE_TIMEOUT_S": "10",
    }
    for n in ("n1", "n2"):
        cluster.start(n, **slow_failover)
    authority_id = await cluster.formed()
    authority = cluster.nodes[authority_id]
    gateway = next(node for node in cluster.nodes.values() if node is not authority)
    operator = await gateway.connect("op-1", "operator", "P0101")
    authority.proc.send_signal(signal.SIGSTOP)
    try:
        ref = await operator.send("get_roster")
        try:
            error = await operator.error_for(ref, timeout=5.0)
        except AssertionError:
            raise AssertionError(cluster.logs()) from None
        assert (error["code"], error["ref"]) == ("unavailable", ref)
    finally:
        authority.proc.send_signal(signal.SIGCONT)
    # The authority wakes and answers: that reply is dropped, the client had its one.
    await operator.assert_no("roster", within=2.0)
    roster = await operator.request("get_roster", reply="roster")
    assert roster["officers"] == []
    assert "replies timed out" in gateway.log_tail()
    assert "late reply dropped" in gateway.log_tail()


@pytest.mark.cluster
@pytest.mark.postgres
async def test_a_reply_to_a_frame_sent_before_the_welcome_comes_after_it(cluster: Cluster) -> None:
    """A client may send before its welcome has come back from the authority (a round trip
    through Redis on a gateway). The gateway's own answer to such a frame (here the hub's
    `invalid_message`) was routed to the user, who is in no route until welcomed, and lost."""
    for n in ("n1", "n2"):
        cluster.start(n)
    authority_id = await cluster.formed()
    gateway = next(node for node in cluster.nodes.values() if node.node_id != authority_id)
    for attempt in range(5):
        client = await gateway.open(f"op-{attempt}", "operator", "P0101")
        await client.send_raw('{"type": "position", "id": "early-1", "lat": 999}')
        first = await client.expect("*", timeout=5.0)
        assert first["type"] == "welcome", first
        error = await client.error_for("early-1", timeout=5.0)
        assert error["code"] == "invalid_message"
        await client.close()
