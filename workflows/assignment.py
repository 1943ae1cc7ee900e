"""One invited expert on one request: invite → accept / decline → opinion, with its deadlines.

The expert acts on this workflow directly (updates `accept`, `decline`, `submit_opinion`); the
coordinator extends its deadline here (`extend`). Each action is claimed when admitted (so the
validator of a conflicting action refuses it), then recorded under one lock, and only then does
the view change: what the expert, the request and PostgreSQL see is always what was recorded.
Every recorded change is reported to the request workflow by a signal, after the action is
answered: the expert waits for PostgreSQL, not for the request to hear of it.

Deadlines: an invitation has a respond-by date, an accepted review a due date, both in working
days, each watched by a `DeadlineWatch`. Silence past respond-by expires the invitation (the
request invites the next alternate); a review past its grace period escalates to the
coordinator and flags the assignment overdue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
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
        actor_ref,
    )
    from domain.models import COORDINATOR, AssignmentState, AssignmentView, Notice, Recipient
    from workflows.common import Refused, check_signed_in, history_is_long, record
    from workflows.deadlines import DeadlineWatch, check_extension_bounds, due_date

ASSIGNMENT_CHANGED = "assignment_changed"
# A run continues as new on a workflow task of its own, a second after the one that answered
# the last action (patch marker). The time-skipping test server stops its clock for good when a
# run closes in the same task that completes an update; the real server does not mind.
CONTINUE_ON_ITS_OWN_TASK = "continue-on-its-own-task"
# A recorded change is signalled to the request beside the action's answer, not before it
# (patch marker): one workflow task and one signal's round trip fewer for each action.
ANSWER_BEFORE_TELLING = "answer-before-telling-the-request"


@workflow.defn
class ExpertAssignmentWorkflow:
    @workflow.init
    def __init__(self, inp: ExpertAssignmentInput) -> None:
        self._inp = inp
        carry = inp.carry
        self._view = (
            carry.view
            if carry is not None
            else AssignmentView(
                expert_code=inp.expert_code,
                role=inp.role,
                state=AssignmentState.invited,
                invited_at=workflow.now(),
            )
        )
        self._generation = carry.deadline_generation if carry is not None else 0
        self._claims: set[str] = set()  # actions admitted and not yet recorded
        self._lock = asyncio.Lock()  # transitions and reminders are recorded one at a time
        self._watch: DeadlineWatch | None = None
        self._untold = False  # a recorded change the request has not been signalled yet
        self._telling = False  # a signal to the request under way

    @workflow.run
    async def run(self, inp: ExpertAssignmentInput) -> AssignmentOutcome:
        try:
            if inp.carry is None:
                async with self._lock:
                    respond_by = await self._due(workflow.now(), inp.policy.respond_days)
                    await self._record(
                        "invited",
                        "expert_invited",
                        actor="system",
                        respond_by=respond_by,
                        notify=lambda v: [
                            Notice(recipient=self._expert(), event="invitation", data=_dates(v))
                        ],
                    )
            self._watch_deadline()
            while True:
                await workflow.wait_condition(
                    lambda: not self._view.state.is_open or history_is_long(inp.history_limit)
                )
                if not self._view.state.is_open:
                    break
                # Continue as new only with nothing in flight: no action or reminder being
                # recorded. The next run plans its deadline again from its own start.
                quiet = lambda: (  # noqa: E731
                    not self._view.state.is_open
                    or (workflow.all_handlers_finished() and self._nothing_in_flight())
                )
                await workflow.wait_condition(quiet)
                if workflow.patched(CONTINUE_ON_ITS_OWN_TASK):
                    await workflow.sleep(1)
                    await workflow.wait_condition(quiet)
                if self._view.state.is_open:
                    carry = AssignmentCarry(view=self._view, deadline_generation=self._generation)
                    workflow.continue_as_new(inp.model_copy(update={"carry": carry}))
        except asyncio.CancelledError:
            # Withdrawn, replaced, or no longer needed. A reminder or an action being recorded
            # right now runs in its own task and finishes first; work the expert already
            # finished stands. Activities still run after a cancellation request.
            async with self._lock:
                if self._view.state.is_open:
                    await self._record(
                        "cancelled",
                        "assignment_cancelled",
                        actor="system",
                        state=AssignmentState.cancelled,
                        notify=lambda v: [
                            Notice(recipient=self._expert(), event="assignment_cancelled")
                        ],
                    )
        # Nothing in flight: no action, no reminder (the watch's own task) being recorded, and
        # the request told of the last change.
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and self._nothing_in_flight()
        )
        return AssignmentOutcome(
            expert_code=self._view.expert_code,
            state=self._view.state,
            recommendation=self._view.recommendation,
            decline_reason=self._view.decline_reason,
        )

    @workflow.query
    def assignment(self) -> AssignmentView:
        return self._view

    # --- people's actions -----------------------------------------------------------------------

    @workflow.update
    async def accept(self, inp: AcceptInput) -> AssignmentView:
        async with self._claimed("answer"):
            self._expect_invited("accept")
            due_at = await self._due(workflow.now(), self._inp.policy.review_days)
            self._generation += 1  # the respond-by timers are done with; review-due ones follow
            await self._record(
                "accepted",
                "invitation_accepted",
                state=AssignmentState.accepted,
                due_at=due_at,
                cancel_topics=[self._topic()],
                notify=lambda v: [
                    Notice(recipient=self._expert(), event="review_due", data=_dates(v)),
                    Notice(
                        recipient=COORDINATOR,
                        event="expert_accepted",
                        data={"expert_code": v.expert_code},
                    ),
                ],
            )
            self._watch_deadline()
        return self._view

    @accept.validator
    def _validate_accept(self, inp: AcceptInput) -> None:
        self._admit(inp.expert_code, "accept", "answer")
        self._expect_invited("accept")

    @workflow.update
    async def decline(self, inp: DeclineInput) -> AssignmentView:
        async with self._claimed("answer"):
            self._expect_invited("decline")
            await self._record(
                "declined",
                "invitation_declined",
                state=AssignmentState.declined,
                decline_reason=inp.reason,
                details={"reason": inp.reason},
                notify=lambda v: [
                    Notice(
                        recipient=COORDINATOR,
                        event="expert_declined",
                        data={"expert_code": v.expert_code},
                    )
                ],
            )
        return self._view

    @decline.validator
    def _validate_decline(self, inp: DeclineInput) -> None:
        self._admit(inp.expert_code, "decline", "answer")
        self._expect_invited("decline")

    @workflow.update
    async def submit_opinion(self, inp: SubmitOpinionInput) -> AssignmentView:
        async with self._claimed("opinion"):
            self._expect_accepted()
            await self._record(
                "submitted",
                "opinion_submitted",
                state=AssignmentState.submitted,
                recommendation=inp.opinion.recommendation,
                details={"recommendation": inp.opinion.recommendation.value},
                opinion=OpinionRecord(expert_code=self._view.expert_code, opinion=inp.opinion),
                notify=lambda v: [
                    Notice(recipient=self._expert(), event="opinion_received"),
                    Notice(
                        recipient=COORDINATOR,
                        event="opinion_submitted",
                        data={"expert_code": v.expert_code},
                    ),
                ],
            )
        return self._view

    @submit_opinion.validator
    def _validate_submit(self, inp: SubmitOpinionInput) -> None:
        self._admit(inp.expert_code, "submit an opinion", "opinion")
        self._expect_accepted()

    @workflow.update
    async def extend(self, inp: ExtendAssignmentInput) -> AssignmentView:
        async with self._claimed():
            v = self._view
            if not v.state.is_open:  # the work ended while this waited its turn
                raise Refused(f"cannot extend: the assignment is {v.state.value}")
            name = _deadline_name(v)
            current = v.respond_by if name == "respond" else v.due_at
            base = max(current, workflow.now()) if current else workflow.now()
            new_due = await self._due(base, inp.days)
            step = f"extended-{self._generation}"
            self._generation += 1  # the old plan's timers wake to nothing; the watch replans
            await self._record(
                step,
                "deadline_extended",
                actor=actor_ref(inp.actor),
                **{"respond_by" if name == "respond" else "due_at": new_due},
                extensions=v.extensions + 1,
                extension_days=v.extension_days + inp.days,
                clear_overdue=True,
                details={
                    "deadline": name,
                    "from": current.isoformat() if current else None,
                    "to": new_due.isoformat(),
                    "days": inp.days,
                    "reason": inp.reason,
                },
                cancel_topics=[self._topic()],
                notify=lambda v: [
                    Notice(recipient=self._expert(), event="deadline_extended", data=_dates(v))
                ],
            )
            if self._watch is None:  # a continued run whose loop has not started watching yet
                self._watch_deadline()
            else:
                self._watch.move(new_due, self._generation)
        return self._view

    @extend.validator
    def _validate_extend(self, inp: ExtendAssignmentInput) -> None:
        self._check_actor(inp.expert_code)
        check_signed_in(inp)
        v = self._view
        if not v.state.is_open:
            raise Refused(f"cannot extend: the assignment is {v.state.value}, nothing is due")
        check_extension_bounds(
            self._inp.policy, _deadline_name(v), v.extensions, v.extension_days, inp.days
        )

    # --- the deadline -------------------------------------------------------------------------

    def _watch_deadline(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        v = self._view
        due = v.respond_by if v.state == AssignmentState.invited else v.due_at
        if not v.state.is_open or due is None:
            self._watch = None
            return
        self._watch = DeadlineWatch(
            _deadline_name(v),
            due,
            self._generation,
            policy=self._inp.policy,
            calendar=self._inp.calendar,
            lock=self._lock,
            act=self._on_deadline,
        )

    async def _on_deadline(self, watch: DeadlineWatch, instant: ReminderInstant) -> None:
        name, gen = watch.name, watch.generation
        if instant.kind in ("before", "overdue"):
            await self._record(
                # Named by what it is, not its place in the plan: a plan made again after
                # continue-as-new drops what has passed, and keys must still match.
                f"remind-{name}-g{gen}-{instant.kind}-{instant.days}",
                "reminder_sent",
                actor="system",
                details={"deadline": name, "when": instant.kind, "days": instant.days},
                notify=lambda v: [
                    Notice(
                        recipient=self._expert(),
                        event=f"{name}_reminder",
                        data={**_dates(v), "when": instant.kind, "days": instant.days},
                        topic=self._topic(),
                    )
                ],
            )
        elif instant.kind == "escalate" and name == "respond":
            await self._record(
                f"expired-g{gen}",
                "invitation_expired",
                actor="system",
                state=AssignmentState.expired,
                notify=lambda v: [
                    Notice(recipient=self._expert(), event="invitation_expired"),
                    Notice(
                        recipient=COORDINATOR,
                        event="expert_silent",
                        data={"expert_code": v.expert_code},
                    ),
                ],
            )
        elif instant.kind == "escalate":
            await self._record(
                f"escalated-{name}-g{gen}",
                "review_overdue",
                actor="system",
                overdue=True,
                details={"grace_days": instant.days},
                notify=lambda v: [
                    Notice(
                        recipient=COORDINATOR,
                        event="expert_overdue",
                        data={"expert_code": v.expert_code, **_dates(v)},
                    )
                ],
            )

    # --- claims and checks --------------------------------------------------------------------

    @asynccontextmanager
    async def _claimed(self, claim: str | None = None) -> AsyncIterator[None]:
        """Holds the claim from admission until recorded, and the lock while recording."""
        if claim is not None:
            self._claims.add(claim)
        try:
            async with self._lock:
                yield
        finally:
            self._claims.discard(claim)

    def _admit(self, expert_code: str, what: str, claim: str) -> None:
        self._check_actor(expert_code)
        if claim in self._claims:
            raise Refused(f"cannot {what}: an answer is already being recorded")

    def _check_actor(self, expert_code: str) -> None:
        if expert_code != self._view.expert_code:
            raise Refused(f"expert_code: {expert_code} is not the expert of this assignment")

    def _expect_invited(self, what: str) -> None:
        if self._view.state != AssignmentState.invited:
            raise Refused(f"cannot {what}: the invitation is already {self._view.state.value}")

    def _expect_accepted(self) -> None:
        state = self._view.state
        if state == AssignmentState.invited:
            raise Refused("cannot submit an opinion: accept the invitation first")
        if state != AssignmentState.accepted:
            raise Refused(f"cannot submit an opinion: the assignment is {state.value}")

    # --- recording ----------------------------------------------------------------------------

    def _expert(self) -> Recipient:
        return Recipient.expert(self._view.expert_code)

    def _topic(self) -> str:
        return f"{workflow.info().workflow_id}:reminders"

    async def _due(self, start: datetime, days: int) -> datetime:
        return await due_date(start, days, self._inp.policy, self._inp.calendar)

    async def _record(
        self,
        step: str,
        action: str,
        *,
        actor: str | None = None,
        details: dict | None = None,
        notify: Any = None,
        opinion: OpinionRecord | None = None,
        cancel_topics: list[str] | None = None,
        overdue: bool | None = None,
        clear_overdue: bool = False,
        **changes: Any,
    ) -> None:
        """Persists one transition, then applies it to the view and tells the request: nobody
        ever reads a state that is not yet in PostgreSQL. `changes` are the view's new values;
        `notify(view)` the notices, from the new view. An assignment that closes here has its
        undelivered reminders withdrawn and its overdue flag cleared."""
        old = self._view
        new = old.model_copy(update=changes)
        if overdue is not None:
            new.overdue = overdue
        closes = old.state.is_open and not new.state.is_open
        if closes:
            cancel_topics = [self._topic()]
        if (closes or clear_overdue) and old.overdue:
            new.overdue = overdue = False
        await record(
            self._inp.request_id,
            step,
            action,
            summary=f"record {action} → {new.state.value}",
            actor=actor or f"expert:{new.expert_code}",
            details={"expert_code": new.expert_code, "role": new.role.value, **(details or {})},
            assignment=AssignmentRecord.of(new),
            opinion=opinion,
            notify=notify(new) if notify else [],
            overdue=overdue,
            cancel_topics=cancel_topics or [],
        )
        self._view = new
        if closes and self._watch is not None:
            self._watch.stop()
        self._show()
        if workflow.patched(ANSWER_BEFORE_TELLING):
            self._untold = True
            if not self._telling:
                self._telling = True
                asyncio.create_task(self._tell_parent())
        else:
            await self._signal_parent()

    def _show(self) -> None:
        v = self._view
        due = v.due_at or v.respond_by
        open_due = due if due and v.state.is_open else None
        workflow.set_current_details(
            f"expert {v.expert_code} ({v.role.value}): {v.state.value}"
            + (f", due {open_due.date().isoformat()}" if open_due else "")
            + (" — OVERDUE" if v.overdue else "")
        )
        workflow.upsert_search_attributes(
            [
                sa.EXPERT_CODE.value_set(v.expert_code),
                sa.ASSIGNMENT_STATE.value_set(v.state.value),
                sa.ASSIGNMENT_DUE.value_set(open_due)
                if open_due
                else sa.ASSIGNMENT_DUE.value_unset(),
            ]
        )

    def _nothing_in_flight(self) -> bool:
        return not self._lock.locked() and not self._telling

    async def _tell_parent(self) -> None:
        """Signals the request the view as it is now, one signal at a time, until no change is
        left untold: the request hears every change in order, the last one last."""
        try:
            while self._untold:
                self._untold = False
                await self._signal_parent()
        finally:
            self._telling = False

    async def _signal_parent(self) -> None:
        parent = workflow.get_external_workflow_handle(self._inp.parent_workflow_id)
        try:
            await parent.signal(ASSIGNMENT_CHANGED, AssignmentChanged(view=self._view))
        except Exception:
            # The request has already closed (withdrawn, say): nothing is waiting to hear.
            workflow.logger.info("request workflow no longer running; change not signalled")


def _deadline_name(v: AssignmentView) -> str:
    return "respond" if v.state == AssignmentState.invited else "review"


def _dates(v: AssignmentView) -> dict[str, str | None]:
    return {
        "role": v.role.value,
        "respond_by": v.respond_by.isoformat() if v.respond_by else None,
        "due_at": v.due_at.isoformat() if v.due_at else None,
    }
