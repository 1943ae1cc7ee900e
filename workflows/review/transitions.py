"""How the request records what happens to it — what its automatic steps and people's actions
share. Every method here runs under the request's lock (the caller holds it).

A transition is persisted first and applied to the state after, so what a query, an action's
answer or the Temporal UI shows is always in PostgreSQL already. A new stage (or a stage given
a new deadline) starts a new generation and replaces the stage's `DeadlineWatch`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.council import CouncilActivities
    from domain.calendar import WorkingCalendar
    from domain.ids import assignment_workflow_id
    from domain.messages import (
        ExpertAssignmentInput,
        ExtendInput,
        ProposeCouncilInput,
        ReleaseSeatInput,
        ReminderInstant,
        RequestState,
        ReviewRequestInput,
        ReviewState,
        actor_ref,
    )
    from domain.models import (
        AGENCY,
        COORDINATOR,
        AssignmentState,
        AssignmentView,
        CouncilCandidate,
        Notice,
        Recipient,
        Role,
        Stage,
    )
    from workflows.assignment import ExpertAssignmentWorkflow
    from workflows.common import COMPUTE_OPTIONS, Refused, record
    from workflows.deadlines import DeadlineWatch, due_date
    from workflows.review import visibility
    from workflows.review.actions import DEADLINES


# The council's invitations are recorded before the request enters review (patch marker).
INVITATIONS_BEFORE_REVIEW = "invitations-before-review"


class Transitions:
    _inp: ReviewRequestInput
    _state: ReviewState
    _lock: asyncio.Lock
    _watch: DeadlineWatch | None

    # --- recording ------------------------------------------------------------------------------

    async def _transition(
        self,
        step: str,
        action: str,
        stage: Stage,
        *,
        days: int | None = None,
        actor: str = "system",
        details: dict | None = None,
        notify: list[Notice] | None = None,
        apply: dict[str, Any] | None = None,
        **records: Any,
    ) -> None:
        """Moves the request to `stage` (or records a step within its stage), then applies
        `apply` to the state. `days`: the stage's new deadline, from now."""
        st = self._state
        moving = stage != st.stage or days is not None
        deadline = await self._due(days) if days else None
        await self._persist(
            step,
            action,
            actor=actor,
            stage=stage,
            next_deadline=deadline if moving else st.stage_deadline,
            details=details,
            notify=notify,
            overdue=False if moving and st.stage_overdue else None,
            cancel_topics=[self._topic()] if moving else [],
            **records,
        )
        st.stage = stage
        for name, value in (apply or {}).items():
            setattr(st, name, value)
        if moving:
            self._count("stage-moves")
            st.stage_generation += 1
            st.stage_deadline = deadline
            st.stage_overdue = False
            st.review_due_passed = False
            self._watch_stage()
            # Logged once, not on replay (the SDK's workflow logger skips replayed code).
            workflow.logger.info("stage changed", extra={"stage": stage.value, "action": action})
        self._show()

    async def _persist(
        self,
        step: str,
        action: str,
        *,
        actor: str = "system",
        stage: Stage | None = None,
        details: dict | None = None,
        notify: list[Notice] | None = None,
        **fields: Any,
    ) -> None:
        fields.setdefault("next_deadline", self._state.stage_deadline)
        await record(
            self._state.request_id,
            step,
            action,
            summary=f"record {action}" + (f" → {stage.value}" if stage else ""),
            actor=actor,
            stage=stage,
            details=details or {},
            notify=notify or [],
            **fields,
        )

    async def _extend_stage(self, inp: ExtendInput) -> None:
        """Moves the current stage's deadline on by `inp.days` (from the later of the deadline
        and now); its pending reminders move with it and an overdue flag is cleared."""
        st = self._state
        old = st.stage_deadline
        assert old is not None
        new = await self._due(inp.days, start=max(old, workflow.now()))
        name = DEADLINES[st.stage]
        who = self._responsible(name)
        await self._persist(
            f"extended-{self._count('extended')}",
            "deadline_extended",
            actor=actor_ref(inp.actor),
            stage=st.stage,
            next_deadline=new,
            overdue=False if st.stage_overdue else None,
            cancel_topics=[self._topic()],
            details={
                "deadline": name,
                "from": old.isoformat(),
                "to": new.isoformat(),
                "days": inp.days,
                "reason": inp.reason,
            },
            notify=[
                Notice(
                    recipient=who,
                    event="deadline_extended",
                    data={"deadline": name, "due": new.isoformat()},
                )
            ]
            if who is not None
            else [],
        )
        st.stage_deadline, st.stage_overdue, st.review_due_passed = new, False, False
        self._count(f"extensions:{st.stage.value}")
        st.counters[f"extension-days:{st.stage.value}"] = (
            st.counters.get(f"extension-days:{st.stage.value}", 0) + inp.days
        )
        st.stage_generation += 1  # the watch's old timers wake to nothing and it replans
        if self._watch is None:  # a continued run whose loop has not started watching yet
            self._watch_stage()
        else:
            self._watch.move(new, st.stage_generation)
        self._show()

    def _count(self, name: str) -> int:
        """A counter that survives continue-as-new, for idempotency keys of repeatable steps."""
        counters = self._state.counters
        counters[name] = counters.get(name, 0) + 1
        return counters[name]

    async def _due(self, days: int, start=None):
        return await due_date(start or workflow.now(), days, self._inp.policy, self._inp.calendar)

    # --- the stage's deadline -------------------------------------------------------------------

    def _watch_stage(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        st = self._state
        self._watch = None
        if st.stage in DEADLINES and st.stage_deadline is not None:
            self._watch = DeadlineWatch(
                DEADLINES[st.stage],
                st.stage_deadline,
                st.stage_generation,
                policy=self._inp.policy,
                calendar=self._inp.calendar,
                lock=self._lock,
                act=self._on_deadline,
            )

    async def _on_deadline(self, watch: DeadlineWatch, instant: ReminderInstant) -> None:
        name, gen = watch.name, watch.generation
        who = self._responsible(name)
        due = self._state.stage_deadline
        data = {"deadline": name, "due": due.isoformat() if due else None}
        if instant.kind in ("before", "overdue") and who is not None:
            await self._persist(
                # Named by what it is, not its place in the plan: a plan made again after
                # continue-as-new drops what has passed, and keys must still match.
                f"remind-{name}-g{gen}-{instant.kind}-{instant.days}",
                "reminder_sent",
                details={"deadline": name, "when": instant.kind, "days": instant.days},
                notify=[
                    Notice(
                        recipient=who,
                        event=f"{name}_reminder",
                        data={**data, "when": instant.kind, "days": instant.days},
                        topic=self._topic(),
                    )
                ],
            )
        elif instant.kind == "due" and name == "review":
            self._state.review_due_passed = True  # the run loop closes on the quorum
        elif instant.kind == "escalate" and name == "supplement":
            self._state.supplement_lapsed = True  # the run loop closes the request
        elif instant.kind == "escalate":
            await self._persist(
                f"escalated-{name}-g{gen}",
                "deadline_escalated",
                overdue=True,
                details={"deadline": name, "grace_days": instant.days},
                notify=[
                    Notice(
                        recipient=COORDINATOR,
                        event="stage_overdue",
                        data={**data, "grace_days": instant.days},
                    )
                ],
            )
            self._state.stage_overdue = True
        self._show()

    def _responsible(self, name: str) -> Recipient | None:
        if name in ("screening", "approval"):
            return COORDINATOR
        if name in ("supplement", "adoption"):
            return AGENCY
        if name == "synthesis":
            chair = self._state.chair()
            return Recipient.expert(chair.expert_code) if chair else None
        return None  # review: each expert is reminded by their own assignment

    def _topic(self) -> str:
        return f"{workflow.info().workflow_id}:stage-reminders"

    # --- experts --------------------------------------------------------------------------------

    def _match_input(self, **changes: Any) -> ProposeCouncilInput:
        s = self._inp.submission
        policy = self._inp.policy
        fields: dict[str, Any] = {
            "request_id": self._state.request_id,
            "agency_code": s.agency.code,
            "expertise_fields": s.expertise_fields,
            "council_size": policy.council_size,
            "alternates": policy.alternates,
            "now": workflow.now(),
            "review_window_days": policy.respond_days + policy.review_days,
            "calendar": self._inp.calendar,
        }
        return ProposeCouncilInput(**{**fields, **changes})

    async def _reserve(self, code: str) -> CouncilCandidate:
        """The registry's word on one expert for this request; when admitted, their seat is
        reserved in the same transaction (no one else can take it meanwhile)."""
        checked = await workflow.execute_activity_method(
            CouncilActivities.reserve_expert,
            self._match_input(council_size=1, alternates=0, exclude=[code]),
            **COMPUTE_OPTIONS,
        )
        if checked.shortfall:
            raise Refused(f"expert_code: {checked.shortfall}")
        return checked.members[0]

    async def _release(self, code: str) -> None:
        await workflow.execute_activity_method(
            CouncilActivities.release_seat,
            ReleaseSeatInput(request_id=self._state.request_id, expert_code=code),
            **COMPUTE_OPTIONS,
        )

    async def _next_alternate(self) -> CouncilCandidate | None:
        """The next ranked alternate who still passes the hard rules (the proposal may be weeks
        old: an alternate may since have filled up, declared a conflict or become unavailable),
        their seat reserved. Alternates found ineligible are dropped."""
        st = self._state
        while st.alternates:
            candidate = st.alternates.pop(0)
            if st.assignment(candidate.expert_code) is not None:
                continue
            try:
                reserved = await self._reserve(candidate.expert_code)
            except Refused:
                # The reason names the registry's rule for this person: it stays out of logs
                # (the coordinator reads it in the proposal's explanation).
                workflow.logger.info("alternate skipped", extra={"expert": candidate.expert_code})
                continue
            return reserved.model_copy(update={"reason": candidate.reason})
        return None

    async def _open_review(self) -> None:
        policy = self._inp.policy
        await self._transition(
            "review-open",
            "review_opened",
            Stage.review,
            days=policy.respond_days + policy.review_days,
        )

    async def _until_recorded(self, code: str) -> None:
        """A person's action that invited someone answers once the invitation can be read
        (requests started before this was so answered at once)."""
        if workflow.patched(INVITATIONS_BEFORE_REVIEW):
            await workflow.wait_condition(lambda: self._state.assignment(code).recorded)

    async def _invite(self, candidate: CouncilCandidate, role: Role) -> None:
        st = self._state
        # Requests started before invitations came first opened their review here, before
        # the first invitation was recorded.
        if st.stage == Stage.council and not workflow.patched(INVITATIONS_BEFORE_REVIEW):
            await self._open_review()
        code = candidate.expert_code
        st.alternates = [a for a in st.alternates if a.expert_code != code]
        st.assignments.append(
            AssignmentView(
                expert_code=code,
                role=role,
                state=AssignmentState.invited,
                invited_at=workflow.now(),
            )
        )
        st.asked_for_experts = False
        await workflow.start_child_workflow(
            ExpertAssignmentWorkflow.run,
            ExpertAssignmentInput(
                request_id=st.request_id,
                parent_workflow_id=workflow.info().workflow_id,
                expert_code=code,
                role=role,
                policy=self._inp.policy,
                calendar=self._inp.calendar,
                history_limit=self._inp.assignment_history_limit,
            ),
            id=assignment_workflow_id(st.request_id, code),
            static_summary=f"{st.request_id}: expert {code} ({role.value})",
            # The request may continue as new while its experts work: they must outlive a
            # run of it. They report to the request by workflow id, and the request cancels
            # them itself when it ends early.
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        self._show()

    async def _cancel_assignments(self, codes: list[str]) -> None:
        """Cancels these experts' assignment workflows and waits until each has recorded how it
        ended (its reminders die with it)."""
        for code in codes:
            handle = workflow.get_external_workflow_handle(
                assignment_workflow_id(self._state.request_id, code)
            )
            try:
                await handle.cancel()
            except Exception:
                # Already finished on its own (submitted at this very moment): its own
                # signal tells the outcome.
                workflow.logger.info("assignment already closed", extra={"expert": code})
        await workflow.wait_condition(lambda: not any(self._state.is_open(c) for c in codes))

    # --- what callers see -----------------------------------------------------------------------

    def _view(self) -> RequestState:
        return visibility.request_view(self._state, self._inp.policy, self._late_by)

    def _show(self) -> None:
        """The UI's current details and search attributes, after every change."""
        st, policy = self._state, self._inp.policy
        workflow.set_current_details(visibility.current_details(st, policy, self._late_by))
        changes = visibility.search_attribute_changes(
            st, policy, workflow.info().typed_search_attributes
        )
        if changes:
            workflow.upsert_search_attributes(changes)

    def _late_by(self, a: AssignmentView) -> int:
        """Working days past the assignment's date. Only the UI's text: it is not in the
        history, so counting with today's holiday tables is safe for replay."""
        due = a.due_at if a.state == AssignmentState.accepted else a.respond_by
        if due is None:
            return 0
        c = self._inp.calendar
        # The holiday tables read locale settings when first built; nothing here can change
        # what the workflow commands.
        with workflow.unsafe.sandbox_unrestricted():
            cal = WorkingCalendar(c.extra_days_off, c.extra_working_days)
            return cal.working_days_between(cal.local_date(due), cal.local_date(workflow.now()))
