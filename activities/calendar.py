"""Deadlines in working days. An activity, not workflow code: the holiday tables come from a
package that changes between releases, and a replayed history must keep the date it recorded."""

from __future__ import annotations

from temporalio import activity

from domain.calendar import working_calendar
from domain.messages import (
    DueDateInput,
    DueDateResult,
    ReminderInstant,
    ReminderPlanInput,
    ReminderPlanResult,
)


class CalendarActivities:
    @activity.defn(name="due_date")
    async def due_date(self, inp: DueDateInput) -> DueDateResult:
        cal = working_calendar(inp.calendar)
        return DueDateResult(due=cal.due(inp.start, inp.days, inp.mode))

    @activity.defn(name="reminder_plan")
    async def reminder_plan(self, inp: ReminderPlanInput) -> ReminderPlanResult:
        cal = working_calendar(inp.calendar)
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
