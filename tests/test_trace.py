"""The hash chain, pure: canonical encoding, sealing, and verification naming the first
record that was edited, deleted, inserted or reordered."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from sessions.errors import UnencodableEvent
from sessions.facets import NO_FACETS, Facets, facets_of
from sessions.recorder import TraceEvent
from sessions.trace import (
    DIAGNOSIS_WINDOW,
    GENESIS,
    GENESIS_HASH,
    Head,
    Link,
    Problem,
    Verifier,
    at_micros,
    canonical,
    chain_hash,
    encode_data,
    entry_of,
    facets_mismatch,
    seal,
    verify,
)

Chain = list[Link]


def event(i: int) -> TraceEvent:
    if i % 3 == 0:
        return TraceEvent("sign_in", 1000.0 + i, {"user": f"o{i}", "role": "officer", "court": "P"})
    return TraceEvent("position", 1000.0 + i, {"user": f"o{i}", "lat": 30.5 + i / 7, "lon": 120.25})


def chain(n: int) -> Chain:
    return seal(GENESIS, [entry_of(event(i), facets_of) for i in range(1, n + 1)])


def renumber(links: Chain) -> Chain:
    """Give the links consecutive seqs from 1, as an attacker closing a gap would."""
    return [replace(x, seq=i) for i, x in enumerate(links, start=1)]


def forged_after(links: Chain, seq: int) -> Link:
    """A record that chains correctly after record `seq - 1`: what a careful forger adds."""
    head = GENESIS if seq == 1 else Head(seq - 1, links[seq - 2].hash)
    entry = entry_of(TraceEvent("position", 1.0, {"user": "forged"}), facets_of)
    return seal(head, [entry])[0]


# --- encoding ----------------------------------------------------------------------------


def test_canonical_form_is_sorted_compact_json_with_integer_microseconds() -> None:
    assert canonical(7, 1_500_000, "sign_in", '{"a":1}') == (
        b'{"at_us":1500000,"data":{"a":1},"kind":"sign_in","seq":7}'
    )


def test_data_is_encoded_with_sorted_keys_at_every_level_and_keeps_number_types() -> None:
    data = {"b": 1.0, "a": {"z": "é", "y": 1}, "c": [2, 0.1, None, True]}
    assert encode_data(data) == '{"a":{"y":1,"z":"é"},"b":1.0,"c":[2,0.1,null,true]}'


def test_floats_are_written_in_their_shortest_round_trip_form() -> None:
    for value in (0.1, 1e300, -0.0, 30.123456789012345, 5e-324):
        text = encode_data({"x": value})
        assert float(text[5:-1]) == value
        assert text == '{"x":' + repr(value).replace("e+", "e") + "}"


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"lat": math.nan}, "data.lat"),
        ({"pos": {"lat": math.inf}}, "data.pos.lat"),
        ({"xs": [1, -math.inf]}, "data.xs[1]"),
        ({"m": {1: "a"}}, "data.m"),
        ({"o": object()}, "data.o"),
    ],
)
def test_data_without_a_faithful_json_form_is_refused_naming_where(
    data: dict[str, object], where: str
) -> None:
    with pytest.raises(UnencodableEvent, match="^" + re.escape(where)):
        encode_data(data)


@pytest.mark.parametrize("at", [math.nan, math.inf, -math.inf, 1e12])
def test_a_time_that_is_not_finite_or_plausible_is_refused(at: float) -> None:
    with pytest.raises(UnencodableEvent, match="at:"):
        at_micros(at)


def test_times_are_rounded_to_the_nearest_microsecond() -> None:
    assert at_micros(1.5) == 1_500_000
    assert at_micros(1773565200.1234567) == 1773565200123457


def test_a_kind_that_is_not_a_short_name_is_refused() -> None:
    for kind in ("", "k" * 65, "sign in", "sign_in\x00", "é"):
        with pytest.raises(UnencodableEvent, match="kind"):
            entry_of(TraceEvent(kind, 1.0), facets_of)


# --- chaining ----------------------------------------------------------------------------


def test_record_one_chains_from_the_documented_genesis_hash() -> None:
    assert hashlib.sha256(b"commandcenter trace v1").hexdigest() == GENESIS_HASH
    first = chain(1)[0]
    assert first.seq == 1
    assert first.prev_hash == GENESIS_HASH
    expected = hashlib.sha256(
        bytes.fromhex(GENESIS_HASH) + canonical(1, first.at_us, first.kind, first.data)
    ).hexdigest()
    assert first.hash == expected == chain_hash(GENESIS_HASH, canonical(1, *_content(first)))


def _content(link: Link) -> tuple[int, str, str]:
    return link.at_us, link.kind, link.data


def test_the_worked_example_in_docs_trace_md_gives_its_documented_hash() -> None:
    (link,) = seal(
        GENESIS,
        [
            entry_of(
                TraceEvent("sign_in", 1.5, {"user": "o1", "role": "officer", "court": "P01"}),
                facets_of,
            )
        ],
    )
    assert link.hash == "54316ba2a7d1bcf259d9b61d9d1259ee2c95d5616a1b8cb084c733f902b9edd7"
    assert link.hash in (Path(__file__).parent.parent / "docs" / "trace.md").read_text("utf-8")


def test_each_record_chains_from_the_previous_hash_and_seqs_have_no_gaps() -> None:
    links = chain(5)
    assert [x.seq for x in links] == [1, 2, 3, 4, 5]
    for before, after in itertools.pairwise(links):
        assert after.prev_hash == before.hash


def test_sealing_continues_from_a_given_head() -> None:
    first = chain(3)
    more = seal(Head(3, first[-1].hash), [entry_of(event(9), facets_of)])
    assert more[0].seq == 4
    assert verify([*first, *more]).ok


def test_stat_kinds_carry_their_derived_columns() -> None:
    sign_in = chain(3)[2]
    assert sign_in.facets == Facets(court="P", subject="o3", tag="officer")
    # Positions are indexed by officer (for the track), other kinds not at all.
    assert chain(1)[0].facets == Facets(subject="o1")
    heartbeat = entry_of(TraceEvent("heartbeat", 1.0, {"user": "o1"}), facets_of)
    assert heartbeat.facets == NO_FACETS


def test_instruction_records_are_indexed_by_instruction_court_and_their_flag() -> None:
    """The statistics of instructions read these columns (docs/statistics.md)."""
    sent = {"instruction": "i-1", "by": "op1", "court": "P0101", "officer": None, "text": "x"}
    assert facets_of("instruction_sent", sent) == Facets(court="P0101", subject="i-1", flag=True)
    assert facets_of("instruction_sent", {**sent, "officer": "o1"}).flag is False
    read = {"instruction": "i-1", "officer": "o1", "court": "P0101"}
    assert facets_of("instruction_read", read) == Facets(court="P0101", subject="i-1")
    expired = {"instruction": "i-1", "court": "P0101", "unread": []}
    assert facets_of("instruction_expired", expired).flag is True
    assert facets_of("instruction_expired", {**expired, "unread": ["o2"]}).flag is False


def test_an_instruction_record_from_before_its_columns_still_verifies() -> None:
    data = '{"court":"P0101","instruction":"i-1","officer":"o1"}'
    old = Link(1, 0, "instruction_read", data, "0" * 64, "1" * 64, NO_FACETS)
    assert facets_mismatch(old) is None
    wrong = Link(1, 0, "instruction_read", data, "0" * 64, "1" * 64, Facets(subject="i-2"))
    assert facets_mismatch(wrong) is not None


# --- verification ------------------------------------------------------------------------


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    links = chain(10)
    result = verify(links)
    assert result.ok
    assert result.records == 10
    assert result.head == Head(10, links[-1].hash)


def test_an_empty_chain_verifies_with_the_genesis_head() -> None:
    result = verify([])
    assert result.ok
    assert (result.records, result.head) == (0, GENESIS)


def tamper_cases() -> dict[str, tuple[Callable[[Chain], Chain], int, Problem]]:
    """name -> (tampering of a 10-record chain, seq that must be named, problem)."""

    def edit_data(c: Chain) -> Chain:
        c[4] = replace(c[4], data=c[4].data.replace("o5", "o6"))
        return c

    def edit_time(c: Chain) -> Chain:
        c[4] = replace(c[4], at_us=c[4].at_us + 1)
        return c

    def edit_kind(c: Chain) -> Chain:
        c[4] = replace(c[4], kind="sign_out")
        return c

    def edit_hash(c: Chain) -> Chain:
        c[4] = replace(c[4], hash="0" * 64)
        return c

    def edit_and_rehash(c: Chain) -> Chain:
        changed = replace(c[4], data=c[4].data.replace("o5", "o6"))
        digest = chain_hash(changed.prev_hash, canonical(5, *_content(changed)))
        c[4] = replace(changed, hash=digest)
        return c

    def edit_derived_column(c: Chain) -> Chain:
        c[5] = replace(c[5], facets=replace(c[5].facets, court="P02"))
        return c

    def delete(c: Chain) -> Chain:
        del c[4]
        return c

    def delete_first(c: Chain) -> Chain:
        return c[1:]

    def delete_three_and_renumber(c: Chain) -> Chain:
        return renumber(c[:4] + c[7:])

    def delete_and_renumber(c: Chain) -> Chain:
        return renumber(c[:4] + c[5:])

    def swap_neighbours(c: Chain) -> Chain:
        c[4], c[5] = c[5], c[4]
        return renumber(c)

    def swap_far(c: Chain) -> Chain:
        c[4], c[7] = c[7], c[4]
        return renumber(c)

    def move_later(c: Chain) -> Chain:
        moved = c.pop(2)
        c.insert(6, moved)
        return renumber(c)

    def insert_forged(c: Chain) -> Chain:
        return renumber([*c[:4], forged_after(c, 5), *c[4:]])

    def insert_garbage(c: Chain) -> Chain:
        junk = replace(c[0], hash="1" * 64, data='{"user":"x"}')
        return renumber([*c[:4], junk, *c[4:]])

    def insert_two_forged(c: Chain) -> Chain:
        first = forged_after(c, 5)
        second = seal(Head(5, first.hash), [entry_of(event(99), facets_of)])[0]
        return renumber([*c[:4], first, second, *c[4:]])

    def seq_again(c: Chain) -> Chain:
        c.insert(5, c[3])
        return c

    def prev_hash_not_hex(c: Chain) -> Chain:
        c[4] = replace(c[4], prev_hash="zz")
        return c

    return {
        "edited data": (edit_data, 5, "edited"),
        "edited time": (edit_time, 5, "edited"),
        "edited kind": (edit_kind, 5, "edited"),
        "edited hash column": (edit_hash, 5, "edited"),
        "edited and rehashed": (edit_and_rehash, 5, "edited"),
        "edited derived column": (edit_derived_column, 6, "edited"),
        "prev_hash not hex": (prev_hash_not_hex, 5, "edited"),
        "deleted": (delete, 5, "deleted"),
        "deleted the first": (delete_first, 1, "deleted"),
        "deleted and renumbered": (delete_and_renumber, 5, "deleted"),
        "deleted three and renumbered": (delete_three_and_renumber, 5, "deleted"),
        "swapped neighbours": (swap_neighbours, 5, "reordered"),
        "swapped far apart": (swap_far, 5, "reordered"),
        "moved later": (move_later, 3, "reordered"),
        "a seq stored again": (seq_again, 6, "reordered"),
        "inserted a forged record": (insert_forged, 5, "inserted"),
        "inserted two forged records": (insert_two_forged, 5, "inserted"),
        "inserted garbage": (insert_garbage, 5, "inserted"),
    }


@pytest.mark.parametrize("case", list(tamper_cases()))
def test_tampering_is_detected_and_the_first_bad_record_named(case: str) -> None:
    tamper, seq, problem = tamper_cases()[case]
    links = tamper(chain(10))
    result = verify(links)
    assert not result.ok
    assert result.tampering is not None
    assert (result.tampering.seq, result.tampering.problem) == (seq, problem), result.tampering
    # Everything before the named record was intact, nothing from it on is vouched for.
    assert result.records == seq - 1
    assert result.head.seq == seq - 1
    assert f"record {seq} {problem}" in result.tampering.message()


def test_records_before_the_first_bad_one_are_counted_as_intact() -> None:
    links = chain(10)
    links[6] = replace(links[6], at_us=0)
    result = verify(links)
    assert result.records == 6
    assert result.head == Head(6, links[5].hash)


def test_a_cut_off_tail_is_found_only_against_an_anchor() -> None:
    links = chain(10)
    head = verify(links).head
    assert verify(links[:8]).ok
    result = verify(links[:8], anchors={head.seq: head.hash})
    assert result.tampering is not None
    assert (result.tampering.seq, result.tampering.problem) == (10, "deleted")


def test_a_log_rewritten_with_every_hash_recomputed_is_found_against_an_anchor() -> None:
    links = chain(10)
    anchor = {10: links[-1].hash}
    entries = [entry_of(event(i), facets_of) for i in range(1, 11)]
    entries[3] = entry_of(TraceEvent("position", 1.0, {"user": "rewritten"}), facets_of)
    rewritten = seal(GENESIS, entries)
    assert verify(rewritten).ok
    result = verify(rewritten, anchors=anchor)
    assert result.tampering is not None
    assert (result.tampering.seq, result.tampering.problem) == (10, "edited")


def test_a_matching_anchor_passes() -> None:
    links = chain(10)
    assert verify(links, anchors={4: links[3].hash, 10: links[9].hash}).ok


def test_the_streaming_verifier_stops_a_bounded_window_after_the_bad_record() -> None:
    links = chain(200)
    links[2] = replace(links[2], hash="f" * 64)
    verifier = Verifier()
    fed = 0
    for link in links:
        fed += 1
        if not verifier.add(link):
            break
    assert verifier.done
    # A window of links past the bad one is read, to tell an edit from an insertion and a
    # deletion from a move.
    assert fed == 3 + DIAGNOSIS_WINDOW
    tampering = verifier.result().tampering
    assert tampering is not None
    assert (tampering.seq, tampering.problem) == (3, "edited")


OPS = (
    "edit",
    "rehash_edit",
    "delete",
    "delete_renumber",
    "swap",
    "insert_forged",
)


@given(n=st.integers(min_value=3, max_value=30), data=st.data())
def test_any_single_tampering_of_any_chain_is_caught_at_its_record(
    n: int, data: st.DataObject
) -> None:
    """Property: one edit, deletion (with or without renumbering), swap of neighbours or
    forged insertion anywhere in a chain is reported at the record where it happened."""
    links = chain(n)
    op = data.draw(st.sampled_from(OPS))
    # Positions where the change is visible to the chain alone (not the very end).
    i = data.draw(st.integers(min_value=0, max_value=n - 2))
    seq = i + 1
    expected: Problem
    if op == "edit":
        links[i] = replace(links[i], at_us=links[i].at_us + 1)
        expected = "edited"
    elif op == "rehash_edit":
        x = replace(links[i], at_us=links[i].at_us + 1)
        digest = chain_hash(x.prev_hash, canonical(seq, *_content(x)))
        links[i] = replace(x, hash=digest)
        expected = "edited"
    elif op == "delete":
        del links[i]
        expected = "deleted"
    elif op == "delete_renumber":
        links = renumber(links[:i] + links[i + 1 :])
        expected = "deleted"
    elif op == "swap":
        links[i], links[i + 1] = links[i + 1], links[i]
        links = renumber(links)
        expected = "reordered"
    else:
        links = renumber([*links[:i], forged_after(links, seq), *links[i:]])
        expected = "inserted"
    result = verify(links)
    assert result.tampering is not None
    assert (result.tampering.seq, result.tampering.problem) == (seq, expected)
    assert result.records == seq - 1
