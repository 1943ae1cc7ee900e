"""The automatic steps themselves — what the run loop does when `steps.next_step` names a step.
Each runs under the request's lock and records through `Transitions`."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.council import CouncilActivities
    from domain.messages import ConclusionRecord, IntakeRecord
    from domain.models import (
        AGENCY,
        COORDINATOR,
        ConclusionView,
        CouncilProposal,
        Notice,
        Recipient,
        Role,
        Stage,
    )
    from workflows.common import COMPUTE_OPTIONS
    from workflows.review.steps import Step
    from workflows.review.transitions import Transitions


class AutomaticSteps(Transitions):
    async def _take(self, step: Step) -> None:
        match step:
            case Step.intake:
                await self._record_intake()
            case Step.lapse:
                await self._lapse()
            case Step.propose_council:
                await self._propose_council()
            case Step.invite_member:
                member = self._state.uninvited_members()[0]
                await self._invite(member, member.role)
            case Step.open_review:
                await self._open_review()
            case Step.fill_vacancy:
                await self._fill_vacancy()
            case Step.open_synthesis:
                await self._open_synthesis()
            case Step.close_on_quorum:
                await self._close_on_quorum()
            case Step.ask_for_experts:
                await self._ask_for_experts()
            case Step.request_adoption:
                await self._transition(
                    "adoption-open",
                    "adoption_answer_requested",
                    Stage.adoption,
                    days=self._inp.policy.adoption_days,
                    notify=[Notice(recipient=AGENCY, event="adoption_answer_requested")],
                )

    async def _record_intake(self) -> None:
        s, policy = self._inp.submission, self._inp.policy
        await self._transition(
            "intake",
            "submitted",
            Stage.screening,
            days=policy.screening_days,
            actor=f"agency:{s.agency.code}",
            details={
                "agency_reference": s.agency_reference,
                "kind": s.kind.value,
                "expertise_fields": s.expertise_fields,
            },
            intake=IntakeRecord(
                submission=s,
                submitted_at=workflow.now(),
                council_size=policy.council_size,
                alternates=policy.alternates,
                review_window_days=policy.respond_days + policy.review_days,
            ),
            notify=[
                Notice(recipient=AGENCY, event="request_received"),
                Notice(recipient=COORDINATOR, event="request_submitted"),
            ],
        )

    async def _lapse(self) -> None:
        reason = "the supplement was not received within the deadline and its grace period"
        await self._transition(
            "lapsed",
            "supplement_lapsed",
            Stage.closed,
            details={"reason": reason},
            notify=[
                Notice(recipient=AGENCY, event="request_lapsed"),
                Notice(recipient=COORDINATOR, event="request_lapsed"),
            ],
            apply={"closed_reason": reason},
        )

    async def _propose_council(self) -> None:
        """Proposes the council (its members' seats reserved with it); the run loop invites
        them, unless the policy has the coordinator confirm it first."""
        proposal = await workflow.execute_activity_method(
            CouncilActivities.propose_council, self._match_input(), **COMPUTE_OPTIONS
        )
        confirming = self._inp.policy.council_confirmation == "coordinator"
        if confirming:
            notify = [
                Notice(
                    recipient=COORDINATOR,
                    event="council_awaiting_confirmation",
                    data={"shortfall": proposal.shortfall},
                )
            ]
        else:
            notify = [Notice(recipient=COORDINATOR, event="council_proposed")]
            if proposal.shortfall:
                notify.append(
                    Notice(
                        recipient=COORDINATOR,
                        event="council_shortfall",
                        data={"shortfall": proposal.shortfall},
                    )
                )
        await self._transition(
            "council-proposed",
            "council_proposed",
            Stage.council,
            details=council_details(proposal),
            notify=notify,
            apply={
                "council": proposal,
                "council_status": "proposed" if confirming else "confirmed",
                "alternates": list(proposal.alternates),
                # The shortfall notice has told the coordinator already.
                "asked_for_experts": bool(proposal.shortfall) and not confirming,
            },
        )

    async def _fill_vacancy(self) -> None:
        """A declined or expired seat goes to the next eligible alternate, in the same role."""
        vacancy = self._state.open_vacancies()[0]
        self._state.vacancies_filled.append(vacancy.expert_code)
        alternate = await self._next_alternate()
        if alternate is not None:
            await self._invite(alternate, vacancy.role)

    async def _close_on_quorum(self) -> None:
        st = self._state
        st.review_closed = True  # at once: adds, swaps and extensions are refused from now
        still_open = [a.expert_code for a in st.assignments if a.state.is_open]
        await self._cancel_assignments(still_open)
        await self._transition(
            "quorum-reached",
            "quorum_reached",
            Stage.review,
            details={
                "opinions": st.submitted_count(),
                "quorum": self._inp.policy.quorum,
                "cancelled": still_open,
            },
            notify=[
                Notice(
                    recipient=COORDINATOR,
                    event="quorum_reached",
                    data={"opinions": st.submitted_count()},
                )
            ],
        )

    async def _open_synthesis(self) -> None:
        st = self._state
        chair = st.chair()
        assert chair is not None
        await self._transition(
            f"synthesis-{st.conclusion_version}",
            "synthesis_opened",
            Stage.synthesis,
            days=self._inp.policy.synthesis_days,
            details={"chair": chair.expert_code, "opinions": st.submitted_count()},
            notify=[
                Notice(
                    recipient=Recipient.expert(chair.expert_code),
                    event="draft_conclusion_requested",
                )
            ],
        )

    async def _ask_for_experts(self) -> None:
        """Nobody is left to answer and there is no one to invite: the coordinator adds an
        expert (told once until someone is invited again)."""
        st = self._state
        needed = self._inp.policy.council_size
        await self._transition(
            f"experts-needed-{self._count('experts-needed')}",
            "experts_needed",
            st.stage,
            details={
                "submitted": st.submitted_count(),
                "needed": needed,
                "has_chair": st.chair() is not None,
            },
            notify=[
                Notice(
                    recipient=COORDINATOR,
                    event="experts_needed",
                    data={"submitted": st.submitted_count(), "needed": needed},
                )
            ],
            apply={"asked_for_experts": True},
        )


def council_details(council: CouncilProposal) -> dict:
    return {
        "members": [m.expert_code for m in council.members],
        "chair": next((m.expert_code for m in council.members if m.role == Role.chair), None),
        "alternates": [a.expert_code for a in council.alternates],
        "shortfall": council.shortfall,
    }


def conclusion_record(c: ConclusionView) -> ConclusionRecord:
    return ConclusionRecord(**c.model_dump())
