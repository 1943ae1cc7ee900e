"""The request workflow's pure parts, without a server or a database: which automatic step
comes next, which person's action is admitted when, and what callers and operators read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from domain import search_attributes as sa
from domain.messages import (
    AddExpertInput,
    ConfirmCouncilInput,
    ExtendInput,
    ReplaceExpertInput,
    ReviewState,
    ScreeningInput,
    WithdrawInput,
)
from domain.models import (
    AssignmentState,
    AssignmentView,
    CouncilCandidate,
    CouncilProposal,
    Role,
    Stage,
)
from infra.settings import CONFIG, load_policy
from tests import factories as f
from workflows.common import Refused
from workflows.review import visibility
from workflows.review.actions import admit, check
from workflows.review.steps import Step, next_step

POLICY = load_policy(CONFIG / "policy.toml").kinds["advisory"]  # council 3, quorum 2
NOW = datetime(2026, 11, 25, 2, tzinfo=UTC)


def candidate(code: str, role: Role = Role.member) -> CouncilCandidate:
    return CouncilCandidate(
        expert_code=code, role=role, matched_fields=["f"], active_load=0, load_limit=3, reason="r"
    )


def seat(code: str, state: AssignmentState, role: Role = Role.member, **kw) -> AssignmentView:
    return AssignmentView(expert_code=code, role=role, state=state, invited_at=NOW, **kw)


def state(stage: Stage = Stage.review, **kw) -> ReviewState:
    return ReviewState(
        request_id="R-1", kind="advisory", title="Đề án", agency_code="SXD", stage=stage, **kw
    )


def council(*codes: str, status: str = "confirmed", alternates=()) -> dict:
    members = [candidate(c, Role.chair if i == 0 else Role.member) for i, c in enumerate(codes)]
    return {
        "council": CouncilProposal(members=members, alternates=[candidate(a) for a in alternates]),
        "council_status": status,
        "alternates": [candidate(a) for a in alternates],
    }


S, A, INV, D = (
    AssignmentState.submitted,
    AssignmentState.accepted,
    AssignmentState.invited,
    AssignmentState.declined,
)


def seated(*states: AssignmentState) -> list[AssignmentView]:
    return [seat(f"E{i}", s, Role.chair if i == 0 else Role.member) for i, s in enumerate(states)]


# --- next_step ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("st", "expected"),
    [
        (state(Stage.intake), Step.intake),
        (state(Stage.screening), None),
        (state(Stage.supplement), None),
        (state(Stage.supplement, supplement_lapsed=True), Step.lapse),
        (state(Stage.council), Step.propose_council),
        # Waiting for the coordinator, in this run or the next (continue-as-new keeps it).
        (state(Stage.council, **council("E0", "E1", status="proposed")), None),
        (state(Stage.council, **council("E0", "E1")), Step.invite_member),
        # Review opens once every invitation is recorded (has its respond-by date).
        (
            state(
                Stage.council,
                **council("E0", "E1"),
                assignments=[seat("E0", INV, Role.chair, respond_by=NOW), seat("E1", INV)],
            ),
            None,
        ),
        (
            state(
                Stage.council,
                **council("E0", "E1"),
                assignments=[
                    seat("E0", INV, Role.chair, respond_by=NOW),
                    seat("E1", D, respond_by=NOW),
                ],
            ),
            Step.open_review,
        ),
        # A council of nobody: the coordinator is asked, once.
        (state(Stage.council, **council()), Step.ask_for_experts),
        (state(Stage.council, **council(), asked_for_experts=True), None),
        (state(**council("E0", "E1", "E2"), assignments=seated(S, A, INV)), None),
        (state(**council("E0", "E1", "E2"), assignments=seated(S, S, S)), Step.open_synthesis),
        (
            state(**council("E0", "E1", "E2", alternates=["E3"]), assignments=seated(S, S, D)),
            Step.fill_vacancy,
        ),
        (
            state(
                **council("E0", "E1", "E2"),
                assignments=seated(S, S, D),
                vacancies_filled=["E2"],
            ),
            Step.ask_for_experts,
        ),
        # Past the deadline: two of three with the chair's is the quorum.
        (
            state(**council("E0", "E1", "E2"), assignments=seated(S, S, A), review_due_passed=True),
            Step.close_on_quorum,
        ),
        (
            state(**council("E0", "E1", "E2"), assignments=seated(A, S, S), review_due_passed=True),
            None,  # the chair's opinion is missing
        ),
        (
            state(**council("E0", "E1", "E2"), assignments=seated(S, S, A), review_closed=True),
            Step.open_synthesis,
        ),
        (state(Stage.synthesis), None),
        (state(Stage.delivered), Step.request_adoption),
        (state(Stage.withdrawn), None),
    ],
)
def test_next_step(st: ReviewState, expected: Step | None):
    assert next_step(st, POLICY, set()) == expected


def test_a_claimed_withdrawal_holds_back_every_automatic_step():
    st = state(Stage.council, **council("E0", "E1"))
    assert next_step(st, POLICY, {"withdraw"}) is None
    assert next_step(st, POLICY, {"screen"}) == Step.invite_member


# --- admission ---------------------------------------------------------------------------------


def refused(st: ReviewState, action: str, inp, claims=frozenset()) -> str:
    with pytest.raises(Refused) as caught:
        admit(st, POLICY, set(claims), action, inp)
    return str(caught.value)


def test_actions_are_admitted_only_in_their_stage():
    st = state(Stage.screening)
    assert "in screening, not council" in refused(
        st, "confirm_council", ConfirmCouncilInput(actor=f.COORDINATOR)
    )
    assert "cannot add an expert" in refused(
        st, "add_expert", AddExpertInput(actor=f.COORDINATOR, expert_code="E9")
    )
    admit(st, POLICY, set(), "screen", ScreeningInput(actor=f.COORDINATOR, decision="accept"))
    assert "note" in refused(
        st, "screen", ScreeningInput(actor=f.COORDINATOR, decision="decline", note="")
    )
    assert "nothing more can be done" in refused(
        state(Stage.closed), "withdraw", WithdrawInput(reason="Rút hồ sơ")
    )


def test_a_claim_refuses_the_same_action_and_a_withdrawal_refuses_all():
    st = state(Stage.screening)
    accept = ScreeningInput(actor=f.COORDINATOR, decision="accept")
    assert "already being recorded" in refused(st, "screen", accept, {"screen"})
    assert "being withdrawn" in refused(st, "screen", accept, {"withdraw"})
    st = state(**council("E0", "E1", "E2", alternates=["E3"]), assignments=seated(A, INV, INV))
    add = AddExpertInput(actor=f.COORDINATOR, expert_code="E7")
    assert "E7 is already being added" in refused(st, "add_expert", add, {"expert:E7"})
    swap = ReplaceExpertInput(
        actor=f.COORDINATOR, expert_code="E1", replacement="E7", reason="Không phản hồi"
    )
    assert "E7 is already being added" in refused(st, "replace_expert", swap, {"expert:E7"})
    assert "being replaced" in refused(st, "replace_expert", swap, {"seat:E1"})


def test_add_expert_waits_for_no_confirmation_and_never_seats_anyone_twice():
    """An add while the proposal awaits confirmation is refused (it used to hang until the
    council was confirmed, then seat one more than the council's size)."""
    st = state(Stage.council, **council("E0", "E1", status="proposed"))
    assert "already on the proposed council" in refused(
        st, "add_expert", AddExpertInput(actor=f.COORDINATOR, expert_code="E1")
    )
    assert "awaits confirmation" in refused(
        st, "add_expert", AddExpertInput(actor=f.COORDINATOR, expert_code="E9")
    )
    st = state(**council("E0", "E1", "E2"), assignments=seated(A, INV, INV))
    assert "already has a role" in refused(
        st, "add_expert", AddExpertInput(actor=f.COORDINATOR, expert_code="E1")
    )


def test_nothing_is_extended_or_swapped_while_the_review_closes_on_its_quorum():
    st = state(
        **council("E0", "E1", "E2"),
        assignments=seated(S, S, A),
        stage_deadline=NOW,
        review_closed=True,
    )
    extend = ExtendInput(actor=f.COORDINATOR, days=3, reason="Gia hạn thêm")
    assert "closing on its quorum" in refused(st, "extend_deadline", extend)
    swap = ReplaceExpertInput(actor=f.COORDINATOR, expert_code="E2", reason="Không phản hồi")
    assert "council is complete" in refused(st, "replace_expert", swap)
    with pytest.raises(Refused):
        check(st, POLICY, "add_expert", AddExpertInput(actor=f.COORDINATOR, expert_code="E9"))


# --- what callers and operators read -----------------------------------------------------------


def test_waiting_for_and_details():
    st = state(
        **council("E0", "E1", "E2"),
        assignments=[
            seat("E0", S, Role.chair),
            seat("E1", A, overdue=True, due_at=NOW - timedelta(days=3)),
            seat("E2", INV),
        ],
        stage_deadline=NOW + timedelta(days=10),
    )
    text = visibility.waiting_for(st, POLICY, lambda a: 2)
    assert text == (
        "1 of 3 opinions, 1 invitation(s) unanswered, expert E1 overdue 2 working days, "
        "due 2026-12-05"
    )
    assert visibility.current_details(st, POLICY, lambda a: 2).endswith("— OVERDUE")
    proposed = state(Stage.council, **council("E0", "E1", status="proposed"))
    assert "proposed council" in visibility.waiting_for(proposed, POLICY, lambda a: 0)
    view = visibility.request_view(st, POLICY, lambda a: 0)
    assert view.overdue and view.alternates_left == [] and view.assignment("E2").state == INV


def test_only_changed_search_attributes_are_upserted():
    st = state(Stage.screening, stage_deadline=NOW)
    current = TypedSearchAttributes(
        [
            SearchAttributePair(sa.STAGE, "intake"),
            SearchAttributePair(sa.KIND, "advisory"),
            SearchAttributePair(sa.AGENCY, "SXD"),
        ]
    )
    changed = {
        u.key.name: u.value for u in visibility.search_attribute_changes(st, POLICY, current)
    }
    assert changed == {
        "ReviewStage": "screening",
        "NextDeadline": NOW,
        "ReviewOverdue": False,
        "OpinionsReceived": 0,
        "OpinionsExpected": 3,
    }
    everything = TypedSearchAttributes(
        [SearchAttributePair(u.key, u.value) for u in visibility.search_attributes(st, POLICY)]
    )
    assert visibility.search_attribute_changes(st, POLICY, everything) == []


def test_extensions_are_bounded_by_the_policy():
    pol = POLICY.model_copy(update={"max_extensions": 2, "max_extension_days": 5})
    st = state(Stage.screening, stage_deadline=NOW)
    three = ExtendInput(actor=f.COORDINATOR, days=3, reason="Chờ ý kiến Sở")
    admit(st, pol, set(), "extend_deadline", three)
    st.counters.update({"extensions:screening": 1, "extension-days:screening": 3})
    assert "at most 2 more day(s)" in refused_with(st, pol, three)
    admit(
        st,
        pol,
        set(),
        "extend_deadline",
        ExtendInput(actor=f.COORDINATOR, days=2, reason="Chờ ý kiến Sở"),
    )
    st.counters.update({"extensions:screening": 2, "extension-days:screening": 4})
    assert "extended 2 time(s)" in refused_with(
        st, pol, ExtendInput(actor=f.COORDINATOR, days=1, reason="Thêm")
    )
    # Another stage has bounds of its own.
    admit(state(Stage.approval, stage_deadline=NOW), pol, set(), "extend_deadline", three)


def refused_with(st: ReviewState, pol, inp) -> str:
    with pytest.raises(Refused) as caught:
        admit(st, pol, set(), "extend_deadline", inp)
    return str(caught.value)
