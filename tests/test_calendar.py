"""WorkingCalendar on its own: weekends, Vietnamese public holidays from the `holidays` package,
configured days off and worked days, Vietnam's time zone, calendar-day mode.

Expected values are spelled out as literal dates (checked against a printed calendar), and the
UTC+7 offset is built here rather than taken from domain.calendar, so a wrong constant there
fails these tests instead of agreeing with itself.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from domain.calendar import WorkingCalendar

ICT = timezone(timedelta(hours=7))


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0, tz: timezone = ICT) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def end_of(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 23, 59, 59, tzinfo=ICT)


def assert_due(actual: datetime, expected: datetime) -> None:
    # `==` on aware datetimes compares instants only; a deadline must also be stated in
    # Vietnam's offset (it is shown to people as a local date and time).
    assert actual == expected
    assert actual.utcoffset() == timedelta(hours=7)
    assert (actual.date(), actual.time()) == (expected.date(), expected.time())


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar()


# --- weekends -----------------------------------------------------------------------------------


def test_friday_plus_one_working_day_is_end_of_monday(cal):
    assert date(2026, 3, 6).weekday() == 4  # Friday
    assert_due(cal.add_working_days(at(2026, 3, 6, 9), 1), end_of(2026, 3, 9))


def test_day_of_receipt_does_not_count(cal):
    # Monday 09:00 + 1 working day is the end of Tuesday, not of Monday itself.
    assert_due(cal.add_working_days(at(2026, 3, 9, 9), 1), end_of(2026, 3, 10))
    # Received late on a Monday it is still counted from the Monday.
    assert_due(cal.add_working_days(at(2026, 3, 9, 23, 30), 1), end_of(2026, 3, 10))


def test_received_on_a_weekend_counts_from_the_next_working_day(cal):
    # Saturday + 1 → Monday; Sunday + 2 → Tuesday.
    assert_due(cal.add_working_days(at(2026, 3, 7), 1), end_of(2026, 3, 9))
    assert_due(cal.add_working_days(at(2026, 3, 8), 2), end_of(2026, 3, 10))


def test_ten_working_days_span_two_weekends(cal):
    # Mon 2026-03-02 + 10: 03-03..03-06 (4), 03-09..03-13 (9), 03-16 (10).
    assert_due(cal.add_working_days(at(2026, 3, 2), 10), end_of(2026, 3, 16))


def test_zero_days_is_end_of_the_day_of_receipt_and_negative_is_refused(cal):
    assert_due(cal.add_working_days(at(2026, 3, 7, 8), 0), end_of(2026, 3, 7))
    with pytest.raises(ValueError, match="negative"):
        cal.add_working_days(at(2026, 3, 7), -1)


# --- Tết and other public holidays ----------------------------------------------------------


def test_tet_2027_holidays_are_known(cal):
    tet = [date(2027, 2, d) for d in range(4, 11)]  # Thu 02-04 .. Wed 02-10
    assert [d.strftime("%a") for d in tet] == ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
    assert all(not cal.is_working_day(d) for d in tet)
    assert all(cal.holiday_name(d) for d in tet)
    assert "Lunar New Year" in cal.holiday_name(date(2027, 2, 6))
    # Either side of the break is an ordinary working day.
    assert cal.is_working_day(date(2027, 2, 3)) and cal.holiday_name(date(2027, 2, 3)) is None
    assert cal.is_working_day(date(2027, 2, 11)) and cal.holiday_name(date(2027, 2, 11)) is None


def test_tet_2027_pushes_the_deadline_past_the_break(cal):
    # Received Wed 02-03; 02-04..02-10 are Tết; 02-11 Thu = 1, 02-12 Fri = 2,
    # 02-13/14 weekend, 02-15 Mon = 3.
    assert_due(cal.add_working_days(at(2027, 2, 3, 15), 3), end_of(2027, 2, 15))
    # One working day from the eve of the break is the first day back.
    assert_due(cal.add_working_days(at(2027, 2, 3, 15), 1), end_of(2027, 2, 11))
    # Received during the break (on the holiday Monday): 02-11 = 1.
    assert_due(cal.add_working_days(at(2027, 2, 8), 1), end_of(2027, 2, 11))


def test_tet_2026_is_a_whole_week_off(cal):
    tet = [date(2026, 2, d) for d in range(16, 21)]  # Mon 02-16 .. Fri 02-20
    assert [d.strftime("%a") for d in tet] == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert all(not cal.is_working_day(d) for d in tet)
    # Fri 02-13 + 1: weekend, a week of Tết, weekend again → Mon 02-23.
    assert_due(cal.add_working_days(at(2026, 2, 13), 1), end_of(2026, 2, 23))
    # Thu 02-12 + 2: Fri 02-13 = 1, Mon 02-23 = 2.
    assert_due(cal.add_working_days(at(2026, 2, 12), 2), end_of(2026, 2, 23))


def test_national_day_2026_and_its_swapped_day_off(cal):
    # The package moves a day off to Mon 08-31 in exchange for working Sat 08-22;
    # 09-01 and 09-02 are National Day. Fri 08-28 + 1 → Thu 09-03.
    assert not cal.is_working_day(date(2026, 8, 31))
    assert not cal.is_working_day(date(2026, 9, 1)) and not cal.is_working_day(date(2026, 9, 2))
    assert_due(cal.add_working_days(at(2026, 8, 28), 1), end_of(2026, 9, 3))


def test_swapped_working_saturday_known_to_the_package(cal):
    sat = date(2026, 8, 22)
    assert sat.weekday() == 5
    assert cal.is_working_day(sat)
    assert not cal.is_working_day(date(2026, 8, 23))  # the Sunday after is still off
    assert not cal.is_working_day(date(2026, 8, 15))  # an ordinary Saturday
    # Fri 08-21 + 1 is that Saturday; + 2 is Mon 08-24.
    assert_due(cal.add_working_days(at(2026, 8, 21), 1), end_of(2026, 8, 22))
    assert_due(cal.add_working_days(at(2026, 8, 21), 2), end_of(2026, 8, 24))


# --- configured days ------------------------------------------------------------------------


def test_extra_day_off_is_skipped():
    cal = WorkingCalendar(extra_days_off=[date(2026, 3, 13)])  # a Friday
    assert not cal.is_working_day(date(2026, 3, 13))
    # Thu 03-12 + 1: Fri is off, weekend → Mon 03-16.
    assert_due(cal.add_working_days(at(2026, 3, 12), 1), end_of(2026, 3, 16))
    # The default calendar disagrees, so the configuration is what made the difference.
    assert_due(WorkingCalendar().add_working_days(at(2026, 3, 12), 1), end_of(2026, 3, 13))


def test_extra_working_day_counts():
    cal = WorkingCalendar(extra_working_days=[date(2026, 3, 14)])  # a Saturday
    assert cal.is_working_day(date(2026, 3, 14))
    assert not cal.is_working_day(date(2026, 3, 15))
    assert_due(cal.add_working_days(at(2026, 3, 13), 1), end_of(2026, 3, 14))
    assert_due(cal.add_working_days(at(2026, 3, 13), 2), end_of(2026, 3, 16))


def test_extra_working_day_can_fall_in_a_holiday():
    # A province that works Tuesday of Tết 2027.
    cal = WorkingCalendar(extra_working_days=[date(2027, 2, 9)])
    assert_due(cal.add_working_days(at(2027, 2, 3), 1), end_of(2027, 2, 9))
    assert_due(cal.add_working_days(at(2027, 2, 3), 3), end_of(2027, 2, 12))


def test_extra_day_off_wins_over_a_worked_day():
    # Configured off overrides both the package's swapped Saturday and a configured worked day.
    day = date(2026, 8, 22)
    cal = WorkingCalendar(extra_days_off=[day], extra_working_days=[day])
    assert not cal.is_working_day(day)
    assert_due(cal.add_working_days(at(2026, 8, 21), 1), end_of(2026, 8, 24))


# --- time zone ------------------------------------------------------------------------------


def test_utc_start_near_midnight_counts_from_the_vietnamese_date(cal):
    # Thu 2026-03-05 18:30 UTC is already Fri 03-06 01:30 in Vietnam: + 1 working day is Monday
    # (counted from Thursday, as the UTC date would give, it would be Friday).
    start = datetime(2026, 3, 5, 18, 30, tzinfo=UTC)
    assert cal.local_date(start) == date(2026, 3, 6)
    assert_due(cal.add_working_days(start, 1), end_of(2026, 3, 9))
    # Half an hour earlier it is still Thursday in Vietnam (23:59 ICT) → Friday.
    before = datetime(2026, 3, 5, 16, 59, tzinfo=UTC)
    assert cal.local_date(before) == date(2026, 3, 5)
    assert_due(cal.add_working_days(before, 1), end_of(2026, 3, 6))


def test_other_offsets_are_converted(cal):
    # 2026-03-06 20:00 at UTC-5 is Sat 03-07 08:00 in Vietnam → + 1 working day is Monday.
    start = datetime(2026, 3, 6, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert_due(cal.add_working_days(start, 1), end_of(2026, 3, 9))


def test_deadline_instant_in_utc(cal):
    due = cal.add_working_days(at(2026, 3, 6), 1)
    assert due.astimezone(UTC) == datetime(2026, 3, 9, 16, 59, 59, tzinfo=UTC)


def test_naive_datetime_is_refused(cal):
    naive = datetime(2026, 3, 6, 9, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add_working_days(naive, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add_calendar_days(naive, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.due(naive, 1, "calendar")
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.local_date(naive)


# --- calendar-day mode ----------------------------------------------------------------------


def test_calendar_mode_counts_weekends_and_holidays(cal):
    # Wed 2027-02-03 + 3 calendar days is Sat 02-06, in the middle of Tết.
    assert_due(cal.due(at(2027, 2, 3), 3, "calendar"), end_of(2027, 2, 6))
    assert_due(cal.due(at(2027, 2, 3), 3, "working"), end_of(2027, 2, 15))
    # Fri + 1 calendar day is Saturday.
    assert_due(cal.add_calendar_days(at(2026, 3, 6), 1), end_of(2026, 3, 7))
    # Across a month end, from a UTC instant that is already the next day in Vietnam.
    start = datetime(2026, 1, 31, 20, 0, tzinfo=UTC)  # Sun 02-01 03:00 ICT
    assert_due(cal.due(start, 30, "calendar"), end_of(2026, 3, 3))


# --- working_days_between -------------------------------------------------------------------


def test_working_days_between(cal):
    assert cal.working_days_between(date(2026, 3, 6), date(2026, 3, 6)) == 0
    assert cal.working_days_between(date(2026, 3, 6), date(2026, 3, 9)) == 1  # Fri → Mon
    assert cal.working_days_between(date(2026, 3, 6), date(2026, 3, 8)) == 0  # Fri → Sun
    assert cal.working_days_between(date(2026, 3, 2), date(2026, 3, 16)) == 10
    # Across Tết 2027: 02-11, 02-12 and 02-15.
    assert cal.working_days_between(date(2027, 2, 3), date(2027, 2, 15)) == 3
    assert cal.working_days_between(date(2027, 2, 3), date(2027, 2, 10)) == 0
    # Across Tết 2026: Fri 02-13 → Mon 02-23 is one working day.
    assert cal.working_days_between(date(2026, 2, 13), date(2026, 2, 23)) == 1
    # The end before the start counts nothing.
    assert cal.working_days_between(date(2026, 3, 9), date(2026, 3, 6)) == 0


def test_working_days_between_agrees_with_add_working_days():
    cal = WorkingCalendar(
        extra_days_off=[date(2026, 3, 13)], extra_working_days=[date(2026, 8, 15)]
    )
    for start in (date(2026, 3, 11), date(2026, 8, 13), date(2027, 2, 1), date(2026, 2, 10)):
        for n in (1, 2, 5, 12):
            due = cal.add_working_days(datetime.combine(start, datetime.min.time(), ICT), n)
            assert cal.working_days_between(start, due.date()) == n
            # and the day before the deadline had one fewer
            assert cal.working_days_between(start, due.date() - timedelta(days=1)) == n - 1
