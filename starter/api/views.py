"""What each party sees of a request. An agency sees its request, its deadlines and the
signed conclusion, never who the experts are or what they said apart; an expert sees the
request and their own assignment (a chair, the draft too); coordinators and operators see
everything.

Every answer is one of the models below, and the OpenAPI document is made from them: they
forbid fields they do not declare, so a view cannot carry more than its schema says. Every
instant is written in UTC with `Z`, whether it comes from the workflow (deadlines computed in
Vietnam's time zone), from PostgreSQL, or from free-form details and notification payloads."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import asyncpg
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from domain.messages import RequestState
from domain.models import (
    AdoptionAnswer,
    AdoptionStatus,
    AssignmentState,
    AssignmentView,
    ConclusionView,
    CouncilProposal,
    Recommendation,
    RequestKind,
    Role,
    Stage,
)

if TYPE_CHECKING:
    from starter.access import Principal

SIGNED = {Stage.delivered, Stage.adoption, Stage.closed}
# A seat still held (a chair who declined or was replaced keeps no chair's rights).
SEATED = ("invited", "accepted", "submitted")


# --- one format for instants -----------------------------------------------------------------

UTC_INSTANT = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"


def utc_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Aware only: a naive instant has no one meaning, and answering with a guess would be a bug.
UtcDateTime = Annotated[
    AwareDatetime,
    PlainSerializer(utc_text, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": UTC_INSTANT,
            "examples": ["2026-03-09T16:59:59Z"],
        }
    ),
]

# An instant written as text with an offset, as workflows put them in audit details and
# notification payloads ("2026-03-09T23:59:59+07:00").
_INSTANT_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def utc_values(value: Any) -> Any:
    """Free-form JSON (audit details, notification payloads) with every instant in it
    rewritten in UTC with `Z`; everything else as it was."""
    if isinstance(value, dict):
        return {k: utc_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [utc_values(v) for v in value]
    if isinstance(value, str) and _INSTANT_TEXT.match(value):
        try:
            return utc_text(datetime.fromisoformat(value))
        except ValueError:
            return value
    return value


class View(BaseModel):
    # Undeclared fields are refused, so the document is the whole of what a party receives;
    # read from the workflow's models by attribute.
    model_config = ConfigDict(extra="forbid", from_attributes=True)


V = TypeVar("V", bound=View)

Details = Annotated[
    dict[str, Any],
    Field(description="Free-form facts of the event; instants in them are in UTC with Z."),
]


# --- parts -------------------------------------------------------------------------------------


def from_row(model: type[V], row: asyncpg.Record, **given: Any) -> V:
    """The model out of a row that may hold more columns; `given` fields are not read from it."""
    return model.model_validate(
        {**{name: row[name] for name in model.model_fields if name not in given}, **given}
    )


class DocumentRef(View):
    """A document of the request, in its round (0: intake, n: the n-th supplement): one the
    engine keeps (`download` is where to read it) or one at the agency's own `uri`."""

    id: str | None
    name: str
    # "submitted" by the agency, or the Union's signed "conclusion".
    kind: Literal["submitted", "conclusion"]
    round: int
    sha256: str
    size: int | None
    content_type: str | None
    uri: str | None
    download: str | None


def document_refs(request_id: str, rows: list[asyncpg.Record], listed: list[dict]) -> list:
    """The request's documents from the documents table; requests from before it, from the
    list their submission carried."""
    if not rows:
        return [
            DocumentRef(
                id=None,
                kind="submitted",
                round=0,
                size=None,
                content_type=None,
                download=None,
                **{k: d[k] for k in ("name", "uri", "sha256")},
            )
            for d in listed
        ]
    return [
        DocumentRef(
            id=r["id"],
            name=r["name"],
            kind=r["kind"],
            round=r["round"],
            sha256=r["sha256"],
            size=r["size"],
            content_type=r["content_type"],
            uri=r["uri"],
            download=f"/requests/{request_id}/documents/{r['id']}" if r["stored"] else None,
        )
        for r in rows
    ]


class Assignment(View):
    """An expert's assignment as the workflow has it: the answer to an expert's action and
    to an extension of their dates."""

    expert_code: str
    role: Role
    state: AssignmentState
    invited_at: UtcDateTime
    respond_by: UtcDateTime | None
    due_at: UtcDateTime | None
    recommendation: Recommendation | None
    decline_reason: str | None
    overdue: bool
    extensions: int
    extension_days: int


class Seat(View):
    """An expert's seat as PostgreSQL records it."""

    expert_code: str
    role: Role
    state: AssignmentState
    respond_by: UtcDateTime | None
    due_at: UtcDateTime | None
    overdue: bool


class SignedConclusion(View):
    """The conclusion as the agency receives it, once signed."""

    version: int
    recommendation: Recommendation
    text: str


class SignedConclusionRecord(SignedConclusion):
    approved_at: UtcDateTime


class ConclusionRecord(View):
    version: int
    recommendation: Recommendation
    text: str
    drafted_by: str
    drafted_at: UtcDateTime
    returned_comments: str | None
    approved_by: str | None
    approver_title: str | None
    approved_at: UtcDateTime | None


class AdoptionRecord(View):
    status: AdoptionStatus
    explanation: str
    answered_at: UtcDateTime


# --- an action's answer: the request's new state, by party -----------------------------------


class StateBase(View):
    request_id: str
    kind: RequestKind
    title: str
    agency_code: str
    stage: Stage
    stage_deadline: UtcDateTime | None


class StaffState(StateBase):
    """A coordinator's or operator's answer: the whole state."""

    screening_note: str | None
    supplement_round: int
    council: CouncilProposal | None
    council_status: Literal["proposed", "confirmed"] | None
    assignments: list[Assignment]
    conclusion: ConclusionView | None
    adoption: AdoptionAnswer | None
    withdraw_reason: str | None
    decline_reason: str | None
    closed_reason: str | None
    alternates_left: list[str]
    overdue: bool
    waiting_for: str


class AgencyState(StateBase):
    """The agency's answer: its request, what it waits for, and the conclusion once signed."""

    waiting_for: str
    supplement_round: int
    screening_note: str | None
    conclusion: SignedConclusion | None
    adoption: AdoptionAnswer | None
    withdraw_reason: str | None
    decline_reason: str | None
    closed_reason: str | None


class ExpertState(StateBase):
    """An expert's answer: their own assignment; a seated chair also reads the draft."""

    assignment: Assignment | None
    conclusion: ConclusionView | None = Field(
        description="The current draft, for the seated chair; null for everyone else."
    )


RequestStateView = StaffState | AgencyState | ExpertState


def _agency_waiting(stage: Stage) -> str:
    return {
        Stage.screening: "screening by the Union's office",
        Stage.supplement: "your supplement",
        Stage.council: "forming the expert council",
        Stage.review: "the expert council's review",
        Stage.synthesis: "the council's conclusion",
        Stage.approval: "approval of the conclusion",
        Stage.delivered: "delivery of the conclusion",
        Stage.adoption: "your answer on adoption",
    }.get(stage, stage.value)


def assignment_view(view: AssignmentView) -> Assignment:
    return Assignment.model_validate(view)


def state_view(state: RequestState, who: Principal) -> RequestStateView:
    """The answer to an action: the request's new state as this party may see it."""
    if who.role in ("coordinator", "operator"):
        return StaffState.model_validate(state)
    base = {name: getattr(state, name) for name in StateBase.model_fields}
    if who.role == "agency":
        signed = state.conclusion if state.stage in SIGNED else None
        return AgencyState(
            **base,
            waiting_for=_agency_waiting(state.stage) if not state.stage.is_final else "",
            supplement_round=state.supplement_round,
            screening_note=state.screening_note,
            conclusion=SignedConclusion.model_validate(signed) if signed else None,
            adoption=state.adoption,
            withdraw_reason=state.withdraw_reason,
            decline_reason=state.decline_reason,
            closed_reason=state.closed_reason,
        )
    mine: AssignmentView | None = state.assignment(who.subject)
    chair = mine is not None and mine.role == Role.chair and mine.state.value in SEATED
    return ExpertState(
        **base,
        assignment=assignment_view(mine) if mine else None,
        conclusion=state.conclusion if chair else None,
    )


# --- reads: the request as PostgreSQL has it, by party ---------------------------------------


class RecordBase(View):
    request_id: str
    kind: RequestKind
    title: str
    agency_code: str
    agency_reference: str
    stage: Stage
    next_deadline: UtcDateTime | None
    submitted_at: UtcDateTime
    closed_at: UtcDateTime | None
    summary: str
    documents: list[DocumentRef]


class StaffRequest(RecordBase):
    expertise_fields: list[str]
    overdue: bool
    assignments: list[Seat]
    conclusion: ConclusionRecord | None
    adoption: AdoptionRecord | None


class AgencyRequest(RecordBase):
    conclusion: SignedConclusionRecord | None = Field(description="Once signed and delivered.")
    adoption: AdoptionRecord | None


class ExpertRequest(RecordBase):
    assignment: Seat | None
    conclusion: ConclusionRecord | None = Field(
        description="The latest draft, for the seated chair; null for everyone else."
    )


RequestView = StaffRequest | AgencyRequest | ExpertRequest


def read_view(
    row: asyncpg.Record,
    assignments: list[asyncpg.Record],
    conclusion: asyncpg.Record | None,
    adoption: asyncpg.Record | None,
    who: Principal,
    documents: list[asyncpg.Record] = (),
) -> RequestView:
    """A request as PostgreSQL has it, for this party."""
    stage = Stage(row["stage"])
    base = {name: row[name] for name in RecordBase.model_fields if name != "request_id"}
    base["request_id"] = row["id"]
    base["documents"] = document_refs(row["id"], list(documents), row["documents"])
    answer = from_row(AdoptionRecord, adoption) if adoption is not None else None
    if who.role == "agency":
        signed = (
            conclusion is not None and conclusion["approved_at"] is not None and stage in SIGNED
        )
        return AgencyRequest(
            **base,
            conclusion=from_row(SignedConclusionRecord, conclusion) if signed else None,
            adoption=answer,
        )
    seats = [from_row(Seat, a) for a in assignments]
    if who.role == "expert":
        mine = next((s for s in seats if s.expert_code == who.subject), None)
        chair = mine is not None and mine.role == Role.chair and mine.state.value in SEATED
        return ExpertRequest(
            **base,
            assignment=mine,
            conclusion=from_row(ConclusionRecord, conclusion) if chair and conclusion else None,
        )
    return StaffRequest(
        **base,
        expertise_fields=row["expertise_fields"],
        overdue=row["overdue"],
        assignments=seats,
        conclusion=from_row(ConclusionRecord, conclusion) if conclusion is not None else None,
        adoption=answer,
    )


class RequestSummary(View):
    request_id: str
    kind: RequestKind
    title: str
    agency_code: str
    agency_reference: str
    stage: Stage
    next_deadline: UtcDateTime | None
    submitted_at: UtcDateTime
    overdue: bool

    @classmethod
    def of(cls, row: asyncpg.Record) -> RequestSummary:
        return from_row(cls, row, request_id=row["id"])


class Page(View):
    items: list[RequestSummary]
    next_cursor: str | None


class TimelineEvent(View):
    """A stage change, as agencies and experts see the audit log."""

    at: UtcDateTime
    action: str
    stage: Stage


class StaffTimelineEvent(View):
    """An audit event, as coordinators and operators see it: who acted, and the details."""

    at: UtcDateTime
    action: str
    stage: Stage | None
    actor: str  # role:code, as recorded
    # As the registries name them (a coordinator with their title); null for the system.
    actor_name: str | None
    details: Details


def timeline_view(rows: list[asyncpg.Record], who: Principal) -> list[Any]:
    if who.role in ("coordinator", "operator"):
        return [
            StaffTimelineEvent(
                at=r["at"],
                action=r["action"],
                stage=r["stage"],
                actor=r["actor"],
                actor_name=r["actor_name"],
                details=utc_values(r["details"]),
            )
            for r in rows
        ]
    return [
        TimelineEvent(at=r["at"], action=r["action"], stage=r["stage"])
        for r in rows
        if r["stage"] is not None
    ]


class Opinion(View):
    expert_code: str
    recommendation: Recommendation
    summary: str
    comments_for_agency: str
    submitted_at: UtcDateTime


class OpinionWithNote(Opinion):
    """An opinion with its confidential note: staff read every note, an expert their own."""

    confidential_note: str


def opinion_view(row: asyncpg.Record, who: Principal) -> OpinionWithNote | Opinion:
    """A confidential note is for the coordinator: an expert reads only their own."""
    if who.role in ("coordinator", "operator") or row["expert_code"] == who.subject:
        return from_row(OpinionWithNote, row)
    return from_row(Opinion, row)


class Task(View):
    request_id: str
    title: str
    role: Role
    state: AssignmentState
    respond_by: UtcDateTime | None
    due_at: UtcDateTime | None
    stage: Stage
    next_deadline: UtcDateTime | None


class InboxItem(View):
    id: int
    request_id: str
    event: str
    payload: Annotated[
        dict[str, Any],
        Field(description="What the notification says; instants in it are in UTC with Z."),
    ]
    language: str
    created_at: UtcDateTime
    read_at: UtcDateTime | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> InboxItem:
        return from_row(cls, row, payload=utc_values(row["payload"]))


class Marked(View):
    id: int
    read: bool
