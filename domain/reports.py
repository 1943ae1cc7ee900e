"""Reports on coordination, from the audit log alone: what a report reads (audit events and
the requests' facts), over which days (a period as people type it) and which requests (filters).
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from domain.models import Period, RequestKind, Stage

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
                not self.fields or any(f.lower() in self.folded_fields for f in r.expertise_fields)
            )
        )

    @property
    def folded_fields(self) -> frozenset[str]:
        return frozenset(f.lower() for f in self.fields)

    def check_known(self, agencies: Iterable[str], fields: Iterable[str]) -> None:
        """Refuses a filter naming an agency or a field the registries do not know, rather
        than answering with an empty report that looks like a quiet year."""
        unknown = sorted(self.agencies - set(agencies))
        if unknown:
            raise ReportInputError("agencies", f"no registered agency has the code {unknown[0]!r}")
        unknown = sorted(self.folded_fields - {f.lower() for f in fields})
        if unknown:
            raise ReportInputError("fields", f"no expert is registered in the field {unknown[0]!r}")
