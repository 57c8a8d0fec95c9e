"""The platform's figures (DOMAIN.md's table and a few more), pure: what each counts, the
period and court a question is asked for, and a reference count over records.

A store answers `count(query) -> Counts` with one fast query over its derived columns
(`sessions.facets`); `reference_counts` here is the same definition written plainly over
records, which the memory store uses and the tests hold the SQL stores to. `figures_of` turns
counts into the figures a person reads. docs/statistics.md says, figure by figure, what is
counted and why.

Periods are half-open, [from, to), compared with the record's server time. Dates given as
YYYY-MM-DD mean midnight in the configured zone (`recorder.time_zone`, UTC by default); a full
ISO 8601 time with an offset means exactly that instant.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sessions.errors import BadQuery
from sessions.facets import (
    CALL_ANSWERED,
    CALL_CREATED,
    CALL_ENDED,
    CALL_ESCALATED,
    CONFERENCE_STARTED,
    EVIDENCE_STORED,
    INSTRUCTION_DELIVERED,
    INSTRUCTION_EXPIRED,
    INSTRUCTION_READ,
    INSTRUCTION_SENT,
    SIGN_IN,
    Facets,
)

OFFICER_ROLE: Final = "officer"
OFFICER_TO_CENTER: Final = "officer_to_center"
CENTER_TO_OFFICER: Final = "center_to_officer"
DIRECTIONS: Final = (OFFICER_TO_CENTER, CENTER_TO_OFFICER)
# The end reason of a call its caller gave up on before anyone answered.
CANCELLED: Final = "cancelled"
# The kind of a conference that is a concentrated enforcement action, not a meeting.
ACTION: Final = "action"

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)


# --- the question ------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """[start, end), both aware."""

    start: dt.datetime
    end: dt.datetime

    @property
    def since_us(self) -> int:
        return micros(self.start)

    @property
    def until_us(self) -> int:
        return micros(self.end)


@dataclass(frozen=True)
class StatsQuery:
    since_us: int
    until_us: int
    # None: every record, whatever its court. Otherwise only records of these courts.
    courts: frozenset[str] | None = None


def micros(moment: dt.datetime) -> int:
    """An aware datetime as integer microseconds since the epoch, exactly."""
    return (moment - _EPOCH) // _MICROSECOND


def parse_moment(text: str | None, zone: dt.tzinfo, name: str) -> dt.datetime:
    """`text` as an aware datetime: YYYY-MM-DD is midnight in `zone`; an ISO 8601 time
    without an offset is taken in `zone`. Raises BadQuery naming the parameter `name`."""
    if text is None or not text.strip():
        raise BadQuery("missing (YYYY-MM-DD)", name)
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime(day.year, day.month, day.day)
        else:
            moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery("not a date (YYYY-MM-DD or an ISO 8601 time)", name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def parse_period(start: str | None, end: str | None, zone: dt.tzinfo) -> Period:
    """The period [start, end); raises BadQuery naming `from` or `to`."""
    period = Period(parse_moment(start, zone, "from"), parse_moment(end, zone, "to"))
    if period.end <= period.start:
        raise BadQuery("must be later than from (the period is [from, to))", "to")
    return period


# --- counts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallCounts:
    """The calls of one direction created in the period, by outcome."""

    calls: int = 0
    answered: int = 0
    # Sum over answered calls of (first answer - creation), microseconds.
    answer_us: int = 0
    # Ended without an answer, other than cancelled by the caller.
    missed: int = 0
    cancelled: int = 0
    # Neither answered nor ended (yet): still queued or ringing, or the node died.
    unfinished: int = 0
    emergency: int = 0


@dataclass(frozen=True)
class InstructionCounts:
    """The instructions sent in the period, and what became of them (whenever it came)."""

    sent: int = 0
    # Receipts: an officer's `instruction_delivered` / `instruction_read` of one of them.
    delivered: int = 0
    read: int = 0
    # Instructions every recipient read: to one officer, read; court-wide, expired with
    # nobody left unread (and read by someone).
    acknowledged: int = 0
    # Each read receipt's (read - sent), microseconds, ascending (for the median).
    read_us: tuple[int, ...] = ()


@dataclass(frozen=True)
class Counts:
    """What a store counts for a query; `figures_of` makes the figures from it."""

    sign_ins: int = 0
    officers: int = 0
    evidence_items: int = 0
    cases: int = 0
    conferences: int = 0
    actions: int = 0
    calls: Mapping[str, CallCounts] = field(default_factory=dict)
    instructions: InstructionCounts = InstructionCounts()


def reference_counts(records: Iterable[tuple[str, int, Facets]], query: StatsQuery) -> Counts:
    """The counts, by definition, over (kind, at_us, facets) in seq order.

    Kept plain on purpose: it is the specification the SQL of each store must agree with.
    """
    courts = query.courts

    def selected(at_us: int, facets: Facets) -> bool:
        if not query.since_us <= at_us < query.until_us:
            return False
        return courts is None or facets.court in courts

    sign_ins = evidence = conferences = actions = 0
    officers: set[str] = set()
    cases: set[str] = set()
    created: list[tuple[str, int, str | None, bool]] = []
    first_answer: dict[str, int] = {}
    # call -> (at_us, reason) of its earliest end (the first stored, on a tie).
    first_end: dict[str, tuple[int, str | None]] = {}
    escalated: set[str] = set()
    # instruction -> (sent at, court-wide), of those sent in the period and courts.
    sent: dict[str, tuple[int, bool]] = {}
    delivered: list[str] = []
    read: list[tuple[str, int]] = []
    all_read: set[str] = set()
    for kind, at_us, f in records:
        if kind == SIGN_IN:
            if f.tag == OFFICER_ROLE and selected(at_us, f):
                sign_ins += 1
                if f.subject is not None:
                    officers.add(f.subject)
        elif kind == EVIDENCE_STORED:
            if selected(at_us, f):
                evidence += 1
                if f.subject is not None:
                    cases.add(f.subject)
        elif kind == CONFERENCE_STARTED:
            if selected(at_us, f):
                if f.tag == ACTION:
                    actions += 1
                else:
                    conferences += 1
        elif kind == CALL_CREATED:
            if f.tag in DIRECTIONS and selected(at_us, f):
                assert f.tag is not None
                created.append((f.tag, at_us, f.subject, f.flag is True))
        elif kind == CALL_ANSWERED:
            if f.subject is not None:
                first_answer[f.subject] = min(at_us, first_answer.get(f.subject, at_us))
        elif kind == CALL_ENDED:
            if f.subject is not None:
                seen = first_end.get(f.subject)
                if seen is None or at_us < seen[0]:
                    first_end[f.subject] = (at_us, f.tag)
        elif kind == CALL_ESCALATED and f.subject is not None:
            escalated.add(f.subject)
        elif kind == INSTRUCTION_SENT:
            if f.subject is not None and selected(at_us, f):
                sent[f.subject] = (at_us, f.flag is True)
        elif kind == INSTRUCTION_DELIVERED and f.subject is not None:
            delivered.append(f.subject)
        elif kind == INSTRUCTION_READ and f.subject is not None:
            read.append((f.subject, at_us))
        elif kind == INSTRUCTION_EXPIRED and f.subject is not None and f.flag is True:
            all_read.add(f.subject)
    by_direction: dict[str, dict[str, int]] = {}
    for direction, at_us, call, emergency in created:
        c = by_direction.setdefault(direction, dict.fromkeys(CallCounts.__dataclass_fields__, 0))
        c["calls"] += 1
        answer = first_answer.get(call) if call is not None else None
        if emergency or (call is not None and call in escalated):
            c["emergency"] += 1
        if answer is not None:
            c["answered"] += 1
            c["answer_us"] += answer - at_us
        elif call is not None and call in first_end:
            c["cancelled" if first_end[call][1] == CANCELLED else "missed"] += 1
        else:
            c["unfinished"] += 1
    read_of_sent = [(i, at_us) for i, at_us in read if i in sent]
    was_read = {i for i, _ in read_of_sent}
    instructions = InstructionCounts(
        sent=len(sent),
        delivered=sum(1 for i in delivered if i in sent),
        read=len(read_of_sent),
        acknowledged=sum(
            1 for i, (_, wide) in sent.items() if i in was_read and (not wide or i in all_read)
        ),
        read_us=tuple(sorted(at_us - sent[i][0] for i, at_us in read_of_sent)),
    )
    return Counts(
        sign_ins=sign_ins,
        officers=len(officers),
        evidence_items=evidence,
        cases=len(cases),
        conferences=conferences,
        actions=actions,
        calls={d: CallCounts(**c) for d, c in sorted(by_direction.items())},
        instructions=instructions,
    )


# --- figures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    name: str
    value: int | float | None
    # What is counted, in one line (docs/statistics.md has the full definition).
    counts: str


def _mean_s(total_us: int, n: int) -> float | None:
    return round(total_us / n / 1_000_000, 3) if n else None


def _median_s(ascending_us: tuple[int, ...]) -> float | None:
    n = len(ascending_us)
    if n == 0:
        return None
    middle = (
        ascending_us[n // 2] if n % 2 else (ascending_us[n // 2 - 1] + ascending_us[n // 2]) / 2
    )
    return round(middle / 1_000_000, 3)


def figures_of(counts: Counts) -> list[Figure]:
    """The figures in report order: DOMAIN.md's table first, then the call outcomes."""
    none = CallCounts()
    oc = counts.calls.get(OFFICER_TO_CENTER, none)
    cc = counts.calls.get(CENTER_TO_OFFICER, none)
    both = [oc, cc]
    answered = sum(c.answered for c in both)
    ins = counts.instructions
    return [
        Figure(
            "officers_signed_in", counts.officers, "distinct officers with a sign-in in the period"
        ),
        Figure("sign_ins", counts.sign_ins, "officer sign-ins (new sessions; resumes excluded)"),
        Figure(
            "cases_with_evidence", counts.cases, "distinct case numbers of evidence items stored"
        ),
        Figure("evidence_items", counts.evidence_items, "evidence items stored"),
        Figure(
            "command_connections",
            oc.calls + cc.calls,
            "calls in both directions, answered or not",
        ),
        Figure("command_connections_answered", answered, "those of them that were answered"),
        Figure("officer_calls", oc.calls, "calls from an officer to the center, answered or not"),
        Figure("officer_calls_answered", oc.answered, "those of them that were answered"),
        Figure("center_calls", cc.calls, "calls from the center to an officer, answered or not"),
        Figure("center_calls_answered", cc.answered, "those of them that were answered"),
        Figure("conferences", counts.conferences, "conferences started"),
        Figure(
            "enforcement_actions",
            counts.actions,
            "concentrated enforcement actions started (conferences of kind action)",
        ),
        Figure("calls_answered", answered, "calls answered (both directions)"),
        Figure(
            "calls_missed",
            sum(c.missed for c in both),
            "calls ended unanswered, except those the caller cancelled",
        ),
        Figure(
            "calls_cancelled",
            sum(c.cancelled for c in both),
            "calls the caller ended before an answer",
        ),
        Figure(
            "calls_unfinished",
            sum(c.unfinished for c in both),
            "calls neither answered nor ended when asked",
        ),
        Figure("emergency_calls", sum(c.emergency for c in both), "calls that were emergencies"),
        Figure(
            "mean_time_to_answer_s",
            _mean_s(sum(c.answer_us for c in both), answered),
            "mean seconds from a call's creation to its answer",
        ),
        Figure(
            "officer_calls_mean_time_to_answer_s",
            _mean_s(oc.answer_us, oc.answered),
            "the same, officer-to-center calls",
        ),
        Figure(
            "center_calls_mean_time_to_answer_s",
            _mean_s(cc.answer_us, cc.answered),
            "the same, center-to-officer calls",
        ),
        Figure("instructions_sent", ins.sent, "instructions sent (to an officer or court-wide)"),
        Figure("instructions_delivered", ins.delivered, "deliveries of them to officers' phones"),
        Figure("instructions_read", ins.read, "officers who read them (tapped 收到)"),
        Figure(
            "instructions_acknowledged",
            ins.acknowledged,
            "instructions read by every recipient",
        ),
        Figure(
            "instructions_median_time_to_read_s",
            _median_s(ins.read_us),
            "median seconds from sending to an officer reading",
        ),
    ]


# Every figure is counted over the records dated in [from, to) (server time) whose court is
# the court asked for or one below it (any court when none is asked for); `stats --explain`
# prints these, and docs/statistics.md says the same at length.
PERIOD_AND_COURT: Final = (
    "records dated in [from, to) by the server's clock, whose court is the one asked for or "
    "below it"
)
HOW: Final[dict[str, str]] = {
    "officers_signed_in": "distinct `user` among `sign_in` records with `role` = officer",
    "sign_ins": "`sign_in` records with `role` = officer (a resume writes none, a reconnect "
    "inside the resume window `session_continued`)",
    "cases_with_evidence": "distinct `case_number` among `evidence_stored` records",
    "evidence_items": "`evidence_stored` records, one per original stored",
    "command_connections": "`call_created` records of both directions",
    "command_connections_answered": "those of them with a `call_answered` record",
    "officer_calls": "`call_created` records with `direction` = officer_to_center",
    "officer_calls_answered": "those of them with a `call_answered` record",
    "center_calls": "`call_created` records with `direction` = center_to_officer",
    "center_calls_answered": "those of them with a `call_answered` record",
    "conferences": (
        "`conference_started` records (one per conference: it starts once) whose `kind` is "
        "not `action`, the court being the hosting court"
    ),
    "enforcement_actions": (
        "`conference_started` records whose `kind` is `action` (a concentrated enforcement "
        "action), the court being the hosting court"
    ),
    "calls_answered": "calls (both directions) with a `call_answered` record",
    "calls_missed": "calls with a `call_ended` record, not answered, `reason` not cancelled",
    "calls_cancelled": "calls with a `call_ended` record, not answered, `reason` = cancelled",
    "calls_unfinished": "calls with neither a `call_answered` nor a `call_ended` record",
    "emergency_calls": "calls created as emergencies or with a `call_escalated` record",
    "mean_time_to_answer_s": (
        "mean of (first `call_answered` - `call_created`) over answered calls, seconds"
    ),
    "officer_calls_mean_time_to_answer_s": "the same, officer_to_center calls",
    "center_calls_mean_time_to_answer_s": "the same, center_to_officer calls",
    "instructions_sent": (
        "下达指令数: `instruction_sent` records (one per instruction, to one officer or "
        "court-wide), the court being the instruction's"
    ),
    "instructions_delivered": (
        "已送达: `instruction_delivered` records (one per officer whose phone showed it) of "
        "those instructions, whenever they came"
    ),
    "instructions_read": (
        "已读: `instruction_read` records (one per officer who tapped 收到) of those "
        "instructions, whenever they came"
    ),
    "instructions_acknowledged": (
        "已确认: those instructions with an `instruction_read` that every recipient read: "
        "to one officer, read; court-wide, an `instruction_expired` with `unread` empty"
    ),
    "instructions_median_time_to_read_s": (
        "阅读用时中位数: median of (`instruction_read` - `instruction_sent`) over those "
        "read records, seconds"
    ),
}


# --- reports -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """The figures for one period and court, as the CLI and the HTTP API give them."""

    period: Period
    # The court asked for (its subtree is counted); None: every record, whatever its court.
    court: str | None
    courts: frozenset[str] | None
    figures: list[Figure]

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.period.start.isoformat(),
            "to": self.period.end.isoformat(),
            "court": self.court,
            "courts": sorted(self.courts) if self.courts is not None else None,
            "figures": {f.name: f.value for f in self.figures},
        }


def _text(value: int | float | None) -> str:
    return "" if value is None else str(value)


def render_table(report: Report, *, explain: bool = False) -> str:
    where = "every court" if report.court is None else f"court {report.court} and below"
    head = f"{report.period.start.isoformat()} to {report.period.end.isoformat()}, {where}"
    rows = [("figure", "value", "counts")]
    rows += [(f.name, _text(f.value) or "-", f.counts) for f in report.figures]
    name_w = max(len(r[0]) for r in rows)
    value_w = max(len(r[1]) for r in rows)
    lines = [head, ""]
    for i, (name, value, counts) in enumerate(rows):
        lines.append(f"{name:<{name_w}}  {value:>{value_w}}  {counts}")
        if i == 0:
            lines.append(f"{'-' * name_w}  {'-' * value_w}  {'-' * len(counts)}")
    if explain:
        lines += ["", f"How each is counted, over the {PERIOD_AND_COURT}:", ""]
        lines += [f"{f.name:<{name_w}}  {HOW[f.name]}" for f in report.figures]
    return "\n".join(lines) + "\n"


def explained(report: Report) -> dict[str, Any]:
    """The JSON answer with, beside each figure, how it was counted."""
    answer = report.as_json()
    answer["how"] = {f.name: HOW[f.name] for f in report.figures}
    answer["over"] = PERIOD_AND_COURT
    return answer


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["figure", "value", "counts"])
    for f in report.figures:
        writer.writerow([f.name, _text(f.value), f.counts])
    return out.getvalue()


__all__ = [
    "CANCELLED",
    "CENTER_TO_OFFICER",
    "DIRECTIONS",
    "HOW",
    "OFFICER_ROLE",
    "OFFICER_TO_CENTER",
    "CallCounts",
    "Counts",
    "Figure",
    "Period",
    "Report",
    "StatsQuery",
    "explained",
    "figures_of",
    "micros",
    "parse_moment",
    "parse_period",
    "reference_counts",
    "render_csv",
    "render_table",
]
