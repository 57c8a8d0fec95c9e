"""Case numbers scoped to courts (issue 15): the pure reader of Chinese case numbers, which
court a number names, who may bind evidence to it, and the same on the real app, where a
court's coded case can no longer be claimed by another court first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient

from commandcenter.keys import EVIDENCE
from identity import Court, Courts, Identity, Role
from identity.case_numbers import (
    MAX_CASE_NUMBER_CHARS,
    PROVINCES,
    BadCaseNumber,
    CaseNumber,
    court_code_in,
    parse_case_number,
    parse_court_code,
)
from media.evidence_sink import StoreEvidenceSink
from sessions import evidence as ev
from tests.evidencehelpers import (
    CASE,
    PHOTO,
    Api,
    body_of,
    correct,
    sha,
    start_api,
    uploaded,
)

# The problems `BadCaseNumber` may name: the documented set, no other.
PROBLEMS = {
    "empty",
    "too_long",
    "control_characters",
    "no_year",
    "bad_year",
    "no_court_code",
    "no_case_type",
    "no_sequence",
    "trailing_characters",
}
COURTS = Courts(
    [
        Court("P", "High", case_code="粤"),
        Court("P01", "Intermediate", "P", case_code="粤01"),
        Court("P0101", "Basic A", "P01", case_code="粤0101"),
        Court("P0102", "Basic B", "P01", case_code="粤0102"),
        Court("P02", "Intermediate 2", "P", case_code="粤02"),
        # A court no number names.
        Court("P0201", "Basic C", "P02"),
    ]
)
# Court P0101's coded case, and the same sequence of court P0102.
A_CASE = "(2025)粤0101执12号"
B_CASE = "(2025)粤0102执12号"


def who(role: str, court: str, user: str = "u1") -> Identity:
    return Identity(user_id=user, name=user, role=Role(role), court=court, expires_at=2e9)


# --- the pure reader -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("(2025)粤0101执12号", CaseNumber(2025, "粤0101", "执", 12)),
        # Full-width parentheses, as most court documents print them.
        ("\uff082025\uff09粤0101执12号", CaseNumber(2025, "粤0101", "执", 12)),
        ("\u30142024\u3015京01执恢345号", CaseNumber(2024, "京01", "执恢", 345)),
        ("(2023)沪执保7号之一", CaseNumber(2023, "沪", "执保", 7, "之一")),
        ("(2020)最高法执监1号", CaseNumber(2020, "最高法", "执监", 1)),
        ("  (2019)兵0101执异99号 ", CaseNumber(2019, "兵0101", "执异", 99)),
        # Full-width digits become ASCII under NFKC.
        ("(\uff12\uff10\uff12\uff15)粤0101执\uff11\uff12号", CaseNumber(2025, "粤0101", "执", 12)),
    ],
)
def test_a_chinese_case_number_is_read_into_its_parts(text: str, parsed: CaseNumber) -> None:
    assert parse_case_number(text) == parsed
    assert court_code_in(text) == parsed.court_code
    assert parse_case_number(parsed.text()) == parsed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("(2025)粤0101执" + "1" * 60 + "号", "too_long"),
        ("(2025)粤0101执12号\x1b[31m", "control_characters"),
        ("2025粤0101执12号", "no_year"),
        ("(25)粤0101执12号", "bad_year"),
        ("(2025粤0101执12号", "bad_year"),
        ("(1900)粤0101执12号", "bad_year"),
        ("(2025)P0101执12号", "no_court_code"),
        ("(2025)粤010执12号", "no_court_code"),
        ("(2025)粤01010101执12号", "no_court_code"),
        ("(2025)粤0101 12号", "no_case_type"),
        ("(2025)粤0101执号", "no_sequence"),
        ("(2025)粤0101执012号", "no_sequence"),
        ("(2025)粤0101执12", "no_sequence"),
        ("(2025)粤0101执12号附件", "trailing_characters"),
        # Arabic-Indic digits are digits to Python, not a year to a court.
        ("(\u0662\u0660\u0662\u0665)粤0101执12号", "bad_year"),
    ],
)
def test_what_is_not_a_case_number_is_named(text: str, problem: str) -> None:
    with pytest.raises(BadCaseNumber) as info:
        parse_case_number(text)
    assert info.value.problem == problem
    assert court_code_in(text) is None


def _read(text: str) -> CaseNumber | BadCaseNumber:
    try:
        return parse_case_number(text)
    except BadCaseNumber as exc:
        return exc


@given(st.text(max_size=80))
def test_any_string_is_a_case_number_or_a_documented_problem(text: str) -> None:
    parsed = _read(text)
    if isinstance(parsed, BadCaseNumber):
        assert parsed.problem in PROBLEMS
        # The message never echoes the input.
        assert str(parsed) == parsed.problem
    else:
        assert parse_case_number(parsed.text()) == parsed
        assert len(parsed.text()) <= MAX_CASE_NUMBER_CHARS


@given(
    year=st.integers(1949, 2100),
    province=st.sampled_from(sorted(PROVINCES)),
    digits=st.sampled_from(["", "01", "0101", "010203"]),
    case_type=st.text(
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=4
    ),
    sequence=st.integers(1, 999_999_999),
    brackets=st.sampled_from(["()", "\uff08\uff09", "\u3014\u3015", "[]"]),
)
def test_every_well_formed_number_reads_back_its_parts(
    year: int, province: str, digits: str, case_type: str, sequence: int, brackets: str
) -> None:
    if case_type.endswith("号"):
        return  # 号 ends the sequence, not the type
    text = f"{brackets[0]}{year}{brackets[1]}{province}{digits}{case_type}{sequence}号"
    assert parse_case_number(text) == CaseNumber(year, province + digits, case_type, sequence)


def test_a_court_code_is_a_province_and_pairs_of_digits() -> None:
    assert parse_court_code("粤0101") == "粤0101"
    assert parse_court_code("最高法") == "最高法"
    for bad in ("", "P0101", "粤1", "粤01010101", "0101", "粤0101执"):
        with pytest.raises(BadCaseNumber):
            parse_court_code(bad)


# --- courts and who may bind ---------------------------------------------------------------


def test_a_case_number_names_the_court_whose_case_code_it_carries() -> None:
    assert COURTS.named_in(A_CASE) == "P0101"
    assert COURTS.named_in("\uff082025\uff09粤0101执12号") == "P0101"
    assert COURTS.named_in("(2025)粤01执1号") == "P01"
    # A code no court has, a number that is not Chinese, and no number at all.
    assert COURTS.named_in("(2025)粤0201执1号") is None
    assert COURTS.named_in("(2025)苏0101执1号") is None
    assert COURTS.named_in("(2025)P0101执12号") is None
    assert COURTS.named_in("C-9") is None


def test_courts_refuse_a_bad_or_shared_case_code() -> None:
    with pytest.raises(ValueError, match="case_code is not a court code"):
        Courts([Court("P", "p", case_code="P")])
    with pytest.raises(ValueError, match="another court's"):
        Courts([Court("P", "p", case_code="粤"), Court("Q", "q", "P", case_code="粤")])


@pytest.mark.parametrize(
    ("role", "court", "allowed"),
    [
        ("officer", "P0101", True),
        ("operator", "P0101", True),
        ("officer", "P0102", False),
        ("operator", "P0102", False),
        # An officer of the court above is not of the court.
        ("officer", "P01", False),
        ("supervisor", "P01", True),
        ("admin", "P", True),
        ("supervisor", "P0101", True),
        ("supervisor", "P0102", False),
        ("supervisor", "P02", False),
        ("auditor", "P", False),
        ("witness", "P", False),
    ],
)
def test_only_the_court_and_those_over_it_bind_to_its_coded_case(
    role: str, court: str, allowed: bool
) -> None:
    identity = who(role, court)
    if allowed:
        assert ev.case_owner(identity, A_CASE, court, COURTS) == ev.CaseOwner("P0101", True)
    else:
        with pytest.raises(ev.NotFound) as info:
            ev.case_owner(identity, A_CASE, court, COURTS)
        assert (info.value.reason, info.value.field) == ("no such case", "case")


def test_a_number_naming_no_court_is_the_evidence_courts_own() -> None:
    for number in ("(2025)P0101执12号", "2025-17", "(2025)粤0201执1号"):
        a = ev.case_owner(who("officer", "P0101"), number, "P0101", COURTS)
        b = ev.case_owner(who("officer", "P0102"), number, "P0102", COURTS)
        assert (a, b) == (ev.CaseOwner("P0101", False), ev.CaseOwner("P0102", False))
        # Two courts' cases of one number are two cases: the same bytes are two items.
        assert ev.evidence_id_for(number, "ab" * 32, a.id_scope()) != ev.evidence_id_for(
            number, "ab" * 32, b.id_scope()
        )
    # A coded number is its court's everywhere: no court beside it in the item's id.
    assert ev.CaseOwner("P0101", True).id_scope() is None


# --- on the real app -----------------------------------------------------------------------


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, tmp_path: Path) -> Api:
    return await start_api(aiohttp_client, tmp_path)


@pytest.mark.parametrize("expect100", [False, True])
async def test_another_court_cannot_claim_a_coded_case_and_its_court_still_binds_it(
    api: Api, expect100: bool
) -> None:
    """P0102's operator sending bytes for P0101's case is answered 404, as for a case that
    does not exist, and nothing is stored; P0101's officer then binds the same bytes to it
    (201, not the 409 of a case already taken)."""
    claim = await api.upload("x1", role="operator", court="P0102", expect100=expect100)
    assert claim.status == 404
    assert await body_of(claim) == {"error": "not_found", "reason": "no such case", "field": "case"}
    assert await api.records(ev.STORED) == []
    assert await api.records(ev.REJECTED) == []

    item = await uploaded(api, "o1", court="P0101")
    assert (item["case_number"], item["case_court"], item["court"]) == (CASE, "P0101", "P0101")
    assert item["evidence_id"] == ev.evidence_id_for(CASE, sha(PHOTO))
    (stored,) = await api.records(ev.STORED)
    assert stored.data["case_court"] == "P0101"


async def test_a_refused_claim_reads_like_a_missing_case_whether_or_not_it_holds_evidence(
    api: Api,
) -> None:
    """The 404 is the same before and after P0101 has evidence in the case: nothing about
    what the other court holds leaks."""
    before = await api.upload("x1", court="P0102")
    await uploaded(api, "o1", court="P0101")
    after = await api.upload("x1", court="P0102")
    assert (before.status, after.status) == (404, 404)
    assert await body_of(before) == await body_of(after)


async def test_the_supervisor_over_a_court_moves_evidence_into_its_case_and_others_cannot(
    api: Api,
) -> None:
    item = await uploaded(api, "o3", court="P0102", case="2025-17")
    assert item["case_court"] == "P0102"
    move = {"changes": {"case_number": CASE}, "reason": "filed under the wrong case"}

    # P0102's own officer may not put it in P0101's case, nor P02's supervisor (not over it).
    refused = await correct(api, item["evidence_id"], "o3", "officer", "P0102", move)
    assert refused.status == 404
    assert (await body_of(refused))["field"] == "changes.case_number"
    assert await api.records(ev.CORRECTED) == []

    resp = await correct(api, item["evidence_id"], "s1", "supervisor", "P01", move)
    body = await body_of(resp)
    assert resp.status == 201, body
    assert (body["case_number"], body["case_court"], body["court"]) == (CASE, "P0101", "P0102")
    (corrected,) = await api.records(ev.CORRECTED)
    assert corrected.data["case_court"] == "P0101"
    assert corrected.data["changes"] == {"case_number": CASE, "case_court": "P0101"}
    listed = await body_of(await api.get(f"/api/evidence?case={CASE}", "s1", "supervisor", "P01"))
    assert [i["evidence_id"] for i in listed["items"]] == [item["evidence_id"]]


async def test_two_courts_using_one_uncoded_number_do_not_collide(api: Api) -> None:
    first = await uploaded(api, "o1", court="P0101", case="2025-17")
    second = await uploaded(api, "o2", court="P0201", case="2025-17")
    assert first["evidence_id"] != second["evidence_id"]
    assert (first["case_court"], second["case_court"]) == ("P0101", "P0201")
    # Within one court the number is one case: the same bytes by another officer are 409.
    again = await api.upload("o9", court="P0101", case="2025-17")
    assert again.status == 409


async def test_call_evidence_naming_another_courts_case_is_filed_under_its_call(
    api: Api,
) -> None:
    """A call's case number is the caller's word: a recording of a P0102 call that names
    P0101's case is kept, under the call, in P0102, never in P0101's case."""
    sink = StoreEvidenceSink(api.app[EVIDENCE])
    evidence_id = await sink.register(
        call_id="c-0123456789abcdef",
        case_number=CASE,
        court="P0102",
        officer="o3",
        path_or_bytes=PHOTO,
        media_type="image/jpeg",
        file_name="snap.jpg",
        captured_at_ms=1_760_000_000_000.0,
    )
    (stored,) = await api.records(ev.STORED)
    data: dict[str, Any] = dict(stored.data)
    assert (data["evidence_id"], data["case_number"], data["case_court"]) == (
        evidence_id,
        "c-0123456789abcdef",
        "P0102",
    )
