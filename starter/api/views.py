"""What each party sees of a request. An agency sees its request, its deadlines and the
signed conclusion, never who the experts are or what they said apart; an expert sees the
request and their own assignment (a chair, the draft too); coordinators and operators see
everything."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from domain.messages import RequestState
from domain.models import AssignmentView, Stage
from starter.api.auth import Principal

SIGNED = {Stage.delivered, Stage.adoption, Stage.closed}
# A seat still held (a chair who declined or was replaced keeps no chair's rights).
SEATED = ("invited", "accepted", "submitted")


class RequestSummary(BaseModel):
    request_id: str
    kind: str
    title: str
    agency_code: str
    agency_reference: str
    stage: str
    next_deadline: datetime | None
    submitted_at: datetime
    overdue: bool


class Page(BaseModel):
    items: list[RequestSummary]
    next_cursor: str | None


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


def state_view(state: RequestState, who: Principal) -> dict[str, Any]:
    """The answer to an action: the request's new state as this party may see it."""
    full = state.model_dump(mode="json")
    if who.role in ("coordinator", "operator"):
        return full
    base = {
        k: full[k]
        for k in ("request_id", "kind", "title", "agency_code", "stage", "stage_deadline")
    }
    if who.role == "agency":
        return {
            **base,
            "waiting_for": _agency_waiting(state.stage) if not state.stage.is_final else "",
            "supplement_round": state.supplement_round,
            "screening_note": state.screening_note,
            "conclusion": _signed_conclusion(full, state.stage),
            "adoption": full["adoption"],
            "withdraw_reason": state.withdraw_reason,
            "decline_reason": state.decline_reason,
            "closed_reason": state.closed_reason,
        }
    mine: AssignmentView | None = state.assignment(who.subject)
    view = {**base, "assignment": mine.model_dump(mode="json") if mine else None}
    if mine is not None and mine.role.value == "chair" and mine.state.value in SEATED:
        view["conclusion"] = full["conclusion"]
    return view


def _signed_conclusion(full: dict[str, Any], stage: Stage) -> dict[str, Any] | None:
    c = full.get("conclusion")
    if not c or stage not in SIGNED:
        return None
    return {"version": c["version"], "recommendation": c["recommendation"], "text": c["text"]}


def read_view(
    row: asyncpg.Record,
    assignments: list[asyncpg.Record],
    conclusion: asyncpg.Record | None,
    adoption: asyncpg.Record | None,
    who: Principal,
) -> dict[str, Any]:
    """A request as PostgreSQL has it, for this party."""
    stage = Stage(row["stage"])
    base = {
        "request_id": row["id"],
        "kind": row["kind"],
        "title": row["title"],
        "agency_code": row["agency_code"],
        "agency_reference": row["agency_reference"],
        "stage": row["stage"],
        "next_deadline": row["next_deadline"],
        "submitted_at": row["submitted_at"],
        "closed_at": row["closed_at"],
    }
    signed = None
    if conclusion is not None and conclusion["approved_at"] is not None and stage in SIGNED:
        signed = {
            "version": conclusion["version"],
            "recommendation": conclusion["recommendation"],
            "text": conclusion["text"],
            "approved_at": conclusion["approved_at"],
        }
    answer = (
        {
            "status": adoption["status"],
            "explanation": adoption["explanation"],
            "answered_at": adoption["answered_at"],
        }
        if adoption is not None
        else None
    )
    if who.role == "agency":
        return {
            **base,
            "summary": row["summary"],
            "documents": row["documents"],
            "conclusion": signed,
            "adoption": answer,
        }
    seats = [
        {k: a[k] for k in ("expert_code", "role", "state", "respond_by", "due_at", "overdue")}
        for a in assignments
    ]
    if who.role == "expert":
        mine = next((s for s in seats if s["expert_code"] == who.subject), None)
        view = {
            **base,
            "summary": row["summary"],
            "documents": row["documents"],
            "assignment": mine,
        }
        if (
            mine is not None
            and mine["role"] == "chair"
            and mine["state"] in SEATED
            and conclusion is not None
        ):
            view["conclusion"] = dict(conclusion)
        return view
    return {
        **base,
        "summary": row["summary"],
        "documents": row["documents"],
        "expertise_fields": row["expertise_fields"],
        "overdue": row["overdue"],
        "assignments": seats,
        "conclusion": dict(conclusion) if conclusion is not None else None,
        "adoption": answer,
    }
