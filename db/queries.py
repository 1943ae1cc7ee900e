"""One function per query. Each takes a connection so the caller owns the transaction."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import asyncpg

from domain.models import (
    Coordinator,
    Document,
    Expert,
    Operator,
    RegisteredAgency,
    identities,
)

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# --- writes ----------------------------------------------------------------------------------


async def insert_request(conn: Conn, row: dict[str, Any]) -> bool:
    status = await conn.execute(
        """
        INSERT INTO requests (id, workflow_id, agency_code, agency_reference, kind, title, summary,
            expertise_fields, documents, requested_by, stage, submitted_at, updated_at,
            council_size, alternates, review_window_days)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'intake', $11, $11, $12, $13, $14)
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
        row.get("council_size"),
        row.get("alternates"),
        row.get("review_window_days"),
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


async def stage_entered(conn: Conn, request_id: str, before_audit_id: int) -> asyncpg.Record | None:
    """The stage a request is in and when it entered it, as the audit log tells."""
    return await conn.fetchrow(
        """
        WITH last AS (
            SELECT stage FROM audit_log WHERE request_id = $1 AND id < $2 AND stage IS NOT NULL
            ORDER BY id DESC LIMIT 1)
        SELECT a.stage, min(a.at) AS at FROM audit_log a, last
        WHERE a.request_id = $1 AND a.id < $2 AND a.stage = last.stage
          AND a.id > COALESCE((SELECT max(id) FROM audit_log
                               WHERE request_id = $1 AND id < $2 AND stage IS NOT NULL
                                 AND stage <> last.stage), 0)
        GROUP BY a.stage
        """,
        request_id,
        before_audit_id,
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


async def attach_documents(
    conn: Conn,
    request_id: str,
    documents: list[Document],
    by: str,
    at: datetime,
    *,
    next_round: bool = False,
) -> int:
    """Makes the documents the request's round: 0 at intake, the next one for a supplement.
    Uploaded ones are the uploads themselves; those referenced by URI get a row of their
    own, its id derived from the request, round and reference so a retry writes it once."""
    round_ = 0
    if next_round:
        round_ = await conn.fetchval(
            "SELECT coalesce(max(round), 0) + 1 FROM documents WHERE request_id = $1", request_id
        )
    for d in documents:
        if d.id is not None:
            await conn.execute(
                "UPDATE documents SET request_id = $2, round = $3"
                " WHERE id = $1 AND request_id IS NULL",
                d.id,
                request_id,
                round_,
            )
            continue
        key = f"{request_id}|{round_}|{d.uri}|{d.name}|{d.sha256}"
        await conn.execute(
            """
            INSERT INTO documents (id, name, sha256, uri, stored, uploaded_by, uploaded_at,
                request_id, round)
            VALUES ($1, $2, $3, $4, false, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING
            """,
            "D-" + hashlib.sha256(key.encode()).hexdigest()[:12].upper(),
            d.name,
            d.sha256,
            str(d.uri),
            by,
            at,
            request_id,
            round_,
        )
    return round_


async def request_documents(conn: Conn, request_id: str) -> list[asyncpg.Record]:
    """Every document of the request, by round then as it was added."""
    return await conn.fetch(
        "SELECT id, name, sha256, size, content_type, uri, stored, round, kind, uploaded_at"
        " FROM documents WHERE request_id = $1 ORDER BY round, uploaded_at, id",
        request_id,
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
            approver_title = COALESCE($9, conclusions.approver_title),
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
        c.get("approver_title"),
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
    language: str = "vi",
) -> int | None:
    return await conn.fetchval(
        """
        INSERT INTO outbox (idempotency_key, request_id, recipient_kind, recipient_code, address,
            event, payload, topic, language)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
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
        language,
    )


async def pending_sends(
    conn: Conn, *, keys: list[str] | None = None, ids: list[int] | None = None
) -> list[asyncpg.Record]:
    """(request_id, outbox_id, channel) of every channel still to send of the rows named by
    their idempotency keys, or by their ids."""
    return await conn.fetch(
        """
        SELECT o.request_id, d.outbox_id, d.channel
        FROM outbox o JOIN deliveries d ON d.outbox_id = o.id
        WHERE (o.idempotency_key = ANY($1::text[]) OR o.id = ANY($2::bigint[]))
          AND d.status = 'pending'
        ORDER BY o.request_id, d.outbox_id, d.channel
        """,
        keys or [],
        ids or [],
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


# The registries: what each holds, and the one way rows are written (an import of the same
# data twice changes nothing) and deactivated (never deleted: the audit trail names them).
REGISTRIES = ("experts", "agencies", "coordinators", "operators")


async def upsert_registry_row(conn: Conn, registry: str, row: dict[str, Any]) -> str:
    """ "added", "changed" or "unchanged". `row` has the table's own column names, `code`
    first; the names come from our code, never from input."""
    assert registry in REGISTRIES
    cols = list(row)
    rest = [c for c in cols if c != "code"]
    sql = f"""
        INSERT INTO {registry} ({", ".join(cols)})
        VALUES ({", ".join(f"${i}" for i in range(1, len(cols) + 1))})
        ON CONFLICT (code) DO UPDATE SET
            {", ".join(f"{c} = EXCLUDED.{c}" for c in rest)}, updated_at = now()
        WHERE ({", ".join(f"{registry}.{c}" for c in rest)})
          IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in rest)})
        RETURNING (xmax = 0) AS inserted
    """
    result = await conn.fetchrow(sql, *row.values())
    if result is None:
        return "unchanged"
    return "added" if result["inserted"] else "changed"


async def upsert_expert(conn: Conn, e: Expert) -> str:
    return await upsert_registry_row(
        conn,
        "experts",
        {
            "code": e.code,
            "name": e.name,
            "email": str(e.email),
            "organisation": e.organisation,
            "member_association": e.member_association,
            "fields": e.fields,
            "expertise": e.expertise,
            "languages": e.languages,
            "load_limit": e.load_limit,
            "active": e.active,
            "conflicts": e.conflicts,
            "unavailable": [p.model_dump(mode="json") for p in e.unavailable],
        },
    )


async def upsert_agency(conn: Conn, a: RegisteredAgency) -> str:
    return await upsert_registry_row(
        conn,
        "agencies",
        {
            "code": a.code,
            "name": a.name,
            "aliases": a.aliases,
            "language": a.language,
            "contacts": [c.model_dump(mode="json", exclude_none=True) for c in a.contacts],
            "active": a.active,
        },
    )


async def upsert_coordinator(conn: Conn, c: Coordinator) -> str:
    return await upsert_registry_row(
        conn,
        "coordinators",
        {
            "code": c.code,
            "name": c.name,
            "title": c.title,
            "email": str(c.email),
            "language": c.language,
            "active": c.active,
        },
    )


async def upsert_operator(conn: Conn, o: Operator) -> str:
    return await upsert_registry_row(
        conn,
        "operators",
        {
            "code": o.code,
            "name": o.name,
            "email": str(o.email),
            "language": o.language,
            "active": o.active,
        },
    )


async def set_active(conn: Conn, registry: str, code: str, active: bool) -> bool | None:
    """None: no such entry; False: it already was; True: changed."""
    assert registry in REGISTRIES
    current = await conn.fetchval(f"SELECT active FROM {registry} WHERE code = $1", code)
    if current is None:
        return None
    if current == active:
        return False
    await conn.execute(
        f"UPDATE {registry} SET active = $2, updated_at = now() WHERE code = $1", code, active
    )
    return True


# What a registry's search looks in: an expert's code, name, address, organisation,
# association and fields; an agency's code, name, aliases and contacts.
_SEARCHED = {
    "experts": "e.code || ' ' || e.name || ' ' || e.email || ' ' || e.organisation || ' '"
    " || e.member_association || ' ' || e.expertise::text",
    "agencies": "e.code || ' ' || e.name || ' ' || array_to_string(e.aliases, ' ') || ' '"
    " || e.contacts::text",
}


async def search_registry(
    conn: Conn, registry: str, text: str, with_inactive: bool, limit: int
) -> list[asyncpg.Record]:
    """Entries whose words contain `text` (any case; all of them when empty), active ones
    only unless `with_inactive`, by code; an expert's with their load."""
    assert registry in _SEARCHED
    load = f", {_LOAD} AS load" if registry == "experts" else ""
    return await conn.fetch(
        f"SELECT e.*{load} FROM {registry} e"
        f" WHERE ($1 = '' OR ({_SEARCHED[registry]}) ILIKE '%' || $1 || '%')"
        " AND (e.active OR $2) ORDER BY e.code LIMIT $3",
        text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),
        with_inactive,
        limit,
    )


async def registry_rows(conn: Conn, registry: str, code: str | None = None) -> list[asyncpg.Record]:
    """A registry's entries by code (one, given its code); an expert's with their load."""
    assert registry in REGISTRIES
    load = f", {_LOAD} AS load" if registry == "experts" else ""
    where = " WHERE e.code = $1" if code is not None else ""
    return await conn.fetch(
        f"SELECT e.*{load} FROM {registry} e{where} ORDER BY e.code",
        *([code] if code is not None else []),
    )


async def get_agency(conn: Conn, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM agencies WHERE code = $1", code)


async def get_coordinator(conn: Conn, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM coordinators WHERE code = $1", code)


async def agency_identities(conn: Conn, codes: list[str]) -> dict[str, frozenset[str]]:
    """Each agency's names as conflict rules compare them (domain.models.identities)."""
    rows = await conn.fetch(
        "SELECT code, name, aliases FROM agencies WHERE code = ANY($1::text[])", codes
    )
    return {r["code"]: identities(r["code"], r["name"], r["aliases"]) for r in rows}


# The load an expert carries: each request they hold a place on counts once — an open
# assignment, or, on a request still running and before their assignment exists, a seat on its
# proposed council or a seat reserved for them (so two admissions at the same moment never give
# one expert more than their limit).
_LOAD = """
    (SELECT count(*) FROM (
        SELECT a.request_id FROM assignments a
         WHERE a.expert_code = e.code AND a.state IN ('invited', 'accepted')
        UNION
        SELECT held.request_id FROM (
            SELECT c.request_id FROM councils c
              CROSS JOIN LATERAL jsonb_array_elements(c.proposal->'members') m
             WHERE m->>'expert_code' = e.code
            UNION
            SELECT s.request_id FROM seats s WHERE s.expert_code = e.code
        ) held
        JOIN requests r ON r.id = held.request_id
                       AND r.stage NOT IN ('closed', 'declined', 'withdrawn')
        WHERE NOT EXISTS (SELECT 1 FROM assignments a2
                           WHERE a2.request_id = held.request_id AND a2.expert_code = e.code)
    ) places)
"""


async def matching_candidates(conn: Conn, fields: list[str]) -> list[asyncpg.Record]:
    """Every expert sharing a field with any of these, active or not (the explanation says
    why an inactive one is left out), with their load."""
    return await conn.fetch(
        f"""
        SELECT e.code, e.organisation, e.member_association, e.expertise, e.load_limit,
            e.active, e.conflicts, e.unavailable, {_LOAD} AS load
        FROM experts e
        WHERE e.fields && $1::text[]
        ORDER BY e.code
        """,
        fields,
    )


async def expert_for_matching(conn: Conn, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        SELECT e.code, e.organisation, e.member_association, e.expertise, e.load_limit,
            e.active, e.conflicts, e.unavailable, {_LOAD} AS load
        FROM experts e WHERE e.code = $1
        """,
        code,
    )


async def requests_awaiting_council(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT r.id, r.agency_code, r.expertise_fields,
            r.council_size, r.alternates, r.review_window_days
        FROM requests r
        WHERE r.stage = 'council' AND r.council_size IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM councils c WHERE c.request_id = r.id)
        ORDER BY r.id
        """
    )


async def experts_on_requests(conn: Conn, request_ids: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT request_id, expert_code FROM assignments WHERE request_id = ANY($1::text[])",
        request_ids,
    )


async def get_council(conn: Conn, request_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM councils WHERE request_id = $1", request_id)


async def insert_council(
    conn: Conn, request_id: str, proposal: dict[str, Any], at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO councils (request_id, proposal, status, proposed_at)"
        " VALUES ($1, $2, 'proposed', $3) ON CONFLICT (request_id) DO NOTHING",
        request_id,
        proposal,
        at,
    )


async def set_council_members(conn: Conn, request_id: str, proposal: dict[str, Any]) -> None:
    """The council as it now stands (its members hold their seats from this moment)."""
    await conn.execute(
        "UPDATE councils SET proposal = $2 WHERE request_id = $1", request_id, proposal
    )


async def confirm_council(conn: Conn, request_id: str, by: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE councils SET status = 'confirmed', confirmed_by = $2, confirmed_at = $3"
        " WHERE request_id = $1",
        request_id,
        by,
        at,
    )


async def holds_place(conn: Conn, request_id: str, expert_code: str) -> bool:
    """Whether the expert already counts this request in their load before an assignment
    exists (a reserved seat, or a seat on its proposed council)."""
    return await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM seats WHERE request_id = $1 AND expert_code = $2)
            OR EXISTS (SELECT 1 FROM councils c
                         CROSS JOIN LATERAL jsonb_array_elements(c.proposal->'members') m
                        WHERE c.request_id = $1 AND m->>'expert_code' = $2)
        """,
        request_id,
        expert_code,
    )


async def reserve_seat(conn: Conn, request_id: str, expert_code: str, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO seats (request_id, expert_code, reserved_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING",
        request_id,
        expert_code,
        at,
    )


async def release_seat(conn: Conn, request_id: str, expert_code: str) -> None:
    await conn.execute(
        "DELETE FROM seats WHERE request_id = $1 AND expert_code = $2", request_id, expert_code
    )


async def get_expert(conn: Conn, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT e.*, {_LOAD} AS load FROM experts e WHERE e.code = $1", code
    )


# --- reads -----------------------------------------------------------------------------------


async def request_title(conn: Conn, request_id: str) -> str | None:
    return await conn.fetchval("SELECT title FROM requests WHERE id = $1", request_id)


async def agency_contact(conn: Conn, request_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT agency_code, requested_by->>'email' AS email,"
        " COALESCE(requested_by->>'language', 'vi') AS language FROM requests WHERE id = $1",
        request_id,
    )


async def expert_contact(conn: Conn, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT email, languages FROM experts WHERE code = $1", code)


async def list_requests(
    conn: Conn,
    *,
    stage: str | None = None,
    agency: str | None = None,
    kind: str | None = None,
    overdue: bool = False,
    stuck: bool = False,
    limit: int = 50,
) -> list[asyncpg.Record]:
    """Overdue: the request's own deadline escalated, or one of its experts' did. Stuck: the
    request's stage deadline has passed (it is not yet, or no longer, escalated)."""
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
          AND ($5::text IS NULL OR r.kind = $5)
          AND (NOT $6 OR r.next_deadline < now())
        ORDER BY r.submitted_at DESC, r.id
        LIMIT $4
        """,
        stage,
        agency,
        overdue,
        limit,
        kind,
        stuck,
    )


async def get_request(conn: Conn, request_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM requests WHERE id = $1", request_id)


async def audit_trail(conn: Conn, request_id: str) -> list[asyncpg.Record]:
    """The request's events, each actor with the name its registry gives (a coordinator's
    with their title); None for the system and for operators."""
    return await conn.fetch(
        """
        SELECT l.id, l.at, l.actor, l.action, l.stage, l.details,
            COALESCE(c.name || ', ' || c.title, e.name, g.name) AS actor_name
        FROM audit_log l
        LEFT JOIN coordinators c ON l.actor = 'coordinator:' || c.code
        LEFT JOIN experts e ON l.actor = 'expert:' || e.code
        LEFT JOIN agencies g ON l.actor = 'agency:' || g.code
        WHERE l.request_id = $1 ORDER BY l.id
        """,
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
        "SELECT id, recipient_kind, recipient_code, address, event, payload, status, language"
        " FROM outbox WHERE request_id = $1 ORDER BY id",
        request_id,
    )


# --- Notification delivery ---------------------------------------------------------------


async def outbox_row(conn: Conn, outbox_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT o.*, r.agency_code FROM outbox o JOIN requests r ON r.id = o.request_id"
        " WHERE o.id = $1",
        outbox_id,
    )


async def insert_delivery(
    conn: Conn,
    outbox_id: int,
    channel: str,
    target: str,
    *,
    status: str = "pending",
    error: str | None = None,
) -> bool:
    """The plan of a row's delivery, written once: a second plan (a re-run) keeps the first
    and gets False."""
    done = await conn.execute(
        """
        INSERT INTO deliveries (outbox_id, channel, target, status, last_error, delivered_at)
        VALUES ($1, $2, $3, $4, $5, CASE WHEN $4 = 'delivered' THEN now() END)
        ON CONFLICT (outbox_id, channel) DO NOTHING
        """,
        outbox_id,
        channel,
        target,
        status,
        error,
    )
    return done.split()[-1] != "0"


async def delivery(conn: Conn, outbox_id: int, channel: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM deliveries WHERE outbox_id = $1 AND channel = $2", outbox_id, channel
    )


async def lock_outbox(conn: Conn, outbox_id: int) -> None:
    """Channels of one row settle one at a time: e-mail and webhook finishing together would
    each see the other still pending, and the row would stay pending for ever."""
    await conn.execute("SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE", outbox_id)


async def record_attempt(
    conn: Conn,
    outbox_id: int,
    channel: str,
    *,
    attempt: int,
    delivered: bool,
    status_code: int | None = None,
    error: str | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO delivery_attempts (outbox_id, channel, attempt, outcome, status_code, error)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        outbox_id,
        channel,
        attempt,
        "delivered" if delivered else "error",
        status_code,
        error,
    )
    await conn.execute(
        """
        UPDATE deliveries SET attempts = attempts + 1, updated_at = now(),
            status = CASE WHEN $3 THEN 'delivered' ELSE status END,
            delivered_at = CASE WHEN $3 THEN now() ELSE delivered_at END,
            last_error = CASE WHEN $3 THEN last_error ELSE $4 END
        WHERE outbox_id = $1 AND channel = $2
        """,
        outbox_id,
        channel,
        delivered,
        error,
    )


async def skip_delivery(conn: Conn, outbox_id: int, channel: str, reason: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'skipped', last_error = $3, updated_at = now()"
        " WHERE outbox_id = $1 AND channel = $2 AND status = 'pending'",
        outbox_id,
        channel,
        reason,
    )


async def fail_delivery(conn: Conn, outbox_id: int, channel: str, error: str) -> bool:
    """Marks a channel failed; False when it had already settled (a duplicate report)."""
    status = await conn.execute(
        "UPDATE deliveries SET status = 'failed', last_error = $3, updated_at = now()"
        " WHERE outbox_id = $1 AND channel = $2 AND status = 'pending'",
        outbox_id,
        channel,
        error,
    )
    return status.split()[-1] != "0"


async def settle_outbox(conn: Conn, outbox_id: int) -> str:
    """The row's status from its channels: failed if one failed, delivered when none is
    pending. A withdrawn (cancelled) row stays withdrawn."""
    return await conn.fetchval(
        """
        UPDATE outbox o SET updated_at = now(), status = CASE
            WHEN o.status = 'cancelled' THEN o.status
            WHEN EXISTS (SELECT 1 FROM deliveries d
                         WHERE d.outbox_id = o.id AND d.status = 'failed') THEN 'failed'
            WHEN EXISTS (SELECT 1 FROM deliveries d
                         WHERE d.outbox_id = o.id AND d.status = 'pending') THEN 'pending'
            ELSE 'delivered' END
        WHERE o.id = $1 RETURNING o.status
        """,
        outbox_id,
    )


async def notification_ids(conn: Conn, status: str) -> list[int]:
    rows = await conn.fetch("SELECT id FROM outbox WHERE status = $1 ORDER BY id", status)
    return [r["id"] for r in rows]


async def notifications(
    conn: Conn,
    *,
    status: str | None = None,
    request_id: str | None = None,
    outbox_id: int | None = None,
    limit: int = 100,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT o.id, o.request_id, o.recipient_kind, o.recipient_code, o.event, o.status,
            o.created_at, o.retries,
            COALESCE(jsonb_agg(jsonb_build_object('channel', d.channel, 'status', d.status,
                'attempts', d.attempts, 'error', d.last_error) ORDER BY d.channel)
                FILTER (WHERE d.channel IS NOT NULL), '[]') AS channels
        FROM outbox o LEFT JOIN deliveries d ON d.outbox_id = o.id
        WHERE ($1::text IS NULL OR o.status = $1) AND ($2::text IS NULL OR o.request_id = $2)
          AND ($4::bigint IS NULL OR o.id = $4)
        GROUP BY o.id ORDER BY o.id LIMIT $3
        """,
        status,
        request_id,
        limit,
        outbox_id,
    )


async def delivery_attempts(conn: Conn, outbox_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT channel, attempt, at, outcome, status_code, error FROM delivery_attempts"
        " WHERE outbox_id = $1 ORDER BY id",
        outbox_id,
    )


async def missing_outbox_ids(conn: Conn, ids: list[int]) -> list[int]:
    rows = await conn.fetch(
        "SELECT i FROM unnest($1::bigint[]) AS i WHERE NOT EXISTS"
        " (SELECT 1 FROM outbox WHERE id = i) ORDER BY i",
        ids,
    )
    return [r["i"] for r in rows]


async def reopen_notifications(conn: Conn, ids: list[int]) -> list[int]:
    """Failed rows among `ids` become pending again, their failed channels too; the rows
    reopened are returned (a pending row is returned as is: it only needs a delivery run)."""
    reopened = await conn.fetch(
        """
        UPDATE outbox SET status = 'pending', retries = retries + 1, updated_at = now()
        WHERE id = ANY($1::bigint[]) AND status = 'failed' RETURNING id
        """,
        ids,
    )
    reopened_ids = [r["id"] for r in reopened]
    await conn.execute(
        "UPDATE deliveries SET status = 'pending', updated_at = now()"
        " WHERE outbox_id = ANY($1::bigint[]) AND status = 'failed'",
        reopened_ids,
    )
    pending = await conn.fetch(
        "SELECT id FROM outbox WHERE id = ANY($1::bigint[]) AND status = 'pending' ORDER BY id",
        ids,
    )
    return [r["id"] for r in pending]


async def inbox(
    conn: Conn,
    kind: str,
    code: str | None,
    reader: str,
    *,
    unread_only: bool = False,
    limit: int = 50,
) -> list[asyncpg.Record]:
    """What a recipient has been told, newest first, each with when `reader` (role:code of
    the person) read it. Withdrawn reminders were never sent."""
    return await conn.fetch(
        """
        SELECT o.id, o.request_id, o.event, o.payload, o.language, o.created_at, r.read_at
        FROM outbox o LEFT JOIN inbox_reads r ON r.outbox_id = o.id AND r.reader = $3
        WHERE o.recipient_kind = $1 AND o.recipient_code IS NOT DISTINCT FROM $2
          AND o.status <> 'cancelled' AND (NOT $4 OR r.read_at IS NULL)
        ORDER BY o.id DESC LIMIT $5
        """,
        kind,
        code,
        reader,
        unread_only,
        limit,
    )


async def mark_read(
    conn: Conn, kind: str, code: str | None, reader: str, ids: list[int], *, read: bool = True
) -> list[int]:
    """Marks, for `reader` alone, the recipient's rows among `ids`; returns those that are
    the recipient's. Marking twice changes nothing."""
    mine = await conn.fetch(
        """
        SELECT id FROM outbox WHERE id = ANY($3::bigint[]) AND recipient_kind = $1
          AND recipient_code IS NOT DISTINCT FROM $2 AND status <> 'cancelled'
        """,
        kind,
        code,
        ids,
    )
    found = sorted(r["id"] for r in mine)
    if read:
        await conn.execute(
            "INSERT INTO inbox_reads (outbox_id, reader) SELECT unnest($1::bigint[]), $2"
            " ON CONFLICT DO NOTHING",
            found,
            reader,
        )
    else:
        await conn.execute(
            "DELETE FROM inbox_reads WHERE outbox_id = ANY($1::bigint[]) AND reader = $2",
            found,
            reader,
        )
    return found


async def webhook_endpoint(
    conn: Conn, agency_code: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        "SELECT * FROM webhook_endpoints WHERE agency_code = $1" + lock, agency_code
    )


async def webhook_endpoints(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM webhook_endpoints ORDER BY agency_code")


async def set_webhook_endpoint(conn: Conn, agency_code: str, url: str, secret: str) -> str:
    """Registers (with `secret`) or moves an agency's endpoint, enabled; returns the secret in
    force (a moved endpoint keeps its own)."""
    return await conn.fetchval(
        """
        INSERT INTO webhook_endpoints (agency_code, url, secret) VALUES ($1, $2, $3)
        ON CONFLICT (agency_code) DO UPDATE SET url = EXCLUDED.url, enabled = true,
            disabled_at = NULL, disabled_reason = NULL, updated_at = now()
        RETURNING secret
        """,
        agency_code,
        url,
        secret,
    )


async def rotate_webhook_secret(
    conn: Conn, agency_code: str, secret: str, previous_until: datetime
) -> bool:
    status = await conn.execute(
        """
        UPDATE webhook_endpoints SET previous_secret = secret, previous_until = $3,
            secret = $2, updated_at = now()
        WHERE agency_code = $1
        """,
        agency_code,
        secret,
        previous_until,
    )
    return status.split()[-1] != "0"


async def set_webhook_enabled(
    conn: Conn, agency_code: str, enabled: bool, reason: str | None = None
) -> bool:
    status = await conn.execute(
        """
        UPDATE webhook_endpoints SET enabled = $2, updated_at = now(),
            disabled_at = CASE WHEN $2 THEN NULL ELSE now() END,
            disabled_reason = CASE WHEN $2 THEN NULL ELSE $3 END
        WHERE agency_code = $1
        """,
        agency_code,
        enabled,
        reason,
    )
    return status.split()[-1] != "0"


# --- HTTP API --------------------------------------------------------------------------


async def insert_token(conn: Conn, token_hash: str, role: str, subject: str, label: str) -> int:
    return await conn.fetchval(
        "INSERT INTO api_tokens (token_hash, role, subject, label) VALUES ($1, $2, $3, $4)"
        " RETURNING id",
        token_hash,
        role,
        subject,
        label,
    )


async def token_by_hash(conn: Conn, token_hash: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE api_tokens SET last_used_at = now()"
        " WHERE token_hash = $1 AND revoked_at IS NULL RETURNING id, role, subject",
        token_hash,
    )


async def tokens(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, role, subject, label, created_at, revoked_at, last_used_at"
        " FROM api_tokens ORDER BY id"
    )


async def revoke_token(conn: Conn, token_id: int) -> bool:
    done = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id
    )
    return done.split()[-1] != "0"


async def claim_idempotency_key(
    conn: Conn, role: str, subject: str, key: str, request_hash: str, holder: int
) -> asyncpg.Record | None:
    """None: the key is new, or its claim in progress was taken over, and it is now `holder`'s
    (a process lock id, db/liveness.py); else the row of its first use."""
    # A claim in progress whose holder's lock is free belongs to a process that died: taken
    # over (the action runs again with the same workflow update id, so it happens once). Ours
    # to try only for this statement: the transaction's lock ends with it.
    inserted = await conn.fetchval(
        """
        INSERT INTO idempotency_keys (role, subject, key, request_hash, holder)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (role, subject, key) DO UPDATE
            SET claimed_at = now(), holder = EXCLUDED.holder
        WHERE idempotency_keys.status_code IS NULL
          AND idempotency_keys.request_hash = EXCLUDED.request_hash
          AND CASE WHEN idempotency_keys.holder IS NULL
                   THEN idempotency_keys.claimed_at < now() - interval '5 minutes'
                   ELSE pg_try_advisory_xact_lock(idempotency_keys.holder) END
        RETURNING key
        """,
        role,
        subject,
        key,
        request_hash,
        holder,
    )
    if inserted is not None:
        return None
    return await conn.fetchrow(
        "SELECT request_hash, status_code, response FROM idempotency_keys"
        " WHERE role = $1 AND subject = $2 AND key = $3",
        role,
        subject,
        key,
    )


async def complete_idempotency_key(
    conn: Conn, role: str, subject: str, key: str, holder: int, status_code: int, response: Any
) -> None:
    """Only the claim's holder answers it: a holder that was taken over (counted dead while it
    still ran) leaves the answer to the one that took it."""
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = $5, response = $6"
        " WHERE role = $1 AND subject = $2 AND key = $3 AND holder = $4"
        " AND status_code IS NULL",
        role,
        subject,
        key,
        holder,
        status_code,
        response,
    )


async def release_idempotency_key(
    conn: Conn, role: str, subject: str, key: str, holder: int
) -> None:
    """A request that failed on our side (5xx) may be tried again under the same key."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE role = $1 AND subject = $2 AND key = $3"
        " AND holder = $4 AND status_code IS NULL",
        role,
        subject,
        key,
        holder,
    )


class _Where:
    """A list query's WHERE clause with only the filters asked for, each value a `$n`
    parameter. Written once as `($n IS NULL OR col = $n)` for every filter, a statement gets
    a generic plan no index fits, and PostgreSQL keeps to that plan from a prepared
    statement's sixth run on (asyncpg prepares each statement once per pooled connection), so
    every list read every request. Clauses come from our code, never from input."""

    def __init__(self, *always: str) -> None:
        self.clauses = list(always)
        self.args: list[Any] = []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, clause: str) -> None:
        self.clauses.append(clause)

    def __str__(self) -> str:
        return " AND ".join(self.clauses) or "true"


# A request is overdue when its own deadline escalated or one of its experts' did. To filter
# by it, the set of those requests: few are, and PostgreSQL sizes the set from its two
# partial indexes, where it takes an OR of the two conditions to keep half of any table.
_OVERDUE = "(r.overdue OR r.id IN (SELECT a.request_id FROM assignments a WHERE a.overdue))"
_OVERDUE_IDS = (
    "(SELECT id FROM requests WHERE overdue UNION SELECT request_id FROM assignments WHERE overdue)"
)


async def requests_page(
    conn: Conn,
    *,
    agency: str | None,
    expert: str | None,
    stage: str | None,
    kind: str | None,
    overdue: bool | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyed by (submitted_at, id) for cursor pagination; `agency` / `expert`
    restrict to what that party may see."""
    where = _Where()
    if agency is not None:
        where.add(f"r.agency_code = {where.param(agency)}")
    if expert is not None:
        where.add(
            "EXISTS (SELECT 1 FROM assignments a"
            f" WHERE a.request_id = r.id AND a.expert_code = {where.param(expert)})"
        )
    if stage is not None:
        where.add(f"r.stage = {where.param(stage)}")
    if kind is not None:
        where.add(f"r.kind = {where.param(kind)}")
    if overdue is not None:
        where.add(f"r.id {'IN' if overdue else 'NOT IN'} {_OVERDUE_IDS}")
    if after is not None:
        where.add(f"(r.submitted_at, r.id) < ({where.param(after[0])}, {where.param(after[1])})")
    # The limit is written in (an int): a generic plan takes LIMIT $n for a tenth of the rows.
    return await conn.fetch(
        f"""
        SELECT r.id, r.kind, r.agency_code, r.agency_reference, r.title, r.stage,
            r.next_deadline, r.submitted_at, r.closed_at, {_OVERDUE} AS overdue
        FROM requests r
        WHERE {where}
        ORDER BY r.submitted_at DESC, r.id DESC
        LIMIT {int(limit)}
        """,
        *where.args,
    )


async def open_requests(
    conn: Conn,
    *,
    agency: str | None,
    kind: str | None,
    field: str | None,
    screened_by: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    """The requests not yet ended, for the office's board, the earliest deadline first, each
    with what tells where it stands (its council, its opinions) and the coordinator who last
    screened it (`screened_by`: a coordinator's code; nothing else records one responsible)."""
    where = _Where("r.stage NOT IN ('closed', 'declined', 'withdrawn')")
    if agency is not None:
        where.add(f"r.agency_code = {where.param(agency)}")
    if kind is not None:
        where.add(f"r.kind = {where.param(kind)}")
    if field is not None:
        where.add(f"{where.param(field)} = ANY (r.expertise_fields)")
    if screened_by is not None:
        where.add(f"s.actor = {where.param(f'coordinator:{screened_by}')}")
    # The page is chosen first (open requests in the board's order, filtered, limited), then
    # what each row shows is looked up for its rows alone, not for every open request.
    return await conn.fetch(
        f"""
        SELECT r.id, r.kind, r.agency_code, g.name AS agency_name, r.title, r.stage,
            r.next_deadline, r.submitted_at, r.expertise_fields, r.council_size, r.overdue,
            EXISTS (SELECT 1 FROM assignments a
                WHERE a.request_id = r.id AND a.overdue) AS expert_overdue,
            c.status AS council_status,
            (SELECT count(*) FROM assignments a
                WHERE a.request_id = r.id AND a.state = 'submitted') AS opinions,
            (SELECT count(*) FROM assignments a
                WHERE a.request_id = r.id AND a.state = 'invited') AS invited,
            r.screened_by, co.name AS screened_by_name
        FROM (
            SELECT r.id, r.kind, r.agency_code, r.title, r.stage, r.next_deadline,
                r.submitted_at, r.expertise_fields, r.council_size, r.overdue,
                s.actor AS screened_by
            FROM requests r
            LEFT JOIN LATERAL (
                SELECT l.actor FROM audit_log l
                WHERE l.request_id = r.id
                  AND l.action IN ('screening_accepted', 'supplement_requested')
                ORDER BY l.id DESC LIMIT 1) s ON true
            WHERE {where}
            ORDER BY r.next_deadline NULLS LAST, r.submitted_at, r.id
            LIMIT {int(limit)}
        ) r
        JOIN agencies g ON g.code = r.agency_code
        LEFT JOIN councils c ON c.request_id = r.id
        LEFT JOIN coordinators co ON r.screened_by = 'coordinator:' || co.code
        ORDER BY r.next_deadline NULLS LAST, r.submitted_at, r.id
        """,
        *where.args,
    )


async def expert_names(conn: Conn, codes: list[str]) -> dict[str, str]:
    """Each expert's name by code, for the codes that are in the registry."""
    rows = await conn.fetch(
        "SELECT code, name FROM experts WHERE code = ANY($1::text[])", sorted(set(codes))
    )
    return {r["code"]: r["name"] for r in rows}


async def assignments_of(conn: Conn, request_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT expert_code, role, state, invited_at, respond_by, due_at, overdue,"
        " decline_reason FROM assignments WHERE request_id = $1"
        " ORDER BY invited_at, expert_code",
        request_id,
    )


async def opinions_of(conn: Conn, request_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT expert_code, recommendation, summary, comments_for_agency, confidential_note,"
        " submitted_at FROM opinions WHERE request_id = $1 ORDER BY submitted_at, expert_code",
        request_id,
    )


async def conclusion_of(conn: Conn, request_id: str) -> asyncpg.Record | None:
    """The latest version."""
    return await conn.fetchrow(
        "SELECT version, recommendation, text, drafted_by, drafted_at, returned_comments,"
        " approved_by, approver_title, approved_at FROM conclusions WHERE request_id = $1"
        " ORDER BY version DESC LIMIT 1",
        request_id,
    )


async def conclusion_number(conn: Conn, request_id: str) -> asyncpg.Record | None:
    """The signed conclusion's number as printed, its PDF document and when it was issued."""
    return await conn.fetchrow(
        "SELECT number, document_id, issued_at FROM conclusion_numbers WHERE request_id = $1",
        request_id,
    )


async def expertise_fields_in_registry(conn: Conn) -> list[str]:
    """Every field some active expert of the registry works in: what a request may ask for."""
    return await conn.fetchval(
        "SELECT coalesce(array_agg(DISTINCT f ORDER BY f), '{}')"
        " FROM experts, jsonb_object_keys(expertise) f WHERE active"
    )


# --- Portal drafts -----------------------------------------------------------------------


async def save_draft(
    conn: Conn, person: str, request_id: str, action: str, fields: dict[str, Any]
) -> None:
    await conn.execute(
        """
        INSERT INTO portal_drafts (person, request_id, action, fields) VALUES ($1, $2, $3, $4)
        ON CONFLICT (person, request_id, action)
        DO UPDATE SET fields = EXCLUDED.fields, saved_at = now()
        """,
        person,
        request_id,
        action,
        fields,
    )


async def draft(conn: Conn, person: str, request_id: str, action: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT fields, saved_at FROM portal_drafts"
        " WHERE person = $1 AND request_id = $2 AND action = $3",
        person,
        request_id,
        action,
    )


async def drop_draft(conn: Conn, person: str, request_id: str, action: str) -> None:
    await conn.execute(
        "DELETE FROM portal_drafts WHERE person = $1 AND request_id = $2 AND action = $3",
        person,
        request_id,
        action,
    )
