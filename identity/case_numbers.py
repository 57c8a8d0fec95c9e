"""Chinese court case numbers (案号), pure: which court a number names.

A case number such as `(2025)粤0101执12号` reads: the year the case was filed in brackets,
the court's code (a province's one-character abbreviation, then two digits for an
intermediate court and two more for a basic court: 粤 the Guangdong High Court, 粤01 an
intermediate court, 粤0101 a basic court below it; 最高法 the Supreme People's Court), the
case type (执 enforcement, 执恢 resumed, 执保 preservation, 执异 objection, ...), the
sequence number and 号, sometimes followed by 之一, 之二 for a split-off case. Courts write
the brackets as ASCII `()`, full-width parentheses (U+FF08, U+FF09) or tortoise-shell
brackets (U+3014, U+3015); NFKC makes the full-width ones ASCII.

The court code is what scopes a case to a court: `identity.Courts.named_in` maps it to the
configured court whose `case_code` it is. `parse_case_number` never raises anything but
`BadCaseNumber`, whose `problem` is one of `CaseNumberProblem` (tests/test_case_courts.py
checks that with arbitrary strings).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

# Shared with the evidence API's bound on a case number, so a number the API accepts is one
# this module reads.
MAX_CASE_NUMBER_CHARS: Final = 64
MIN_YEAR: Final = 1949
MAX_YEAR: Final = 2100

# The abbreviations of the provinces, autonomous regions and municipalities (and Hong Kong,
# Macao, Taiwan), plus 兵 for the courts of the Xinjiang Production and Construction Corps.
PROVINCES: Final = frozenset(
    "京津冀晋蒙辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝川贵云藏陕甘青宁新港澳台兵"
)
SUPREME_COURT: Final = "最高法"
# Brackets around the year, after NFKC (which turns full-width parentheses into ASCII ones):
# ASCII parentheses, tortoise-shell brackets, square brackets.
_BRACKETS: Final = {"(": ")", "\u3014": "\u3015", "[": "]"}
# A court code: a province then 0, 2, 4 or 6 digits; or the Supreme People's Court.
_COURT_CODE: Final = re.compile(
    rf"(?:[{''.join(sorted(PROVINCES))}](?:[0-9]{{2}}){{0,3}}|{SUPREME_COURT})"
)
_CASE_TYPE: Final = re.compile(r"[\u4e00-\u9fff]{1,8}")
_SEQUENCE: Final = re.compile(r"[1-9][0-9]{0,8}")
# 之一, 之二, ... 之十二: a case split off another.
_SUFFIX: Final = re.compile(r"(?:之[一二三四五六七八九十]{1,3})?")

CaseNumberProblem = Literal[
    "empty",
    "too_long",
    "control_characters",
    "no_year",
    "bad_year",
    "no_court_code",
    "no_case_type",
    "no_sequence",
    "trailing_characters",
]


class BadCaseNumber(ValueError):
    """Not a Chinese case number; `problem` says which part is missing or wrong (never
    echoing the input)."""

    def __init__(self, problem: CaseNumberProblem) -> None:
        super().__init__(problem)
        self.problem: CaseNumberProblem = problem


@dataclass(frozen=True)
class CaseNumber:
    year: int
    court_code: str
    case_type: str
    sequence: int
    # "" or 之一, 之二, ...
    suffix: str = ""

    def text(self) -> str:
        """The number written with ASCII brackets, as NFKC gives full-width ones."""
        return f"({self.year}){self.court_code}{self.case_type}{self.sequence}号{self.suffix}"


def parse_court_code(raw: str) -> str:
    """A court's case code (粤0101) in NFKC, or `BadCaseNumber("no_court_code")`."""
    code = unicodedata.normalize("NFKC", raw).strip()
    if not _COURT_CODE.fullmatch(code):
        raise BadCaseNumber("no_court_code")
    return code


def parse_case_number(raw: str) -> CaseNumber:
    """Read `raw` as a Chinese case number, or raise `BadCaseNumber`."""
    # Bounded before normalising: NFKC of a long string costs time, and may lengthen it.
    if len(raw) > MAX_CASE_NUMBER_CHARS:
        raise BadCaseNumber("too_long")
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        raise BadCaseNumber("empty")
    if len(text) > MAX_CASE_NUMBER_CHARS:
        raise BadCaseNumber("too_long")
    if any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise BadCaseNumber("control_characters")
    closing = _BRACKETS.get(text[0])
    if closing is None:
        raise BadCaseNumber("no_year")
    year_text, found, rest = text[1:].partition(closing)
    # isdecimal() admits other scripts' digits (٢٠٢٥); only ASCII digits are a year here.
    if not found or not re.fullmatch(r"[0-9]{4}", year_text):
        raise BadCaseNumber("bad_year")
    year = int(year_text)
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise BadCaseNumber("bad_year")
    court = _COURT_CODE.match(rest)
    if court is None:
        raise BadCaseNumber("no_court_code")
    rest = rest[court.end() :]
    if rest[:1].isdigit():
        # An odd number of digits, or more than six: not a court code this reads.
        raise BadCaseNumber("no_court_code")
    case_type = _CASE_TYPE.match(rest)
    if case_type is None:
        raise BadCaseNumber("no_case_type")
    kind = case_type.group()
    if kind.endswith("号"):
        # 号 closes the number; a type cannot swallow it (粤0101执号).
        raise BadCaseNumber("no_sequence")
    rest = rest[case_type.end() :]
    sequence = _SEQUENCE.match(rest)
    if sequence is None:
        raise BadCaseNumber("no_sequence")
    rest = rest[sequence.end() :]
    if not rest.startswith("号"):
        raise BadCaseNumber("no_sequence")
    rest = rest[1:]
    suffix = _SUFFIX.match(rest)
    assert suffix is not None  # the pattern matches the empty string
    if suffix.end() != len(rest):
        raise BadCaseNumber("trailing_characters")
    return CaseNumber(
        year=year,
        court_code=court.group(),
        case_type=kind,
        sequence=int(sequence.group()),
        suffix=suffix.group(),
    )


def court_code_in(raw: str) -> str | None:
    """The court code a case number carries, or None when `raw` is not one."""
    try:
        return parse_case_number(raw).court_code
    except BadCaseNumber:
        return None


__all__ = [
    "MAX_CASE_NUMBER_CHARS",
    "PROVINCES",
    "SUPREME_COURT",
    "BadCaseNumber",
    "CaseNumber",
    "CaseNumberProblem",
    "court_code_in",
    "parse_case_number",
    "parse_court_code",
]
