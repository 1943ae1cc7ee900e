"""One request from intake to closed: screening, council, review, synthesis, approval,
delivery and the agency's answer on adoption.

People act through updates. A handler never decides anything itself: it puts the action in a
slot and waits; the run loop, the only place that moves the request, takes it, persists the
transition through an activity and clears the slot, and the handler answers with the new state.
So the order of transitions is the order of the run loop, whatever order actions arrive in.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.calendar import CalendarActivities
    from activities.council import CouncilActivities
    from activities.persistence import PersistenceActivities
    from domain import search_attributes as sa
    from domain.ids import assignment_workflow_id
    from domain.messages import (
        AddExpertInput,
        AdoptionInput,
        ApproveInput,
        AssignmentChanged,
        AssignmentOutcome,
        ConclusionRecord,
        DraftConclusionInput,
        DueDateInput,
        ExpertAssignmentInput,
        IntakeRecord,
        ProposeCouncilInput,
        RequestState,
        ReturnConclusionInput,
        ReviewRequestInput,
        ScreeningInput,
        SupplementInput,
        TransitionInput,
        WithdrawInput,
    )
    from domain.models import (
        WITHDRAWABLE,
        AssignmentState,
        AssignmentView,
        ConclusionView,
        CouncilCandidate,
        Notice,
        Recipient,
        Role,
        Stage,
    )
    from workflows.assignment import ASSIGNMENT_CHANGED, ExpertAssignmentWorkflow
    from workflows.common import COMPUTE_OPTIONS, PERSIST_OPTIONS


class _Withdrawn(Exception):
    """Raised inside the run loop when the agency withdrew: unwinds to the withdrawal path."""


def _rejected(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidAction", non_retryable=True)


AGENCY = Recipient(kind="agency")
COORDINATOR = Recipient(kind="coordinator")


@workflow.defn
class ReviewRequestWorkflow:
    @workflow.init
    def __init__(self, inp: ReviewRequestInput) -> None:
        s = inp.submission
        self._inp = inp
        self._state = RequestState(
            request_id=inp.request_id,
            kind=s.kind,
            title=s.title,
            agency_code=s.agency.code,
            stage=Stage.intake,
        )
        # Actions handed from update handlers to the run loop, by name.
        self._pending: dict[str, Any] = {}
        self._abandoned: set[str] = set()
        self._withdraw: WithdrawInput | None = None
        self._children: dict[str, workflow.ChildWorkflowHandle] = {}
        self._alternates: list[CouncilCandidate] = []
        self._added: list[CouncilCandidate] = []
        # Experts whose add_expert is accepted and not yet invited (the registry is being
        # checked): a second add_expert of one of them is refused, not invited twice.
        self._adding: set[str] = set()
        self._handled: set[str] = set()  # experts whose decline has been acted on
        self._asked_for_experts = False
        self._shortfalls = 0

    # --- the lifecycle --------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ReviewRequestInput) -> RequestState:
        try:
            await self._intake()
            if await self._screening():
                await self._council_and_review()
                await self._synthesis_and_approval()
                await self._delivery_and_adoption()
        except _Withdrawn:
            await self._withdrawn()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _intake(self) -> None:
        s = self._inp.submission
        await self._transition(
            "intake",
            "submitted",
            Stage.screening,
            days=self._inp.policy.screening_days,
            actor=f"agency:{s.agency.code}",
            details={"agency_reference": s.agency_reference, "kind": s.kind.value},
            intake=IntakeRecord(submission=s, submitted_at=workflow.now()),
            notify=[
                Notice(recipient=AGENCY, event="request_received"),
                Notice(recipient=COORDINATOR, event="request_submitted"),
            ],
        )

    async def _screening(self) -> bool:
        """Screening, with as many supplement rounds as the coordinator asks for. True when
        accepted; False when declined."""
        policy = self._inp.policy
        while True:
            decision: ScreeningInput = await self._take("screen")
            n = self._state.supplement_round
            actor = f"coordinator:{decision.screened_by}"
            self._state.screening_note = decision.note or None
            if decision.decision == "accept":
                await self._transition(
                    f"screened-{n}",
                    "screening_accepted",
                    Stage.council,
                    actor=actor,
                    details={"note": decision.note},
                    notify=[Notice(recipient=AGENCY, event="request_accepted")],
                )
                self._done("screen")
                return True
            if decision.decision == "decline":
                self._state.decline_reason = decision.note
                await self._transition(
                    f"screened-{n}",
                    "screening_declined",
                    Stage.declined,
                    actor=actor,
                    details={"reason": decision.note},
                    notify=[
                        Notice(
                            recipient=AGENCY,
                            event="request_declined",
                            data={"reason": decision.note},
                        )
                    ],
                )
                self._done("screen")
                return False
            await self._transition(
                f"screened-{n}",
                "supplement_requested",
                Stage.supplement,
                days=policy.supplement_days,
                actor=actor,
                details={"note": decision.note},
                notify=[
                    Notice(
                        recipient=AGENCY, event="supplement_requested", data={"note": decision.note}
                    )
                ],
            )
            self._done("screen")
            supplement: SupplementInput = await self._take("supplement")
            self._state.supplement_round = n + 1
            await self._transition(
                f"supplemented-{n}",
                "supplemented",
                Stage.screening,
                days=policy.screening_days,
                actor=f"agency:{self._state.agency_code}",
                details={
                    "note": supplement.note,
                    "documents": [d.name for d in supplement.documents],
                },
                documents_added=supplement.documents,
                notify=[Notice(recipient=COORDINATOR, event="supplement_received")],
            )
            self._done("supplement")

    async def _council_and_review(self) -> None:
        s = self._inp.submission
        policy = self._inp.policy
        proposal = await workflow.execute_activity_method(
            CouncilActivities.propose_council,
            ProposeCouncilInput(
                request_id=self._state.request_id,
                agency_code=s.agency.code,
                agency_name=s.agency.name,
                expertise_fields=s.expertise_fields,
                council_size=policy.council_size,
                alternates=policy.alternates,
            ),
            **COMPUTE_OPTIONS,
        )
        self._state.council = proposal
        self._alternates = list(proposal.alternates)
        notify = [Notice(recipient=COORDINATOR, event="council_proposed")]
        if proposal.shortfall:
            notify.append(
                Notice(
                    recipient=COORDINATOR,
                    event="council_shortfall",
                    data={"shortfall": proposal.shortfall},
                )
            )
            self._asked_for_experts = True
        await self._transition(
            "council-proposed",
            "council_proposed",
            Stage.council,
            details={
                "members": [m.expert_code for m in proposal.members],
                "chair": next(
                    (m.expert_code for m in proposal.members if m.role == Role.chair), None
                ),
                "alternates": [a.expert_code for a in proposal.alternates],
                "shortfall": proposal.shortfall,
            },
            notify=notify,
        )
        for member in proposal.members:
            await self._invite(member, member.role)
        target = policy.council_size
        while True:
            await self._wait(lambda: self._review_needs_attention(target))
            for view in list(self._state.assignments):
                if view.state == AssignmentState.declined and view.expert_code not in self._handled:
                    self._handled.add(view.expert_code)
                    if self._alternates:
                        await self._invite(self._alternates.pop(0), view.role)
            while self._added:
                candidate = self._added.pop(0)
                role = Role.member if self._chair() is not None else Role.chair
                await self._invite(candidate, role)
            if self._open_count() == 0:
                if self._submitted_count() >= target and self._chair() is not None:
                    return
                if not self._asked_for_experts:
                    self._asked_for_experts = True
                    self._shortfalls += 1
                    await self._transition(
                        f"experts-needed-{self._shortfalls}",
                        "experts_needed",
                        self._state.stage,
                        details={
                            "submitted": self._submitted_count(),
                            "needed": target,
                            "has_chair": self._chair() is not None,
                        },
                        notify=[
                            Notice(
                                recipient=COORDINATOR,
                                event="experts_needed",
                                data={"submitted": self._submitted_count(), "needed": target},
                            )
                        ],
                    )

    def _review_needs_attention(self, target: int) -> bool:
        if self._added:
            return True
        if any(
            v.state == AssignmentState.declined and v.expert_code not in self._handled
            for v in self._state.assignments
        ):
            return True
        if self._open_count() == 0:
            done = self._submitted_count() >= target and self._chair() is not None
            return done or not self._asked_for_experts
        return False

    async def _invite(self, candidate: CouncilCandidate, role: Role) -> None:
        if self._state.stage == Stage.council:
            await self._transition(
                "review-open",
                "review_opened",
                Stage.review,
                days=self._inp.policy.respond_days + self._inp.policy.review_days,
            )
        code = candidate.expert_code
        self._state.assignments.append(
            AssignmentView(
                expert_code=code,
                role=role,
                state=AssignmentState.invited,
                invited_at=workflow.now(),
            )
        )
        handle = await workflow.start_child_workflow(
            ExpertAssignmentWorkflow.run,
            ExpertAssignmentInput(
                request_id=self._state.request_id,
                parent_workflow_id=workflow.info().workflow_id,
                expert_code=code,
                role=role,
                policy=self._inp.policy,
                calendar=self._inp.calendar,
            ),
            id=assignment_workflow_id(self._state.request_id, code),
            static_summary=f"{self._state.request_id}: expert {code} ({role.value})",
        )
        self._children[code] = handle
        asyncio.create_task(self._watch(code, handle))
        self._asked_for_experts = False
        self._update_details()

    async def _watch(self, code: str, handle: workflow.ChildWorkflowHandle) -> None:
        try:
            outcome: AssignmentOutcome = await handle
        except Exception:
            workflow.logger.exception("assignment workflow failed", extra={"expert": code})
            self._apply_view_state(code, AssignmentState.cancelled)
            return
        view = self._state.assignment(code)
        if view is not None:
            view.state = outcome.state
            view.recommendation = outcome.recommendation
            view.decline_reason = outcome.decline_reason
        self._update_details()

    async def _synthesis_and_approval(self) -> None:
        policy = self._inp.policy
        version = 1
        chair = self._chair()
        assert chair is not None
        await self._transition(
            f"synthesis-{version}",
            "synthesis_opened",
            Stage.synthesis,
            days=policy.synthesis_days,
            details={"chair": chair.expert_code, "opinions": self._submitted_count()},
            notify=[
                Notice(
                    recipient=Recipient(kind="expert", code=chair.expert_code),
                    event="draft_conclusion_requested",
                )
            ],
        )
        while True:
            draft: DraftConclusionInput = await self._take("draft_conclusion")
            self._state.conclusion = ConclusionView(
                version=version,
                recommendation=draft.draft.recommendation,
                text=draft.draft.text,
                drafted_by=draft.expert_code,
            )
            await self._transition(
                f"drafted-{version}",
                "conclusion_drafted",
                Stage.approval,
                days=policy.approval_days,
                actor=f"expert:{draft.expert_code}",
                details={"version": version, "recommendation": draft.draft.recommendation.value},
                conclusion=self._conclusion_record(),
                notify=[Notice(recipient=COORDINATOR, event="conclusion_ready")],
            )
            self._done("draft_conclusion")
            decision = await self._take("decide_conclusion")
            if isinstance(decision, ApproveInput):
                self._state.conclusion.approved_by = decision.approved_by
                await self._transition(
                    f"approved-{version}",
                    "conclusion_approved",
                    Stage.delivered,
                    actor=f"coordinator:{decision.approved_by}",
                    details={"version": version, "approved_by": decision.approved_by},
                    conclusion=self._conclusion_record(),
                    notify=[
                        Notice(
                            recipient=AGENCY,
                            event="conclusion_delivered",
                            data={
                                "recommendation": self._state.conclusion.recommendation.value,
                                "version": version,
                            },
                        ),
                        *[
                            Notice(
                                recipient=Recipient(kind="expert", code=v.expert_code),
                                event="review_completed",
                            )
                            for v in self._state.assignments
                            if v.state == AssignmentState.submitted
                        ],
                    ],
                )
                self._done("decide_conclusion")
                return
            self._state.conclusion.returned_comments = decision.comments
            await self._transition(
                f"returned-{version}",
                "conclusion_returned",
                Stage.synthesis,
                days=policy.synthesis_days,
                actor=f"coordinator:{decision.returned_by}",
                details={"version": version, "comments": decision.comments},
                conclusion=self._conclusion_record(),
                notify=[
                    Notice(
                        recipient=Recipient(kind="expert", code=chair.expert_code),
                        event="conclusion_returned",
                        data={"comments": decision.comments},
                    )
                ],
            )
            self._done("decide_conclusion")
            version += 1

    async def _delivery_and_adoption(self) -> None:
        await self._transition(
            "adoption-open",
            "adoption_answer_requested",
            Stage.adoption,
            days=self._inp.policy.adoption_days,
            notify=[Notice(recipient=AGENCY, event="adoption_answer_requested")],
        )
        answer: AdoptionInput = await self._take("answer_adoption")
        self._state.adoption = answer.answer
        await self._transition(
            "closed",
            "adoption_answered",
            Stage.closed,
            actor=f"agency:{self._state.agency_code}",
            details={"status": answer.answer.status.value},
            adoption=answer.answer,
            notify=[
                Notice(
                    recipient=COORDINATOR,
                    event="adoption_answered",
                    data={"status": answer.answer.status.value},
                )
            ],
        )
        self._done("answer_adoption")

    async def _withdrawn(self) -> None:
        assert self._withdraw is not None
        reason = self._withdraw.reason
        self._state.withdraw_reason = reason
        # Every open assignment is cancelled first; each child records its own cancellation
        # and tells its expert, so the request's record is complete before it says withdrawn.
        open_children = [h for code, h in self._children.items() if self._is_open(code)]
        for handle in open_children:
            handle.cancel()
        if open_children:
            await asyncio.gather(*open_children, return_exceptions=True)
        await self._transition(
            "withdrawn",
            "withdrawn",
            Stage.withdrawn,
            actor=f"agency:{self._state.agency_code}",
            details={"reason": reason, "cancelled_assignments": len(open_children)},
            notify=[
                Notice(recipient=AGENCY, event="withdrawal_confirmed"),
                Notice(recipient=COORDINATOR, event="request_withdrawn", data={"reason": reason}),
                *[
                    Notice(
                        recipient=Recipient(kind="expert", code=v.expert_code),
                        event="request_withdrawn",
                    )
                    for v in self._state.assignments
                    if v.state == AssignmentState.submitted
                ],
            ],
        )
        # Anything still waiting in a slot was overtaken by the withdrawal.
        self._abandoned.update(self._pending)
        self._pending.clear()

    # --- people's actions ------------------------------------------------------------------------

    @workflow.update
    async def screen(self, inp: ScreeningInput) -> RequestState:
        return await self._hand_over("screen", inp)

    @screen.validator
    def _validate_screen(self, inp: ScreeningInput) -> None:
        self._expect("screen", Stage.screening)
        if inp.decision != "accept" and len(inp.note.strip()) < 3:
            raise _rejected(f"note: required (at least 3 characters) to {inp.decision}")

    @workflow.update
    async def supplement(self, inp: SupplementInput) -> RequestState:
        return await self._hand_over("supplement", inp)

    @supplement.validator
    def _validate_supplement(self, inp: SupplementInput) -> None:
        self._expect("supplement", Stage.supplement)

    @workflow.update
    async def add_expert(self, inp: AddExpertInput) -> RequestState:
        code = inp.expert_code
        # Claimed before the first await, so the validator of a second add_expert of the same
        # expert sees it: inviting one expert twice starts a second child workflow with the
        # same id, and that failure fails the whole request.
        self._adding.add(code)
        try:
            candidate = await workflow.execute_activity_method(
                CouncilActivities.check_expert,
                ProposeCouncilInput(
                    request_id=self._state.request_id,
                    agency_code=self._state.agency_code,
                    agency_name=self._inp.submission.agency.name,
                    expertise_fields=self._inp.submission.expertise_fields,
                    council_size=1,
                    alternates=0,
                    exclude=[code],
                ),
                **COMPUTE_OPTIONS,
            )
            if candidate.shortfall:
                raise _rejected(f"expert_code: {candidate.shortfall}")
            if self._state.stage not in (Stage.council, Stage.review):
                raise _rejected(
                    f"cannot add an expert: the request is in {self._state.stage.value}"
                )
            # Invited meanwhile (as an alternate replacing a decline): nothing more to do.
            if self._state.assignment(code) is not None:
                raise _rejected(f"expert_code: {code} already has a role on this request")
            # An alternate chosen by hand is no longer an alternate: a later decline must not
            # invite them a second time.
            self._alternates = [a for a in self._alternates if a.expert_code != code]
            self._added.append(candidate.members[0])
            await workflow.wait_condition(lambda: not self._added or self._state.stage.is_final)
            return self._state
        finally:
            self._adding.discard(code)

    @add_expert.validator
    def _validate_add_expert(self, inp: AddExpertInput) -> None:
        self._not_withdrawing()
        if self._state.stage not in (Stage.council, Stage.review):
            raise _rejected(f"cannot add an expert: the request is in {self._state.stage.value}")
        if self._state.assignment(inp.expert_code) is not None:
            raise _rejected(f"expert_code: {inp.expert_code} already has a role on this request")
        if inp.expert_code in self._adding:
            raise _rejected(f"expert_code: {inp.expert_code} is already being added")

    @workflow.update
    async def draft_conclusion(self, inp: DraftConclusionInput) -> RequestState:
        return await self._hand_over("draft_conclusion", inp)

    @draft_conclusion.validator
    def _validate_draft(self, inp: DraftConclusionInput) -> None:
        self._expect("draft_conclusion", Stage.synthesis)
        chair = self._chair()
        if chair is None or chair.expert_code != inp.expert_code:
            raise _rejected(f"expert_code: {inp.expert_code} is not the chair of this council")

    @workflow.update
    async def approve_conclusion(self, inp: ApproveInput) -> RequestState:
        return await self._hand_over("decide_conclusion", inp)

    @approve_conclusion.validator
    def _validate_approve(self, inp: ApproveInput) -> None:
        self._expect("decide_conclusion", Stage.approval)

    @workflow.update
    async def return_conclusion(self, inp: ReturnConclusionInput) -> RequestState:
        return await self._hand_over("decide_conclusion", inp)

    @return_conclusion.validator
    def _validate_return(self, inp: ReturnConclusionInput) -> None:
        self._expect("decide_conclusion", Stage.approval)

    @workflow.update
    async def answer_adoption(self, inp: AdoptionInput) -> RequestState:
        return await self._hand_over("answer_adoption", inp)

    @answer_adoption.validator
    def _validate_adoption(self, inp: AdoptionInput) -> None:
        self._expect("answer_adoption", Stage.adoption)

    @workflow.update
    async def withdraw(self, inp: WithdrawInput) -> RequestState:
        self._withdraw = inp
        await workflow.wait_condition(lambda: self._state.stage == Stage.withdrawn)
        return self._state

    @withdraw.validator
    def _validate_withdraw(self, inp: WithdrawInput) -> None:
        self._not_withdrawing()
        if self._state.stage not in WITHDRAWABLE:
            raise _rejected(
                f"cannot withdraw: the request is {self._state.stage.value}; withdrawal is "
                "possible only before the conclusion is delivered"
            )

    @workflow.signal(name=ASSIGNMENT_CHANGED)
    def assignment_changed(self, change: AssignmentChanged) -> None:
        views = self._state.assignments
        for i, v in enumerate(views):
            if v.expert_code == change.view.expert_code:
                views[i] = change.view
                break
        else:
            views.append(change.view)
        self._update_details()

    @workflow.query
    def state(self) -> RequestState:
        return self._state

    # --- the slots between handlers and the run loop --------------------------------------------

    async def _hand_over(self, name: str, inp: Any) -> RequestState:
        self._pending[name] = inp
        await workflow.wait_condition(lambda: name not in self._pending)
        if name in self._abandoned:
            self._abandoned.discard(name)
            raise _rejected(f"the request was {self._state.stage.value} before this was recorded")
        return self._state

    async def _take(self, name: str) -> Any:
        await self._wait(lambda: name in self._pending)
        return self._pending[name]

    def _done(self, name: str) -> None:
        # Cleared only after the transition is persisted: the caller's answer means "recorded".
        self._pending.pop(name, None)

    async def _wait(self, condition) -> None:
        await workflow.wait_condition(lambda: self._withdraw is not None or condition())
        if self._withdraw is not None:
            raise _Withdrawn()

    def _expect(self, name: str, stage: Stage) -> None:
        self._not_withdrawing()
        if self._state.stage != stage:
            raise _rejected(
                f"cannot {name.replace('_', ' ')}: the request is in {self._state.stage.value}, "
                f"not {stage.value}"
            )
        if name in self._pending:
            raise _rejected(f"a {name.replace('_', ' ')} action is already being recorded")

    def _not_withdrawing(self) -> None:
        if self._state.stage.is_final:
            raise _rejected(
                f"the request is {self._state.stage.value}: nothing more can be done on it"
            )
        if self._withdraw is not None:
            raise _rejected("the request is being withdrawn")

    # --- helpers ---------------------------------------------------------------------------------

    def _chair(self) -> AssignmentView | None:
        return next(
            (
                v
                for v in self._state.assignments
                if v.role == Role.chair
                and v.state not in (AssignmentState.declined, AssignmentState.cancelled)
            ),
            None,
        )

    def _open_count(self) -> int:
        return sum(1 for v in self._state.assignments if v.state.is_open)

    def _submitted_count(self) -> int:
        return sum(1 for v in self._state.assignments if v.state == AssignmentState.submitted)

    def _is_open(self, code: str) -> bool:
        view = self._state.assignment(code)
        return view is not None and view.state.is_open

    def _apply_view_state(self, code: str, state: AssignmentState) -> None:
        view = self._state.assignment(code)
        if view is not None:
            view.state = state

    def _conclusion_record(self) -> ConclusionRecord:
        c = self._state.conclusion
        assert c is not None
        return ConclusionRecord(
            version=c.version,
            recommendation=c.recommendation,
            text=c.text,
            drafted_by=c.drafted_by,
            returned_comments=c.returned_comments,
            approved_by=c.approved_by,
        )

    async def _due(self, days: int) -> datetime:
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
        **records: Any,
    ) -> None:
        deadline = await self._due(days) if days else None
        if stage != self._state.stage or days:
            self._state.stage_deadline = deadline
        self._state.stage = stage
        await workflow.execute_activity_method(
            PersistenceActivities.record_transition,
            TransitionInput(
                workflow_id=workflow.info().workflow_id,
                request_id=self._state.request_id,
                step=step,
                at=workflow.now(),
                actor=actor,
                action=action,
                stage=stage,
                next_deadline=self._state.stage_deadline,
                details=details or {},
                notify=notify or [],
                **records,
            ),
            **PERSIST_OPTIONS,
        )
        workflow.upsert_search_attributes(
            [
                sa.STAGE.value_set(stage.value),
                sa.KIND.value_set(self._state.kind.value),
                sa.AGENCY.value_set(self._state.agency_code),
                sa.NEXT_DEADLINE.value_set(self._state.stage_deadline)
                if self._state.stage_deadline
                else sa.NEXT_DEADLINE.value_unset(),
            ]
        )
        self._update_details()

    def _update_details(self) -> None:
        """Keeps the derived parts of the state and the UI's current details in step; called
        on every transition and every change an assignment reports."""
        self._state.alternates_left = [a.expert_code for a in self._alternates]
        self._state.waiting_for = self._waiting_for()
        workflow.set_current_details(
            f"{self._state.stage.value}: waiting for {self._waiting_for()}"
            if not self._state.stage.is_final
            else self._state.stage.value
        )

    def _waiting_for(self) -> str:
        st = self._state
        due = f", due {st.stage_deadline.date().isoformat()}" if st.stage_deadline else ""
        match st.stage:
            case Stage.intake:
                return "intake to be recorded"
            case Stage.screening:
                return f"the coordinator's screening decision{due}"
            case Stage.supplement:
                return f"the agency's supplement{due}"
            case Stage.council:
                return "experts to be added by the coordinator"
            case Stage.review:
                target = self._inp.policy.council_size
                invited = sum(1 for v in st.assignments if v.state == AssignmentState.invited)
                text = f"{self._submitted_count()} of {target} opinions"
                if invited:
                    text += f", {invited} invitation(s) unanswered"
                if self._open_count() == 0 and self._asked_for_experts:
                    text += ", the coordinator to add an expert"
                return text + due
            case Stage.synthesis:
                chair = self._chair()
                return (
                    f"the chair {chair.expert_code if chair else ''} to draft the conclusion{due}"
                )
            case Stage.approval:
                return f"the coordinator to approve or return the conclusion{due}"
            case Stage.delivered:
                return "delivery of the conclusion"
            case Stage.adoption:
                return f"the agency's answer on adoption{due}"
        return "nothing"
