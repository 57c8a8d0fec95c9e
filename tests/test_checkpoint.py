"""Checkpoints, pure: signing and verifying the head, the signed bytes as documented, and the
tail of a trace compared with its latest checkpoint (ok, extended, appended after a stop,
truncated, rewritten), with Hypothesis over where the trace ends."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from sessions.checkpoint import (
    Checkpoint,
    CheckpointError,
    compare_tail,
    first_break,
    key_id,
    latest,
    load_public_pem,
    public_pem,
    sign,
    signature_ok,
)
from sessions.recorder import TraceEvent
from sessions.trace import GENESIS, Head, Link, entry_of, seal

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
T0 = 1_795_000_000.0


def links(n: int, kinds: list[str] | None = None) -> list[Link]:
    from sessions.facets import facets_of

    kinds = kinds or ["position"] * n
    events = [TraceEvent(kinds[i], T0 + i, {"i": i}) for i in range(n)]
    return seal(GENESIS, [entry_of(e, facets_of) for e in events])


def head_of(trace: list[Link], seq: int) -> Head:
    return GENESIS if seq == 0 else Head(seq, trace[seq - 1].hash)


def test_a_signed_checkpoint_verifies_and_any_change_or_other_key_does_not() -> None:
    trace = links(5)
    cp = sign(KEY, head_of(trace, 5), now=T0 + 10, node="n1", reason="periodic")
    assert signature_ok(cp, KEY.public_key())
    assert not signature_ok(cp, OTHER.public_key())
    for changed in (
        replace(cp, seq=4),
        replace(cp, hash=trace[3].hash),
        replace(cp, at_us=cp.at_us + 1),
        replace(cp, node="n2"),
        replace(cp, reason="stop"),
    ):
        assert not signature_ok(changed, KEY.public_key())


def test_the_signed_bytes_are_the_documented_canonical_json() -> None:
    cp = sign(KEY, Head(7, "ab" * 32), now=1.5, node="n1", reason="stop")
    assert cp.signed_bytes() == (
        b'{"at_us":1500000,"format":"commandcenter-checkpoint/1","hash":"'
        + b"ab" * 32
        + b'","node":"n1","reason":"stop","seq":7}'
    )
    assert cp.digest() == hashlib.sha256(cp.signed_bytes()).digest()
    # Anyone with the PEM public key can check it.
    public = load_public_pem(public_pem(KEY.public_key()))
    public.verify(bytes.fromhex(cp.signature), cp.signed_bytes())
    assert cp.key_id == key_id(public)


def test_a_checkpoint_survives_json_and_bad_json_is_a_checkpoint_error() -> None:
    cp = sign(KEY, Head(3, "cd" * 32), now=T0, node="n1", reason="export").with_token(b"tok")
    again = Checkpoint.from_json(json.loads(json.dumps(cp.to_json())))
    assert again == cp
    assert again.token_der() == b"tok"
    for bad in ({}, {**cp.to_json(), "seq": "3"}, {**cp.to_json(), "reason": "whim"}, [1]):
        with pytest.raises(CheckpointError):
            Checkpoint.from_json(bad)


def test_the_tail_at_its_checkpoint_is_ok() -> None:
    trace = links(6)
    cp = sign(KEY, head_of(trace, 6), now=T0, node="n1", reason="periodic")
    check = compare_tail(cp, head_of(trace, 6), trace[5].hash, None)
    assert (check.status, check.ok, check.uncovered) == ("ok", True, 0)


def test_records_cut_off_below_the_checkpoint_are_truncation_naming_the_first_missing() -> None:
    trace = links(10)
    cp = sign(KEY, head_of(trace, 10), now=T0, node="n1", reason="periodic")
    check = compare_tail(cp, head_of(trace, 7), None, None)
    assert (check.status, check.ok, check.seq) == ("truncated", False, 8)
    assert "8 to 10 were cut off" in check.detail


def test_a_rewritten_record_at_the_checkpoint_is_a_mismatch() -> None:
    trace = links(6)
    cp = sign(KEY, head_of(trace, 4), now=T0, node="n1", reason="periodic")
    check = compare_tail(cp, head_of(trace, 6), "00" * 32, trace[4].kind)
    assert (check.status, check.ok, check.seq) == ("mismatch", False, 4)


def test_records_after_a_periodic_checkpoint_are_uncovered_not_a_failure() -> None:
    trace = links(9)
    cp = sign(KEY, head_of(trace, 6), now=T0, node="n1", reason="periodic")
    check = compare_tail(cp, head_of(trace, 9), trace[5].hash, trace[6].kind)
    assert (check.status, check.ok, check.seq, check.uncovered) == ("extended", True, 7, 3)
    assert "7 to 9" in check.detail


def test_records_after_a_stop_checkpoint_are_appended_unless_the_next_start() -> None:
    trace = links(8, ["position"] * 6 + ["position", "position"])
    cp = sign(KEY, head_of(trace, 6), now=T0, node="n1", reason="stop")
    forged = compare_tail(cp, head_of(trace, 8), trace[5].hash, "position")
    assert (forged.status, forged.ok, forged.seq, forged.uncovered) == ("appended", False, 7, 2)
    restarted = compare_tail(cp, head_of(trace, 8), trace[5].hash, "server_started")
    assert (restarted.status, restarted.ok) == ("extended", True)
    # A cluster node's stop promises nothing about the other nodes.
    node_stop = sign(KEY, head_of(trace, 6), now=T0, node="n1", reason="node_stop")
    assert compare_tail(node_stop, head_of(trace, 8), trace[5].hash, "position").ok


def test_a_record_after_the_checkpoint_that_does_not_chain_from_it_is_forged() -> None:
    trace = links(9)
    cp = sign(KEY, head_of(trace, 6), now=T0, node="n1", reason="periodic")
    genuine = compare_tail(
        cp, head_of(trace, 9), trace[5].hash, "position", first_after_prev_hash=trace[5].hash
    )
    assert genuine.status == "extended"
    forged = compare_tail(
        cp, head_of(trace, 9), trace[5].hash, "position", first_after_prev_hash="11" * 32
    )
    assert (forged.status, forged.ok, forged.seq) == ("forged", False, 7)


@given(checkpoint_seq=st.integers(0, 30), end=st.integers(0, 30))
def test_the_tail_verdict_follows_where_the_trace_ends(checkpoint_seq: int, end: int) -> None:
    trace = links(30)
    cp = sign(KEY, head_of(trace, checkpoint_seq), now=T0, node="n", reason="periodic")
    at = trace[checkpoint_seq - 1].hash if 0 < checkpoint_seq <= end else None
    check = compare_tail(cp, head_of(trace, end), at, None)
    if end < checkpoint_seq:
        assert (check.status, check.seq) == ("truncated", end + 1)
    elif end == checkpoint_seq:
        assert check.status == "ok"
    else:
        assert (check.status, check.seq, check.uncovered) == (
            "extended",
            checkpoint_seq + 1,
            end - checkpoint_seq,
        )


def test_first_break_finds_a_tail_that_does_not_chain_on() -> None:
    trace = links(8)
    base = head_of(trace, 3)
    assert first_break(base, trace[3:]) is None
    assert first_break(base, trace[4:]) == 4  # a gap
    other = links(8, ["sign_in"] * 8)
    assert first_break(base, [*trace[3:5], *other[5:]]) == 6
    edited = [*trace[3:6], Link(7, 1, "x", "{}", trace[5].hash, trace[6].hash), *trace[7:]]
    assert first_break(base, edited) == 7


def test_latest_is_the_highest_seq_then_the_latest_time() -> None:
    a = sign(KEY, Head(5, "aa" * 32), now=T0, node="n", reason="periodic")
    b = sign(KEY, Head(5, "aa" * 32), now=T0 + 1, node="n", reason="stop")
    c = sign(KEY, Head(4, "bb" * 32), now=T0 + 2, node="n", reason="periodic")
    assert latest([a, b, c]) == b
    assert latest([]) is None


JSON = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=70)
    | st.lists(st.integers(), max_size=2)
)
GOOD = sign(KEY, Head(3, "cd" * 32), now=T0, node="n1", reason="periodic").to_json()


@given(st.dictionaries(st.sampled_from(sorted(GOOD)), JSON, max_size=4))
def test_any_json_gives_a_checkpoint_or_a_checkpoint_error(changes: dict[str, object]) -> None:
    """A checkpoint log or a bundle is input: reading one never fails any other way."""
    with contextlib.suppress(CheckpointError):
        Checkpoint.from_json({**GOOD, **changes})
