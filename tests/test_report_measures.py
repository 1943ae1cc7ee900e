"""Periods and filters of a report, as people type them."""

from __future__ import annotations

import pytest

from domain.reports import ReportFilter, ReportInputError, parse_period


def test_a_filter_naming_what_no_registry_knows_is_refused():
    f = ReportFilter(agencies={"SXD", "XYZ"})
    with pytest.raises(ReportInputError, match=r"^agencies: .*'XYZ'") as err:
        f.check_known(agencies=["SXD", "STNMT"], fields=["construction"])
    assert err.value.field == "agencies"
    with pytest.raises(ReportInputError, match=r"^fields: .*'astrology'"):
        ReportFilter(fields={"astrology"}).check_known(agencies=[], fields=["construction"])
    ReportFilter(agencies={"SXD"}, fields={"Construction"}).check_known(
        agencies=["SXD"], fields=["construction"]
    )


@pytest.mark.parametrize(
    ("text", "start", "end", "label"),
    [
        ("2026", "2026-01-01", "2026-12-31", "2026"),
        ("2026-Q3", "2026-07-01", "2026-09-30", "2026-Q3"),
        (" 2026-q1 ", "2026-01-01", "2026-03-31", "2026-Q1"),
        ("2026-07", "2026-07-01", "2026-07-31", "2026-07"),
        ("2026-02", "2026-02-01", "2026-02-28", "2026-02"),
        ("2024-02", "2024-02-01", "2024-02-29", "2024-02"),
        ("2026-12", "2026-12-01", "2026-12-31", "2026-12"),
        ("2026-01-01..2026-06-30", "2026-01-01", "2026-06-30", "2026-01-01..2026-06-30"),
        ("2026-03-05 .. 2026-03-05", "2026-03-05", "2026-03-05", "2026-03-05..2026-03-05"),
    ],
)
def test_periods_people_type(text, start, end, label):
    p = parse_period(text)
    assert (p.start.isoformat(), p.end.isoformat(), p.label) == (start, end, label)


def test_a_period_knows_its_months():
    assert parse_period("2026-Q3").months() == ["2026-07", "2026-08", "2026-09"]
    assert parse_period("2025-12-15..2026-01-10").months() == ["2025-12", "2026-01"]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "is not a period"),
        ("26", "is not a period"),
        ("last year", "is not a period"),
        ("2026-Q5", "a quarter is Q1 to Q4"),
        ("2026-Q0", "a quarter is Q1 to Q4"),
        ("2026-13", "a month is 01 to 12"),
        ("2026-00", "a month is 01 to 12"),
        ("2026-02-30..2026-03-01", "is not a date the calendar has"),
        ("0000", "is not a date the calendar has"),
        ("2026-06-30..2026-01-01", "ends before it starts"),
    ],
)
def test_a_malformed_or_inverted_period_is_refused(text, rule):
    with pytest.raises(ReportInputError, match=r"^period: ") as err:
        parse_period(text)
    assert rule in str(err.value)
    assert err.value.field == "period"
