"""One invited expert on one request: invite → accept / decline → opinion.

The expert acts on this workflow directly (updates `accept`, `decline`, `submit_opinion`); every
change is persisted by an activity and reported to the request workflow by a signal, so the
request always knows where each of its experts stands.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.calendar import CalendarActivities
    from activities.persistence import PersistenceActivities
    from domain.messages import (
        AcceptInput,
        AssignmentChanged,
        AssignmentOutcome,
        AssignmentRecord,
        DeclineInput,
        DueDateInput,
        ExpertAssignmentInput,
        OpinionRecord,
        SubmitOpinionInput,
        TransitionInput,
    )
    from domain.models import AssignmentState, AssignmentView, Notice, Recipient
    from workflows.common import COMPUTE_OPTIONS, PERSIST_OPTIONS

ASSIGNMENT_CHANGED = "assignment_changed"


def _rejected(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidAction", non_retryable=True)


@workflow.defn
class ExpertAssignmentWorkflow:
    @workflow.init
    def __init__(self, inp: ExpertAssignmentInput) -> None:
        self._inp = inp
        self._view = AssignmentView(
            expert_code=inp.expert_code,
            role=inp.role,
            state=AssignmentState.invited,
            invited_at=workflow.now(),
        )
        # An action claims its new state at once (so the validator of the next action sees
        # it), then records under this lock: transitions are persisted one at a time, in the
        # order they were claimed, the invitation itself first. Nobody is told "try again".
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, inp: ExpertAssignmentInput) -> AssignmentOutcome:
        try:
            async with self._lock:
                self._view.respond_by = await self._due(inp.policy.respond_days)
                await self._record(
                    "invited",
                    "expert_invited",
                    AssignmentState.invited,
                    actor="system",
                    notify=[
                        Notice(recipient=self._expert(), event="invitation", data=self._dates())
                    ],
                )
            await self._tell_parent()
            await workflow.wait_condition(lambda: not self._view.state.is_open)
        except asyncio.CancelledError:
            # Withdrawn or replaced: record it (activities still run after a cancellation
            # request) and end normally so the request sees a clean outcome. Work the expert
            # already finished stands.
            async with self._lock:
                if self._view.state.is_open:
                    self._view.state = AssignmentState.cancelled
                    await self._record(
                        "cancelled",
                        "assignment_cancelled",
                        AssignmentState.cancelled,
                        actor="system",
                        notify=[Notice(recipient=self._expert(), event="assignment_cancelled")],
                    )
            await self._tell_parent()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return AssignmentOutcome(
            expert_code=self._view.expert_code,
            state=self._view.state,
            recommendation=self._view.recommendation,
            decline_reason=self._view.decline_reason,
        )

    @workflow.query
    def assignment(self) -> AssignmentView:
        return self._view

    # --- accept -------------------------------------------------------------------------------

    @workflow.update
    async def accept(self, inp: AcceptInput) -> AssignmentView:
        self._view.state = AssignmentState.accepted
        async with self._lock:
            self._view.due_at = await self._due(self._inp.policy.review_days)
            await self._record(
                "accepted",
                "invitation_accepted",
                AssignmentState.accepted,
                notify=[
                    Notice(recipient=self._expert(), event="review_due", data=self._dates()),
                    Notice(
                        recipient=Recipient(kind="coordinator"),
                        event="expert_accepted",
                        data={"expert_code": self._view.expert_code},
                    ),
                ],
            )
        await self._tell_parent()
        return self._view

    @accept.validator
    def _validate_accept(self, inp: AcceptInput) -> None:
        self._check_actor(inp.expert_code)
        if self._view.state != AssignmentState.invited:
            raise _rejected(f"cannot accept: the invitation is already {self._view.state.value}")

    # --- decline ------------------------------------------------------------------------------

    @workflow.update
    async def decline(self, inp: DeclineInput) -> AssignmentView:
        self._view.state = AssignmentState.declined
        self._view.decline_reason = inp.reason
        async with self._lock:
            await self._record(
                "declined",
                "invitation_declined",
                AssignmentState.declined,
                details={"reason": inp.reason},
                notify=[
                    Notice(
                        recipient=Recipient(kind="coordinator"),
                        event="expert_declined",
                        data={"expert_code": self._view.expert_code},
                    )
                ],
            )
        await self._tell_parent()
        return self._view

    @decline.validator
    def _validate_decline(self, inp: DeclineInput) -> None:
        self._check_actor(inp.expert_code)
        if self._view.state != AssignmentState.invited:
            raise _rejected(f"cannot decline: the invitation is already {self._view.state.value}")

    # --- opinion ------------------------------------------------------------------------------

    @workflow.update
    async def submit_opinion(self, inp: SubmitOpinionInput) -> AssignmentView:
        self._view.state = AssignmentState.submitted
        self._view.recommendation = inp.opinion.recommendation
        async with self._lock:
            await self._record(
                "submitted",
                "opinion_submitted",
                AssignmentState.submitted,
                details={"recommendation": inp.opinion.recommendation.value},
                opinion=OpinionRecord(expert_code=self._view.expert_code, opinion=inp.opinion),
                notify=[
                    Notice(recipient=self._expert(), event="opinion_received"),
                    Notice(
                        recipient=Recipient(kind="coordinator"),
                        event="opinion_submitted",
                        data={"expert_code": self._view.expert_code},
                    ),
                ],
            )
        await self._tell_parent()
        return self._view

    @submit_opinion.validator
    def _validate_submit(self, inp: SubmitOpinionInput) -> None:
        self._check_actor(inp.expert_code)
        if self._view.state == AssignmentState.invited:
            raise _rejected("cannot submit an opinion: accept the invitation first")
        if self._view.state != AssignmentState.accepted:
            raise _rejected(f"cannot submit an opinion: the assignment is {self._view.state.value}")

    # --- helpers ------------------------------------------------------------------------------

    def _check_actor(self, expert_code: str) -> None:
        if expert_code != self._view.expert_code:
            raise _rejected(f"expert_code: {expert_code} is not the expert of this assignment")

    def _expert(self) -> Recipient:
        return Recipient(kind="expert", code=self._view.expert_code)

    def _dates(self) -> dict[str, str | None]:
        v = self._view
        return {
            "role": v.role.value,
            "respond_by": v.respond_by.isoformat() if v.respond_by else None,
            "due_at": v.due_at.isoformat() if v.due_at else None,
        }

    async def _due(self, days: int):
        result = await workflow.execute_activity_method(
            CalendarActivities.due_date,
            DueDateInput(
                start=workflow.now(),
                days=days,
                mode=self._inp.policy.calendar,
                calendar=self._inp.calendar,
            ),
            **COMPUTE_OPTIONS,
        )
        return result.due

    async def _record(
        self,
        step: str,
        action: str,
        state: AssignmentState,
        *,
        actor: str | None = None,
        details: dict | None = None,
        opinion: OpinionRecord | None = None,
        notify: list[Notice] | None = None,
    ) -> None:
        v = self._view
        await workflow.execute_activity_method(
            PersistenceActivities.record_transition,
            TransitionInput(
                workflow_id=workflow.info().workflow_id,
                request_id=self._inp.request_id,
                step=step,
                at=workflow.now(),
                actor=actor or f"expert:{v.expert_code}",
                action=action,
                details={"expert_code": v.expert_code, "role": v.role.value, **(details or {})},
                assignment=AssignmentRecord(
                    expert_code=v.expert_code,
                    role=v.role,
                    # The state this transition claimed: a later action may already have
                    # claimed the next one on the live view.
                    state=state,
                    invited_at=v.invited_at,
                    respond_by=v.respond_by,
                    due_at=v.due_at,
                    decline_reason=v.decline_reason,
                ),
                opinion=opinion,
                notify=notify or [],
            ),
            **PERSIST_OPTIONS,
        )
        workflow.set_current_details(
            f"expert {v.expert_code} ({v.role.value}): {state.value}"
            + (f", due {v.due_at.date().isoformat()}" if v.due_at else "")
        )

    async def _tell_parent(self) -> None:
        parent = workflow.get_external_workflow_handle(self._inp.parent_workflow_id)
        try:
            await parent.signal(ASSIGNMENT_CHANGED, AssignmentChanged(view=self._view))
        except Exception:
            # The request has already closed (withdrawn, say): nothing is waiting to hear.
            workflow.logger.info("request workflow no longer running; change not signalled")
