"""The request's automatic steps — what happens without anyone asking — chosen by one pure
function of the state and the policy. The run loop asks `next_step` whenever the state
changes and again under the lock before it acts, so a person's action recorded meanwhile
always wins.

    stage        when                                          step
    ─────        ────                                          ────
    intake       always                                        intake (record the submission)
    supplement   the supplement's deadline and grace passed    lapse
    council      no proposal yet                               propose_council
    council/     a confirmed member not invited yet            invite_member
      review
    council      every invitation recorded                     open_review
    review       a decline or expiry not filled yet            fill_vacancy
    review       every opinion in, the chair's among them      open_synthesis
    review       past the deadline with the quorum             close_on_quorum
    review       closed on its quorum                          open_synthesis
    council/     nobody left to answer and no one to invite    ask_for_experts (once)
      review
    delivered    always                                        request_adoption
"""

from __future__ import annotations

from enum import StrEnum

from domain.messages import ReviewState
from domain.models import AssignmentState, Stage
from domain.policy import KindPolicy
from workflows.review.actions import WITHDRAW


class Step(StrEnum):
    intake = "intake"
    lapse = "lapse"
    propose_council = "propose_council"
    invite_member = "invite_member"
    open_review = "open_review"
    fill_vacancy = "fill_vacancy"
    open_synthesis = "open_synthesis"
    close_on_quorum = "close_on_quorum"
    ask_for_experts = "ask_for_experts"
    request_adoption = "request_adoption"


def next_step(state: ReviewState, policy: KindPolicy, claims: set[str]) -> Step | None:
    """The automatic step to take now, or None: waiting for a person (or a deadline)."""
    if state.stage.is_final or WITHDRAW in claims:
        return None  # a claimed withdrawal goes first: nobody is invited only to be cancelled
    match state.stage:
        case Stage.intake:
            return Step.intake
        case Stage.supplement:
            return Step.lapse if state.supplement_lapsed else None
        case Stage.delivered:
            return Step.request_adoption
        case Stage.council | Stage.review:
            return _council_step(state, policy)
    return None


def _council_step(state: ReviewState, policy: KindPolicy) -> Step | None:
    if state.council is None:
        return Step.propose_council
    if state.council_status != "confirmed":
        return None  # the coordinator confirms the proposal
    if state.uninvited_members():
        return Step.invite_member
    # A request is in review only once its invitations can be read.
    if state.stage == Stage.council and state.invitations_recorded():
        return Step.open_review
    if state.stage == Stage.review:
        if state.review_closed:
            return Step.open_synthesis
        if state.open_vacancies():
            return Step.fill_vacancy
        if all_in(state, policy):
            return Step.open_synthesis
        if quorum_reached(state, policy):
            return Step.close_on_quorum
    if state.open_count() == 0 and not state.asked_for_experts:
        return Step.ask_for_experts
    return None


def all_in(state: ReviewState, policy: KindPolicy) -> bool:
    """Every invited expert has answered and the council is complete: synthesis starts at
    once, whatever the deadline."""
    chair = state.chair()
    return (
        state.open_count() == 0
        and state.submitted_count() >= policy.council_size
        and chair is not None
        and chair.state == AssignmentState.submitted
    )


def quorum_reached(state: ReviewState, policy: KindPolicy) -> bool:
    """Past the review deadline, the policy's quorum (the chair's opinion among them) is
    enough."""
    chair = state.chair()
    return (
        state.review_due_passed
        and state.submitted_count() >= policy.quorum
        and chair is not None
        and chair.state == AssignmentState.submitted
    )
