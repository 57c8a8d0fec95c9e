"""Emergencies outlive their authority: three hub nodes on the real Redis (own key prefix)
and one PostgreSQL trace; the authority is SIGKILLed while two officers' SOS are raised, one
taken on and one not, and the next authority carries both on from the journal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from tests.clusterhelpers import private_redis
from tests.clusternodes import Cluster, cluster
from tests.polling import wait_until
from tests.test_cluster_hub import three, trace_kinds
from tests.wsclient import Client

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

__all__ = ["cluster", "private_redis"]

COURT = "P0101"
REPEAT_S = 1.0
# msgpack `JournalCall` whose `ended` holds 100,000 nested one-element arrays.
DEEP_CALL = (
    b"\x82"
    + msgspec.msgpack.encode("notify")
    + b"\x90"
    + msgspec.msgpack.encode("ended")
    + b"\x81\xa1a"
    + b"\x91" * 100_000
    + b"\xc0"
)


async def test_raised_emergencies_are_carried_on_by_the_next_authority(cluster: Cluster) -> None:
    """After the failover the roster still flags both officers, with the note and who took
    the first on; the one nobody took keeps alarming, its waited time counted from when it
    was raised; each carry-over is recorded, and the new authority clears it."""
    env = {
        "COMMANDCENTER_EMERGENCY_REPEAT_AFTER_S": str(REPEAT_S),
        "COMMANDCENTER_EMERGENCY_ESCALATE_AFTER_S": "600",
    }
    _, (a, b, boss) = await three(cluster, **env)
    operator = await b.connect("op-1", "operator", COURT)
    taken = await a.connect("of-1", "officer", COURT)
    alone = await a.connect("of-2", "officer", COURT)
    raised_at = time.monotonic()
    await taken.request("emergency", reply="call_placed", note="被围堵")
    await alone.request("emergency", reply="call_placed", note="有人受伤")
    await operator.request("acknowledge_emergency", officer="of-1")
    await taken.expect("emergency_acknowledged", timeout=5.0)
    first = await operator.expect(
        "emergency_alarm", timeout=5.0, where=lambda m: m["officer"]["id"] == "of-2"
    )

    # Two entries no node of ours wrote: a call whose record data nests deep enough to
    # overflow the decoder, and garbage for an emergency. Each is skipped, never fatal.
    redis = Redis.from_url(cluster.redis_url)
    try:
        await redis.hset(cluster.keys.journal_calls, "c-deep", DEEP_CALL)
        await redis.hset(cluster.keys.journal_emergencies, "of-bad", b"\xc1 not msgpack")
    finally:
        await redis.aclose()

    boss.kill()
    await cluster.formed(a.node_id, b.node_id)
    await operator.expect("welcome", timeout=15.0)

    async def carried() -> bool:
        records = await trace_kinds(cluster)
        return {d["officer"] for k, d in records if k == "emergency_carried_over"} == {
            "of-1",
            "of-2",
        }

    await wait_until(carried, within=15.0, what="both emergencies carried over")
    roster = await operator.request("get_roster", reply="roster")
    entries = {e["officer"]["id"]: e for e in roster["officers"]}
    assert entries["of-1"]["emergency"] is True
    assert entries["of-1"]["emergency_taken_by"]["id"] == "op-1"
    assert entries["of-1"]["emergency_note"] == "被围堵"
    assert entries["of-2"]["emergency"] is True
    assert "emergency_taken_by" not in entries["of-2"]

    # The alarm nobody took goes on from where it was: later repeats, the time waited since
    # it was raised (not since the failover); the one taken on does not repeat.
    again = await operator.expect(
        "emergency_alarm",
        timeout=10.0,
        where=lambda m: m["officer"]["id"] == "of-2" and m["repeat"] > first["repeat"],
    )
    assert again["waiting_s"] >= time.monotonic() - raised_at - 2.0
    assert not [
        m for m in operator.log if m["type"] == "emergency_alarm" and m["officer"]["id"] == "of-1"
    ]
    records = await trace_kinds(cluster)
    over = {d["officer"]: d for k, d in records if k == "emergency_carried_over"}
    assert over["of-1"]["acknowledged_by"] == "op-1"
    assert over["of-2"]["acknowledged_by"] is None

    # The unreadable entries were logged and deleted.
    def skipped() -> bool:
        logs = "\n".join(n.server.log_path.read_text(errors="replace") for n in (a, b))
        return (
            all(
                f'"key": "{key}"' in logs and "unreadable journal entry skipped" in logs
                for key in ("c-deep", "of-bad")
            )
            and "RecursionError" in logs
        )

    await wait_until(skipped, within=5.0, what="unreadable journal entries logged")
    redis = Redis.from_url(cluster.redis_url)
    try:
        assert not await redis.hexists(cluster.keys.journal_calls, "c-deep")
        assert not await redis.hexists(cluster.keys.journal_emergencies, "of-bad")
    finally:
        await redis.aclose()

    # The new authority takes the rest: the second is acknowledged, the first cleared.
    await operator.request("acknowledge_emergency", officer="of-2")
    await alone.expect("emergency_acknowledged", timeout=5.0)
    await operator.request("clear_emergency", officer="of-1")
    cleared = await taken.expect("emergency_cleared", timeout=5.0)
    assert cleared["by"]["id"] == "op-1"


async def test_the_next_authority_shows_the_officer_in_emergency_from_its_first_push(
    cluster: Cluster,
) -> None:
    """After the authority is SIGKILLed, every roster update about the officer that the
    consoles on the surviving nodes receive flags the emergency, from the first (not only
    once the carry-over a node timeout later), and so does every `get_roster` answer; the
    alarm nobody took on goes on repeating."""
    env = {
        "COMMANDCENTER_EMERGENCY_REPEAT_AFTER_S": str(REPEAT_S),
        "COMMANDCENTER_EMERGENCY_ESCALATE_AFTER_S": "600",
    }
    _, (a, b, boss) = await three(cluster, **env)
    # op-a connects to the officer's node before the officer: a gateway reports its
    # connections in that order, so whichever node takes over, op-a's session is adopted
    # before the officer's, and op-a is pushed the officer's roster entry.
    op_a = await a.connect("op-a", "operator", COURT)
    op_b = await b.connect("op-b", "operator", COURT)
    officer = await a.connect("of-1", "officer", COURT)
    await officer.request("emergency", reply="call_placed", note="被围堵")
    first: dict[str, dict[str, Any]] = {}
    for console in (op_a, op_b):
        first[console.user] = await console.expect(
            "emergency_alarm", timeout=5.0, where=lambda m: m["officer"]["id"] == "of-1"
        )
    since = {console.user: len(console.log) for console in (op_a, op_b)}

    def after(console: Client) -> Callable[[dict[str, Any]], bool]:
        """Matches a message received after the kill (not one buffered before it)."""
        return lambda m: any(m is x for x in console.log[since[console.user] :])

    boss.kill()
    for console in (op_a, op_b):
        await console.expect("welcome", timeout=15.0, where=after(console))
    await op_a.expect(
        "roster_update",
        timeout=10.0,
        where=lambda m: after(op_a)(m) and m["entry"]["officer"]["id"] == "of-1",
    )
    # Asked at once, well within the node timeout (when the carry-over used to come).
    for console in (op_a, op_b):
        roster = await console.request("get_roster", reply="roster")
        entries = {e["officer"]["id"]: e for e in roster["officers"]}
        assert entries["of-1"]["emergency"] is True, entries
        assert entries["of-1"]["emergency_note"] == "被围堵"

    async def carried() -> bool:
        records = await trace_kinds(cluster)
        return [d["officer"] for k, d in records if k == "emergency_carried_over"] == ["of-1"]

    await wait_until(carried, within=15.0, what="the emergency carried over once")
    for console in (op_a, op_b):
        # The alarm goes on from where it was: its next repeat, to both consoles.
        await console.expect(
            "emergency_alarm",
            timeout=10.0,
            where=repeated_after(first[console.user]["repeat"]),
        )
        updates = [
            m["entry"]
            for m in console.log[since[console.user] :]
            if m["type"] == "roster_update" and m["entry"]["officer"]["id"] == "of-1"
        ]
        assert all(e["emergency"] is True for e in updates), (console.user, updates)
        assert all(e["emergency_note"] == "被围堵" for e in updates), (console.user, updates)
        if console is op_a:
            assert updates


def repeated_after(repeat: int) -> Callable[[dict[str, Any]], bool]:
    """Matches a later repeat of of-1's alarm than `repeat`."""
    return lambda m: m["officer"]["id"] == "of-1" and m["repeat"] > repeat
