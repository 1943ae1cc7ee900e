"""The reports page: how well the Union coordinates, for its office and its operators.

    GET /portal/reports    a period (a year, a quarter, a month or two dates) and filters
                           (agency, kind, expertise field) → figures, charts and tables

Every figure is `db.reports.report`'s, defined once in `domain/reports.py` (the README's
"Reports: what each measure means"); this page only reads the form, formats the figures for
its reader and draws them (`starter.reports.charts`), each chart beside a table holding the
same figures. A GET form, so a report is a link to keep or send. Input that names no period
or something no registry knows gets the page again with the message beside the field and
HTTP 400; a period with nothing in it is no error: the page says so."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from markupsafe import Markup

from db import queries as q
from db import reports as db_reports
from domain.calendar import VN_TZ
from domain.models import RequestKind
from domain.reports import (
    LONGEST_YEARS,
    ON_TIME_ROWS,
    PARTIES,
    Report,
    ReportFilter,
    ReportInputError,
    ReportPeriod,
    parse_period,
)
from infra.links import PREFIX
from starter.portal import acting
from starter.portal.forms import Form
from starter.portal.i18n import N_, format_date, format_number, format_percent
from starter.portal.office import FILTER_REFUSALS, check_filters
from starter.portal.pages import NAVIGATION, PageError, render
from starter.portal.people import SignedIn, Visitor, only
from starter.reports import charts, exports
from starter.reports.charts import ChartText
from starter.reports.words import DEADLINE_NAMES, PARTY_NAMES

router = APIRouter(include_in_schema=False)
staff = Depends(only("coordinator", "operator"))

PATH = f"{PREFIX}/reports"
NAVIGATION_ENTRY = (PATH, N_("Reports"))

PERIOD_FIELDS = ("by", "year", "quarter", "month", "from", "to")
FILTERS = ("agency", "kind", "field")
BY = {
    "year": N_("A year"),
    "quarter": N_("A quarter of the year"),
    "month": N_("A month of the year"),
    "range": N_("From one date to another"),
}
# The fields each way of choosing a period reads.
USES = {
    "year": {"year"},
    "quarter": {"year", "quarter"},
    "month": {"year", "month"},
    "range": {"from", "to"},
}
# How db.reports names a filter it refuses, and the form's field for it.
REFUSED_FILTER = {"agencies": "agency", "kinds": "kind", "fields": "field"}

ADOPTION_NAMES = (
    N_("Adopted"),
    N_("Partially adopted"),
    N_("Not adopted"),
    N_("No answer by the deadline"),
    N_("Awaiting the answer"),
)


def add_navigation() -> None:
    """The reports' menu entry for the office and its operators (install calls it)."""
    for role in ("coordinator", "operator"):
        if NAVIGATION_ENTRY not in NAVIGATION[role]:
            NAVIGATION[role].append(NAVIGATION_ENTRY)


# --- the form ----------------------------------------------------------------------------------


def _defaults(today: date) -> dict[str, str]:
    """The form as it first opens: the current year; the other ways of choosing a period
    filled in with today's quarter, month, and the year so far."""
    return {
        "by": "year",
        "year": str(today.year),
        "quarter": str((today.month - 1) // 3 + 1),
        "month": str(today.month),
        "from": date(today.year, 1, 1).isoformat(),
        "to": today.isoformat(),
    }


def _read_form(me: Visitor, today: date) -> Form:
    """The query's values; a period not given at all is the form's default (the current
    year), so a bare /portal/reports is this year's report. Fields the chosen period does
    not read, left empty, show their defaults, ready for the next choice."""
    params = me.request.query_params
    given = {n: params.get(n, "").strip() for n in (*PERIOD_FIELDS, *FILTERS)}
    defaults = _defaults(today)
    if not any(given[n] for n in PERIOD_FIELDS):
        given.update(defaults)
    given["by"] = given["by"] or "year"  # ?year=2025 is that year's report
    for name in PERIOD_FIELDS:
        if not given[name] and name not in USES.get(given["by"], set()) | {"by"}:
            given[name] = defaults[name]
    return Form(values={n: [v] for n, v in given.items()})


DMY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def _day(me: Visitor, form: Form, name: str) -> date | None:
    """A date field: as a date input sends it (2026-01-31) or as the portal writes dates
    (31/01/2026), for a browser without a date picker."""
    text = form.value(name)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        if m := DMY.fullmatch(text):
            return date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        pass
    form.error(name, me.gettext("Enter a date the calendar has, like 31/01/2026."))
    return None


def _period(me: Visitor, form: Form) -> ReportPeriod | None:
    """The period the form names, or None with each wrong field refused beside it."""
    by = form.value("by")
    if by not in USES:
        form.error("by", me.gettext("Choose a year, a quarter, a month or two dates."))
        return None
    if by == "range":
        start, end = _day(me, form, "from"), _day(me, form, "to")
        if start is None or end is None:
            return None
        if end < start:
            form.error(
                "to",
                me.gettext(
                    "The last day must not be before the first day (%(start)s).",
                    start=format_date(start),
                ),
            )
            return None
        if (end.year - start.year) * 12 + end.month - start.month >= LONGEST_YEARS * 12:
            form.error(
                "to",
                me.gettext("A report covers at most %(n)d years.", n=LONGEST_YEARS),
            )
            return None
        text = f"{start}..{end}"
    else:
        year = form.value("year")
        if not re.fullmatch(r"\d{4}", year) or year == "0000":
            form.error("year", me.gettext("Enter a year of four digits, like 2026."))
            return None
        text = year
        if by == "quarter":
            quarter = form.value("quarter")
            if quarter not in ("1", "2", "3", "4"):
                form.error("quarter", me.gettext("Choose a quarter, from the first to the fourth."))
                return None
            text = f"{year}-Q{quarter}"
        elif by == "month":
            month = form.value("month")
            if not re.fullmatch(r"\d{1,2}", month) or not 1 <= int(month) <= 12:
                form.error("month", me.gettext("Choose a month, from 1 to 12."))
                return None
            form.values["month"] = [str(int(month))]  # "03" is the option "3"
            text = f"{year}-{int(month):02d}"
    try:
        return parse_period(text)
    except ReportInputError:  # the checks above leave nothing it refuses; kept for safety
        form.error("by", me.gettext("Choose a year, a quarter, a month or two dates."))
        return None


def _period_name(me: Visitor, period: ReportPeriod, by: str) -> str:
    """The period in words: "năm 2026", "quý 3 năm 2026", "tháng 07/2026", "từ 01/01/2026
    đến 30/06/2026"."""
    if by == "year":
        return me.gettext("the year %(year)s", year=period.start.year)
    if by == "quarter":
        return me.gettext(
            "quarter %(q)s of %(year)s",
            q=(period.start.month - 1) // 3 + 1,
            year=period.start.year,
        )
    if by == "month":
        return me.gettext("month %(month)s", month=period.start.strftime("%m/%Y"))
    return me.gettext(
        "from %(start)s to %(end)s", start=format_date(period.start), end=format_date(period.end)
    )


# --- the page ----------------------------------------------------------------------------------


@dataclass
class Words:
    """The report's names and numbers in the reader's language, for the template and the
    charts alike."""

    me: Visitor
    agencies: dict[str, str]
    experts: dict[str, str]

    def n(self, value: float | None) -> str:
        return "–" if value is None else format_number(value, self.me.language)

    def pct(self, share: float | None) -> str:
        return "–" if share is None else format_percent(share, self.me.language)

    def stage(self, stage: str) -> str:
        name = acting.stage_name(self.me, stage)
        return name[:1].upper() + name[1:]

    def party(self, party: str) -> str:
        return self.me.gettext(PARTY_NAMES[party])

    def deadline(self, party: str, deadline: str) -> str:
        return self.me.gettext(DEADLINE_NAMES[(party, deadline)])

    def agency(self, code: str) -> str:
        return self.agencies.get(code, code)

    def expert(self, code: str) -> str:
        return self.experts.get(code, code)

    def month(self, month: str) -> str:
        return f"{month[5:7]}/{month[:4]}"


def _charts(me: Visitor, report: Report, w: Words, period_name: str) -> dict[str, Markup]:
    """The four charts, drawn in the reader's words; each described as what it shows and
    where its figures are written out."""
    _ = me.gettext
    received, completed = _("Received"), _("Completed")
    months = charts.requests_per_month(
        report.per_month,
        ChartText(
            title=_("Requests per month"),
            description=_(
                "Bar chart of the requests received and completed in each month of "
                "%(period)s. The table “Requests per month” gives the same figures.",
                period=period_name,
            ),
            series=[received, completed],
            axis=_("requests"),
            empty=_("No request was received, completed or closed in this period."),
        ),
        number=w.n,
    )
    stages = charts.time_in_stage(
        report.time_in_stage,
        ChartText(
            title=_("Time in each stage"),
            description=_(
                "Bar chart of the median and the 90th percentile of the working days "
                "requests spent in each stage, over the stages left in %(period)s. The table "
                "“Time in each stage” gives the same figures.",
                period=period_name,
            ),
            series=[_("Median"), _("90th percentile")],
            names={s: w.stage(s) for s in report.time_in_stage},
            axis=_("working days"),
            empty=_("No request left a stage in this period."),
        ),
        number=w.n,
    )
    on_time = charts.on_time_by_party(
        report.on_time_by_party,
        ChartText(
            title=_("On-time rate by party"),
            description=_(
                "Bar chart of the share of each party's deadlines met on time in "
                "%(period)s, from 0 to 100%%. The table “On time, by party” gives the same "
                "figures.",
                period=period_name,
            ),
            names={p: w.party(p) for p in PARTIES},
            axis=_("deadlines met on time"),
            empty=_("No deadline fell due or was met in this period."),
        ),
        percent=w.pct,
    )
    adoption = charts.adoption_by_agency(
        report.adoption_by_agency,
        ChartText(
            title=_("Adoption of the conclusions, by agency"),
            description=_(
                "Stacked bar chart of the conclusions delivered to each agency in "
                "%(period)s, by the agency's answer on adoption. The table “Adoption by "
                "agency” gives the same figures.",
                period=period_name,
            ),
            series=[_(name) for name in ADOPTION_NAMES],
            names={code: w.agency(code) for code in report.adoption_by_agency},
            axis=_("conclusions delivered"),
            empty=_("No conclusion was delivered in this period."),
        ),
        number=w.n,
    )
    # The markup is charts.py's own, every word in it escaped there.
    return {
        "months": Markup(months),
        "stages": Markup(stages),
        "on_time": Markup(on_time),
        "adoption": Markup(adoption),
    }


def _peak(load: dict[str, int]) -> int | None:
    return max(load.values()) if load else None


def _context(
    me: Visitor, report: Report, by: str, agencies: dict[str, str], experts: dict[str, str]
) -> dict[str, Any]:
    w = Words(me, agencies, experts)
    period_name = _period_name(me, report.period, by)
    as_of = report.as_of.astimezone(VN_TZ)
    return {
        "report": report,
        "w": w,
        "period_name": period_name,
        "as_of": f"{format_date(as_of)} {as_of:%H:%M}",
        "charts": {} if report.empty else _charts(me, report, w, period_name),
        "deadlines": [report.on_time_for(p, d) for p, d in ON_TIME_ROWS],
        "peak": _peak,
        "adoption_parts": list(zip(charts.ADOPTION_PARTS, ADOPTION_NAMES, strict=True)),
        "any_stage": any(s.count for s in report.time_in_stage.values()),
        "any_deadline": any(o.on_time or o.late or o.extensions for o in report.on_time),
    }


def _options(
    me: Visitor, agencies: dict[str, str], fields: list[str]
) -> dict[str, list[tuple[str, str]]]:
    everyone = [("", me.gettext("All"))]
    return {
        "agency": everyone + [(code, name) for code, name in agencies.items()],
        "kind": everyone + [(k.value, me.gettext(label)) for k, label in acting.KINDS.items()],
        "field": everyone + [(f, f) for f in fields],
    }


def _filter(form: Form) -> ReportFilter:
    def chosen(name: str, make: Callable[[str], Any] = str) -> frozenset:
        value = form.value(name)
        return frozenset({make(value)}) if value else frozenset()

    return ReportFilter(
        agencies=chosen("agency"), kinds=chosen("kind", RequestKind), fields=chosen("field")
    )


@dataclass
class _Made:
    """What the page and a download both need: the form as read, the filters' options, and
    the report once the form holds a period and filters the registries know."""

    form: Form
    options: dict[str, Any]
    agencies: dict[str, str]
    report: Report | None = None
    experts: dict[str, str] = field(default_factory=dict)


async def _make(me: SignedIn) -> _Made:
    state = me.request.app.state
    today = datetime.now(UTC).astimezone(VN_TZ).date()
    form = _read_form(me, today)
    period = _period(me, form)
    async with state.pool.acquire() as conn:
        agencies, fields = await db_reports.choices(conn)
    made = _Made(form, _options(me, agencies, fields), agencies)
    check_filters(me, form, made.options)
    if period is not None and form.ok:
        try:
            # The report takes connections of its own from the pool.
            made.report = await db_reports.report(
                state.pool, period, _filter(form), policy=state.policy
            )
        except ReportInputError as refused:
            # Known a moment ago, gone now (an agency removed meanwhile): beside its filter.
            name = REFUSED_FILTER.get(refused.field, "agency")
            form.error(name, me.gettext(FILTER_REFUSALS[name], value=form.value(name)))
        else:
            async with state.pool.acquire() as conn:
                made.experts = await q.expert_names(
                    conn, [e.expert_code for e in made.report.experts]
                )
    return made


def _page(me: SignedIn, made: _Made) -> Response:
    form, report = made.form, made.report
    query = {n: form.value(n) for n in (*PERIOD_FIELDS, *FILTERS) if form.value(n)}
    context: dict[str, Any] = {
        "options": made.options,
        "by_options": [(value, me.gettext(label)) for value, label in BY.items()],
        "quarters": [(str(n), me.gettext("Quarter %(n)d", n=n)) for n in range(1, 5)],
        "months": [(str(n), f"{n:02d}") for n in range(1, 13)],
        "filtered": any(form.value(n) for n in FILTERS),
        # The same period, every filter cleared.
        "unfiltered": f"{PATH}?{urlencode({n: form.value(n) for n in PERIOD_FIELDS})}",
        # The same report to take away; the PDF is signed, so only a coordinator gets it.
        "downloads": [
            (label, f"{PATH}/download?{urlencode({**query, 'format': kind})}")
            for kind, label in DOWNLOADS.items()
            if kind != "pdf" or me.person.role == "coordinator"
        ],
        "report": None,
    }
    if report is not None:
        context.update(_context(me, report, form.value("by"), made.agencies, made.experts))
    return render(me, "reports/page.html", context, form=form, status=200 if form.ok else 400)


@router.get("/reports")
async def reports(me: SignedIn = staff) -> Response:
    return _page(me, await _make(me))


DOWNLOADS = {"csv": "CSV", "xlsx": "XLSX (Excel)", "pdf": "PDF"}
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


@router.get("/reports/download")
async def download(me: SignedIn = staff, format: str = "csv") -> Response:  # noqa: A002
    """The report the page shows, as a file: CSV and XLSX in the reader's language, the PDF
    in Vietnamese in the Union's letterhead, signed by the coordinator who asks for it (an
    operator reads reports but signs nothing: 403). A form the page would refuse gets the
    page with its errors (400)."""
    if format not in DOWNLOADS:
        raise PageError(me, 404, "not_found.html")
    if format == "pdf" and me.person.role != "coordinator":
        raise PageError(me, 403, "forbidden.html")
    made = await _make(me)
    report = made.report
    if report is None:
        return _page(me, made)
    names = exports.Names(agencies=made.agencies, experts=made.experts)
    if format == "csv":
        data = exports.to_csv(report, me.language)
    elif format == "xlsx":
        data = exports.to_xlsx(report, me.language, names=names)
    else:
        signer = me.person.actor
        data = exports.to_pdf(
            report,
            union=me.request.app.state.policy.union,
            signer_name=signer.name,
            signer_title=signer.title,
            names=names,
        )
    stem = "bao-cao" if format == "pdf" or me.language == "vi" else "report"
    name = f"{stem}-{report.period.label.replace('..', '_')}.{format}"
    return Response(
        data,
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
