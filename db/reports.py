"""The reports' reads: the measures of `domain.reports` over what PostgreSQL holds.

`report()` is the one entry point the portal, the CLI and the exports use; `choices()` lists
what a report may be filtered by.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from domain.policy import Policy
from domain.reports import (
    AuditEvent,
    Report,
    ReportFilter,
    ReportPeriod,
    RequestFacts,
    build_report,
)

Conn = asyncpg.Connection | asyncpg.Pool


async def choices(conn: Conn) -> tuple[dict[str, str], list[str]]:
    """Every registered agency (code → name) and every expertise field a request asked for or
    an expert of the registry works in: what a report may be filtered by."""
    rows = await conn.fetch("SELECT code, name FROM agencies ORDER BY code")
    agencies = {r["code"]: r["name"] for r in rows}
    fields = await conn.fetchval(
        """
        SELECT coalesce(array_agg(DISTINCT f ORDER BY f), '{}') FROM (
            SELECT unnest(expertise_fields) f FROM requests
            UNION SELECT jsonb_object_keys(expertise) FROM experts
        ) x
        """
    )
    return agencies, list(fields)


async def report(
    conn: Conn,
    period: ReportPeriod,
    report_filter: ReportFilter | None = None,
    *,
    policy: Policy,
    as_of: datetime | None = None,
) -> Report:
    """The report of `period` over the requests `report_filter` admits, as the log stands now
    (or stood at `as_of`). A filter naming an agency or field nobody knows raises
    `ReportInputError`."""
    chosen = report_filter or ReportFilter()
    agencies, fields = await choices(conn)
    chosen.check_known(agencies, fields)
    as_of = as_of or datetime.now(UTC)
    rows = await conn.fetch(
        "SELECT id, agency_code, kind, expertise_fields, submitted_at FROM requests"
        " WHERE submitted_at <= $1",
        as_of,
    )
    facts = [RequestFacts(**dict(r)) for r in rows]
    events = [
        AuditEvent(
            request_id=e["request_id"],
            at=e["at"],
            actor=e["actor"],
            action=e["action"],
            stage=e["stage"],
            details=e["details"],
        )
        for e in await conn.fetch(
            "SELECT request_id, at, actor, action, stage, details FROM audit_log"
            " WHERE at <= $1 ORDER BY id",
            as_of,
        )
    ]
    return build_report(facts, events, period, policy=policy, as_of=as_of, report_filter=chosen)
