"""Which person's action the request admits, and when: pure functions of the state, called by
each update's validator (admission) and again by its handler under the lock (the request may
have moved on while the action waited its turn).

An admitted action holds a *claim* until it is recorded: a second action with the same claim
is refused at once ("already being recorded"), and a claimed withdrawal refuses everything
else and holds back the run loop's automatic steps.
"""

from __future__ import annotations

from typing import Any

from domain.messages import (
    AddExpertInput,
    ConfirmCouncilInput,
    DraftConclusionInput,
    ReplaceExpertInput,
    ReviewState,
    ScreeningInput,
)
from domain.models import WITHDRAWABLE, Stage
from domain.policy import KindPolicy
from domain.text import with_article
from workflows.common import Refused, check_signed_in
from workflows.deadlines import check_extension_bounds

WITHDRAW = "withdraw"

# The stages that have a deadline of their own, and the policy's name for it.
DEADLINES = {
    Stage.screening: "screening",
    Stage.supplement: "supplement",
    Stage.review: "review",
    Stage.synthesis: "synthesis",
    Stage.approval: "approval",
    Stage.adoption: "adoption",
}

# Actions that simply need the request in one stage: their name in a refusal, and the stage.
ONE_STAGE = {
    "screen": ("screen", Stage.screening),
    "supplement": ("supplement", Stage.supplement),
    "confirm_council": ("confirm council", Stage.council),
    "draft_conclusion": ("draft conclusion", Stage.synthesis),
    "approve_conclusion": ("decide conclusion", Stage.approval),
    "return_conclusion": ("decide conclusion", Stage.approval),
    "answer_adoption": ("answer adoption", Stage.adoption),
}


def claims_of(action: str, inp: Any) -> list[str]:
    """What an action holds from admission until recorded."""
    match action:
        case "approve_conclusion" | "return_conclusion":
            return ["decide_conclusion"]
        case "add_expert":
            return [f"expert:{inp.expert_code}"]
        case "replace_expert":
            named = [f"expert:{inp.replacement}"] if inp.replacement else []
            return [f"seat:{inp.expert_code}", *named]
        case "extend_deadline":
            return []  # extensions queue behind each other; each moves the deadline on
    return [action]


def admit(state: ReviewState, policy: KindPolicy, claims: set[str], action: str, inp: Any) -> None:
    """The validator's check: the rules of `check`, and no conflicting claim."""
    if not state.stage.is_final and WITHDRAW in claims:
        raise Refused("the request is being withdrawn")
    check_signed_in(inp)
    check(state, policy, action, inp)
    for claim in claims_of(action, inp):
        if claim in claims:
            kind, _, code = claim.partition(":")
            if kind == "expert":
                raise Refused(f"expert_code: {code} is already being added")
            if kind == "seat":
                raise Refused(f"expert_code: {code} cannot be replaced: it is being replaced")
            action_name = with_article(claim.replace("_", " "))
            raise Refused(f"{action_name} action is already being recorded")


def check(state: ReviewState, policy: KindPolicy, action: str, inp: Any) -> None:
    """Whether `action` with `inp` may be taken in this state (raises Refused)."""
    stage = state.stage
    if stage.is_final:
        raise Refused(f"the request is {stage.value}: nothing more can be done on it")
    if action in ONE_STAGE:
        label, expected = ONE_STAGE[action]
        if stage != expected:
            raise Refused(f"cannot {label}: the request is in {stage.value}, not {expected.value}")
    match action:
        case "screen":
            _check_screening(inp)
        case "confirm_council":
            _check_confirmation(state, inp)
        case "draft_conclusion":
            _check_chair(state, inp)
        case "approve_conclusion" | "return_conclusion":
            if inp.version is not None and inp.version != state.conclusion_version:
                raise Refused(
                    f"draft {inp.version} is no longer the one to decide on: "
                    f"draft {state.conclusion_version} came in since"
                )
        case "add_expert":
            _check_add(state, inp)
        case "replace_expert":
            _check_replace(state, inp)
        case "extend_deadline":
            if stage not in DEADLINES or state.stage_deadline is None:
                raise Refused(
                    f"cannot extend: the request is in {stage.value}, which has no deadline "
                    "of its own"
                )
            if state.review_closed:
                raise Refused("cannot extend: the review is closing on its quorum")
            check_extension_bounds(
                policy,
                DEADLINES[stage],
                state.counters.get(f"extensions:{stage.value}", 0),
                state.counters.get(f"extension-days:{stage.value}", 0),
                inp.days,
            )
        case "withdraw":
            if stage not in WITHDRAWABLE:
                raise Refused(
                    f"cannot withdraw: the request is {stage.value}; withdrawal is possible "
                    "only before the conclusion is delivered"
                )


def _check_screening(inp: ScreeningInput) -> None:
    if inp.decision != "accept" and len(inp.note.strip()) < 3:
        raise Refused(f"note: required (at least 3 characters) to {inp.decision}")


def _check_confirmation(state: ReviewState, inp: ConfirmCouncilInput) -> None:
    if state.council_status != "proposed" or state.council is None:
        raise Refused("cannot confirm: this council is not waiting for confirmation")
    if inp.members is None and not state.council.members:
        raise Refused("members: the proposal has no members; name the council")


def _check_chair(state: ReviewState, inp: DraftConclusionInput) -> None:
    chair = state.chair()
    if chair is None or chair.expert_code != inp.expert_code:
        raise Refused(f"expert_code: {inp.expert_code} is not the chair of this council")


def _check_add(state: ReviewState, inp: AddExpertInput) -> None:
    if state.stage not in (Stage.council, Stage.review) or state.review_closed:
        raise Refused(f"cannot add an expert: the request is in {state.stage.value}")
    check_newcomer(state, inp.expert_code)
    if state.council_status == "proposed":
        raise Refused(
            "cannot add an expert: the proposed council awaits confirmation; "
            "name the expert among the members when confirming it"
        )


def _check_replace(state: ReviewState, inp: ReplaceExpertInput) -> None:
    if state.stage != Stage.review or state.review_closed:
        raise Refused(
            f"cannot replace an expert: the request is in {state.stage.value}"
            + (" and its council is complete" if state.review_closed else "")
        )
    seat = state.assignment(inp.expert_code)
    if seat is None:
        raise Refused(f"expert_code: {inp.expert_code} is not on this request")
    if not seat.state.is_open:
        raise Refused(
            f"expert_code: {inp.expert_code} cannot be replaced: "
            f"the assignment is {seat.state.value}"
        )
    if inp.replacement is not None:
        check_newcomer(state, inp.replacement)
    elif not state.alternates:
        raise Refused("replacement: no alternates left; name the expert to invite")


def check_newcomer(state: ReviewState, code: str) -> None:
    """An expert the coordinator names must be new to this request."""
    if state.assignment(code) is not None:
        raise Refused(f"expert_code: {code} already has a role on this request")
    council = state.council
    if (
        state.stage == Stage.council
        and council is not None
        and any(m.expert_code == code for m in council.members)
    ):
        raise Refused(f"expert_code: {code} is already on the proposed council")
