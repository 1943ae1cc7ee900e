"""One invited expert on one request: invite → accept / decline → opinion, with its deadlines.

The expert acts on this workflow directly (updates `accept`, `decline`, `submit_opinion`); the
coordinator extends its deadline here (`extend`). Every change is persisted by an activity and
reported to the request workflow by a signal, so the request always knows where each of its
experts stands.

Deadlines: an invitation has a respond-by date, an accepted review a due date, both in working
days. Reminders follow the policy's schedule as durable timers; silence past respond-by expires
the invitation (the request invites the next alternate); a review past its grace period
escalates to the coordinator and flags the assignment overdue. Every timer belongs to one
"deadline generation": accepting or extending starts a new one, and a timer of an old
generation wakes to find it has nothing to do.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.persistence import PersistenceActivities
    from domain import search_attributes as sa
    from domain.messages import (
        AcceptInput,
        AssignmentCarry,
        AssignmentChanged,
        AssignmentOutcome,
        AssignmentRecord,
        DeclineInput,
        ExpertAssignmentInput,
        ExtendAssignmentInput,
        OpinionRecord,
        ReminderInstant,
        SubmitOpinionInput,
        TransitionInput,
    )
    from domain.models import AssignmentState, AssignmentView, Notice, Recipient
    from workflows.common import PERSIST_OPTIONS, due_date, reminder_plan

ASSIGNMENT_CHANGED = "assignment_changed"
COORDINATOR = Recipient(kind="coordinator")


def _rejected(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidAction", non_retryable=True)


# Expert code, state and due date as search attributes: assignments started before this change
# replay without these upserts.
PATCH_SEARCH_ATTRIBUTES = "assignment-search-attributes"


@workflow.defn
class ExpertAssignmentWorkflow:
    @workflow.init
    def __init__(self, inp: ExpertAssignmentInput) -> None:
        self._inp = inp
        if inp.carry is not None:
            self._view = inp.carry.view
            self._gen = inp.carry.deadline_generation
        else:
            self._view = AssignmentView(
                expert_code=inp.expert_code,
                role=inp.role,
                state=AssignmentState.invited,
                invited_at=workflow.now(),
            )
            self._gen = 0
        # An action claims its new state at once (so the validator of the next action sees
        # it), then records under this lock: transitions are persisted one at a time, in the
        # order they were claimed, the invitation itself first. Nobody is told "try again".
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, inp: ExpertAssignmentInput) -> AssignmentOutcome:
        try:
            if inp.carry is None:
                async with self._lock:
                    self._view.respond_by = await self._due(workflow.now(), inp.policy.respond_days)
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
            while self._view.state.is_open:
                await self._deadline_cycle()
                if self._view.state.is_open and self._history_is_long():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if self._view.state.is_open and not self._lock.locked():
                        workflow.continue_as_new(
                            inp.model_copy(
                                update={
                                    "carry": AssignmentCarry(
                                        view=self._view, deadline_generation=self._gen
                                    )
                                }
                            )
                        )
        except asyncio.CancelledError:
            # Withdrawn, replaced, or no longer needed: record it (activities still run after
            # a cancellation request) and end normally so the request sees a clean outcome.
            # Work the expert already finished stands.
            async with self._lock:
                if self._view.state.is_open:
                    self._view.state = AssignmentState.cancelled
                    await self._record(
                        "cancelled",
                        "assignment_cancelled",
                        AssignmentState.cancelled,
                        actor="system",
                        closes=True,
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

    # --- deadlines ----------------------------------------------------------------------------

    async def _deadline_cycle(self) -> None:
        """Runs the current deadline's reminders until the deadline changes (accepted,
        extended) or the assignment closes; the caller then starts the next cycle."""
        gen = self._gen
        if self._view.state == AssignmentState.accepted and self._view.due_at is None:
            # Accepted; the due date is being computed under the lock.
            await workflow.wait_condition(lambda: self._changed(gen) or self._view.due_at)
            return
        name = "respond" if self._view.state == AssignmentState.invited else "review"
        deadline = self._view.respond_by if name == "respond" else self._view.due_at
        assert deadline is not None
        plan = await reminder_plan(deadline, name, self._inp.policy, self._inp.calendar)
        for instant in plan:
            if not await self._sleep_until(instant.at, gen):
                return
            async with self._lock:
                # Re-checked under the lock: an action that claimed the assignment while this
                # timer fired wins, so no reminder follows the work it was about.
                if self._changed(gen):
                    return
                await self._act(name, gen, instant)
            if self._history_is_long():
                return  # the caller continues as new; the next run replans from now
        await workflow.wait_condition(lambda: self._changed(gen) or self._history_is_long())

    def _changed(self, gen: int) -> bool:
        return self._gen != gen or not self._view.state.is_open

    async def _sleep_until(self, at: datetime, gen: int) -> bool:
        """Sleeps until `at`; False when the deadline changed first."""
        delay = (at - workflow.now()).total_seconds()
        if delay > 0:
            try:
                await workflow.wait_condition(lambda: self._changed(gen), timeout=delay)
                return False
            except TimeoutError:
                pass
        return not self._changed(gen)

    async def _act(self, name: str, gen: int, instant: ReminderInstant) -> None:
        v = self._view
        if instant.kind in ("before", "overdue"):
            await self._record(
                # Named by what it is, not its place in the plan: a plan made again after
                # continue-as-new drops what has passed, and keys must still match.
                f"remind-{name}-g{gen}-{instant.kind}-{instant.days}",
                "reminder_sent",
                v.state,
                actor="system",
                details={"deadline": name, "when": instant.kind, "days": instant.days},
                notify=[
                    Notice(
                        recipient=self._expert(),
                        event=f"{name}_reminder",
                        data={**self._dates(), "when": instant.kind, "days": instant.days},
                        topic=self._topic(),
                    )
                ],
            )
        elif instant.kind == "escalate" and name == "respond":
            v.state = AssignmentState.expired
            await self._record(
                f"expired-g{gen}",
                "invitation_expired",
                AssignmentState.expired,
                actor="system",
                closes=True,
                notify=[
                    Notice(recipient=self._expert(), event="invitation_expired"),
                    Notice(
                        recipient=COORDINATOR,
                        event="expert_silent",
                        data={"expert_code": v.expert_code},
                    ),
                ],
            )
            await self._tell_parent()
        elif instant.kind == "escalate":
            v.overdue = True
            await self._record(
                f"escalated-{name}-g{gen}",
                "review_overdue",
                v.state,
                actor="system",
                overdue=True,
                details={"grace_days": instant.days},
                notify=[
                    Notice(
                        recipient=COORDINATOR,
                        event="expert_overdue",
                        data={"expert_code": v.expert_code, **self._dates()},
                    )
                ],
            )
            await self._tell_parent()

    def _history_is_long(self) -> bool:
        info = workflow.info()
        if self._inp.history_limit is not None:
            return info.get_current_history_length() > self._inp.history_limit
        return info.is_continue_as_new_suggested()

    # --- extend (coordinator) -----------------------------------------------------------------

    @workflow.update
    async def extend(self, inp: ExtendAssignmentInput) -> AssignmentView:
        async with self._lock:
            v = self._view
            if not v.state.is_open:  # the work ended while this waited its turn
                raise _rejected(f"cannot extend: the assignment is {v.state.value}")
            name = "respond" if v.state == AssignmentState.invited else "review"
            current = v.respond_by if name == "respond" else v.due_at
            base = max(current, workflow.now()) if current else workflow.now()
            new_due = await self._due(base, inp.days)
            old = current.isoformat() if current else None
            if name == "respond":
                v.respond_by = new_due
            else:
                v.due_at = new_due
            was_overdue, v.overdue = v.overdue, False
            await self._record(
                f"extended-{self._gen}",
                "deadline_extended",
                v.state,
                actor=f"coordinator:{inp.extended_by}",
                details={
                    "deadline": name,
                    "from": old,
                    "to": new_due.isoformat(),
                    "reason": inp.reason,
                },
                overdue=False if was_overdue else None,
                cancel_topics=[self._topic()],
                notify=[
                    Notice(recipient=self._expert(), event="deadline_extended", data=self._dates())
                ],
            )
            # A new generation: the old plan's timers wake to nothing; the cycle replans.
            self._gen += 1
        await self._tell_parent()
        return self._view

    @extend.validator
    def _validate_extend(self, inp: ExtendAssignmentInput) -> None:
        self._check_actor(inp.expert_code)
        if not self._view.state.is_open:
            raise _rejected(
                f"cannot extend: the assignment is {self._view.state.value}, nothing is due"
            )

    # --- accept -------------------------------------------------------------------------------

    @workflow.update
    async def accept(self, inp: AcceptInput) -> AssignmentView:
        self._view.state = AssignmentState.accepted
        self._gen += 1  # the respond-by timers are done with; review-due ones follow
        async with self._lock:
            self._view.due_at = await self._due(workflow.now(), self._inp.policy.review_days)
            await self._record(
                "accepted",
                "invitation_accepted",
                AssignmentState.accepted,
                cancel_topics=[self._topic()],
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
                closes=True,
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
                closes=True,
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

    def _topic(self) -> str:
        return f"{workflow.info().workflow_id}:reminders"

    async def _due(self, start: datetime, days: int) -> datetime:
        return await due_date(start, days, self._inp.policy, self._inp.calendar)

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
        overdue: bool | None = None,
        cancel_topics: list[str] | None = None,
        closes: bool = False,
    ) -> None:
        """Persists one transition. `closes`: the assignment ends here, so its undelivered
        reminders are withdrawn and an overdue flag is cleared."""
        v = self._view
        if closes:
            cancel_topics = [self._topic()]
            if v.overdue:
                v.overdue = False
                overdue = False
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
                overdue=overdue,
                cancel_topics=cancel_topics or [],
            ),
            summary=f"record {action} → {state.value}",
            **PERSIST_OPTIONS,
        )
        due = v.due_at or v.respond_by
        workflow.set_current_details(
            f"expert {v.expert_code} ({v.role.value}): {state.value}"
            + (f", due {due.date().isoformat()}" if due and state.is_open else "")
            + (" — OVERDUE" if v.overdue else "")
        )
        if workflow.patched(PATCH_SEARCH_ATTRIBUTES):
            workflow.upsert_search_attributes(
                [
                    sa.EXPERT_CODE.value_set(v.expert_code),
                    sa.ASSIGNMENT_STATE.value_set(state.value),
                    sa.ASSIGNMENT_DUE.value_set(due)
                    if due and state.is_open
                    else sa.ASSIGNMENT_DUE.value_unset(),
                ]
            )

    async def _tell_parent(self) -> None:
        parent = workflow.get_external_workflow_handle(self._inp.parent_workflow_id)
        try:
            await parent.signal(ASSIGNMENT_CHANGED, AssignmentChanged(view=self._view))
        except Exception:
            # The request has already closed (withdrawn, say): nothing is waiting to hear.
            workflow.logger.info("request workflow no longer running; change not signalled")
