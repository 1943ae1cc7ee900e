"""Every duration and council size, per kind of request, and who the Union is. Provinces set
their own rules and sign with their own name, so these come from configuration
(config/policy.toml by default), never from literals in code."""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Annotated, Literal

from pydantic import Field, model_validator

from domain.models import Model, RequestKind, ShortText

Days = Annotated[int, Field(ge=1, le=365)]


class ReminderSchedule(Model):
    """When the person a deadline waits on is reminded, and when it escalates."""

    # Reminders this many (working) days before the deadline, at the reminder hour.
    before: list[Annotated[int, Field(ge=1, le=60)]] = []
    # Then one every this many days past the deadline (0: none) while within the grace period.
    overdue_every: Annotated[int, Field(ge=0, le=60)] = 0
    # Days past the deadline before it escalates to the coordinator and the request is flagged
    # overdue (0: at the deadline itself). A lapsing deadline (supplement, respond-by) lapses
    # at this point instead.
    grace: Annotated[int, Field(ge=0, le=120)] = 0


class Reminders(Model):
    screening: ReminderSchedule
    supplement: ReminderSchedule
    respond: ReminderSchedule
    review: ReminderSchedule
    synthesis: ReminderSchedule
    approval: ReminderSchedule
    adoption: ReminderSchedule


class KindPolicy(Model):
    council_size: Annotated[int, Field(ge=1, le=25)]
    # Opinions that are enough to go on to synthesis once the review deadline has passed
    # (the chair's among them). Before the deadline every accepted expert is waited for.
    quorum: Annotated[int, Field(ge=1, le=25)]
    # How many ranked alternates the proposal keeps behind the council.
    alternates: Annotated[int, Field(ge=0, le=50)] = 3
    # "working": weekends, Vietnamese public holidays and configured days off do not count.
    calendar: Literal["working", "calendar"] = "working"
    screening_days: Days
    supplement_days: Days
    respond_days: Days
    review_days: Days
    synthesis_days: Days
    approval_days: Days
    adoption_days: Days
    # "auto": the proposed council is invited at once; "coordinator": the coordinator
    # confirms or edits it first.
    council_confirmation: Literal["auto", "coordinator"] = "auto"
    # Extensions the coordinator may grant on one deadline (a stage's, or one expert's), and
    # the days they may add up to: past them an extension is refused, naming the bound.
    max_extensions: Annotated[int, Field(ge=0, le=50)] = 5
    max_extension_days: Annotated[int, Field(ge=0, le=365)] = 60
    # Filled from the policy-wide [reminders] unless the kind has its own.
    reminders: Reminders | None = None

    @model_validator(mode="after")
    def _quorum_fits(self) -> KindPolicy:
        if self.quorum > self.council_size:
            raise ValueError(
                f"quorum: {self.quorum} is more than the council size {self.council_size}"
            )
        return self


class CalendarPolicy(Model):
    extra_days_off: list[date] = []
    # Weekend days that are worked (a swapped day off, ngày làm bù) on top of the package's own.
    extra_working_days: list[date] = []
    # Reminders go out at this hour, Vietnam time, on the day they fall.
    reminder_hour: Annotated[int, Field(ge=0, le=23)] = 8


# One line of a letterhead or a signature block.
Line = Annotated[str, Field(min_length=1, max_length=200)]


class Signature(Model):
    """What stands above a signer's name (Decree 30/2020/NĐ-CP, Appendix I): the authority
    lines ("TM. BAN THƯỜNG VỤ", "KT. CHỦ TỊCH", "TL. CHỦ TỊCH") and the title as printed."""

    authority: list[Line] = []
    title: Line


class UnionIdentity(Model):
    """Who the engine speaks for: the Union's names as e-mails sign and its letterhead prints,
    where it is, and how its documents are numbered, signed and sent. A provincial Union sees
    its own name, never the national one's."""

    # "Liên hiệp các Hội Khoa học và Kỹ thuật tỉnh Bắc Giang": e-mails and the letterhead.
    name: ShortText
    # The same in English, for the e-mails of people who read English.
    name_en: ShortText
    # "Liên hiệp hội tỉnh Bắc Giang": where a sentence names it again.
    short_name: ShortText
    # The line above the name in the letterhead (the governing body), if the Union prints one.
    parent: Line | None = None
    # The place name (địa danh) of the date line: "Bắc Giang, ngày 25 tháng 11 năm 2026".
    place: Line
    address: ShortText | None = None
    # The symbol after a document's number: "12/LHH-TVPB".
    document_symbol: Annotated[str, Field(pattern=r"^[0-9A-ZĐ]+([-.&][0-9A-ZĐ]+)*$")]
    # Nơi nhận below the addressee(s) themselves, in order ("Như trên", "Lưu: VT, TVPB").
    recipients: list[Line] = ["Như trên", "Lưu: VT"]
    # How each registered coordinator title (config/coordinators.*.csv) signs; a title not
    # listed signs under `authority` with the title itself in capitals.
    signatures: dict[str, Signature] = {}
    authority: list[Line] = []

    def signature(self, registered_title: str) -> Signature:
        """The block above a signer's name, for the title the registry gives them."""
        wanted = _title_key(registered_title)
        for title, signature in self.signatures.items():
            if _title_key(title) == wanted:
                return signature
        return Signature(authority=self.authority, title=registered_title.upper())

    def document_number(self, number: int) -> str:
        """Số và ký hiệu: the Union's running number for the year and its symbol."""
        if number < 1:
            raise ValueError(f"number: {number} is not a document number (from 1)")
        return f"{number}/{self.document_symbol}"


def _title_key(title: str) -> str:
    return " ".join(unicodedata.normalize("NFC", title).casefold().split())


class Policy(Model):
    # The Union's identity: e-mails sign with it, its documents carry it.
    union: UnionIdentity
    calendar: CalendarPolicy = CalendarPolicy()
    reminders: Reminders | None = None
    kinds: dict[RequestKind, KindPolicy]
    # Which opinions an expert may read: only their own, the council's when they chair it
    # (they draft the conclusion from them), or every seated expert the whole council's.
    opinions_visible_to: Literal["own", "chair", "council"] = "chair"

    @model_validator(mode="after")
    def _every_kind(self) -> Policy:
        missing = [k.value for k in RequestKind if k not in self.kinds]
        if missing:
            raise ValueError(f"kinds: a policy is required for {', '.join(missing)}")
        for kind, kp in self.kinds.items():
            if kp.reminders is None:
                if self.reminders is None:
                    raise ValueError(
                        f"kinds.{kind.value}.reminders: required, or a policy-wide [reminders]"
                    )
                kp.reminders = self.reminders
        return self

    def for_kind(self, kind: RequestKind) -> KindPolicy:
        return self.kinds[kind]
