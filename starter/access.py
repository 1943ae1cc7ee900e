"""What each party may read of a request, for every front door (the API and the portal): a
request, its timeline, its opinions, its documents. Objects of other parties are answered
exactly as objects that do not exist (`NotVisible`), so nobody learns what is not theirs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from db import queries as q
from domain.models import Actor
from domain.policy import Policy
from starter.api.views import SEATED, opinion_view, read_view, timeline_view

Role = Literal["agency", "expert", "coordinator", "operator"]


@dataclass(frozen=True)
class Principal:
    """Who signed in, by API token or portal session."""

    role: Role
    subject: str  # the registry code (an operator's name)
    person: Actor  # as the registry names them: what actions record as their actor
    token_id: int | None = None  # signed in by an API token


class NotVisible(Exception):
    """Not there, or not this party's to see: the same answer for both."""


class AgenciesReadConclusions(Exception):
    """Agencies receive the signed conclusion, not the experts' opinions."""


def _staff(who: Principal) -> bool:
    return who.role in ("coordinator", "operator")


async def visible_request(conn: asyncpg.Connection, request_id: str, who: Principal):
    """The request's row if this party may see it."""
    row = await q.get_request(conn, request_id)
    mine = row is not None and (
        _staff(who)
        or (who.role == "agency" and row["agency_code"] == who.subject)
        or (
            who.role == "expert"
            and any(
                a["expert_code"] == who.subject for a in await q.assignments_of(conn, request_id)
            )
        )
    )
    if not mine:
        raise NotVisible(f"no request {request_id}")
    return row


async def request_view(pool: asyncpg.Pool, request_id: str, who: Principal) -> Any:
    """The request as this party may see it (starter.api.views.read_view)."""
    async with pool.acquire() as conn:
        row = await visible_request(conn, request_id, who)
        assignments = await q.assignments_of(conn, request_id)
        conclusion = await q.conclusion_of(conn, request_id)
        adoption = await conn.fetchrow(
            "SELECT * FROM adoption_answers WHERE request_id = $1", request_id
        )
        documents = await q.request_documents(conn, request_id)
    return read_view(row, assignments, conclusion, adoption, who, documents)


async def timeline(pool: asyncpg.Pool, request_id: str, who: Principal) -> list[Any]:
    """The audit log: staff see every event, agencies and experts the stage changes."""
    async with pool.acquire() as conn:
        await visible_request(conn, request_id, who)
        rows = await q.audit_trail(conn, request_id)
    return timeline_view(rows, who)


async def opinions(pool: asyncpg.Pool, request_id: str, who: Principal, policy: Policy) -> list:
    """Staff see all; an expert as the policy's `opinions_visible_to` allows (by default the
    chair sees the council's, to draft the conclusion, a member their own)."""
    if who.role == "agency":
        raise AgenciesReadConclusions("agencies receive the signed conclusion, not opinions")
    async with pool.acquire() as conn:
        await visible_request(conn, request_id, who)
        rows = await q.opinions_of(conn, request_id)
        seats = await q.assignments_of(conn, request_id)
    if who.role == "expert":
        rule = policy.opinions_visible_to
        # Rights come with a seat still held: a chair who declined or was replaced, or a
        # member whose invitation lapsed, reads only their own.
        seat = next((s for s in seats if s["expert_code"] == who.subject), None)
        seated = seat is not None and seat["state"] in SEATED
        everyone = seated and (rule == "council" or (rule == "chair" and seat["role"] == "chair"))
        rows = [r for r in rows if everyone or r["expert_code"] == who.subject]
    return [opinion_view(r, who) for r in rows]


async def document(conn: asyncpg.Connection, request_id: str, document_id: str, who: Principal):
    """A stored document of the request, for the agency, an expert while seated, coordinators
    and operators."""
    missing = NotVisible(f"no document {document_id}")
    try:
        row = await visible_request(conn, request_id, who)
    except NotVisible:
        raise missing from None
    if who.role == "expert":
        seats = await q.assignments_of(conn, request_id)
        if not any(s["expert_code"] == who.subject and s["state"] in SEATED for s in seats):
            raise missing
    doc = await conn.fetchrow(
        "SELECT * FROM documents WHERE id = $1 AND request_id = $2 AND stored",
        document_id,
        row["id"],
    )
    if doc is None:
        raise missing
    return doc
