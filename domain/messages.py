"""Inputs and results of workflows, updates and activities (one model each, so fields can be
added later without breaking running workflows)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from domain.models import (
    Actor,
    AdoptionAnswer,
    AssignmentState,
    AssignmentView,
    ConclusionDraft,
    ConclusionView,
    CouncilCandidate,
    CouncilProposal,
    Document,
    Model,
    Notice,
    OpinionInput,
    Recommendation,
    RequestKind,
    RequestSubmission,
    Role,
    Stage,
)
from domain.policy import CalendarPolicy, KindPolicy, ReminderSchedule

Reason = Annotated[str, Field(min_length=3, max_length=5_000)]
ExpertCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")]

# --- workflows -------------------------------------------------------------------------------


class AssignmentCarry(Model):
    """What an assignment hands to its next run when its history is continued as new."""

    view: AssignmentView
    deadline_generation: int


class ExpertAssignmentInput(Model):
    request_id: str
    parent_workflow_id: str
    expert_code: str
    role: Role
    policy: KindPolicy
    calendar: CalendarPolicy = CalendarPolicy()
    # Continue as new past this many history events (None: when the server suggests it).
    history_limit: int | None = None
    carry: AssignmentCarry | None = None


class AssignmentOutcome(Model):
    expert_code: str
    state: AssignmentState
    recommendation: Recommendation | None = None
    decline_reason: str | None = None


class AssignmentChanged(Model):
    """Signal from an assignment child to its request: the parent's view stays current."""

    view: AssignmentView


# --- updates (people's actions) --------------------------------------------------------------

# Who took a coordinator's action: set by the API from the token, by the CLI from its
# configured identity; absent from the API's schema, and refused in a body. None only in
# histories recorded before actors were signed in.
SignedIn = SkipJsonSchema[Actor | None]
ACTOR_RULE = "who acts is who signed in; a request body may not name them"


def actor_ref(actor: Actor | None) -> str:
    return actor.ref if actor is not None else "coordinator"


class ScreeningInput(Model):
    decision: Literal["accept", "supplement", "decline"]
    note: Annotated[str, Field(max_length=5_000)] = ""
    actor: SignedIn = None


class SupplementInput(Model):
    documents: Annotated[list[Document], Field(min_length=1, max_length=100)]
    note: Annotated[str, Field(max_length=5_000)] = ""


class AcceptInput(Model):
    expert_code: ExpertCode


class DeclineInput(Model):
    expert_code: ExpertCode
    reason: Reason


class SubmitOpinionInput(Model):
    expert_code: ExpertCode
    opinion: OpinionInput


class DraftConclusionInput(Model):
    expert_code: ExpertCode
    draft: ConclusionDraft


class ApproveInput(Model):
    """The signer is the actor: their registered name and title go under the conclusion.
    `version`: the draft they read; refused when another stands now (None: whichever)."""

    actor: SignedIn = None
    version: int | None = None


class ReturnConclusionInput(Model):
    comments: Reason
    actor: SignedIn = None
    version: int | None = None  # as ApproveInput's


class AdoptionInput(Model):
    answer: AdoptionAnswer


class WithdrawInput(Model):
    reason: Reason


class AddExpertInput(Model):
    expert_code: ExpertCode
    actor: SignedIn = None


class ConfirmCouncilInput(Model):
    """The coordinator confirms the proposed council as it is, or names its members (the
    chair among them); an edited council is re-checked for conflicts and load."""

    members: Annotated[list[ExpertCode], Field(min_length=1, max_length=25)] | None = None
    chair: ExpertCode | None = None
    actor: SignedIn = None

    @model_validator(mode="after")
    def _chair_is_member(self) -> ConfirmCouncilInput:
        if self.members is not None:
            if len(set(self.members)) != len(self.members):
                raise ValueError("members: an expert is named twice")
            if self.chair is not None and self.chair not in self.members:
                raise ValueError("chair: must be one of the members")
        elif self.chair is not None:
            raise ValueError("chair: name the members too when choosing the chair")
        return self


# --- state (query) ---------------------------------------------------------------------------


class RequestRecord(Model):
    """What a request is and where it stands: shared by the workflow's state and the view of it
    callers read."""

    request_id: str
    kind: RequestKind
    title: str
    agency_code: str
    stage: Stage
    stage_deadline: datetime | None = None
    screening_note: str | None = None
    supplement_round: int = 0
    council: CouncilProposal | None = None
    # None: not proposed yet; proposed: waiting for the coordinator's confirmation (the
    # request's policy has the coordinator confirm it); confirmed: its members are invited
    # (by the run loop), then the review goes on. Callers read it to know who acts next.
    council_status: Literal["proposed", "confirmed"] | None = None
    assignments: list[AssignmentView] = []
    conclusion: ConclusionView | None = None
    adoption: AdoptionAnswer | None = None
    withdraw_reason: str | None = None
    decline_reason: str | None = None
    closed_reason: str | None = None

    def assignment(self, expert_code: str) -> AssignmentView | None:
        return next((a for a in self.assignments if a.expert_code == expert_code), None)


class RequestState(RequestRecord):
    """The request as callers read it (the state query and every action's answer)."""

    alternates_left: list[str] = []
    overdue: bool = False
    waiting_for: str = ""


class ReviewState(RequestRecord):
    """Everything a request workflow knows, carried whole to its next run when its history is
    continued as new (taken only when no action is in flight, so nothing a person did is lost).
    What callers read (`RequestState`) is derived from it."""

    # Every stage move and extension starts a new generation: reminder keys name it, so a
    # reminder recorded before continue-as-new is never recorded twice.
    stage_generation: int = 0
    stage_overdue: bool = False
    supplement_lapsed: bool = False
    alternates: list[CouncilCandidate] = []
    # Declines and expiries the run loop has already filled (or found no one for).
    vacancies_filled: list[str] = []
    asked_for_experts: bool = False
    review_due_passed: bool = False
    review_closed: bool = False  # quorum reached past the deadline: no more adds or swaps
    conclusion_version: int = 1
    # Counters of repeatable steps, for their idempotency keys.
    counters: dict[str, int] = {}

    def chair(self) -> AssignmentView | None:
        """The seated chair: declined, expired or cancelled ones gave their seat up."""
        return next(
            (
                a
                for a in self.assignments
                if a.role == Role.chair
                and (a.state.is_open or a.state == AssignmentState.submitted)
            ),
            None,
        )

    def open_count(self) -> int:
        return sum(1 for a in self.assignments if a.state.is_open)

    def submitted_count(self) -> int:
        return sum(1 for a in self.assignments if a.state == AssignmentState.submitted)

    def is_open(self, expert_code: str) -> bool:
        a = self.assignment(expert_code)
        return a is not None and a.state.is_open

    def invitations_recorded(self) -> bool:
        """Someone is invited, and every invitation is in PostgreSQL: its assignment has
        reported the respond-by date it recorded."""
        return bool(self.assignments) and all(a.recorded for a in self.assignments)

    def uninvited_members(self) -> list[CouncilCandidate]:
        """Members of the confirmed council not invited yet (the run loop invites them)."""
        if self.council is None or self.council_status != "confirmed":
            return []
        return [m for m in self.council.members if self.assignment(m.expert_code) is None]

    def open_vacancies(self) -> list[AssignmentView]:
        """Declined or expired seats the run loop has not filled yet."""
        return [
            a
            for a in self.assignments
            if a.state in (AssignmentState.declined, AssignmentState.expired)
            and a.expert_code not in self.vacancies_filled
        ]

    def overdue(self) -> bool:
        return self.stage_overdue or any(a.overdue and a.state.is_open for a in self.assignments)


class ReviewRequestInput(Model):
    request_id: str
    submission: RequestSubmission
    policy: KindPolicy
    calendar: CalendarPolicy = CalendarPolicy()
    # Continue as new past this many history events (None: when the server suggests it);
    # the second for the request's assignment workflows.
    history_limit: int | None = None
    assignment_history_limit: int | None = None
    carry: ReviewState | None = None


# --- activities ------------------------------------------------------------------------------


class IntakeRecord(Model):
    submission: RequestSubmission
    submitted_at: datetime
    # The policy numbers council matching needs, kept on the request row so a batch of
    # requests can be matched together.
    council_size: int | None = None
    alternates: int | None = None
    review_window_days: int | None = None


class AssignmentRecord(Model):
    expert_code: str
    role: Role
    state: AssignmentState
    invited_at: datetime
    respond_by: datetime | None = None
    due_at: datetime | None = None
    decline_reason: str | None = None

    @classmethod
    def of(cls, view: AssignmentView) -> AssignmentRecord:
        """What PostgreSQL records of an assignment as it now stands."""
        return cls(**{name: getattr(view, name) for name in cls.model_fields})


class OpinionRecord(Model):
    expert_code: str
    opinion: OpinionInput


class ConclusionRecord(Model):
    version: int
    recommendation: Recommendation
    text: str
    drafted_by: str
    returned_comments: str | None = None
    approved_by: str | None = None
    approver_title: str | None = None


class TransitionInput(Model):
    """One transition: written by one activity in one transaction."""

    workflow_id: str
    request_id: str
    # Unique within the workflow's whole life and the same on every retry: the idempotency key
    # is `<workflow id>:<step>`, never derived from the attempt or the run.
    step: str
    at: datetime
    actor: str
    action: str
    stage: Stage | None = None  # set: the request moves to this stage
    next_deadline: datetime | None = None
    details: dict[str, str | int | float | bool | None | list[str]] = {}
    intake: IntakeRecord | None = None
    assignment: AssignmentRecord | None = None
    opinion: OpinionRecord | None = None
    conclusion: ConclusionRecord | None = None
    adoption: AdoptionAnswer | None = None
    documents_added: list[Document] = []
    notify: list[Notice] = []
    # Set: the request's overdue flag becomes this. Applies to the assignment too if given.
    overdue: bool | None = None
    # Undelivered outbox rows of these topics are withdrawn (status "cancelled").
    cancel_topics: list[str] = []
    # The coordinator confirmed the council (its members were stored as they reserved their
    # seats: see CouncilActivities.reserve_council).
    council_confirmed: bool = False


class TransitionResult(Model):
    applied: bool  # False: an earlier attempt already wrote this transition
    audit_id: int
    outbox_ids: list[int] = []


class ProposeCouncilInput(Model):
    request_id: str
    agency_code: str  # the registry's names for it are what conflict rules compare
    expertise_fields: list[str]
    council_size: int
    alternates: int
    exclude: list[str] = []
    # The review window, for unavailability: from `now`, this many (working) days.
    now: datetime | None = None
    review_window_days: int = 0
    calendar: CalendarPolicy = CalendarPolicy()


class CheckCouncilInput(Model):
    request: ProposeCouncilInput
    members: list[str]
    chair: str


class ReleaseSeatInput(Model):
    request_id: str
    expert_code: str


class DueDateInput(Model):
    start: datetime
    days: int
    mode: Literal["working", "calendar"]
    calendar: CalendarPolicy = CalendarPolicy()


class DueDateResult(Model):
    due: datetime


class ReminderPlanInput(Model):
    now: datetime
    due: datetime
    schedule: ReminderSchedule
    mode: Literal["working", "calendar"]
    calendar: CalendarPolicy = CalendarPolicy()


class ReminderInstant(Model):
    at: datetime
    kind: Literal["before", "due", "overdue", "escalate"]
    days: int


class ReminderPlanResult(Model):
    instants: list[ReminderInstant]


class ExtendInput(Model):
    days: Annotated[int, Field(ge=1, le=120)]
    reason: Reason
    actor: SignedIn = None


class ExtendAssignmentInput(ExtendInput):
    expert_code: ExpertCode


class ReplaceExpertInput(Model):
    expert_code: ExpertCode
    # None: the next ranked alternate.
    replacement: ExpertCode | None = None
    reason: Reason
    actor: SignedIn = None
