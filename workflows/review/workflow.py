"""One request from intake to closed: screening, council, review, synthesis, approval,
delivery and the agency's answer on adoption — with a deadline on every stage.

People act through updates, each in its own handler: the validator admits the action
(`actions.admit`: the stage it needs, its own rules, no conflicting claim), the handler claims
it, takes the lock, checks again, records through an activity and answers. The run loop
performs only the automatic steps (`steps.next_step`), re-evaluated under the same lock. The
state (`ReviewState`) is carried whole when the history is continued as new.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.council import CouncilActivities
    from domain.messages import (
        AddExpertInput,
        AdoptionInput,
        ApproveInput,
        AssignmentChanged,
        CheckCouncilInput,
        ConfirmCouncilInput,
        DraftConclusionInput,
        ExtendInput,
        ReplaceExpertInput,
        RequestState,
        ReturnConclusionInput,
        ReviewRequestInput,
        ReviewState,
        ScreeningInput,
        SupplementInput,
        WithdrawInput,
        actor_ref,
    )
    from domain.models import (
        AGENCY,
        COORDINATOR,
        AssignmentState,
        ConclusionView,
        Notice,
        Recipient,
        Role,
        Stage,
    )
    from workflows.assignment import ASSIGNMENT_CHANGED
    from workflows.common import COMPUTE_OPTIONS, Refused, history_is_long
    from workflows.deadlines import DeadlineWatch
    from workflows.review import actions
    from workflows.review.automatic import AutomaticSteps, conclusion_record, council_details
    from workflows.review.steps import Step, next_step


@workflow.defn
class ReviewRequestWorkflow(AutomaticSteps):
    @workflow.init
    def __init__(self, inp: ReviewRequestInput) -> None:
        s = inp.submission
        self._inp = inp
        self._state = inp.carry or ReviewState(
            request_id=inp.request_id,
            kind=s.kind,
            title=s.title,
            agency_code=s.agency.code,
            stage=Stage.intake,
        )
        self._lock = asyncio.Lock()  # every transition and reminder is recorded under it
        self._claims: set[str] = set()  # what admitted actions hold until recorded
        self._watch: DeadlineWatch | None = None  # the current stage's deadline

    @workflow.run
    async def run(self, inp: ReviewRequestInput) -> RequestState:
        self._watch_stage()  # a continued run watches its stage's deadline again
        while not self._state.stage.is_final:
            await workflow.wait_condition(
                lambda: (
                    self._next() is not None
                    or self._state.stage.is_final
                    or history_is_long(inp.history_limit)
                )
            )
            if self._state.stage.is_final:
                break
            if self._next() is None:
                # Continue as new only with nothing in flight: no action waiting or being
                # recorded, no reminder being recorded. Whatever arrives meanwhile is served
                # first, then the check is made again.
                await workflow.wait_condition(
                    lambda: (
                        self._next() is not None
                        or (workflow.all_handlers_finished() and not self._lock.locked())
                    )
                )
                if self._next() is None and not self._state.stage.is_final:
                    workflow.continue_as_new(inp.model_copy(update={"carry": self._state}))
                continue
            async with self._lock:
                step = self._next()  # again: an action recorded meanwhile may have changed it
                if step is not None:
                    await self._take(step)
        # Nothing in flight: no action, and no reminder (the watch's own task) being recorded.
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and not self._lock.locked()
        )
        return self._view()

    def _next(self) -> Step | None:
        return next_step(self._state, self._inp.policy, self._claims)

    @workflow.query
    def state(self) -> RequestState:
        return self._view()

    @workflow.signal(name=ASSIGNMENT_CHANGED)
    def assignment_changed(self, change: AssignmentChanged) -> None:
        """An assignment recorded a change: the request's view of its expert follows."""
        views = self._state.assignments
        for i, v in enumerate(views):
            if v.expert_code == change.view.expert_code:
                views[i] = change.view
                break
        else:
            views.append(change.view)
        self._show()

    # --- admission ------------------------------------------------------------------------------

    def _admit(self, action: str, inp: Any) -> None:
        actions.admit(self._state, self._inp.policy, self._claims, action, inp)

    @asynccontextmanager
    async def _acting(self, action: str, inp: Any) -> AsyncIterator[None]:
        """Holds the action's claims until it is recorded, and the lock while it records (and
        checks again under it: the request may have moved on while the action waited)."""
        claims = actions.claims_of(action, inp)
        self._claims.update(claims)
        try:
            async with self._lock:
                actions.check(self._state, self._inp.policy, action, inp)
                yield
        finally:
            self._claims.difference_update(claims)

    # --- screening --------------------------------------------------------------------------------

    @workflow.update
    async def screen(self, inp: ScreeningInput) -> RequestState:
        async with self._acting("screen", inp):
            note, decision = inp.note, inp.decision
            action, stage, event, data, apply = {
                "accept": ("screening_accepted", Stage.council, "request_accepted", {}, {}),
                "decline": (
                    "screening_declined",
                    Stage.declined,
                    "request_declined",
                    {"reason": note},
                    {"decline_reason": note},
                ),
                "supplement": (
                    "supplement_requested",
                    Stage.supplement,
                    "supplement_requested",
                    {"note": note},
                    {},
                ),
            }[decision]
            await self._transition(
                f"screened-{self._state.supplement_round}",
                action,
                stage,
                days=self._inp.policy.supplement_days if decision == "supplement" else None,
                actor=actor_ref(inp.actor),
                details={"reason" if decision == "decline" else "note": note},
                notify=[Notice(recipient=AGENCY, event=event, data=data)],
                apply={"screening_note": note or None, **apply},
            )
        return self._view()

    @screen.validator
    def _validate_screen(self, inp: ScreeningInput) -> None:
        self._admit("screen", inp)

    @workflow.update
    async def supplement(self, inp: SupplementInput) -> RequestState:
        async with self._acting("supplement", inp):
            n = self._state.supplement_round
            await self._transition(
                f"supplemented-{n}",
                "supplemented",
                Stage.screening,
                days=self._inp.policy.screening_days,
                actor=f"agency:{self._state.agency_code}",
                details={"note": inp.note, "documents": [d.name for d in inp.documents]},
                documents_added=inp.documents,
                notify=[
                    Notice(
                        recipient=COORDINATOR,
                        event="supplement_received",
                        # What changed, for screening: the round and its documents.
                        data={
                            "round": n + 1,
                            "documents": "; ".join(d.name or "" for d in inp.documents),
                        },
                    )
                ],
                apply={"supplement_round": n + 1},
            )
        return self._view()

    @supplement.validator
    def _validate_supplement(self, inp: SupplementInput) -> None:
        self._admit("supplement", inp)

    # --- the council ------------------------------------------------------------------------------

    @workflow.update
    async def confirm_council(self, inp: ConfirmCouncilInput) -> RequestState:
        async with self._acting("confirm_council", inp):
            proposal = self._state.council
            assert proposal is not None
            members = inp.members or [m.expert_code for m in proposal.members]
            chair = inp.chair or next(
                (m.expert_code for m in proposal.members if m.role == Role.chair),
                members[0],
            )
            if chair not in members:
                chair = members[0]
            try:
                # Re-checked and reserved in one transaction: the seats are this request's.
                council = await workflow.execute_activity_method(
                    CouncilActivities.reserve_council,
                    CheckCouncilInput(request=self._match_input(), members=members, chair=chair),
                    **COMPUTE_OPTIONS,
                )
            except ActivityError as err:
                cause = err.cause
                raise Refused(
                    cause.message if isinstance(cause, ApplicationError) else str(err)
                ) from None
            # Its members are invited by the run loop, one automatic step each.
            await self._transition(
                "council-confirmed",
                "council_confirmed",
                Stage.council,
                actor=actor_ref(inp.actor),
                details=council_details(council),
                council_confirmed=True,
                apply={
                    "council": council,
                    "council_status": "confirmed",
                    "alternates": list(council.alternates),
                },
            )
        return self._view()

    @confirm_council.validator
    def _validate_confirm(self, inp: ConfirmCouncilInput) -> None:
        self._admit("confirm_council", inp)

    @workflow.update
    async def add_expert(self, inp: AddExpertInput) -> RequestState:
        async with self._acting("add_expert", inp):
            candidate = await self._reserve(inp.expert_code)
            role = Role.member if self._state.chair() is not None else Role.chair
            await self._invite(candidate, role)
            await self._until_recorded(candidate.expert_code)
        return self._view()

    @add_expert.validator
    def _validate_add_expert(self, inp: AddExpertInput) -> None:
        self._admit("add_expert", inp)

    @workflow.update
    async def replace_expert(self, inp: ReplaceExpertInput) -> RequestState:
        async with self._acting("replace_expert", inp):
            old = inp.expert_code
            if inp.replacement is not None:
                candidate = await self._reserve(inp.replacement)
            else:
                found = await self._next_alternate()
                if found is None:
                    raise Refused("replacement: no eligible alternate left; name the expert")
                candidate = found
            seat = self._state.assignment(old)
            assert seat is not None
            if not seat.state.is_open:
                # The expert answered or submitted while the replacement was being reserved:
                # nothing to swap, and an alternate stays first in line.
                if inp.replacement is None:
                    self._state.alternates.insert(0, candidate)
                await self._release(candidate.expert_code)
                raise Refused(
                    f"expert_code: {old} was not replaced: their seat closed first "
                    f"(the assignment is {seat.state.value})"
                )
            await self._cancel_assignments([old])
            await self._invite(candidate, seat.role)
            n = self._count("replaced")
            await self._transition(
                f"replaced-{n}",
                "expert_replaced",
                self._state.stage,
                actor=actor_ref(inp.actor),
                details={
                    "expert_code": old,
                    "replacement": candidate.expert_code,
                    "reason": inp.reason,
                },
                notify=[
                    Notice(
                        recipient=COORDINATOR,
                        event="expert_replaced",
                        data={"expert_code": old, "replacement": candidate.expert_code},
                    )
                ],
            )
            await self._until_recorded(candidate.expert_code)
        return self._view()

    @replace_expert.validator
    def _validate_replace(self, inp: ReplaceExpertInput) -> None:
        self._admit("replace_expert", inp)

    # --- deadlines ------------------------------------------------------------------------------

    @workflow.update
    async def extend_deadline(self, inp: ExtendInput) -> RequestState:
        st = self._state
        stage, moves = st.stage, st.counters.get("stage-moves")
        async with self._acting("extend_deadline", inp):
            # Extensions queue behind each other; a stage move meanwhile ends what was extended.
            if st.counters.get("stage-moves") != moves:
                raise Refused(f"cannot extend: the request moved on from {stage.value} meanwhile")
            await self._extend_stage(inp)
        return self._view()

    @extend_deadline.validator
    def _validate_extend(self, inp: ExtendInput) -> None:
        self._admit("extend_deadline", inp)

    # --- the conclusion ---------------------------------------------------------------------------

    @workflow.update
    async def draft_conclusion(self, inp: DraftConclusionInput) -> RequestState:
        async with self._acting("draft_conclusion", inp):
            version = self._state.conclusion_version
            conclusion = ConclusionView(
                version=version,
                recommendation=inp.draft.recommendation,
                text=inp.draft.text,
                drafted_by=inp.expert_code,
            )
            await self._transition(
                f"drafted-{version}",
                "conclusion_drafted",
                Stage.approval,
                days=self._inp.policy.approval_days,
                actor=f"expert:{inp.expert_code}",
                details={"version": version, "recommendation": inp.draft.recommendation.value},
                conclusion=conclusion_record(conclusion),
                notify=[Notice(recipient=COORDINATOR, event="conclusion_ready")],
                apply={"conclusion": conclusion},
            )
        return self._view()

    @draft_conclusion.validator
    def _validate_draft(self, inp: DraftConclusionInput) -> None:
        self._admit("draft_conclusion", inp)

    @workflow.update
    async def approve_conclusion(self, inp: ApproveInput) -> RequestState:
        async with self._acting("approve_conclusion", inp):
            st = self._state
            assert st.conclusion is not None
            version = st.conclusion_version
            signer = inp.actor
            conclusion = st.conclusion.model_copy(
                update={
                    "approved_by": signer.name if signer else "coordinator",
                    "approver_title": signer.title if signer else None,
                }
            )
            await self._transition(
                f"approved-{version}",
                "conclusion_approved",
                Stage.delivered,
                actor=actor_ref(signer),
                details={"version": version, "approved_by": conclusion.approved_by},
                conclusion=conclusion_record(conclusion),
                notify=[
                    Notice(
                        recipient=AGENCY,
                        event="conclusion_delivered",
                        data={
                            "recommendation": conclusion.recommendation.value,
                            "version": version,
                            "signed_by": conclusion.approved_by,
                            "signer_title": conclusion.approver_title,
                        },
                    ),
                    *[
                        Notice(recipient=Recipient.expert(a.expert_code), event="review_completed")
                        for a in st.assignments
                        if a.state == AssignmentState.submitted
                    ],
                ],
                apply={"conclusion": conclusion},
            )
        return self._view()

    @approve_conclusion.validator
    def _validate_approve(self, inp: ApproveInput) -> None:
        self._admit("approve_conclusion", inp)

    @workflow.update
    async def return_conclusion(self, inp: ReturnConclusionInput) -> RequestState:
        async with self._acting("return_conclusion", inp):
            st = self._state
            assert st.conclusion is not None
            chair = st.chair()
            assert chair is not None
            version = st.conclusion_version
            conclusion = st.conclusion.model_copy(update={"returned_comments": inp.comments})
            await self._transition(
                f"returned-{version}",
                "conclusion_returned",
                Stage.synthesis,
                days=self._inp.policy.synthesis_days,
                actor=actor_ref(inp.actor),
                details={"version": version, "comments": inp.comments},
                conclusion=conclusion_record(conclusion),
                notify=[
                    Notice(
                        recipient=Recipient.expert(chair.expert_code),
                        event="conclusion_returned",
                        data={"comments": inp.comments},
                    )
                ],
                apply={"conclusion": conclusion, "conclusion_version": version + 1},
            )
        return self._view()

    @return_conclusion.validator
    def _validate_return(self, inp: ReturnConclusionInput) -> None:
        self._admit("return_conclusion", inp)

    # --- the agency -------------------------------------------------------------------------------

    @workflow.update
    async def answer_adoption(self, inp: AdoptionInput) -> RequestState:
        async with self._acting("answer_adoption", inp):
            status = inp.answer.status.value
            await self._transition(
                "closed",
                "adoption_answered",
                Stage.closed,
                actor=f"agency:{self._state.agency_code}",
                details={"status": status},
                adoption=inp.answer,
                notify=[
                    Notice(
                        recipient=COORDINATOR, event="adoption_answered", data={"status": status}
                    )
                ],
                apply={"adoption": inp.answer},
            )
        return self._view()

    @answer_adoption.validator
    def _validate_adoption(self, inp: AdoptionInput) -> None:
        self._admit("answer_adoption", inp)

    @workflow.update
    async def withdraw(self, inp: WithdrawInput) -> RequestState:
        async with self._acting("withdraw", inp):
            st = self._state
            # Every open assignment is cancelled first; each child records its own cancellation
            # and tells its expert, so the request's record is complete before it says
            # withdrawn.
            still_open = [a.expert_code for a in st.assignments if a.state.is_open]
            await self._cancel_assignments(still_open)
            await self._transition(
                "withdrawn",
                "withdrawn",
                Stage.withdrawn,
                actor=f"agency:{st.agency_code}",
                details={"reason": inp.reason, "cancelled_assignments": len(still_open)},
                notify=[
                    Notice(recipient=AGENCY, event="withdrawal_confirmed"),
                    Notice(
                        recipient=COORDINATOR,
                        event="request_withdrawn",
                        data={"reason": inp.reason},
                    ),
                    *[
                        Notice(recipient=Recipient.expert(a.expert_code), event="request_withdrawn")
                        for a in st.assignments
                        if a.state == AssignmentState.submitted
                    ],
                ],
                apply={"withdraw_reason": inp.reason},
            )
        return self._view()

    @withdraw.validator
    def _validate_withdraw(self, inp: WithdrawInput) -> None:
        self._admit("withdraw", inp)
