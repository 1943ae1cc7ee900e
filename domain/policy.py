"""Every duration and council size, per kind of request. Provinces set their own rules, so
these come from configuration (config/policy.toml by default), never from literals in code."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, model_validator

from domain.models import Model, RequestKind

Days = Annotated[int, Field(ge=1, le=365)]


class KindPolicy(Model):
    council_size: Annotated[int, Field(ge=1, le=25)]
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


class CalendarPolicy(Model):
    extra_days_off: list[date] = []
    # Weekend days that are worked (a swapped day off, ngày làm bù) on top of the package's own.
    extra_working_days: list[date] = []


class Policy(Model):
    calendar: CalendarPolicy = CalendarPolicy()
    kinds: dict[RequestKind, KindPolicy]

    @model_validator(mode="after")
    def _every_kind(self) -> Policy:
        missing = [k.value for k in RequestKind if k not in self.kinds]
        if missing:
            raise ValueError(f"kinds: a policy is required for {', '.join(missing)}")
        return self

    def for_kind(self, kind: RequestKind) -> KindPolicy:
        return self.kinds[kind]
