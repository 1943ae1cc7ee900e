"""What the request and assignment workflows share: activity options, the refusal a person
gets, when a history is long enough to continue as new, and recording a transition. Kept apart
from the workflow classes so the sandbox re-imports as little as possible."""

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from activities.persistence import PersistenceActivities
from domain.messages import TransitionInput

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


class Refused(ApplicationError):
    """A person's action refused: the message names the field or the rule. Raised by a
    validator it keeps the update out of the history; raised by a handler it fails the update
    before anything is recorded. Either way the caller reads the message as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="InvalidAction", non_retryable=True)


def history_is_long(limit: int | None) -> bool:
    """Past `limit` events (tests set one), or when the server suggests continuing as new."""
    info = workflow.info()
    if limit is not None:
        return info.get_current_history_length() > limit
    return info.is_continue_as_new_suggested()


async def record(request_id: str, step: str, action: str, *, summary: str, **fields: Any) -> None:
    """Persists one transition of this workflow, keyed `<workflow id>:<step>` so a retried
    activity writes nothing twice. `summary` labels the step in the Temporal UI: the action and
    the state, never the people."""
    await workflow.execute_activity_method(
        PersistenceActivities.record_transition,
        TransitionInput(
            workflow_id=workflow.info().workflow_id,
            request_id=request_id,
            step=step,
            at=workflow.now(),
            action=action,
            **fields,
        ),
        summary=summary,
        **PERSIST_OPTIONS,
    )


def check_signed_in(inp: Any) -> None:
    """A coordinator's action is taken by a signed-in coordinator, whom it records (and, for
    an approval, who signs). Admission only: histories from before actors were signed in
    replay their handlers without one."""
    if "actor" in type(inp).model_fields and (inp.actor is None or inp.actor.role != "coordinator"):
        raise Refused("actor: a coordinator's action needs a signed-in coordinator")
