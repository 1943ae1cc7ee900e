"""Every duration and council size, per kind of request. Provinces set their own rules, so
these come from configuration (config/policy.toml by default), never from literals in code."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, model_validator

from domain.models import Model, RequestKind

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


class Policy(Model):
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
