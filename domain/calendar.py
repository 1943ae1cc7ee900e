"""Working days: weekends, Vietnamese public holidays (from the `holidays` package) and the
configured extra days off. Deadlines fall at the end of a day in Vietnam's time zone.

Workflows never call this directly: the holiday tables change with package releases, so the
deadline is computed in an activity and its result is what the history records.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import holidays

if TYPE_CHECKING:
    from domain.policy import CalendarPolicy

# Vietnam has kept UTC+7 without daylight saving since 1975; a fixed offset needs no tzdata.
VN_TZ = timezone(timedelta(hours=7), "ICT")
END_OF_DAY = time(23, 59, 59)


class WorkingCalendar:
    def __init__(
        self,
        extra_days_off: tuple[date, ...] | list[date] = (),
        extra_working_days: tuple[date, ...] | list[date] = (),
    ) -> None:
        self._public = holidays.country_holidays("VN")
        self._off = frozenset(extra_days_off)
        self._worked = frozenset(extra_working_days)

    def is_working_day(self, day: date) -> bool:
        if day in self._off:
            return False
        if day in self._worked:
            return True
        return self._public.is_working_day(day)

    def holiday_name(self, day: date) -> str | None:
        return self._public.get(day)

    def local_date(self, instant: datetime) -> date:
        if instant.tzinfo is None:
            raise ValueError("instant must be timezone-aware")
        return instant.astimezone(VN_TZ).date()

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The end of the `days`-th working day after the day of `start`.

        The day something arrives does not count (it is counted from the next day), so a
        request received on a Friday with 1 working day is due at the end of Monday.
        """
        if days < 0:
            raise ValueError("days must not be negative")
        day = self.local_date(start)
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return datetime.combine(day, END_OF_DAY, VN_TZ)

    def add_calendar_days(self, start: datetime, days: int) -> datetime:
        day = self.local_date(start) + timedelta(days=days)
        return datetime.combine(day, END_OF_DAY, VN_TZ)

    def due(self, start: datetime, days: int, mode: Literal["working", "calendar"]) -> datetime:
        if mode == "calendar":
            return self.add_calendar_days(start, days)
        return self.add_working_days(start, days)

    def shift_day(self, day: date, days: int, mode: Literal["working", "calendar"]) -> date:
        """The day `days` (working) days after `day`, or before it when negative."""
        if mode == "calendar":
            return day + timedelta(days=days)
        step = 1 if days >= 0 else -1
        counted = 0
        while counted < abs(days):
            day += timedelta(days=step)
            if self.is_working_day(day):
                counted += 1
        return day

    def reminder_plan(
        self,
        now: datetime,
        due: datetime,
        *,
        before: list[int],
        overdue_every: int,
        grace: int,
        mode: Literal["working", "calendar"],
        hour: int,
    ) -> list[tuple[datetime, str, int]]:
        """The instants at which a deadline acts, in order: ("before", n) reminders n days
        ahead, ("due", 0) at the deadline, ("overdue", n) reminders n days past it while within
        the grace period, and ("escalate", grace) at the end of the grace period's last day.

        Reminders fall at `hour` Vietnam time on their day; those already past are dropped.
        "due" and "escalate" are kept even when past: they must still happen (at once).
        """
        due_day = self.local_date(due)
        plan: list[tuple[datetime, str, int]] = []
        for n in sorted(set(before), reverse=True):
            at = datetime.combine(self.shift_day(due_day, -n, mode), time(hour), VN_TZ)
            if now < at < due:
                plan.append((at, "before", n))
        plan.append((due, "due", 0))
        escalate = due if grace == 0 else self.due(due, grace, mode)
        if overdue_every:
            n = overdue_every
            while n < grace:
                at = datetime.combine(self.shift_day(due_day, n, mode), time(hour), VN_TZ)
                if at > now and due < at < escalate:
                    plan.append((at, "overdue", n))
                n += overdue_every
        plan.append((escalate, "escalate", grace))
        return plan

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end`."""
        n, day = 0, start
        while day < end:
            day += timedelta(days=1)
            n += self.is_working_day(day)
        return n


def working_calendar(policy: CalendarPolicy) -> WorkingCalendar:
    """The calendar a policy's [calendar] describes, built once per distinct policy: the
    holiday tables fill in year by year as they are asked, and are kept for the next caller."""
    return _calendar(tuple(policy.extra_days_off), tuple(policy.extra_working_days))


@lru_cache(maxsize=16)
def _calendar(days_off: tuple[date, ...], working_days: tuple[date, ...]) -> WorkingCalendar:
    return WorkingCalendar(days_off, working_days)
