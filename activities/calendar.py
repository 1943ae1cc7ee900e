"""Deadlines in working days. An activity, not workflow code: the holiday tables come from a
package that changes between releases, and a replayed history must keep the date it recorded."""

from __future__ import annotations

from functools import lru_cache

from temporalio import activity

from domain.calendar import WorkingCalendar
from domain.messages import (
    DueDateInput,
    DueDateResult,
    ReminderInstant,
    ReminderPlanInput,
    ReminderPlanResult,
)
from domain.policy import CalendarPolicy


@lru_cache(maxsize=16)
def _calendar(policy_json: str) -> WorkingCalendar:
    policy = CalendarPolicy.model_validate_json(policy_json)
    return WorkingCalendar(policy.extra_days_off, policy.extra_working_days)


class CalendarActivities:
    @activity.defn(name="due_date")
    async def due_date(self, inp: DueDateInput) -> DueDateResult:
        cal = _calendar(inp.calendar.model_dump_json())
        return DueDateResult(due=cal.due(inp.start, inp.days, inp.mode))

    @activity.defn(name="reminder_plan")
    async def reminder_plan(self, inp: ReminderPlanInput) -> ReminderPlanResult:
        cal = _calendar(inp.calendar.model_dump_json())
        plan = cal.reminder_plan(
            inp.now,
            inp.due,
            before=inp.schedule.before,
            overdue_every=inp.schedule.overdue_every,
            grace=inp.schedule.grace,
            mode=inp.mode,
            hour=inp.calendar.reminder_hour,
        )
        return ReminderPlanResult(
            instants=[ReminderInstant(at=at, kind=kind, days=n) for at, kind, n in plan]
        )
