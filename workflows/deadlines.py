"""Deadlines as objects, shared by the request and its experts' assignments.

A `DeadlineWatch` runs one deadline's reminder plan as durable timers: reminders some days
before, the deadline itself, overdue reminders within the grace period, then escalation. What
each instant does is the owner's (`act`), always under the owner's lock, and only while the
watch is still current:

    owner                          watch task
    ─────                          ──────────
    DeadlineWatch(...)      ──►    plan = reminder_plan(due)
                                   sleep until the next instant ──► lock ─► act(instant)
    watch.move(new_due)     ──►    wakes, plans again from now (extension)
    watch.stop()            ──►    wakes, ends (the work is done, the stage moved on)

An action that meets, moves or ends the deadline while a timer fires wins: the watch re-checks
under the lock, so no reminder follows the work it was about. Each move starts a new generation,
which the owner's reminder keys name, so a plan made again after continue-as-new (which drops
what has passed) never records a reminder twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from temporalio import workflow

from activities.calendar import CalendarActivities
from domain.messages import DueDateInput, ReminderInstant, ReminderPlanInput
from domain.policy import CalendarPolicy, KindPolicy
from workflows.common import COMPUTE_OPTIONS, Refused

# The calendar's answers are local activities (patch marker): computed in the worker's own
# workflow task and kept in the history as a marker, without a round trip to the server.
CALENDAR_IN_THE_TASK = "calendar-in-the-task"


async def _compute(method, arg):
    """Runs a calendar computation: an activity, not workflow code, because the holiday
    tables change between package releases and a history must keep the dates it was given."""
    if workflow.patched(CALENDAR_IN_THE_TASK):
        return await workflow.execute_local_activity_method(method, arg, **COMPUTE_OPTIONS)
    return await workflow.execute_activity_method(method, arg, **COMPUTE_OPTIONS)


async def due_date(start: datetime, days: int, policy: KindPolicy, calendar: CalendarPolicy):
    """The deadline `days` after `start` under the policy's calendar."""
    result = await _compute(
        CalendarActivities.due_date,
        DueDateInput(start=start, days=days, mode=policy.calendar, calendar=calendar),
    )
    return result.due


class DeadlineWatch:
    def __init__(
        self,
        name: str,
        due: datetime,
        generation: int,
        *,
        policy: KindPolicy,
        calendar: CalendarPolicy,
        lock: asyncio.Lock,
        act: Callable[[DeadlineWatch, ReminderInstant], Awaitable[None]],
    ) -> None:
        """`name` is the policy's name for the deadline (screening, respond, review...)."""
        self.name = name
        self.due = due
        self.generation = generation
        self._policy = policy
        self._calendar = calendar
        self._lock = lock
        self._act = act
        self._stopped = False
        asyncio.create_task(self._run())

    def move(self, due: datetime, generation: int) -> None:
        """The deadline moved (an extension): pending timers wake and the plan starts again."""
        self.due = due
        self.generation = generation

    def stop(self) -> None:
        self._stopped = True

    def _current(self, generation: int) -> bool:
        return not self._stopped and self.generation == generation

    async def _run(self) -> None:
        while not self._stopped:
            await self._follow_plan(self.generation)

    async def _follow_plan(self, generation: int) -> None:
        """Acts on each instant of the current plan; returns when the watch moves or stops."""
        plan = await _compute(
            CalendarActivities.reminder_plan,
            ReminderPlanInput(
                now=workflow.now(),
                due=self.due,
                schedule=getattr(self._policy.reminders, self.name),
                mode=self._policy.calendar,
                calendar=self._calendar,
            ),
        )
        for instant in plan.instants:
            if not await self._sleep_until(instant.at, generation):
                return
            async with self._lock:
                if not self._current(generation):
                    return
                await self._act(self, instant)
        await workflow.wait_condition(lambda: not self._current(generation))

    async def _sleep_until(self, at: datetime, generation: int) -> bool:
        """Sleeps until `at`; False when the watch moved or stopped first."""
        delay = (at - workflow.now()).total_seconds()
        if delay > 0:
            try:
                await workflow.wait_condition(lambda: not self._current(generation), timeout=delay)
                return False
            except TimeoutError:
                pass
        return self._current(generation)


def check_extension_bounds(policy: KindPolicy, name: str, granted: int, days: int, more: int):
    """The policy's bounds on one deadline's extensions (a stage's, or one expert's)."""
    if granted >= policy.max_extensions:
        raise Refused(
            f"cannot extend: the {name} deadline has been extended {granted} time(s), "
            f"the most the policy allows"
        )
    if days + more > policy.max_extension_days:
        left = policy.max_extension_days - days
        raise Refused(
            f"days: at most {left} more day(s) may be added to the {name} deadline "
            f"(the policy allows {policy.max_extension_days} in all)"
        )
