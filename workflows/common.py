"""Activity options shared by the workflows. Kept apart from the workflow classes so the
sandbox re-imports as little as possible."""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from activities.calendar import CalendarActivities
from domain.messages import DueDateInput, ReminderInstant, ReminderPlanInput
from domain.policy import CalendarPolicy, KindPolicy

# Persisting a transition is idempotent, so it may be retried for as long as the database is
# away: a request waits for PostgreSQL to come back rather than failing.
PERSIST_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=2),
        non_retryable_error_types=["UnknownRecipient"],
    ),
)

COMPUTE_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
)


async def due_date(start: datetime, days: int, policy: KindPolicy, calendar: CalendarPolicy):
    """The deadline `days` after `start` under the policy's calendar (an activity: the
    holiday tables change between package releases, and a history must keep its dates)."""
    result = await workflow.execute_activity_method(
        CalendarActivities.due_date,
        DueDateInput(start=start, days=days, mode=policy.calendar, calendar=calendar),
        **COMPUTE_OPTIONS,
    )
    return result.due


async def reminder_plan(
    due: datetime, name: str, policy: KindPolicy, calendar: CalendarPolicy
) -> list[ReminderInstant]:
    """The instants at which the deadline `name` reminds, falls due and escalates."""
    plan = await workflow.execute_activity_method(
        CalendarActivities.reminder_plan,
        ReminderPlanInput(
            now=workflow.now(),
            due=due,
            schedule=getattr(policy.reminders, name),
            mode=policy.calendar,
            calendar=calendar,
        ),
        **COMPUTE_OPTIONS,
    )
    return plan.instants
