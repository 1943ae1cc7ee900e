"""What a request, an expert, an opinion and a conclusion are. Pure data: no I/O.

Every model that crosses a workflow boundary is here, so the workflows, activities and the
starter agree on one shape. Field constraints are the rules a person's input must meet; their
messages name the field, which is what a requesting agency or an expert sees on bad input.
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    AliasPath,
    AnyUrl,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

Text = Annotated[str, Field(min_length=1, max_length=20_000)]
ShortText = Annotated[str, Field(min_length=1, max_length=500)]
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")]


# The validation context key under which models drop the fields they do not know instead of
# refusing them. Temporal's data converter (infra/codec.py) decodes every payload with
# {IGNORE_UNKNOWN_FIELDS: True}, so during a rolling deploy a worker of the previous release
# reads what the next release wrote (a workflow input, carried state, a signal or an activity
# result with a field added since). People's input is validated without it.
IGNORE_UNKNOWN_FIELDS = "ignore_unknown_fields"


class Model(BaseModel):
    # Unknown fields are mistakes a person made (a misspelt key in a JSON file, an API body):
    # refuse them rather than silently dropping what they meant to send. Messages between
    # workflows, activities and workers are the exception, through the context above.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_fields(cls, data: Any, info: ValidationInfo) -> Any:
        # Runs after a subclass's own before-validators (pydantic calls those first), so a
        # key they translate (Expert's `fields`) is translated before it could be dropped.
        # Nested models see the same context, so their unknown keys go too.
        if isinstance(data, dict) and info.context and info.context.get(IGNORE_UNKNOWN_FIELDS):
            known = _input_keys(cls)
            if any(key not in known for key in data):
                data = {k: v for k, v in data.items() if k in known}
        return data


@functools.cache
def _input_keys(cls: type[BaseModel]) -> frozenset[str]:
    """The keys a model reads: its field names and their aliases."""
    keys: set[str] = set()
    for name, info in cls.model_fields.items():
        keys.add(name)
        if info.alias:
            keys.add(info.alias)
        alias = info.validation_alias
        for choice in alias.choices if isinstance(alias, AliasChoices) else [alias]:
            if isinstance(choice, str):
                keys.add(choice)
            elif isinstance(choice, AliasPath) and isinstance(choice.path[0], str):
                keys.add(choice.path[0])
    return frozenset(keys)


class RequestKind(StrEnum):
    advisory = "advisory"  # tư vấn
    critique = "critique"  # phản biện
    social_assessment = "social_assessment"  # giám định xã hội


class Stage(StrEnum):
    intake = "intake"
    screening = "screening"
    supplement = "supplement"
    council = "council"
    review = "review"
    synthesis = "synthesis"
    approval = "approval"
    delivered = "delivered"
    adoption = "adoption"
    closed = "closed"
    declined = "declined"
    withdrawn = "withdrawn"

    @property
    def is_final(self) -> bool:
        return self in (Stage.closed, Stage.declined, Stage.withdrawn)


# Stages from which the agency may still withdraw: anything before the conclusion went out.
WITHDRAWABLE = frozenset(
    {
        Stage.intake,
        Stage.screening,
        Stage.supplement,
        Stage.council,
        Stage.review,
        Stage.synthesis,
        Stage.approval,
    }
)


class Recommendation(StrEnum):
    endorse = "endorse"
    endorse_with_changes = "endorse_with_changes"
    do_not_endorse = "do_not_endorse"


class AssignmentState(StrEnum):
    invited = "invited"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"  # no answer by respond-by: the next alternate is invited
    submitted = "submitted"
    cancelled = "cancelled"  # withdrawn request, replaced expert, or quorum reached without it

    @property
    def is_open(self) -> bool:
        return self in (AssignmentState.invited, AssignmentState.accepted)


class Role(StrEnum):
    chair = "chair"
    member = "member"


class Contact(Model):
    name: ShortText
    email: EmailStr
    phone: Annotated[str, Field(max_length=40)] | None = None
    # The language notifications to this contact are written in.
    language: Literal["vi", "en"] = "vi"


class Agency(Model):
    """The requesting agency as a request carries it: its code (from the signed-in agency)
    and its official name, which the front door copies from the registry; a name typed in a
    submission is never used."""

    code: Code
    name: ShortText | None = None


class RegisteredAgency(Model):
    """An agency of the registry. `aliases` are the organisation names under which its staff
    appear in the expert registry: conflict rules compare them, never a submission's text."""

    code: Code
    name: ShortText
    aliases: list[ShortText] = []
    language: Literal["vi", "en"] = "vi"
    contacts: list[Contact] = []
    active: bool = True

    def identities(self) -> frozenset[str]:
        return identities(self.code, self.name, self.aliases)


def identities(code: str, name: str, aliases: list[str]) -> frozenset[str]:
    """Every name that means an agency (its code, official name and aliases), folded."""
    return frozenset(fold(x) for x in (code, name, *aliases))


class Coordinator(Model):
    """A member of the Union's office: screens, forms councils, signs conclusions."""

    code: Code
    name: ShortText
    title: ShortText  # as signed under a conclusion, e.g. "Chánh Văn phòng"
    email: EmailStr
    language: Literal["vi", "en"] = "vi"
    active: bool = True


class Operator(Model):
    """Someone who keeps the engine running: reads every request, acts on none."""

    code: Code
    name: ShortText
    email: EmailStr
    language: Literal["vi", "en"] = "vi"
    active: bool = True


def fold(s: str) -> str:
    """A name as compared: case and runs of spaces do not matter."""
    return " ".join(s.casefold().split())


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


DocumentId = Annotated[str, Field(pattern=r"^D-[0-9A-F]{12}$")]


class Document(Model):
    """A document of a request: one uploaded to the engine (its `id`; the front door fills
    in the rest from the upload), or one the agency's own system keeps (name, `uri` and
    digest). Never the bytes themselves."""

    id: DocumentId | None = None
    name: ShortText | None = None
    uri: AnyUrl | None = None
    sha256: str | None = None
    size: int | None = None
    content_type: str | None = None

    @field_validator("sha256")
    @classmethod
    def _sha256_hex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.lower()
        if not _SHA256.match(v):
            raise ValueError("must be 64 hexadecimal characters (a SHA-256 digest)")
        return v

    @field_validator("uri")
    @classmethod
    def _uri_scheme(cls, v: AnyUrl | None) -> AnyUrl | None:
        if v is not None and v.scheme not in ("https", "http", "s3", "urn"):
            raise ValueError("scheme must be https, http, s3 or urn")
        return v

    @model_validator(mode="after")
    def _uploaded_or_referenced(self) -> Document:
        if self.id is None:
            missing = [f for f in ("name", "uri", "sha256") if getattr(self, f) is None]
            if missing:
                raise ValueError(
                    f"{missing[0]}: required for a document referenced by URI "
                    "(or give the id of an uploaded document)"
                )
        elif self.uri is not None:
            raise ValueError("uri: an uploaded document (id) has no URI")
        return self


class RequestSubmission(Model):
    """What a requesting agency sends to open a request."""

    kind: RequestKind
    title: Annotated[str, Field(min_length=3, max_length=500)]
    summary: Text
    agency: Agency
    # The agency's own document number (số công văn). The same agency and reference is the
    # same request: a resubmission returns it instead of opening a second one.
    agency_reference: Annotated[str, Field(min_length=1, max_length=100)]
    expertise_fields: Annotated[list[Code], Field(min_length=1, max_length=20)]
    documents: Annotated[list[Document], Field(min_length=1, max_length=100)]
    requested_by: Contact

    @field_validator("expertise_fields")
    @classmethod
    def _fields_unique(cls, v: list[str]) -> list[str]:
        lowered = [f.lower() for f in v]
        if len(set(lowered)) != len(lowered):
            raise ValueError("must not repeat a field")
        return lowered

    def request_id(self) -> str:
        return request_id_for(self.agency.code, self.agency_reference)


def request_id_for(agency_code: str, agency_reference: str) -> str:
    """A stable id from the agency's own reference, so a resubmission finds the same request.

    It holds no personal data and is safe to show in the Temporal UI.
    """
    key = f"{agency_code.strip().upper()}\x00{agency_reference.strip().casefold()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10].upper()
    return f"R-{digest}"


Level = Annotated[int, Field(ge=1, le=5)]


class Period(Model):
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self

    def overlaps(self, start: date, end: date) -> bool:
        return self.start <= end and start <= self.end


class Expert(Model):
    """An expert of the registry. Expertise is field → level (1 a working knowledge, 5 the
    highest standing in the field); a plain list of `fields` is read as level 3 each."""

    code: Code
    name: ShortText
    email: EmailStr
    organisation: ShortText
    member_association: ShortText
    expertise: Annotated[dict[Code, Level], Field(min_length=1)]
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]] = ["vi"]
    # The most assignments (invited or accepted) the expert carries at once.
    load_limit: Annotated[int, Field(ge=1, le=50)] = 3
    active: bool = True
    # Agency codes or organisation names the expert must not review for.
    conflicts: list[ShortText] = []
    unavailable: list[Period] = []

    @model_validator(mode="before")
    @classmethod
    def _fields_as_expertise(cls, data):
        if isinstance(data, dict) and "fields" in data and "expertise" not in data:
            fields = data["fields"]
            data = {k: v for k, v in data.items() if k != "fields"}
            data["expertise"] = {f: 3 for f in fields} if isinstance(fields, list) else fields
        return data

    @field_validator("expertise")
    @classmethod
    def _lower(cls, v: dict[str, int]) -> dict[str, int]:
        return {f.lower(): level for f, level in sorted(v.items())}

    @property
    def fields(self) -> list[str]:
        return sorted(self.expertise)


class CouncilCandidate(Model):
    expert_code: Code
    role: Role
    matched_fields: list[str]
    active_load: int
    load_limit: int
    reason: str
    score: int = 0
    member_association: str = ""


class CouncilProposal(Model):
    members: list[CouncilCandidate]
    alternates: list[CouncilCandidate]
    # Why each expert who matched the fields is not on the council: "E-007: same
    # organisation as the requester", "E-010: eligible, ranked below the alternates (score 4)"
    excluded: list[str] = []
    shortfall: str | None = None  # which constraint left the council short, when it is


class OpinionInput(Model):
    recommendation: Recommendation
    summary: Text
    comments_for_agency: Text
    confidential_note: Annotated[str, Field(max_length=20_000)] = ""


class ConclusionDraft(Model):
    recommendation: Recommendation
    text: Text


class AdoptionStatus(StrEnum):
    adopted = "adopted"
    partially_adopted = "partially_adopted"
    not_adopted = "not_adopted"


class AdoptionAnswer(Model):
    status: AdoptionStatus
    explanation: Text
    answered_by: Contact


class Actor(Model):
    """Who took an action, as they signed in: role and code, with the name (and a
    coordinator's title) the registry gives them. Front doors set it; no request body can."""

    role: Literal["agency", "expert", "coordinator", "operator"]
    code: str
    name: str
    title: str = ""

    @property
    def ref(self) -> str:
        """As the audit log records it: "coordinator:VP01"."""
        return f"{self.role}:{self.code}"


class Recipient(Model):
    """Who an outbox row is for. Addresses are resolved from PostgreSQL by the activity, so
    workflow histories carry codes, not e-mail addresses."""

    kind: Literal["agency", "expert", "coordinator", "operator"]
    code: str | None = None

    @classmethod
    def expert(cls, code: str) -> Recipient:
        return cls(kind="expert", code=code)


AGENCY = Recipient(kind="agency")  # the request's own agency
COORDINATOR = Recipient(kind="coordinator")


class Notice(Model):
    recipient: Recipient
    event: Annotated[str, Field(pattern=r"^[a-z_]+$")]
    data: dict[str, str | int | float | bool | None] = {}
    # Reminders of one deadline share a topic; a transition that meets, extends or cancels the
    # deadline withdraws that topic's undelivered rows.
    topic: str | None = None


class AssignmentView(Model):
    expert_code: str
    role: Role
    state: AssignmentState
    invited_at: datetime
    respond_by: datetime | None = None
    due_at: datetime | None = None
    recommendation: Recommendation | None = None
    decline_reason: str | None = None
    overdue: bool = False
    # Extensions granted on this expert's dates, and the days they added (bounded by policy).
    extensions: int = 0
    extension_days: int = 0

    @property
    def recorded(self) -> bool:
        """The invitation is in PostgreSQL: the assignment reported the respond-by date it
        recorded (or has moved on since)."""
        return self.respond_by is not None or self.state != AssignmentState.invited


class ConclusionView(Model):
    version: int
    recommendation: Recommendation
    text: str
    drafted_by: str
    returned_comments: str | None = None
    approved_by: str | None = None  # the signer's registered name
    approver_title: str | None = None
