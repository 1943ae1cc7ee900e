"""What callers and operators read of a request — the answer to a query or an action, the
Temporal UI's current details, the search attributes — as pure functions of its state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from temporalio.common import SearchAttributeUpdate, TypedSearchAttributes

from domain import search_attributes as sa
from domain.messages import RequestRecord, RequestState, ReviewState
from domain.models import AssignmentState, AssignmentView, Stage
from domain.policy import KindPolicy

# Working days an assignment is past its date ("overdue 2 working days"); the caller counts
# them with the calendar.
LateBy = Callable[[AssignmentView], int]


def request_view(state: ReviewState, policy: KindPolicy, late_by: LateBy) -> RequestState:
    """The request as callers read it."""
    return RequestState(
        **state.model_dump(include=set(RequestRecord.model_fields)),
        alternates_left=[a.expert_code for a in state.alternates],
        overdue=state.overdue(),
        waiting_for=waiting_for(state, policy, late_by),
    )


def current_details(state: ReviewState, policy: KindPolicy, late_by: LateBy) -> str:
    """The Temporal UI's one line: the stage and what it waits for."""
    if state.stage.is_final:
        return state.stage.value
    return f"{state.stage.value}: waiting for {waiting_for(state, policy, late_by)}" + (
        " — OVERDUE" if state.overdue() else ""
    )


def waiting_for(state: ReviewState, policy: KindPolicy, late_by: LateBy) -> str:
    due = f", due {state.stage_deadline.date().isoformat()}" if state.stage_deadline else ""
    match state.stage:
        case Stage.intake:
            return "intake to be recorded"
        case Stage.screening:
            return f"the coordinator's screening decision{due}"
        case Stage.supplement:
            return f"the agency's supplement{due}"
        case Stage.council if state.council_status == "proposed":
            return "the coordinator to approve the proposed council"
        case Stage.council:
            return "experts to be added by the coordinator"
        case Stage.review:
            return _review_progress(state, policy, late_by) + due
        case Stage.synthesis:
            chair = state.chair()
            return f"the chair {chair.expert_code if chair else ''} to draft the conclusion{due}"
        case Stage.approval:
            return f"the coordinator to approve or return the conclusion{due}"
        case Stage.delivered:
            return "delivery of the conclusion"
        case Stage.adoption:
            return f"the agency's answer on adoption{due}"
    return "nothing"


def _review_progress(state: ReviewState, policy: KindPolicy, late_by: LateBy) -> str:
    invited = sum(1 for a in state.assignments if a.state == AssignmentState.invited)
    text = f"{state.submitted_count()} of {policy.council_size} opinions"
    if invited:
        text += f", {invited} invitation(s) unanswered"
    for a in state.assignments:
        if a.overdue and a.state.is_open:
            days = late_by(a)
            late = f" {days} working day{'s' if days != 1 else ''}" if days else ""
            text += f", expert {a.expert_code} overdue{late}"
    if state.open_count() == 0 and state.asked_for_experts:
        text += ", the coordinator to add an expert"
    if state.review_due_passed:
        text += f" (deadline passed; quorum {policy.quorum})"
    return text


def search_attributes(state: ReviewState, policy: KindPolicy) -> list[SearchAttributeUpdate]:
    """Every search attribute of the request, as it should read now."""
    deadline: datetime | None = state.stage_deadline
    return [
        sa.STAGE.value_set(state.stage.value),
        sa.KIND.value_set(state.kind.value),
        sa.AGENCY.value_set(state.agency_code),
        sa.NEXT_DEADLINE.value_set(deadline) if deadline else sa.NEXT_DEADLINE.value_unset(),
        sa.OVERDUE.value_set(state.overdue()),
        sa.OPINIONS_RECEIVED.value_set(state.submitted_count()),
        sa.OPINIONS_EXPECTED.value_set(policy.council_size),
    ]


def search_attribute_changes(
    state: ReviewState, policy: KindPolicy, current: TypedSearchAttributes
) -> list[SearchAttributeUpdate]:
    """Only what differs from `current`: each upsert is an event in the history."""
    return [
        u
        for u in search_attributes(state, policy)
        if current.get(u.key) != u.value  # type: ignore[call-overload]
    ]
