"""A report as a file people take away: CSV, XLSX or the PDF in the Union's letterhead. Each
function turns one `domain.reports.Report` into bytes; nothing here reads the database.

CSV is long and tidy — one figure a row, which a spreadsheet's pivot table or a script
regroups as it likes:

    Kỳ báo cáo,Phần,Nhóm,Mục,Chỉ tiêu,Giá trị
    2026,Hồ sơ,Tháng,2026-03,Tiếp nhận,4
    2026,Bảo đảm thời hạn,Chuyên gia,Gửi ý kiến,Tỷ lệ đúng hạn,0.8571428571428571

(period, section, group, key, measure, value): the section is a part of the report; the
group and key say which slice of it (a month, a kind, an agency's code, a field, a stage, a
party and its deadline, an expert's code and a month of their load); the value is a number —
a share from 0 to 1 for a rate, empty where there is nothing to measure — except in the
overview's rows (the period, its dates, the filter). UTF-8 with a byte-order mark, without
which Excel reads Vietnamese as Windows-1252.

XLSX has a sheet per part (overview with the period and the filter; per month; by agency,
kind and field; time in stage; deadlines kept; experts and their load; adoption): typed
numbers and dates, rates as percentages, the header row bold and frozen.

The PDF (`to_pdf`, starter/reports/pdf.py) is the report a Union sends, in Vietnamese.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from pydantic import BaseModel

from domain.calendar import VN_TZ
from domain.reports import STAGES, Report
from starter.portal.i18n import Language
from starter.reports.pdf import to_pdf
from starter.reports.words import (
    ADOPTION,
    EXPERTS,
    LOAD,
    ON_TIME,
    RATES,
    STAGE_TIME,
    TURNAROUND,
    VOLUMES,
    Names,
    Words,
)

__all__ = ["Names", "to_csv", "to_pdf", "to_xlsx"]

Row = tuple[str, str, str, str, Any]  # section, group, key, measure, value


# --- the figures, one a row ---------------------------------------------------------------------


def figures(report: Report, language: Language = "vi") -> Iterator[Row]:
    """Every figure of the report as (section, group, key, measure, value), in the
    language's words; what the CSV holds, below its period column."""
    w = Words(language)
    overview = w._("Overview")
    for measure, value in _overview(report, w):
        yield overview, "", "", measure, value

    section = w._("Requests")
    yield from _measured(section, w._("All"), "", report.volumes, VOLUMES, w)
    for group, rows in (
        (w._("Month"), report.per_month),
        (w._("Kind"), {w.kind(k): v for k, v in report.by_kind.items()}),
        (w._("Agency"), report.by_agency),
        (w._("Field of expertise"), report.by_field),
    ):
        for key, volumes in rows.items():
            yield from _measured(section, group, key, volumes, VOLUMES, w)

    yield from _measured(w._("Turnaround"), w._("All"), "", report.turnaround, TURNAROUND, w)

    section = w._("Time in stage")
    for stage in STAGES:
        time = report.time_in_stage[stage.value]
        yield from _measured(section, w._("Stage"), w.stage(stage.value), time, STAGE_TIME, w)

    section = w._("Deadlines kept")
    for row in report.on_time:
        key = w.deadline(row.party, row.deadline)
        yield from _measured(section, w.party(row.party), key, row, ON_TIME, w)
    for party, row in report.on_time_by_party.items():
        yield from _measured(section, w.party(party), w.deadline(party, "all"), row, ON_TIME, w)

    section = w._("Experts")
    for expert in [*report.experts, report.experts_total]:
        code = w._("All") if expert is report.experts_total else expert.expert_code
        yield from _measured(section, code, "", expert, EXPERTS, w)
    for expert in report.experts:
        for month, load in expert.load.items():
            yield section, expert.expert_code, month, w._(LOAD), load

    section = w._("Adoption")
    yield from _measured(section, w._("All"), "", report.adoption, ADOPTION, w)
    for group, rows in (
        (w._("Agency"), report.adoption_by_agency),
        (w._("Kind"), {w.kind(k): v for k, v in report.adoption_by_kind.items()}),
    ):
        for key, adoption in rows.items():
            yield from _measured(section, group, key, adoption, ADOPTION, w)


def _measured(
    section: str, group: str, key: str, model: BaseModel, fields: Mapping[str, str], w: Words
) -> Iterator[Row]:
    for name, measure in fields.items():
        yield section, group, key, w._(measure), getattr(model, name)


def _overview(report: Report, w: Words) -> list[tuple[str, Any]]:
    chosen = report.filter
    every = w._("All")
    return [
        (w._("Period"), report.period.label),
        (w._("From"), report.period.start),
        (w._("To"), report.period.end),
        (w._("Figures as of"), _local(report.as_of)),
        (w._("Agencies"), ", ".join(sorted(chosen.agencies)) or every),
        (w._("Kinds of request"), ", ".join(w.kind(k) for k in sorted(chosen.kinds)) or every),
        (w._("Fields of expertise"), ", ".join(sorted(chosen.fields)) or every),
    ]


def _local(instant: datetime) -> datetime:
    """Vietnam's wall-clock time, to the minute, without a zone (a spreadsheet has none)."""
    return instant.astimezone(VN_TZ).replace(tzinfo=None, second=0, microsecond=0)


# --- CSV ----------------------------------------------------------------------------------------


def to_csv(report: Report, language: Language = "vi") -> bytes:
    w = Words(language)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [w._("Period"), w._("Section"), w._("Group"), w._("Key"), w._("Measure"), w._("Value")]
    )
    for row in figures(report, language):
        writer.writerow([report.period.label, *row[:4], _csv_value(row[4])])
    return out.getvalue().encode("utf-8-sig")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return value  # int, float (repr round-trips) or text


# --- XLSX ---------------------------------------------------------------------------------------

PERCENT = "0.0%"
DAY = "dd/mm/yyyy"
MONTH = "mm/yyyy"
MINUTE = "dd/mm/yyyy hh:mm"
BOLD = Font(bold=True)


def to_xlsx(report: Report, language: Language = "vi", *, names: Names | None = None) -> bytes:
    w = Words(language)
    names = names or Names()
    book = Workbook()
    book.remove(book.active)
    every = w._("All")
    total = w._("Total")

    # Overview: the period and the filter, then the headline figures.
    rows: list[list[Any]] = [[w._("Overview"), m, v] for m, v in _overview(report, w)]
    rates = set()
    for section, model, fields in (
        (w._("Requests"), report.volumes, VOLUMES),
        (w._("Turnaround"), report.turnaround, TURNAROUND),
        (w._("Experts"), report.experts_total, EXPERTS),
        (w._("Adoption"), report.adoption, ADOPTION),
    ):
        for f, label in fields.items():
            rates |= {len(rows)} if f in RATES else set()
            rows.append([section, w._(label), getattr(model, f)])
    _sheet(
        book,
        w._("Overview"),
        [w._("Section"), w._("Measure"), w._("Value")],
        rows,
        cell_formats={(i, 2): PERCENT for i in rates},
        widths={2: 22},
    )

    volumes = list(VOLUMES)
    heads = [w._(VOLUMES[f]) for f in volumes]
    rows = [[_first_of(m), *_values(v, volumes)] for m, v in report.per_month.items()]
    rows.append([total, *_values(report.volumes, volumes)])
    _sheet(
        book,
        w._("By month"),
        [w._("Month"), *heads],
        rows,
        totals={len(rows) - 1},
        column_formats={0: MONTH},
    )

    rows = [
        [code, names.agencies.get(code, code), *_values(v, volumes)]
        for code, v in report.by_agency.items()
    ]
    rows.append([total, "", *_values(report.volumes, volumes)])
    _sheet(
        book,
        w._("By agency"),
        [w._("Code"), w._("Agency"), *heads],
        rows,
        totals={len(rows) - 1},
    )

    rows = [[w.kind(k), *_values(v, volumes)] for k, v in report.by_kind.items()]
    rows.append([total, *_values(report.volumes, volumes)])
    _sheet(book, w._("By kind"), [w._("Kind"), *heads], rows, totals={len(rows) - 1})

    # No total: a request counts under each of its fields.
    rows = [[f, *_values(v, volumes)] for f, v in report.by_field.items()]
    _sheet(book, w._("By field"), [w._("Field of expertise"), *heads], rows)

    fields = list(STAGE_TIME)
    rows = [[w.stage(s.value), *_values(report.time_in_stage[s.value], fields)] for s in STAGES]
    _sheet(book, w._("Time in stage"), [w._("Stage"), *(w._(STAGE_TIME[f]) for f in fields)], rows)

    fields = list(ON_TIME)
    rows = [
        [w.party(o.party), w.deadline(o.party, o.deadline), *_values(o, fields)]
        for o in report.on_time
    ]
    first_total = len(rows)
    rows += [
        [w.party(p), w.deadline(p, "all"), *_values(o, fields)]
        for p, o in report.on_time_by_party.items()
    ]
    _sheet(
        book,
        w._("Deadlines kept"),
        [w._("Party"), w._("Deadline"), *(w._(ON_TIME[f]) for f in fields)],
        rows,
        totals=set(range(first_total, len(rows))),
        column_formats={2 + fields.index("rate"): PERCENT},
    )

    fields = list(EXPERTS)
    rows = [
        [e.expert_code, names.experts.get(e.expert_code, e.expert_code), *_values(e, fields)]
        for e in report.experts
    ]
    rows.append([total, "", *_values(report.experts_total, fields)])
    _sheet(
        book,
        w._("Experts"),
        [w._("Code"), w._("Expert"), *(w._(EXPERTS[f]) for f in fields)],
        rows,
        totals={len(rows) - 1},
        column_formats={2 + fields.index(f): PERCENT for f in RATES & set(fields)},
        freeze="C2",
    )

    months = report.period.months()
    rows = [
        [e.expert_code, names.experts.get(e.expert_code, e.expert_code)]
        + [e.load.get(m, 0) for m in months]
        for e in report.experts
    ]
    _sheet(
        book,
        w._("Expert load by month"),
        [w._("Code"), w._("Expert"), *(w.month(m) for m in months)],
        rows,
        freeze="C2",
    )

    fields = list(ADOPTION)
    rows = [[every, "", "", *_values(report.adoption, fields)]]
    rows += [
        [w._("Agency"), code, names.agencies.get(code, code), *_values(a, fields)]
        for code, a in report.adoption_by_agency.items()
    ]
    rows += [
        [w._("Kind"), k, w.kind(k), *_values(a, fields)] for k, a in report.adoption_by_kind.items()
    ]
    _sheet(
        book,
        w._("Adoption"),
        [w._("Group"), w._("Key"), w._("Agency or kind"), *(w._(ADOPTION[f]) for f in fields)],
        rows,
        totals={0},
    )

    book.properties.title = w._("Report")
    book.properties.creator = "Advisory & Review Engine"
    # The workbook is dated by the moment its figures stand at, not by when it was written.
    book.properties.created = book.properties.modified = _local(report.as_of)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _values(model: BaseModel, fields: Iterable[str]) -> list[Any]:
    return [getattr(model, f) for f in fields]


def _first_of(month: str) -> date:
    return date(int(month[:4]), int(month[5:]), 1)


def _sheet(
    book: Workbook,
    title: str,
    header: list[str],
    rows: list[list[Any]],
    *,
    totals: set[int] = frozenset(),
    column_formats: Mapping[int, str] | None = None,
    cell_formats: Mapping[tuple[int, int], str] | None = None,
    widths: Mapping[int, int] | None = None,
    freeze: str = "B2",
) -> Worksheet:
    """One sheet: the header row bold, wrapped and frozen (with the first column, or the
    first two where both name the row), typed cells, columns as wide as what they hold."""
    sheet = book.create_sheet(title[:31])
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = BOLD
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for i, row in enumerate(rows):
        sheet.append(row)
        for j, cell in enumerate(sheet[i + 2]):
            if i in totals:
                cell.font = BOLD
            fmt = (cell_formats or {}).get((i, j)) or (column_formats or {}).get(j)
            if fmt and cell.value is not None and not isinstance(cell.value, str):
                cell.number_format = fmt
            elif isinstance(cell.value, datetime):
                cell.number_format = MINUTE
            elif isinstance(cell.value, date):
                cell.number_format = DAY
    for j, head in enumerate(header):
        shown = [_shown_width(r[j]) for r in rows if j < len(r)]
        longest_word = max((len(word) for word in head.split()), default=0)
        width = max([8, min(len(head), 24), longest_word, *shown]) + 2
        width = max(width, (widths or {}).get(j, 0))
        sheet.column_dimensions[get_column_letter(j + 1)].width = min(width, 60)
    sheet.freeze_panes = freeze
    return sheet


def _shown_width(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, float):
        return 7  # "100.0%", "12.5"
    if isinstance(value, datetime):
        return 16
    if isinstance(value, date):
        return 10
    return len(str(value))
