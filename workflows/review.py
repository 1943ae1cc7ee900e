"""One request from intake to closed: screening, council, review, synthesis, approval,
delivery and the agency's answer on adoption — with a deadline on every stage.

People act through updates. A handler never moves the request itself: it puts the action in a
slot and waits; the run loop, the only place that changes stage, takes it, persists the
transition through an activity and clears the slot, and the handler answers with the new state.
So the order of transitions is the order of the run loop, whatever order actions arrive in.

Every stage with a deadline gets a watcher: durable timers for the policy's reminders, the
deadline itself, overdue reminders and escalation past the grace period. A watcher belongs to
one "stage generation"; any transition starts a new generation, so a timer of a finished stage
wakes to nothing, and reminders and transitions are recorded under one lock, so a reminder
never follows the work it was about. A long-lived request continues as new (carrying its whole
state) once nothing is in flight.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.council import CouncilActivities
    from activities.persistence import PersistenceActivities
    from domain import search_attributes as sa
    from domain.calendar import WorkingCalendar
    from domain.ids import assignment_workflow_id
    from domain.messages import (
        AddExpertInput,
        AdoptionInput,
        ApproveInput,
        AssignmentChanged,
        CheckCouncilInput,
        ConclusionRecord,
        ConfirmCouncilInput,
        DraftConclusionInput,
        ExpertAssignmentInput,
        ExtendInput,
        IntakeRecord,
        ProposeCouncilInput,
        ReminderInstant,
        ReplaceExpertInput,
        RequestState,
        ReturnConclusionInput,
        ReviewCarry,
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
        CouncilProposal,
        Notice,
        Recipient,
        Role,
        Stage,
    )
    from workflows.assignment import ASSIGNMENT_CHANGED, ExpertAssignmentWorkflow
    from workflows.common import COMPUTE_OPTIONS, PERSIST_OPTIONS, due_date, reminder_plan


class _Withdrawn(Exception):
    """The agency withdrew: unwinds the run loop to the withdrawal path."""


class _Lapsed(Exception):
    """The supplement never came: unwinds the run loop to closing the request."""


class _ContinueAsNew(Exception):
    """The history is long and nothing is in flight: unwinds to continue-as-new."""


def _rejected(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidAction", non_retryable=True)


AGENCY = Recipient(kind="agency")
COORDINATOR = Recipient(kind="coordinator")

# The stages that have a deadline, and the policy's name for it.
# Opinions received / expected as search attributes: requests started before this change
# replay without these upserts.
PATCH_OPINION_COUNTS = "opinion-count-search-attributes"

DEADLINES = {
    Stage.screening: "screening",
    Stage.supplement: "supplement",
    Stage.review: "review",
    Stage.synthesis: "synthesis",
    Stage.approval: "approval",
    Stage.adoption: "adoption",
}


@workflow.defn
class ReviewRequestWorkflow:
    @workflow.init
    def __init__(self, inp: ReviewRequestInput) -> None:
        s = inp.submission
        self._inp = inp
        c = inp.carry or ReviewCarry(
            state=RequestState(
                request_id=inp.request_id,
                kind=s.kind,
                title=s.title,
                agency_code=s.agency.code,
                stage=Stage.intake,
            )
        )
        self._state = c.state
        self._alternates: list[CouncilCandidate] = list(c.alternates)
        self._handled: set[str] = set(c.handled)  # declines/expiries already acted on
        self._asked_for_experts = c.asked_for_experts
        self._shortfalls = c.shortfalls
        self._stage_gen = c.stage_generation
        self._version = c.conclusion_version
        self._review_due_passed = c.review_due_passed
        self._stage_overdue = c.stage_overdue
        self._counters: dict[str, int] = dict(c.counters)
        # Actions handed from update handlers to the run loop, by name.
        self._pending: dict[str, Any] = {}
        self._abandoned: set[str] = set()
        self._withdraw: WithdrawInput | None = None
        self._lapsed = False
        self._added: list[CouncilCandidate] = []
        # Experts being added or swapped in (registry check in flight): refused a second time.
        self._adding: set[str] = set()
        self._replacements: list[tuple[str, CouncilCandidate, str]] = []
        # What the run loop has finished recording, for the handlers waiting on it: an
        # answer to a person means "recorded", not "decided".
        self._invited_by_hand: set[str] = set()
        self._replaced: set[str] = set()
        self._withdrawal_recorded = False
        self._claimed: set[str] = set()
        self._taken: set[str] = set()  # slots the run loop has taken and is recording
        self._replacing: set[str] = set()  # experts being replaced (claimed by the handler)
        self._replace_refused: set[str] = set()
        self._review_closed = False  # the council is complete: no more adds or swaps
        # Stage moves begun in this run: an extension that waited for the lock checks that
        # no move started meanwhile (other extensions queue behind it and are fine).
        self._moves = 0
        self._confirmed_council: CouncilProposal | None = None
        self._lock = asyncio.Lock()  # transitions and reminders are recorded one at a time
        self._upserted_overdue: bool | None = None
        self._upserted_counts: tuple[int, int] | None = None

    # --- the lifecycle --------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ReviewRequestInput) -> RequestState:
        try:
            if self._state.stage == Stage.intake:
                await self._intake()
            elif self._state.stage in DEADLINES and self._state.stage_deadline is not None:
                self._watch_stage(self._state.stage, self._state.stage_deadline)
            if self._state.stage in (Stage.screening, Stage.supplement):
                await self._screening()
            if self._state.stage in (Stage.council, Stage.review):
                await self._council_and_review()
            if self._state.stage in (Stage.review, Stage.synthesis, Stage.approval):
                await self._synthesis_and_approval()
            if self._state.stage in (Stage.delivered, Stage.adoption):
                await self._delivery_and_adoption()
        except _Withdrawn:
            await self._withdrawn()
        except _Lapsed:
            await self._lapse()
        except _ContinueAsNew:
            workflow.continue_as_new(inp.model_copy(update={"carry": self._carry()}))
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
            intake=IntakeRecord(
                submission=s,
                submitted_at=workflow.now(),
                council_size=self._inp.policy.council_size,
                alternates=self._inp.policy.alternates,
                review_window_days=self._inp.policy.respond_days + self._inp.policy.review_days,
            ),
            notify=[
                Notice(recipient=AGENCY, event="request_received"),
                Notice(recipient=COORDINATOR, event="request_submitted"),
            ],
        )

    async def _screening(self) -> None:
        """Screening, with as many supplement rounds as the coordinator asks for. Leaves the
        request in council (accepted) or declined."""
        policy = self._inp.policy
        while True:
            if self._state.stage == Stage.supplement:
                supplement: SupplementInput = await self._take("supplement")
                n = self._state.supplement_round
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
                return
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
                return
            await self._transition(
                f"screened-{n}",
                "supplement_requested",
                Stage.supplement,
                days=policy.supplement_days,
                actor=actor,
                details={"note": decision.note},
                notify=[
                    Notice(
                        recipient=AGENCY,
                        event="supplement_requested",
                        data={"note": decision.note},
                    )
                ],
            )
            self._done("screen")

    async def _council_and_review(self) -> None:
        policy = self._inp.policy
        if self._state.council is None:
            await self._propose_council()
        target = policy.council_size
        while True:
            await self._wait(lambda: self._review_needs_attention(target))
            for view in list(self._state.assignments):
                if (
                    view.state in (AssignmentState.declined, AssignmentState.expired)
                    and view.expert_code not in self._handled
                ):
                    self._handled.add(view.expert_code)
                    alternate = await self._next_alternate()
                    if alternate is not None:
                        await self._invite(alternate, view.role)
            while self._added:
                candidate = self._added.pop(0)
                if self._state.assignment(candidate.expert_code) is None:
                    role = Role.member if self._chair() is not None else Role.chair
                    await self._invite(candidate, role)
                self._invited_by_hand.add(candidate.expert_code)
            while self._replacements:
                old, candidate, reason = self._replacements.pop(0)
                if self._is_open(old) and self._state.assignment(candidate.expert_code) is None:
                    await self._replace(old, candidate, reason)
                    self._replaced.add(old)
                else:
                    # The seat emptied on its own meanwhile (declined, expired, submitted),
                    # or the newcomer got a seat another way: nothing to swap.
                    self._replace_refused.add(old)
            if self._all_in(target):
                self._review_closed = True
                return
            if self._quorum_reached():
                self._review_closed = True
                await self._close_review_on_quorum()
                return
            if self._open_count() == 0 and not self._asked_for_experts:
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

    def _match_input(self, **changes: Any) -> ProposeCouncilInput:
        s = self._inp.submission
        policy = self._inp.policy
        fields: dict[str, Any] = {
            "request_id": self._state.request_id,
            "agency_code": s.agency.code,
            "agency_name": s.agency.name,
            "expertise_fields": s.expertise_fields,
            "council_size": policy.council_size,
            "alternates": policy.alternates,
            "now": workflow.now(),
            "review_window_days": policy.respond_days + policy.review_days,
            "calendar": self._inp.calendar,
        }
        return ProposeCouncilInput(**{**fields, **changes})

    async def _propose_council(self) -> None:
        proposal = await workflow.execute_activity_method(
            CouncilActivities.propose_council, self._match_input(), **COMPUTE_OPTIONS
        )
        self._state.council = proposal
        self._alternates = list(proposal.alternates)
        if self._inp.policy.council_confirmation == "coordinator":
            await self._transition(
                "council-proposed",
                "council_proposed",
                Stage.council,
                details=self._council_details(proposal),
                notify=[
                    Notice(
                        recipient=COORDINATOR,
                        event="council_awaiting_confirmation",
                        data={"shortfall": proposal.shortfall},
                    )
                ],
            )
            confirmed: ConfirmCouncilInput = await self._take("confirm_council")
            council = self._confirmed_council
            assert council is not None
            self._state.council = council
            self._alternates = list(council.alternates)
            await self._transition(
                "council-confirmed",
                "council_confirmed",
                Stage.council,
                actor=f"coordinator:{confirmed.confirmed_by}",
                details=self._council_details(council),
                council_confirmed=council,
            )
            self._done("confirm_council")
            for member in council.members:
                await self._invite(member, member.role)
            return
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
            details=self._council_details(proposal),
            notify=notify,
        )
        for member in proposal.members:
            await self._invite(member, member.role)

    @staticmethod
    def _council_details(council: CouncilProposal) -> dict:
        return {
            "members": [m.expert_code for m in council.members],
            "chair": next((m.expert_code for m in council.members if m.role == Role.chair), None),
            "alternates": [a.expert_code for a in council.alternates],
            "shortfall": council.shortfall,
        }

    def _review_needs_attention(self, target: int) -> bool:
        if self._added or self._replacements:
            return True
        if any(
            v.state in (AssignmentState.declined, AssignmentState.expired)
            and v.expert_code not in self._handled
            for v in self._state.assignments
        ):
            return True
        if self._all_in(target) or self._quorum_reached():
            return True
        return self._open_count() == 0 and not self._asked_for_experts

    def _all_in(self, target: int) -> bool:
        """Every invited expert has answered and the council is complete: synthesis starts
        at once, whatever the deadline."""
        chair = self._chair()
        return (
            self._open_count() == 0
            and self._submitted_count() >= target
            and chair is not None
            and chair.state == AssignmentState.submitted
        )

    def _quorum_reached(self) -> bool:
        """Past the review deadline, the policy's quorum (the chair's opinion among them)
        is enough."""
        chair = self._chair()
        return (
            self._review_due_passed
            and self._submitted_count() >= self._inp.policy.quorum
            and chair is not None
            and chair.state == AssignmentState.submitted
        )

    async def _close_review_on_quorum(self) -> None:
        still_open = [v.expert_code for v in self._state.assignments if v.state.is_open]
        await self._cancel_assignments(still_open)
        await self._transition(
            "quorum-reached",
            "quorum_reached",
            Stage.review,
            details={
                "opinions": self._submitted_count(),
                "quorum": self._inp.policy.quorum,
                "cancelled": still_open,
            },
            notify=[
                Notice(
                    recipient=COORDINATOR,
                    event="quorum_reached",
                    data={"opinions": self._submitted_count()},
                )
            ],
        )

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
        self._update_details()  # the state query shows the new seat and alternates at once
        await workflow.start_child_workflow(
            ExpertAssignmentWorkflow.run,
            ExpertAssignmentInput(
                request_id=self._state.request_id,
                parent_workflow_id=workflow.info().workflow_id,
                expert_code=code,
                role=role,
                policy=self._inp.policy,
                calendar=self._inp.calendar,
                history_limit=self._inp.assignment_history_limit,
            ),
            id=assignment_workflow_id(self._state.request_id, code),
            static_summary=f"{self._state.request_id}: expert {code} ({role.value})",
            # The request may continue as new while its experts work: they must outlive a
            # run of it. They report to the request by workflow id, and the request cancels
            # them itself when it ends early.
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        self._asked_for_experts = False
        self._update_details()

    async def _next_alternate(self) -> CouncilCandidate | None:
        """The next ranked alternate who still passes the hard rules: the proposal may be
        weeks old, and an alternate may since have filled up, declared a conflict or become
        unavailable."""
        while self._alternates:
            candidate = self._alternates.pop(0)
            if self._state.assignment(candidate.expert_code) is not None:
                continue
            checked = await workflow.execute_activity_method(
                CouncilActivities.check_expert,
                self._match_input(council_size=1, alternates=0, exclude=[candidate.expert_code]),
                **COMPUTE_OPTIONS,
            )
            if not checked.shortfall:
                return checked.members[0].model_copy(update={"reason": candidate.reason})
            workflow.logger.info("alternate skipped", extra={"why": checked.shortfall})
        return None

    async def _replace(self, old: str, candidate: CouncilCandidate, reason: str) -> None:
        view = self._state.assignment(old)
        assert view is not None
        role = view.role
        await self._cancel_assignments([old])
        self._handled.add(old)
        await self._invite(candidate, role)
        n = self._count("replaced")
        await self._transition(
            f"replaced-{n}",
            "expert_replaced",
            self._state.stage,
            actor="coordinator",
            details={"expert_code": old, "replacement": candidate.expert_code, "reason": reason},
            notify=[
                Notice(
                    recipient=COORDINATOR,
                    event="expert_replaced",
                    data={"expert_code": old, "replacement": candidate.expert_code},
                )
            ],
        )

    async def _cancel_assignments(self, codes: list[str]) -> None:
        """Cancels these experts' assignment workflows and waits until each has recorded its
        cancellation (its reminders die with it)."""
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
        await workflow.wait_condition(lambda: not any(self._is_open(c) for c in codes))

    async def _synthesis_and_approval(self) -> None:
        policy = self._inp.policy
        chair = self._chair()
        assert chair is not None
        if self._state.stage == Stage.review:
            await self._transition(
                f"synthesis-{self._version}",
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
            if self._state.stage == Stage.synthesis:
                draft: DraftConclusionInput = await self._take("draft_conclusion")
                version = self._version
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
                    details={
                        "version": version,
                        "recommendation": draft.draft.recommendation.value,
                    },
                    conclusion=self._conclusion_record(),
                    notify=[Notice(recipient=COORDINATOR, event="conclusion_ready")],
                )
                self._done("draft_conclusion")
            decision = await self._take("decide_conclusion")
            version = self._version
            conclusion = self._state.conclusion
            assert conclusion is not None
            if isinstance(decision, ApproveInput):
                conclusion.approved_by = decision.approved_by
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
                                "recommendation": conclusion.recommendation.value,
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
            conclusion.returned_comments = decision.comments
            self._version = version + 1
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

    async def _delivery_and_adoption(self) -> None:
        if self._state.stage == Stage.delivered:
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
        still_open = [v.expert_code for v in self._state.assignments if v.state.is_open]
        await self._cancel_assignments(still_open)
        await self._transition(
            "withdrawn",
            "withdrawn",
            Stage.withdrawn,
            actor=f"agency:{self._state.agency_code}",
            details={"reason": reason, "cancelled_assignments": len(still_open)},
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
        self._withdrawal_recorded = True
        self._abandon_pending()

    async def _lapse(self) -> None:
        reason = "the supplement was not received within the deadline and its grace period"
        self._state.closed_reason = reason
        await self._transition(
            "lapsed",
            "supplement_lapsed",
            Stage.closed,
            details={"reason": reason},
            notify=[
                Notice(recipient=AGENCY, event="request_lapsed"),
                Notice(recipient=COORDINATOR, event="request_lapsed"),
            ],
        )
        self._abandon_pending()

    def _abandon_pending(self) -> None:
        # Anything still waiting in a slot was overtaken by the end of the request.
        self._abandoned.update(self._pending)
        self._pending.clear()

    # --- stage deadlines --------------------------------------------------------------------------

    def _watch_stage(self, stage: Stage, deadline: datetime) -> None:
        asyncio.create_task(self._stage_deadline(self._stage_gen, stage, deadline))

    async def _stage_deadline(self, gen: int, stage: Stage, deadline: datetime) -> None:
        name = DEADLINES[stage]
        plan = await reminder_plan(deadline, name, self._inp.policy, self._inp.calendar)
        for instant in plan:
            delay = (instant.at - workflow.now()).total_seconds()
            if delay > 0:
                try:
                    await workflow.wait_condition(lambda: self._stage_gen != gen, timeout=delay)
                    return
                except TimeoutError:
                    pass
            async with self._lock:
                # Re-checked under the lock: a transition that ended this stage while the
                # timer fired wins, so no reminder follows the work it was about.
                if self._stage_gen != gen:
                    return
                await self._deadline_acts(name, gen, instant)

    async def _deadline_acts(self, name: str, gen: int, instant: ReminderInstant) -> None:
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
            self._review_due_passed = True
            self._update_details()
        elif instant.kind == "escalate" and name == "supplement":
            self._lapsed = True
        elif instant.kind == "escalate":
            self._stage_overdue = True
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
            self._update_details()

    def _responsible(self, name: str) -> Recipient | None:
        if name in ("screening", "approval"):
            return COORDINATOR
        if name in ("supplement", "adoption"):
            return AGENCY
        if name == "synthesis":
            chair = self._chair()
            return Recipient(kind="expert", code=chair.expert_code) if chair else None
        return None  # review: each expert is reminded by their own assignment

    def _topic(self) -> str:
        return f"{workflow.info().workflow_id}:stage-reminders"

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
        # expert sees it: inviting one expert twice would start a second child workflow with
        # the same id, and that failure would fail the whole request.
        self._adding.add(code)
        try:
            candidate = await self._check_candidate(code)
            # An alternate chosen by hand is no longer an alternate: a later decline must not
            # invite them a second time.
            self._alternates = [a for a in self._alternates if a.expert_code != code]
            self._added.append(candidate)
            await workflow.wait_condition(
                lambda: (
                    code in self._invited_by_hand
                    or self._state.stage.is_final
                    or self._review_closed
                )
            )
            if code not in self._invited_by_hand:
                self._added = [a for a in self._added if a.expert_code != code]
                raise _rejected(
                    f"expert_code: {code} was not invited: the review closed first "
                    f"(the request is in {self._state.stage.value})"
                )
            return self._state
        finally:
            self._adding.discard(code)

    @add_expert.validator
    def _validate_add_expert(self, inp: AddExpertInput) -> None:
        self._not_withdrawing()
        if self._state.stage not in (Stage.council, Stage.review) or self._review_closed:
            raise _rejected(f"cannot add an expert: the request is in {self._state.stage.value}")
        self._check_newcomer(inp.expert_code)

    @workflow.update
    async def replace_expert(self, inp: ReplaceExpertInput) -> RequestState:
        old = inp.expert_code
        self._replacing.add(old)  # claimed: a second replacement of the same seat is refused
        try:
            if inp.replacement is not None:
                code = inp.replacement
                self._adding.add(code)
                try:
                    candidate = await self._check_candidate(code)
                finally:
                    self._adding.discard(code)
                self._alternates = [a for a in self._alternates if a.expert_code != code]
            else:
                found = await self._next_alternate()
                if found is None:
                    raise _rejected("replacement: no eligible alternate left; name the expert")
                candidate = found
            self._replacements.append((old, candidate, inp.reason))
            await workflow.wait_condition(
                lambda: (
                    old in self._replaced
                    or old in self._replace_refused
                    or self._state.stage.is_final
                    or self._review_closed
                )
            )
            if old not in self._replaced:
                self._replace_refused.discard(old)
                self._replacements = [r for r in self._replacements if r[0] != old]
                raise _rejected(
                    f"expert_code: {old} was not replaced: their seat closed first "
                    f"(the request is in {self._state.stage.value})"
                )
            return self._state
        finally:
            self._replacing.discard(old)

    @replace_expert.validator
    def _validate_replace(self, inp: ReplaceExpertInput) -> None:
        self._not_withdrawing()
        if self._state.stage != Stage.review or self._review_closed:
            raise _rejected(
                f"cannot replace an expert: the request is in {self._state.stage.value}"
                + (" and its council is complete" if self._review_closed else "")
            )
        view = self._state.assignment(inp.expert_code)
        if view is None:
            raise _rejected(f"expert_code: {inp.expert_code} is not on this request")
        if (
            not view.state.is_open
            or inp.expert_code in self._replacing
            or any(r[0] == inp.expert_code for r in self._replacements)
        ):
            raise _rejected(
                f"expert_code: {inp.expert_code} cannot be replaced: "
                f"the assignment is {view.state.value}"
            )
        if inp.replacement is not None:
            self._check_newcomer(inp.replacement)
        elif not self._alternates:
            raise _rejected("replacement: no alternates left; name the expert to invite")

    @workflow.update
    async def extend_deadline(self, inp: ExtendInput) -> RequestState:
        stage = self._state.stage
        moves = self._moves
        async with self._lock:
            # A transition that started meanwhile is about to end this stage.
            if (
                self._moves != moves
                or self._state.stage != stage
                or self._state.stage_deadline is None
            ):
                raise _rejected(f"cannot extend: the request moved on from {stage.value} meanwhile")
            old = self._state.stage_deadline
            new = await self._due(inp.days, start=max(old, workflow.now()))
            was_overdue, self._stage_overdue = self._stage_overdue, False
            if stage == Stage.review:
                self._review_due_passed = False
            self._state.stage_deadline = new
            n = self._count("extended")
            await self._persist(
                f"extended-{n}",
                "deadline_extended",
                actor=f"coordinator:{inp.extended_by}",
                stage=stage,
                overdue=False if was_overdue else None,
                cancel_topics=[self._topic()],
                details={
                    "deadline": DEADLINES[stage],
                    "from": old.isoformat(),
                    "to": new.isoformat(),
                    "reason": inp.reason,
                },
                notify=[
                    Notice(
                        recipient=who,
                        event="deadline_extended",
                        data={"deadline": DEADLINES[stage], "due": new.isoformat()},
                    )
                    for who in [self._responsible(DEADLINES[stage])]
                    if who is not None
                ],
            )
            # A new generation: the old watcher's timers wake to nothing.
            self._stage_gen += 1
            self._watch_stage(stage, new)
            self._upsert_search_attributes()
            self._update_details()
        return self._state

    @extend_deadline.validator
    def _validate_extend(self, inp: ExtendInput) -> None:
        self._not_withdrawing()
        if self._state.stage not in DEADLINES or self._state.stage_deadline is None:
            raise _rejected(
                f"cannot extend: the request is in {self._state.stage.value}, which has no "
                "deadline of its own"
            )

    @workflow.update
    async def confirm_council(self, inp: ConfirmCouncilInput) -> RequestState:
        proposal = self._state.council
        assert proposal is not None
        members = inp.members or [m.expert_code for m in proposal.members]
        if not members:
            raise _rejected("members: the proposal has no members; name the council")
        chair = inp.chair or next(
            (
                m.expert_code
                for m in proposal.members
                if m.role == Role.chair and m.expert_code in members
            ),
            members[0],
        )
        # Claimed while the registry check runs: a second confirmation is refused meanwhile.
        self._claimed.add("confirm_council")
        try:
            council = await workflow.execute_activity_method(
                CouncilActivities.check_council,
                CheckCouncilInput(request=self._match_input(), members=members, chair=chair),
                **COMPUTE_OPTIONS,
            )
        except ActivityError as err:
            cause = err.cause
            raise _rejected(
                cause.message if isinstance(cause, ApplicationError) else str(err)
            ) from None
        finally:
            self._claimed.discard("confirm_council")
        self._confirmed_council = council
        return await self._hand_over("confirm_council", inp)

    @confirm_council.validator
    def _validate_confirm(self, inp: ConfirmCouncilInput) -> None:
        self._expect("confirm_council", Stage.council)
        if self._inp.policy.council_confirmation != "coordinator" or self._state.council is None:
            raise _rejected("cannot confirm: this council is not waiting for confirmation")

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
        await workflow.wait_condition(
            lambda: (
                self._withdrawal_recorded
                or self._state.stage not in (*WITHDRAWABLE, Stage.withdrawn)
            )
        )
        if not self._withdrawal_recorded:
            # A transition already under way (an approval, a decline, a lapse) won the race.
            self._withdraw = None
            raise _rejected(
                f"cannot withdraw: the request moved on to {self._state.stage.value} first"
            )
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
        if self._state.stage.is_final:
            raise _rejected(f"the request is {self._state.stage.value}: nothing more can be done")
        self._pending[name] = inp
        await workflow.wait_condition(
            lambda: (
                name not in self._pending
                or (self._state.stage.is_final and name not in self._taken)
            )
        )
        if name in self._abandoned or name in self._pending:
            self._abandoned.discard(name)
            self._pending.pop(name, None)
            raise _rejected(f"the request was {self._state.stage.value} before this was recorded")
        return self._state

    async def _take(self, name: str) -> Any:
        await self._wait(lambda: name in self._pending)
        self._taken.add(name)
        return self._pending[name]

    def _done(self, name: str) -> None:
        # Cleared only after the transition is persisted: the caller's answer means "recorded".
        self._pending.pop(name, None)
        self._taken.discard(name)

    async def _wait(self, condition) -> None:
        """Waits for `condition`, unless the request is withdrawn or lapses first, or its
        history has grown long enough to continue as new."""
        while True:
            await workflow.wait_condition(
                lambda: self._interrupted() or condition() or self._history_is_long()
            )
            if self._withdrawing():
                raise _Withdrawn()
            if self._lapsed:
                raise _Lapsed()
            if condition():
                return
            # Continue as new only with nothing in flight: no handler running, no reminder
            # or transition being recorded. Whatever arrives meanwhile (most handlers wait
            # on this loop) is served first, then the check is made again.
            await workflow.wait_condition(
                lambda: (
                    (workflow.all_handlers_finished() and not self._lock.locked())
                    or self._interrupted()
                    or condition()
                )
            )
            if not (self._interrupted() or condition()):
                raise _ContinueAsNew()

    def _interrupted(self) -> bool:
        return self._withdrawing() or self._lapsed

    def _withdrawing(self) -> bool:
        # A withdrawal counts only while the request may still be withdrawn: one accepted
        # just as the conclusion went out is refused by its handler instead.
        return self._withdraw is not None and self._state.stage in WITHDRAWABLE

    def _history_is_long(self) -> bool:
        info = workflow.info()
        if self._inp.history_limit is not None:
            return info.get_current_history_length() > self._inp.history_limit
        return info.is_continue_as_new_suggested()

    def _carry(self) -> ReviewCarry:
        return ReviewCarry(
            state=self._state,
            alternates=self._alternates,
            handled=sorted(self._handled),
            asked_for_experts=self._asked_for_experts,
            shortfalls=self._shortfalls,
            # The same generation: the next run's watcher replans this stage's deadline, and
            # what it acts on again (a past escalation) has the same key, so is not repeated.
            stage_generation=self._stage_gen,
            conclusion_version=self._version,
            review_due_passed=self._review_due_passed,
            stage_overdue=self._stage_overdue,
            counters=self._counters,
        )

    def _expect(self, name: str, stage: Stage) -> None:
        self._not_withdrawing()
        if self._state.stage != stage:
            raise _rejected(
                f"cannot {name.replace('_', ' ')}: the request is in {self._state.stage.value}, "
                f"not {stage.value}"
            )
        if name in self._pending or name in self._claimed:
            raise _rejected(f"a {name.replace('_', ' ')} action is already being recorded")

    def _not_withdrawing(self) -> None:
        if self._state.stage.is_final:
            raise _rejected(
                f"the request is {self._state.stage.value}: nothing more can be done on it"
            )
        if self._withdrawing():
            raise _rejected("the request is being withdrawn")

    def _check_newcomer(self, code: str) -> None:
        if self._state.assignment(code) is not None:
            raise _rejected(f"expert_code: {code} already has a role on this request")
        if (
            code in self._adding
            or any(c.expert_code == code for c in self._added)
            or any(r[1].expert_code == code for r in self._replacements)
        ):
            raise _rejected(f"expert_code: {code} is already being added")
        council = self._state.council
        if (
            self._state.stage == Stage.council
            and council is not None
            and any(m.expert_code == code for m in council.members)
        ):
            raise _rejected(f"expert_code: {code} is already on the proposed council")

    async def _check_candidate(self, code: str) -> CouncilCandidate:
        """The registry's word on an expert the coordinator names (validators cannot read the
        database, so this runs in the handler)."""
        checked = await workflow.execute_activity_method(
            CouncilActivities.check_expert,
            self._match_input(council_size=1, alternates=0, exclude=[code]),
            **COMPUTE_OPTIONS,
        )
        if checked.shortfall:
            raise _rejected(f"expert_code: {checked.shortfall}")
        if self._state.stage not in (Stage.council, Stage.review):
            raise _rejected(f"cannot add an expert: the request is in {self._state.stage.value}")
        if self._state.assignment(code) is not None:
            raise _rejected(f"expert_code: {code} already has a role on this request")
        return checked.members[0]

    # --- helpers ---------------------------------------------------------------------------------

    def _count(self, name: str) -> int:
        """A counter that survives continue-as-new, for idempotency keys of repeatable steps."""
        self._counters[name] = self._counters.get(name, 0) + 1
        return self._counters[name]

    def _chair(self) -> AssignmentView | None:
        return next(
            (
                v
                for v in self._state.assignments
                if v.role == Role.chair
                and v.state
                not in (
                    AssignmentState.declined,
                    AssignmentState.cancelled,
                    AssignmentState.expired,
                )
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

    async def _due(self, days: int, start: datetime | None = None) -> datetime:
        return await due_date(start or workflow.now(), days, self._inp.policy, self._inp.calendar)

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
        """Moves the request (or records a step within its stage) and restarts the stage's
        deadline watcher when the stage or its deadline changes."""
        moving = stage != self._state.stage or days is not None
        if moving:
            self._stage_gen += 1  # at once: a timer firing now must see its stage is over
            self._moves += 1
        async with self._lock:
            deadline = await self._due(days) if days else None
            cleared_overdue = None
            if moving:
                # Again under the lock: an extension that held the lock meanwhile may have
                # started a watcher for the old stage on the then-current generation.
                self._stage_gen += 1
                self._state.stage_deadline = deadline
                self._review_due_passed = False
                if self._stage_overdue:
                    self._stage_overdue, cleared_overdue = False, False
            self._state.stage = stage
            await self._persist(
                step,
                action,
                actor=actor,
                stage=stage,
                details=details,
                notify=notify,
                overdue=cleared_overdue,
                cancel_topics=[self._topic()] if moving else [],
                **records,
            )
        if moving:
            # Logged once, not on replay (the SDK's workflow logger skips replayed code).
            workflow.logger.info("stage changed", extra={"stage": stage.value, "action": action})
        if moving and stage in DEADLINES and deadline is not None:
            self._watch_stage(stage, deadline)
        self._upsert_search_attributes()
        self._update_details()

    async def _persist(
        self,
        step: str,
        action: str,
        *,
        actor: str = "system",
        stage: Stage | None = None,
        details: dict | None = None,
        notify: list[Notice] | None = None,
        overdue: bool | None = None,
        cancel_topics: list[str] | None = None,
        **records: Any,
    ) -> None:
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
                overdue=overdue,
                cancel_topics=cancel_topics or [],
                **records,
            ),
            # What the Temporal UI shows for this step: the action, never the people.
            summary=f"record {action}" + (f" → {stage.value}" if stage else ""),
            **PERSIST_OPTIONS,
        )

    def _upsert_search_attributes(self) -> None:
        d = self._state.stage_deadline
        overdue = self._is_overdue()
        workflow.upsert_search_attributes(
            [
                sa.STAGE.value_set(self._state.stage.value),
                sa.KIND.value_set(self._state.kind.value),
                sa.AGENCY.value_set(self._state.agency_code),
                sa.NEXT_DEADLINE.value_set(d) if d else sa.NEXT_DEADLINE.value_unset(),
                sa.OVERDUE.value_set(overdue),
            ]
        )
        self._upserted_overdue = overdue

    def _is_overdue(self) -> bool:
        return self._stage_overdue or any(
            v.overdue and v.state.is_open for v in self._state.assignments
        )

    def _update_details(self) -> None:
        """Keeps the derived parts of the state, the overdue flag and the UI's current details
        in step; called on every transition and every change an assignment reports."""
        st = self._state
        st.alternates_left = [a.expert_code for a in self._alternates]
        st.overdue = self._is_overdue()
        if st.overdue != self._upserted_overdue:
            workflow.upsert_search_attributes([sa.OVERDUE.value_set(st.overdue)])
            self._upserted_overdue = st.overdue
        counts = (self._submitted_count(), self._inp.policy.council_size)
        if counts != self._upserted_counts and workflow.patched(PATCH_OPINION_COUNTS):
            workflow.upsert_search_attributes(
                [
                    sa.OPINIONS_RECEIVED.value_set(counts[0]),
                    sa.OPINIONS_EXPECTED.value_set(counts[1]),
                ]
            )
            self._upserted_counts = counts
        st.waiting_for = self._waiting_for()
        workflow.set_current_details(
            f"{st.stage.value}: waiting for {st.waiting_for}" + (" — OVERDUE" if st.overdue else "")
            if not st.stage.is_final
            else st.stage.value
        )

    def _late_by(self, v: AssignmentView) -> str:
        """' 2 working days' past the assignment's date. Only the UI's text: it is not in the
        history, so counting with today's holiday tables is safe for replay."""
        due = v.due_at if v.state == AssignmentState.accepted else v.respond_by
        if due is None:
            return ""
        c = self._inp.calendar
        # The holiday tables read locale settings when first built; nothing here can change
        # what the workflow commands.
        with workflow.unsafe.sandbox_unrestricted():
            cal = WorkingCalendar(c.extra_days_off, c.extra_working_days)
            days = cal.working_days_between(cal.local_date(due), cal.local_date(workflow.now()))
        return f" {days} working day{'s' if days != 1 else ''}" if days else ""

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
                overdue = [v for v in st.assignments if v.overdue and v.state.is_open]
                for v in overdue:
                    text += f", expert {v.expert_code} overdue{self._late_by(v)}"
                if self._open_count() == 0 and self._asked_for_experts:
                    text += ", the coordinator to add an expert"
                if self._review_due_passed:
                    text += f" (deadline passed; quorum {self._inp.policy.quorum})"
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
