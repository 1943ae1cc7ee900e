"""Measures of coordination, from the audit log alone. Pure: no I/O, no clock (the caller says
what "now" is), so a report over the same events is the same report.

Each request's events (every event of it up to `as_of`, in the log's order, not only those in
the period) are read once into a *trail*; the measures then count what of each trail falls in
the period:

    audit events of one request
      ├─ events that set a stage ───► stage visits: entered, left, left how
      │                               stage deadlines: whose, due, met when (or ended unmet)
      ├─ events naming an expert ───► assignments: invited, answered how, closed
      │                               the expert's respond-by and review-due deadlines
      ├─ deadline_extended ─────────► extensions (and the deadline moves)
      └─ submitted, conclusion_approved, withdrawn, screening_declined, supplement_lapsed,
         adoption_answered ─────────► what became of the request
                        ▼
      Report: volumes, turnaround, time in stage, on time by party, experts, adoption

Days are counted as the working calendar counts them (weekends, Vietnamese public holidays and
the policy's extra days off do not count): from the local day something started, exclusive, to
the local day it ended, inclusive — the way a deadline of N working days is counted, so work
done on its deadline's day took N working days. Events fall in a period by their local date in
Vietnam. A deadline the audit event does not state is computed as the workflow computed it:
the policy's days for the stage, from the event that opened it, in the request kind's calendar
mode; an extension's recorded new date replaces it.

What every measure means, in a sentence each, is the README's "Reports: what each measure
means"; the definitions there and in the docstrings below are the same.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from domain.calendar import VN_TZ, WorkingCalendar, working_calendar
from domain.models import AdoptionStatus, Period, RequestKind, Stage
from domain.policy import KindPolicy, Policy

# --- input --------------------------------------------------------------------------------------


class AuditEvent(BaseModel):
    """One row of `audit_log`. Other columns of a row (its id, a display name) are ignored."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    at: datetime
    actor: str
    action: str
    stage: Stage | None = None  # set: the request moved to (or stayed in) this stage
    details: dict[str, Any] = {}


class RequestFacts(BaseModel):
    """What the `requests` row says of a request that the audit log does not: who sent it, of
    what kind, in which expertise fields. `submitted_at` stands in for the `submitted` event
    only when that event is not among those given."""

    model_config = ConfigDict(frozen=True)

    id: str
    agency_code: str
    kind: RequestKind
    expertise_fields: list[str]
    submitted_at: datetime


class ReportInputError(ValueError):
    """A period or filter a person typed that cannot be reported on: the message names the
    field and the rule."""

    def __init__(self, field_name: str, rule: str) -> None:
        super().__init__(f"{field_name}: {rule}")
        self.field = field_name


# --- the period ---------------------------------------------------------------------------------


class ReportPeriod(Period):
    """The days reported on: from `start` to `end`, both included, as Vietnam's local dates.
    `label` is how a person writes it: "2026", "2026-Q3", "2026-07" or
    "2026-01-01..2026-06-30"."""

    label: str

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def months(self) -> list[str]:
        """Every month the period touches, as "YYYY-MM", in order."""
        out, y, m = [], self.start.year, self.start.month
        while (y, m) <= (self.end.year, self.end.month):
            out.append(f"{y:04d}-{m:02d}")
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out


# A longer range is a slip of the keyboard, and would count every month of it.
LONGEST_YEARS = 10

_FORMS = (
    "write a year (2026), a quarter (2026-Q3), a month (2026-07) "
    "or two dates (2026-01-01..2026-06-30)"
)


def parse_period(text: str) -> ReportPeriod:
    """The period a person typed. Raises `ReportInputError` naming `period` and the rule."""
    s = (text or "").strip()
    try:
        if m := re.fullmatch(r"(\d{4})", s):
            y = int(m[1])
            return ReportPeriod(start=date(y, 1, 1), end=date(y, 12, 31), label=f"{y:04d}")
        if m := re.fullmatch(r"(\d{4})-[Qq](\d)", s):
            y, q = int(m[1]), int(m[2])
            if not 1 <= q <= 4:
                raise ReportInputError("period", f"{s!r}: a quarter is Q1 to Q4")
            first = date(y, 3 * q - 2, 1)
            return ReportPeriod(start=first, end=_month_end(y, 3 * q), label=f"{y:04d}-Q{q}")
        if m := re.fullmatch(r"(\d{4})-(\d{2})", s):
            y, mo = int(m[1]), int(m[2])
            if not 1 <= mo <= 12:
                raise ReportInputError("period", f"{s!r}: a month is 01 to 12")
            return ReportPeriod(
                start=date(y, mo, 1), end=_month_end(y, mo), label=f"{y:04d}-{mo:02d}"
            )
        if m := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\s*\.\.\s*(\d{4}-\d{2}-\d{2})", s):
            start, end = _iso_date(m[1]), _iso_date(m[2])
            if end < start:
                raise ReportInputError(
                    "period",
                    f"{s!r} ends before it starts: the first date must not be after the second",
                )
            if (end.year - start.year) * 12 + end.month - start.month >= LONGEST_YEARS * 12:
                raise ReportInputError(
                    "period", f"{s!r}: a report covers at most {LONGEST_YEARS} years"
                )
            return ReportPeriod(start=start, end=end, label=f"{start}..{end}")
    except ValueError as err:
        if isinstance(err, ReportInputError):
            raise
        # date() refused the year itself (year 0000)
        raise ReportInputError("period", f"{s!r} is not a date the calendar has") from None
    raise ReportInputError("period", f"{s!r} is not a period: {_FORMS}")


def _iso_date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise ReportInputError("period", f"{s!r} is not a date the calendar has") from None


def _month_end(y: int, m: int) -> date:
    return (date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1)) - timedelta(days=1)


# --- filters ------------------------------------------------------------------------------------


def folded(fields: Iterable[str]) -> list[str]:
    """Expertise fields as reports name and match them: lower-cased, each once, in order."""
    return list(dict.fromkeys(f.lower() for f in fields))


class ReportFilter(BaseModel):
    """Which requests count, for every measure. Within one dimension any value matches (agency
    A or B); across dimensions all must (agency A and kind critique). Empty: no restriction."""

    model_config = ConfigDict(frozen=True)

    agencies: frozenset[str] = frozenset()
    kinds: frozenset[RequestKind] = frozenset()
    fields: frozenset[str] = frozenset()

    def admits(self, r: RequestFacts) -> bool:
        return (
            (not self.agencies or r.agency_code in self.agencies)
            and (not self.kinds or r.kind in self.kinds)
            and (
                not self.fields or any(f in self.folded_fields for f in folded(r.expertise_fields))
            )
        )

    @property
    def folded_fields(self) -> frozenset[str]:
        return frozenset(folded(self.fields))

    def check_known(self, agencies: Iterable[str], fields: Iterable[str]) -> None:
        """Refuses a filter naming an agency or a field the registries do not know, rather
        than answering with an empty report that looks like a quiet year."""
        unknown = sorted(self.agencies - set(agencies))
        if unknown:
            raise ReportInputError("agencies", f"no registered agency has the code {unknown[0]!r}")
        unknown = sorted(self.folded_fields - {f.lower() for f in fields})
        if unknown:
            raise ReportInputError("fields", f"no expert is registered in the field {unknown[0]!r}")


# --- the report ---------------------------------------------------------------------------------


class Volumes(BaseModel):
    """Requests by what happened to them in the period (each on its event's local date)."""

    received: int = 0  # `submitted`
    completed: int = 0  # `conclusion_approved`: the conclusion went to the agency
    withdrawn: int = 0  # `withdrawn`
    declined: int = 0  # `screening_declined`
    lapsed: int = 0  # `supplement_lapsed`

    def any(self) -> bool:
        return any(self.model_dump().values())


class Spread(BaseModel):
    """Working days over `count` items: `median` and `p90` by nearest rank — the smallest
    value with at least half (90 %) of the items at or below it; None when there are none."""

    count: int = 0
    median: int | None = None
    p90: int | None = None


class StageTime(Spread):
    left_by_withdrawal: int = 0  # of `count`, visits the request's withdrawal ended


class OnTime(BaseModel):
    """One party's deadline: how often it was met, and how often it was moved."""

    party: str  # coordinator, agency, expert, council, chair
    deadline: str  # screening, supplement, respond, review, synthesis, approval, adoption
    on_time: int = 0
    late: int = 0
    extensions: int = 0  # `deadline_extended` events in the period
    extension_days: int = 0  # working days those extensions moved the deadline by

    @computed_field
    @property
    def rate(self) -> float | None:
        settled = self.on_time + self.late
        return self.on_time / settled if settled else None


class ExpertRow(BaseModel):
    expert_code: str
    # Invitations sent in the period, and how each was answered by `as_of`.
    invited: int = 0
    accepted: int = 0
    declined: int = 0
    expired: int = 0  # no answer by respond-by (`invitation_expired`)
    cancelled: int = 0  # cancelled before an answer (withdrawn, replaced, quorum reached)
    unanswered: int = 0  # still waiting for an answer at `as_of`
    # Opinions whose due date counted in the period (the on-time rule).
    opinions_on_time: int = 0
    opinions_late: int = 0
    # Month → the most assignments (invited or accepted) open at once in that month.
    load: dict[str, int] = {}

    def _share(self, n: int) -> float | None:
        answered = self.accepted + self.declined + self.expired
        return n / answered if answered else None

    @computed_field
    @property
    def acceptance_rate(self) -> float | None:
        return self._share(self.accepted)

    @computed_field
    @property
    def decline_rate(self) -> float | None:
        return self._share(self.declined)

    @computed_field
    @property
    def expiry_rate(self) -> float | None:
        return self._share(self.expired)


class AdoptionRow(BaseModel):
    """Conclusions delivered in the period, by the agency's answer on adoption at `as_of`.
    `delivered` = adopted + partially_adopted + not_adopted + no_answer + awaiting."""

    delivered: int = 0
    adopted: int = 0
    partially_adopted: int = 0
    not_adopted: int = 0
    no_answer: int = 0  # the adoption deadline passed without an answer
    awaiting: int = 0  # no answer yet, and its deadline has not passed
    answered_late: int = 0  # of the three answers, those given after the deadline


class Report(BaseModel):
    period: ReportPeriod
    filter: ReportFilter
    as_of: datetime
    volumes: Volumes
    by_kind: dict[str, Volumes]
    by_agency: dict[str, Volumes]
    by_field: dict[str, Volumes]
    per_month: dict[str, Volumes]
    turnaround: Spread
    time_in_stage: dict[str, StageTime]
    on_time: list[OnTime]
    on_time_by_party: dict[str, OnTime]
    experts: list[ExpertRow]
    experts_total: ExpertRow
    adoption: AdoptionRow
    adoption_by_agency: dict[str, AdoptionRow]
    adoption_by_kind: dict[str, AdoptionRow]

    @computed_field
    @property
    def empty(self) -> bool:
        """Nothing in the period to count: every measure is zero (the portal says so from
        its own catalogue rather than drawing empty charts)."""
        return not (
            self.volumes.any()
            or self.turnaround.count
            or any(s.count for s in self.time_in_stage.values())
            or any(o.on_time or o.late or o.extensions for o in self.on_time)
            or self.experts
            or self.adoption.delivered
        )

    def on_time_for(self, party: str, deadline: str) -> OnTime:
        for o in self.on_time:
            if (o.party, o.deadline) == (party, deadline):
                return o
        raise KeyError(f"no on-time row for {party} / {deadline}")


# --- stages and deadlines -----------------------------------------------------------------------

# The stages whose time is measured, in their order. `delivered` is left out: the engine asks
# for the adoption answer the moment the conclusion is delivered.
STAGES = (
    Stage.screening,
    Stage.supplement,
    Stage.council,
    Stage.review,
    Stage.synthesis,
    Stage.approval,
    Stage.adoption,
)


@dataclass(frozen=True)
class _StageDeadline:
    party: str
    name: str  # the policy's (and the audit details') name for the deadline
    days: Callable[[KindPolicy], int]
    met_by: frozenset[str]  # leaving the stage by one of these actions meets the deadline


# A stage's deadline, whose it is, and which action meets it. Leaving the stage any other way
# (withdrawn, lapsed) ends it unmet.
_STAGE_DEADLINES = {
    Stage.screening: _StageDeadline(
        "coordinator",
        "screening",
        lambda p: p.screening_days,
        frozenset({"screening_accepted", "screening_declined", "supplement_requested"}),
    ),
    Stage.supplement: _StageDeadline(
        "agency", "supplement", lambda p: p.supplement_days, frozenset({"supplemented"})
    ),
    Stage.review: _StageDeadline(
        "council",
        "review",
        lambda p: p.respond_days + p.review_days,
        frozenset({"synthesis_opened"}),
    ),
    Stage.synthesis: _StageDeadline(
        "chair", "synthesis", lambda p: p.synthesis_days, frozenset({"conclusion_drafted"})
    ),
    Stage.approval: _StageDeadline(
        "coordinator",
        "approval",
        lambda p: p.approval_days,
        frozenset({"conclusion_approved", "conclusion_returned"}),
    ),
    Stage.adoption: _StageDeadline(
        "agency", "adoption", lambda p: p.adoption_days, frozenset({"adoption_answered"})
    ),
}

# Every row of the on-time table, in the order the request meets them.
ON_TIME_ROWS = (
    ("coordinator", "screening"),
    ("agency", "supplement"),
    ("expert", "respond"),
    ("expert", "review"),
    ("council", "review"),
    ("chair", "synthesis"),
    ("coordinator", "approval"),
    ("agency", "adoption"),
)
PARTIES = ("coordinator", "agency", "expert", "council", "chair")

_ENDINGS = {
    "withdrawn": "withdrawn",
    "screening_declined": "declined",
    "supplement_lapsed": "lapsed",
}


# --- one request's trail ------------------------------------------------------------------------


@dataclass
class _Deadline:
    """Something a party owes by `due`: met at `met_at`, or ended unmet at `ended_at`."""

    party: str
    name: str
    due: datetime
    expert_code: str | None = None
    met_at: datetime | None = None
    ended_at: datetime | None = None

    def settled(self, as_of: datetime) -> tuple[datetime, bool] | None:
        """When it counts and whether on time; None while it cannot count yet.

        Met: on time when met by its deadline, counted on the day met — or, met late, on the
        deadline's day. Unmet: late once its deadline has passed (before it ended, or before
        `as_of` while still open), counted on the deadline's day. Ended unmet before its
        deadline (the request withdrawn, the expert replaced): never counted. An invitation
        expires, and a supplement lapses, at or after the deadline: late."""
        if self.met_at is not None:
            return min(self.met_at, self.due), self.met_at <= self.due
        if self.ended_at is not None:
            return (self.due, False) if self.due <= self.ended_at else None
        return (self.due, False) if self.due < as_of else None


@dataclass
class _Visit:
    stage: Stage
    entered: datetime
    left: datetime | None = None
    left_by: str | None = None


@dataclass
class _Extension:
    party: str
    name: str
    at: datetime
    moved_from: datetime
    moved_to: datetime


@dataclass
class _Assignment:
    expert_code: str
    invited_at: datetime
    answer: str | None = None  # accepted, declined, expired, cancelled (before an answer)
    closed_at: datetime | None = None
    deadline: _Deadline | None = None  # the one running: respond-by, then review-due


@dataclass
class _Trail:
    facts: RequestFacts
    received: datetime | None = None
    delivered: datetime | None = None
    ending: tuple[str, datetime] | None = None  # withdrawn / declined / lapsed, and when
    adoption: _Deadline | None = None
    adoption_status: str | None = None
    visits: list[_Visit] = field(default_factory=list)
    deadlines: list[_Deadline] = field(default_factory=list)
    extensions: list[_Extension] = field(default_factory=list)
    assignments: dict[str, _Assignment] = field(default_factory=dict)


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


def _read_trail(
    facts: RequestFacts, events: Iterable[AuditEvent], policy: KindPolicy, cal: WorkingCalendar
) -> _Trail:
    """One request's events, in the log's order, read into what the measures count."""
    t = _Trail(facts=facts)
    stage: Stage | None = None
    stage_deadline: _Deadline | None = None

    def due(start: datetime, days: int) -> datetime:
        return cal.due(start, days, policy.calendar)

    for e in events:
        if e.stage is None and "expert_code" in e.details:
            _assignment_event(t, e, policy, due)
            continue
        if e.stage is None:
            continue  # a stage's reminder or escalation: nothing the measures count
        if e.action == "submitted" and t.received is None:
            t.received = e.at
        elif e.action == "conclusion_approved" and t.delivered is None:
            t.delivered = e.at
        elif e.action == "adoption_answered":
            t.adoption_status = e.details.get("status")
        if e.action in _ENDINGS:
            t.ending = (_ENDINGS[e.action], e.at)
        if e.action == "deadline_extended" and e.stage == stage and stage_deadline is not None:
            moved_to = _when(e.details.get("to"))
            if moved_to is not None:
                t.extensions.append(
                    _Extension(
                        stage_deadline.party,
                        stage_deadline.name,
                        e.at,
                        _when(e.details.get("from")) or stage_deadline.due,
                        moved_to,
                    )
                )
                stage_deadline.due = moved_to
        if e.stage == stage:
            continue
        # The request leaves its stage: the visit ends, and the stage's deadline is met or not.
        if t.visits and t.visits[-1].left is None:
            t.visits[-1].left, t.visits[-1].left_by = e.at, e.action
        if stage_deadline is not None:
            sd = _STAGE_DEADLINES[stage]
            if e.action in sd.met_by:
                stage_deadline.met_at = e.at
            else:
                stage_deadline.ended_at = e.at
        stage, stage_deadline = e.stage, None
        if not stage.is_final:
            t.visits.append(_Visit(stage, e.at))
        if stage in _STAGE_DEADLINES:
            sd = _STAGE_DEADLINES[stage]
            stage_deadline = _Deadline(sd.party, sd.name, due(e.at, sd.days(policy)))
            t.deadlines.append(stage_deadline)
            if stage == Stage.adoption:
                t.adoption = stage_deadline
    if t.received is None:
        t.received = facts.submitted_at
    return t


def _assignment_event(
    t: _Trail, e: AuditEvent, policy: KindPolicy, due: Callable[[datetime, int], datetime]
) -> None:
    code = e.details["expert_code"]
    if e.action == "expert_invited":
        a = _Assignment(code, e.at)
        a.deadline = _Deadline("expert", "respond", due(e.at, policy.respond_days), code)
        t.assignments[code] = a
        t.deadlines.append(a.deadline)
        return
    a = t.assignments.get(code)
    if a is None or a.closed_at is not None:
        return  # its invitation is not among the events given
    d = a.deadline
    match e.action:
        case "invitation_accepted":
            if d is not None:
                d.met_at = e.at
            a.answer = "accepted"
            a.deadline = _Deadline("expert", "review", due(e.at, policy.review_days), code)
            t.deadlines.append(a.deadline)
        case "invitation_declined" | "opinion_submitted":
            if d is not None:
                d.met_at = e.at
            if e.action == "invitation_declined":
                a.answer = "declined"
            a.closed_at, a.deadline = e.at, None
        case "invitation_expired" | "assignment_cancelled":
            if d is not None:
                d.ended_at = e.at
            if a.answer is None:
                a.answer = "expired" if e.action == "invitation_expired" else "cancelled"
            a.closed_at, a.deadline = e.at, None
        case "deadline_extended":
            moved_to = _when(e.details.get("to"))
            if d is not None and moved_to is not None:
                moved_from = _when(e.details.get("from")) or d.due
                t.extensions.append(_Extension("expert", d.name, e.at, moved_from, moved_to))
                d.due = moved_to


# --- the report tables --------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRows:
    """One request as the report tables hold it (db/migrations/0015_report_rows.sql): what
    `build_report` counts of its trail, worked out once — local dates and working days
    included — so that PostgreSQL sums a period's measures without reading an audit event.
    The transaction that records each transition of the request rewrites its rows.

    `deadlines` holds only those that can count: met, ended after their deadline passed, or
    still open (these count as late once their deadline is before the report's moment)."""

    request: dict[str, Any]
    visits: list[dict[str, Any]]
    deadlines: list[dict[str, Any]]
    extensions: list[dict[str, Any]]
    assignments: list[dict[str, Any]]


def request_rows(facts: RequestFacts, events: Iterable[AuditEvent], policy: Policy) -> RequestRows:
    """The report tables' rows of one request, from its whole trail in the log's order."""
    cal = working_calendar(policy.calendar)
    t = _read_trail(facts, events, policy.for_kind(facts.kind), cal)
    day = cal.local_date

    def days(start: datetime, end: datetime) -> int:
        return cal.working_days_between(day(start), day(end))

    rid = facts.id
    # Every row names its request's agency, kind and fields: a filtered report needs no join.
    whose = {
        "request_id": rid,
        "agency_code": facts.agency_code,
        "kind": facts.kind.value,
        "fields": folded(facts.expertise_fields),
    }
    ending, ended_at = t.ending if t.ending is not None else (None, None)
    received = t.received or facts.submitted_at
    answers = {s.value for s in AdoptionStatus}
    d = t.adoption
    request = {
        **whose,
        "received_at": received,
        "received_on": day(received),
        "delivered_at": t.delivered,
        "delivered_on": day(t.delivered) if t.delivered else None,
        "turnaround_days": days(received, t.delivered) if t.delivered else None,
        "ending": ending,
        "ended_at": ended_at,
        "ended_on": day(ended_at) if ended_at else None,
        "adoption_status": t.adoption_status if t.adoption_status in answers else None,
        "adoption_due": d.due if d is not None else None,
        "answered_late": bool(t.adoption_status in answers and d and d.met_at and d.met_at > d.due),
    }
    visits = [
        {
            **whose,
            "stage": v.stage.value,
            "left_at": v.left,
            "left_on": day(v.left),
            "left_by": v.left_by,
            "days": days(v.entered, v.left),
        }
        for v in t.visits
        if v.stage in STAGES and v.left is not None
    ]
    deadlines = []
    for dl in t.deadlines:
        if dl.met_at is not None or dl.ended_at is not None:
            settled = dl.settled(dl.met_at or dl.ended_at)  # type: ignore[arg-type]
            if settled is None:
                continue  # ended before it was due: never counts
            counted_at, on_time, is_settled = settled[0], settled[1], True
        else:
            counted_at, on_time, is_settled = dl.due, False, False
        deadlines.append(
            {
                **whose,
                "party": dl.party,
                "deadline": dl.name,
                "expert_code": dl.expert_code,
                "due": dl.due,
                "counted_at": counted_at,
                "counted_on": day(counted_at),
                "on_time": on_time,
                "settled": is_settled,
            }
        )
    extensions = [
        {
            **whose,
            "party": x.party,
            "deadline": x.name,
            "at": x.at,
            "on_day": day(x.at),
            "days": days(x.moved_from, x.moved_to),
        }
        for x in t.extensions
    ]
    assignments = [
        {
            **whose,
            "expert_code": a.expert_code,
            "invited_at": a.invited_at,
            "invited_on": day(a.invited_at),
            "answer": a.answer,
            "closed_at": a.closed_at,
        }
        for a in t.assignments.values()
    ]
    return RequestRows(request, visits, deadlines, extensions, assignments)


# --- measures -----------------------------------------------------------------------------------


def percentile(values: Iterable[int], q: int) -> int | None:
    """Nearest rank: the smallest value with at least q % of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(1, math.ceil(q * len(ordered) / 100)) - 1]


def _spread(values: list[int]) -> Spread:
    return Spread(count=len(values), median=percentile(values, 50), p90=percentile(values, 90))


def build_report(
    requests: Iterable[RequestFacts],
    events: Iterable[AuditEvent],
    period: ReportPeriod,
    *,
    policy: Policy,
    as_of: datetime,
    report_filter: ReportFilter | None = None,
) -> Report:
    """The measures of `period` over the requests `report_filter` admits, as the audit log
    stood at `as_of` (timezone-aware; later events are left out, so a report can be made
    again as it was).

    `events`: every event of those requests up to `as_of` — their whole trail, not only the
    period's — in the log's order (by id). Events of a request not in `requests` are ignored.
    """
    chosen = report_filter or ReportFilter()
    cal = working_calendar(policy.calendar)
    facts = {r.id: r for r in requests if chosen.admits(r)}
    by_request: dict[str, list[AuditEvent]] = defaultdict(list)
    for e in events:
        if e.request_id in facts and e.at <= as_of:
            by_request[e.request_id].append(e)
    trails = [
        _read_trail(facts[rid], evs, policy.for_kind(facts[rid].kind), cal)
        for rid, evs in by_request.items()
    ]
    m = _Measuring(cal, period, as_of)
    volumes = m.volumes(trails, chosen)
    on_time, opinions = m.on_time(trails)
    experts = m.experts(trails, opinions)
    adoption = m.adoption(trails)
    return Report(
        period=period,
        filter=chosen,
        as_of=as_of,
        volumes=volumes["all"][""],
        by_kind=volumes["kind"],
        by_agency=volumes["agency"],
        by_field=volumes["field"],
        per_month=volumes["month"],
        turnaround=_spread(
            [m.working_days(t.received, t.delivered) for t in trails if m.inside(t.delivered)]
        ),
        time_in_stage=m.time_in_stage(trails),
        on_time=on_time,
        on_time_by_party=by_party(on_time),
        experts=experts,
        experts_total=experts_total(experts),
        adoption=adoption["all"][""],
        adoption_by_agency=adoption["agency"],
        adoption_by_kind=adoption["kind"],
    )


@dataclass
class _Measuring:
    """What every measure shares: the calendar, the period and the moment of the report."""

    cal: WorkingCalendar
    period: ReportPeriod
    as_of: datetime

    def day(self, instant: datetime) -> date:
        return self.cal.local_date(instant)

    def inside(self, instant: datetime | None) -> bool:
        return (
            instant is not None
            and instant <= self.as_of
            and self.period.contains(self.day(instant))
        )

    def working_days(self, start: datetime, end: datetime) -> int:
        return self.cal.working_days_between(self.day(start), self.day(end))

    def volumes(self, trails: list[_Trail], chosen: ReportFilter) -> dict[str, dict[str, Volumes]]:
        """Requests received, completed, withdrawn, declined and lapsed in the period: in all
        (`["all"][""]`) and by kind, agency, expertise field and month. A request counts under
        each of its fields (of the filter's, when it names fields)."""
        out: dict[str, dict[str, Volumes]] = {
            "all": {"": Volumes()},
            "kind": {k.value: Volumes() for k in RequestKind},
            "agency": defaultdict(Volumes),
            "field": defaultdict(Volumes),
            "month": {m: Volumes() for m in self.period.months()},
        }
        shown = chosen.folded_fields
        for t in trails:
            f = t.facts
            happened = [("received", t.received), ("completed", t.delivered)]
            if t.ending is not None:
                happened.append(t.ending)
            for measure, instant in happened:
                if not self.inside(instant):
                    continue
                keys = [
                    ("all", ""),
                    ("kind", f.kind.value),
                    ("agency", f.agency_code),
                    ("month", self.day(instant).strftime("%Y-%m")),
                    *(("field", x) for x in folded(f.expertise_fields) if not shown or x in shown),
                ]
                for group, key in keys:
                    v = out[group][key]
                    setattr(v, measure, getattr(v, measure) + 1)
        out["agency"] = dict(sorted(out["agency"].items()))
        out["field"] = dict(sorted(out["field"].items()))
        return out

    def time_in_stage(self, trails: list[_Trail]) -> dict[str, StageTime]:
        """Working days in each stage, over the visits that left it in the period."""
        spent: dict[Stage, list[int]] = {s: [] for s in STAGES}
        withdrawn: dict[Stage, int] = defaultdict(int)
        for t in trails:
            for v in t.visits:
                if v.stage in spent and self.inside(v.left):
                    spent[v.stage].append(self.working_days(v.entered, v.left))
                    withdrawn[v.stage] += v.left_by == "withdrawn"
        return {
            s.value: StageTime(**_spread(d).model_dump(), left_by_withdrawal=withdrawn[s])
            for s, d in spent.items()
        }

    def on_time(self, trails: list[_Trail]) -> tuple[list[OnTime], dict[str, list[bool]]]:
        """Each party's deadlines that counted in the period (`_Deadline.settled`) and the
        extensions granted in it; with each expert's opinions, on time or not."""
        rows = {key: OnTime(party=key[0], deadline=key[1]) for key in ON_TIME_ROWS}
        opinions: dict[str, list[bool]] = defaultdict(list)
        for t in trails:
            for d in t.deadlines:
                settled = d.settled(self.as_of)
                if settled is None or not self.inside(settled[0]):
                    continue
                row = rows[(d.party, d.name)]
                if settled[1]:
                    row.on_time += 1
                else:
                    row.late += 1
                if (d.party, d.name) == ("expert", "review"):
                    opinions[d.expert_code or ""].append(settled[1])
            for x in t.extensions:
                if self.inside(x.at):
                    row = rows[(x.party, x.name)]
                    row.extensions += 1
                    row.extension_days += self.working_days(x.moved_from, x.moved_to)
        return list(rows.values()), opinions

    def experts(self, trails: list[_Trail], opinions: dict[str, list[bool]]) -> list[ExpertRow]:
        """Per expert: invitations sent in the period and how they were answered, opinions
        that counted in the period, and their load in each month. Experts with none of these
        are left out."""
        rows: dict[str, ExpertRow] = {}
        spans: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
        for t in trails:
            for a in t.assignments.values():
                spans[a.expert_code].append((a.invited_at, a.closed_at))
                if not self.inside(a.invited_at):
                    continue
                r = rows.setdefault(a.expert_code, ExpertRow(expert_code=a.expert_code))
                r.invited += 1
                answer = a.answer or "unanswered"
                setattr(r, answer, getattr(r, answer) + 1)
        for code, kept in opinions.items():
            r = rows.setdefault(code, ExpertRow(expert_code=code))
            r.opinions_on_time += sum(kept)
            r.opinions_late += len(kept) - sum(kept)
        months = self.period.months()
        for code, intervals in spans.items():
            load = {m: _peak(intervals, *self._window(m)) for m in months}
            if code in rows or any(load.values()):
                rows.setdefault(code, ExpertRow(expert_code=code)).load = load
        return [rows[c] for c in sorted(rows)]

    def _window(self, month: str) -> tuple[datetime, datetime]:
        """The instants of `month` inside the period and not after `as_of`."""
        y, m = int(month[:4]), int(month[5:])
        first = max(date(y, m, 1), self.period.start)
        last = min(_month_end(y, m), self.period.end)
        start = datetime.combine(first, time.min, VN_TZ)
        end = datetime.combine(last + timedelta(days=1), time.min, VN_TZ)
        return start, min(end, self.as_of)

    def adoption(self, trails: list[_Trail]) -> dict[str, dict[str, AdoptionRow]]:
        """Conclusions delivered in the period by the agency's answer at `as_of`: in all
        (`["all"][""]`), by agency and by kind."""
        out: dict[str, dict[str, AdoptionRow]] = {
            "all": {"": AdoptionRow()},
            "agency": defaultdict(AdoptionRow),
            "kind": {k.value: AdoptionRow() for k in RequestKind},
        }
        answers = {s.value for s in AdoptionStatus}
        for t in trails:
            if not self.inside(t.delivered):
                continue
            d = t.adoption
            if t.adoption_status in answers:
                answer = t.adoption_status
            elif d is not None and d.due < self.as_of:
                answer = "no_answer"
            else:
                answer = "awaiting"
            late = answer in answers and d is not None and d.met_at is not None and d.met_at > d.due
            for group, key in (
                ("all", ""),
                ("agency", t.facts.agency_code),
                ("kind", t.facts.kind.value),
            ):
                row = out[group][key]
                row.delivered += 1
                setattr(row, answer, getattr(row, answer) + 1)
                row.answered_late += late
        out["agency"] = dict(sorted(out["agency"].items()))
        return out


def by_party(rows: list[OnTime]) -> dict[str, OnTime]:
    totals = {p: OnTime(party=p, deadline="all") for p in PARTIES}
    for row in rows:
        total = totals[row.party]
        for name in ("on_time", "late", "extensions", "extension_days"):
            setattr(total, name, getattr(total, name) + getattr(row, name))
    return totals


def experts_total(rows: list[ExpertRow]) -> ExpertRow:
    total = ExpertRow(expert_code="all")
    for r in rows:
        for name in ExpertRow.model_fields:
            if name not in ("expert_code", "load"):
                setattr(total, name, getattr(total, name) + getattr(r, name))
    return total


def _peak(intervals: list[tuple[datetime, datetime | None]], start: datetime, end: datetime) -> int:
    """The most intervals open at once between `start` and `end` (an interval is open from
    its opening up to, not including, its closing; None: still open)."""
    if end <= start:
        return 0
    instants = [start] + [o for o, _ in intervals if start < o < end]
    return max(sum(o <= i and (c is None or i < c) for o, c in intervals) for i in instants)
