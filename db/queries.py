"""One function per query. Each takes a connection so the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from domain.models import Expert

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# --- writes ----------------------------------------------------------------------------------


async def upsert_agency(conn: Conn, code: str, name: str) -> None:
    await conn.execute(
        "INSERT INTO agencies (code, name) VALUES ($1, $2)"
        " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name",
        code,
        name,
    )


async def insert_request(conn: Conn, row: dict[str, Any]) -> bool:
    status = await conn.execute(
        """
        INSERT INTO requests (id, workflow_id, agency_code, agency_reference, kind, title, summary,
            expertise_fields, documents, requested_by, stage, submitted_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'intake', $11, $11)
        ON CONFLICT (id) DO NOTHING
        """,
        row["id"],
        row["workflow_id"],
        row["agency_code"],
        row["agency_reference"],
        row["kind"],
        row["title"],
        row["summary"],
        row["expertise_fields"],
        row["documents"],
        row["requested_by"],
        row["submitted_at"],
    )
    return status.endswith(" 1")


async def insert_audit(
    conn: Conn,
    *,
    key: str,
    request_id: str,
    at: datetime,
    actor: str,
    action: str,
    stage: str | None,
    details: dict[str, Any],
) -> int | None:
    """The audit row doubles as the transition's idempotency record: None means the key was
    already written by an earlier attempt."""
    return await conn.fetchval(
        """
        INSERT INTO audit_log (idempotency_key, request_id, at, actor, action, stage, details)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
        """,
        key,
        request_id,
        at,
        actor,
        action,
        stage,
        details,
    )


async def audit_id_for_key(conn: Conn, key: str) -> int:
    return await conn.fetchval("SELECT id FROM audit_log WHERE idempotency_key = $1", key)


async def update_request_stage(
    conn: Conn,
    request_id: str,
    stage: str,
    next_deadline: datetime | None,
    at: datetime,
    final: bool,
) -> None:
    await conn.execute(
        """
        UPDATE requests SET stage = $2, next_deadline = $3, updated_at = $4,
            closed_at = CASE WHEN $5 THEN $4 ELSE closed_at END
        WHERE id = $1
        """,
        request_id,
        stage,
        next_deadline,
        at,
        final,
    )


async def add_documents(conn: Conn, request_id: str, documents: list[dict[str, Any]]) -> None:
    await conn.execute(
        "UPDATE requests SET documents = documents || $2::jsonb WHERE id = $1",
        request_id,
        documents,
    )


async def upsert_assignment(conn: Conn, request_id: str, a: dict[str, Any], at: datetime) -> None:
    await conn.execute(
        """
        INSERT INTO assignments (request_id, expert_code, role, state, invited_at, respond_by,
            due_at, decline_reason, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (request_id, expert_code) DO UPDATE SET
            role = EXCLUDED.role, state = EXCLUDED.state, respond_by = EXCLUDED.respond_by,
            due_at = EXCLUDED.due_at, decline_reason = EXCLUDED.decline_reason,
            updated_at = EXCLUDED.updated_at,
            responded_at = CASE WHEN EXCLUDED.state <> 'invited'
                AND assignments.responded_at IS NULL THEN EXCLUDED.updated_at
                ELSE assignments.responded_at END
        """,
        request_id,
        a["expert_code"],
        a["role"],
        a["state"],
        a["invited_at"],
        a.get("respond_by"),
        a.get("due_at"),
        a.get("decline_reason"),
        at,
    )


async def insert_opinion(
    conn: Conn, request_id: str, expert_code: str, o: dict[str, Any], at: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO opinions (request_id, expert_code, recommendation, summary,
            comments_for_agency, confidential_note, submitted_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (request_id, expert_code) DO NOTHING
        """,
        request_id,
        expert_code,
        o["recommendation"],
        o["summary"],
        o["comments_for_agency"],
        o["confidential_note"],
        at,
    )


async def upsert_conclusion(conn: Conn, request_id: str, c: dict[str, Any], at: datetime) -> None:
    await conn.execute(
        """
        INSERT INTO conclusions (request_id, version, recommendation, text, drafted_by, drafted_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (request_id, version) DO UPDATE SET
            returned_comments = COALESCE($7, conclusions.returned_comments),
            returned_at = CASE WHEN $7::text IS NOT NULL THEN $6 ELSE conclusions.returned_at END,
            approved_by = COALESCE($8, conclusions.approved_by),
            approved_at = CASE WHEN $8::text IS NOT NULL THEN $6 ELSE conclusions.approved_at END
        """,
        request_id,
        c["version"],
        c["recommendation"],
        c["text"],
        c["drafted_by"],
        at,
        c.get("returned_comments"),
        c.get("approved_by"),
    )


async def insert_adoption(conn: Conn, request_id: str, a: dict[str, Any], at: datetime) -> None:
    await conn.execute(
        """
        INSERT INTO adoption_answers (request_id, status, explanation, answered_by, answered_at)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id) DO NOTHING
        """,
        request_id,
        a["status"],
        a["explanation"],
        a["answered_by"],
        at,
    )


async def insert_outbox(
    conn: Conn,
    *,
    key: str,
    request_id: str,
    recipient_kind: str,
    recipient_code: str | None,
    address: str,
    event: str,
    payload: dict[str, Any],
    topic: str | None = None,
) -> int | None:
    return await conn.fetchval(
        """
        INSERT INTO outbox (idempotency_key, request_id, recipient_kind, recipient_code, address,
            event, payload, topic)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
        """,
        key,
        request_id,
        recipient_kind,
        recipient_code,
        address,
        event,
        payload,
        topic,
    )


async def cancel_pending_topics(conn: Conn, request_id: str, topics: list[str]) -> int:
    status = await conn.execute(
        "UPDATE outbox SET status = 'cancelled'"
        " WHERE request_id = $1 AND topic = ANY($2::text[]) AND status = 'pending'",
        request_id,
        topics,
    )
    return int(status.split()[-1])


async def set_request_overdue(conn: Conn, request_id: str, overdue: bool) -> None:
    await conn.execute("UPDATE requests SET overdue = $2 WHERE id = $1", request_id, overdue)


async def set_assignment_overdue(
    conn: Conn, request_id: str, expert_code: str, overdue: bool
) -> None:
    await conn.execute(
        "UPDATE assignments SET overdue = $3 WHERE request_id = $1 AND expert_code = $2",
        request_id,
        expert_code,
        overdue,
    )


async def upsert_expert(conn: Conn, e: Expert) -> bool:
    """True when the row was inserted or changed; re-importing the same data changes nothing."""
    status = await conn.execute(
        """
        INSERT INTO experts (code, name, email, organisation, member_association, fields,
            load_limit, active)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email,
            organisation = EXCLUDED.organisation,
            member_association = EXCLUDED.member_association, fields = EXCLUDED.fields,
            load_limit = EXCLUDED.load_limit, active = EXCLUDED.active, updated_at = now()
        WHERE (experts.name, experts.email, experts.organisation, experts.member_association,
               experts.fields, experts.load_limit, experts.active)
          IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.email, EXCLUDED.organisation,
               EXCLUDED.member_association, EXCLUDED.fields, EXCLUDED.load_limit,
               EXCLUDED.active)
        """,
        e.code,
        e.name,
        str(e.email),
        e.organisation,
        e.member_association,
        e.fields,
        e.load_limit,
        e.active,
    )
    return status.endswith(" 1")


# --- reads -----------------------------------------------------------------------------------


async def request_title(conn: Conn, request_id: str) -> str | None:
    return await conn.fetchval("SELECT title FROM requests WHERE id = $1", request_id)


async def agency_contact_email(conn: Conn, request_id: str) -> str | None:
    return await conn.fetchval(
        "SELECT requested_by->>'email' FROM requests WHERE id = $1", request_id
    )


async def expert_email(conn: Conn, code: str) -> str | None:
    return await conn.fetchval("SELECT email FROM experts WHERE code = $1", code)


async def candidate_experts(conn: Conn, fields: list[str]) -> list[asyncpg.Record]:
    """Active experts sharing a field with the request, with how many open assignments each
    carries right now (invited or accepted, on any request)."""
    return await conn.fetch(
        """
        SELECT e.code, e.organisation, e.member_association, e.fields, e.load_limit,
            (SELECT count(*) FROM assignments a
              WHERE a.expert_code = e.code AND a.state IN ('invited', 'accepted')) AS active_load
        FROM experts e
        WHERE e.active AND e.fields && $1::text[]
        ORDER BY e.code
        """,
        fields,
    )


async def list_requests(
    conn: Conn,
    *,
    stage: str | None = None,
    agency: str | None = None,
    overdue: bool = False,
    limit: int = 50,
) -> list[asyncpg.Record]:
    """Overdue: the request's own deadline escalated, or one of its experts' did."""
    return await conn.fetch(
        """
        SELECT r.id, r.kind, r.agency_code, r.agency_reference, r.title, r.stage,
            r.next_deadline, r.submitted_at, r.updated_at,
            (r.overdue OR EXISTS (SELECT 1 FROM assignments a
                WHERE a.request_id = r.id AND a.overdue)) AS overdue
        FROM requests r
        WHERE ($1::text IS NULL OR r.stage = $1) AND ($2::text IS NULL OR r.agency_code = $2)
          AND (NOT $3 OR r.overdue OR EXISTS (SELECT 1 FROM assignments a
                WHERE a.request_id = r.id AND a.overdue))
        ORDER BY r.submitted_at DESC, r.id
        LIMIT $4
        """,
        stage,
        agency,
        overdue,
        limit,
    )


async def get_request(conn: Conn, request_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM requests WHERE id = $1", request_id)


async def audit_trail(conn: Conn, request_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, at, actor, action, stage, details FROM audit_log"
        " WHERE request_id = $1 ORDER BY id",
        request_id,
    )


async def expert_tasks(conn: Conn, expert_code: str) -> list[asyncpg.Record]:
    """Open invitations and accepted reviews, plus conclusions a chair has to draft."""
    return await conn.fetch(
        """
        SELECT a.request_id, r.title, a.role, a.state, a.respond_by, a.due_at, r.stage,
            r.next_deadline
        FROM assignments a JOIN requests r ON r.id = a.request_id
        WHERE a.expert_code = $1
          AND (a.state IN ('invited', 'accepted')
               OR (a.role = 'chair' AND a.state = 'submitted' AND r.stage = 'synthesis'))
        ORDER BY COALESCE(a.due_at, a.respond_by, r.next_deadline), a.request_id
        """,
        expert_code,
    )


async def outbox_for_request(conn: Conn, request_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, recipient_kind, recipient_code, address, event, payload, status"
        " FROM outbox WHERE request_id = $1 ORDER BY id",
        request_id,
    )


async def expert_with_load(conn: Conn, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT e.code, e.organisation, e.fields, e.load_limit, e.active,
            (SELECT count(*) FROM assignments a
              WHERE a.expert_code = e.code AND a.state IN ('invited', 'accepted')) AS active_load
        FROM experts e WHERE e.code = $1
        """,
        code,
    )
