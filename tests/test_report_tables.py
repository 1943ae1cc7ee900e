"""The report tables and their queries (db/reports.py) against the measures' definitions
(domain.reports.build_report), on real PostgreSQL: the hand-built year of
tests/test_report_measures.py is written into a database of its own — its events as the log
held them at the report's moment — and every period and filter must give the same report both
ways, whether the rows were rebuilt at once or rewritten event by event as transitions write
them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest
import pytest_asyncio

from db import reports
from db.migrate import migrate
from db.pool import create_pool
from domain.reports import ReportFilter, ReportInputError, build_report, parse_period
from tests.conftest import with_database
from tests.test_report_measures import AS_OF, POLICY, Trail, at, year

MOMENTS = {"mid-year": AS_OF, "next spring": datetime(2027, 3, 1, 9, tzinfo=AS_OF.tzinfo)}
PERIODS = ["2026", "2026-Q1", "2026-Q2", "2026-Q3", "2026-02", "2026-04-01..2026-05-15", "2025"]
FILTERS = [
    {},
    {"agencies": {"STNMT"}},
    {"kinds": {"critique"}},
    {"fields": {"Environment"}},
    {"agencies": {"STNMT", "SXD"}, "kinds": {"advisory"}},
]


@pytest_asyncio.fixture
async def blank(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A database of this test's own, migrated, with the year's agencies registered."""
    admin = await asyncpg.connect(pg_url)
    name = f"advisory_reports_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    pool = await create_pool(with_database(pg_url, name), max_size=1)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            for code in {t.facts.agency_code for t in year()}:
                await conn.execute("INSERT INTO agencies (code, name) VALUES ($1, $1)", code)
            yield conn
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE "{name}"')
        await admin.close()


async def write(conn: asyncpg.Connection, trails: list[Trail], as_of: datetime, how: str) -> None:
    """The trails' requests and events up to `as_of`, and their report rows: rebuilt once at
    the end, or refreshed after every event as the recording transaction does."""
    for t in trails:
        f = t.facts
        await conn.execute(
            """
            INSERT INTO requests (id, workflow_id, agency_code, agency_reference, kind, title,
                summary, expertise_fields, documents, requested_by, stage, submitted_at,
                updated_at)
            VALUES ($1, $1, $2, $1, $3, 'T', 'S', $4, '[]', '{}', 'screening', $5, $5)
            """,
            f.id,
            f.agency_code,
            f.kind.value,
            f.expertise_fields,
            f.submitted_at,
        )
        for i, e in enumerate(x for x in t.events if x.at <= as_of):
            await conn.execute(
                "INSERT INTO audit_log (idempotency_key, request_id, at, actor, action, stage,"
                " details) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                f"{f.id}:{i}",
                f.id,
                e.at,
                e.actor,
                e.action,
                e.stage.value if e.stage else None,
                e.details,
            )
            if how == "refresh":
                async with conn.transaction():
                    await reports.refresh(conn, f.id, POLICY)
    if how == "rebuild":
        assert await reports.rebuild(conn, POLICY, batch=3) == len(trails)


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("how", ["rebuild", "refresh"])
async def test_the_tables_give_the_report_the_definitions_give(blank, moment, how):
    as_of = MOMENTS[moment]
    trails = year()
    await write(blank, trails, as_of, how)
    facts = [t.facts for t in trails]
    events = [e for t in trails for e in t.events]
    compared = 0
    for text in PERIODS:
        for chosen in FILTERS:
            period, report_filter = parse_period(text), ReportFilter(**chosen)
            expected = build_report(
                facts, events, period, policy=POLICY, as_of=as_of, report_filter=report_filter
            )
            got = await reports.report(blank, period, report_filter, policy=POLICY, as_of=as_of)
            assert got.model_dump() == expected.model_dump(), (text, chosen)
            compared += not expected.empty
    assert compared > 20  # most of them have something in them


async def test_a_rebuild_writes_only_what_is_missing(blank):
    await write(blank, year(), AS_OF, "rebuild")
    assert await reports.rebuild(blank, POLICY) == 0
    before = await blank.fetchval("SELECT count(*) FROM report_deadlines")
    async with blank.transaction():
        await reports.refresh(blank, "R-A", POLICY)
    assert await blank.fetchval("SELECT count(*) FROM report_deadlines") == before


async def test_an_unknown_filter_is_refused_by_name(blank):
    await write(blank, year()[:1], AS_OF, "rebuild")
    with pytest.raises(ReportInputError) as refused:
        await reports.report(
            blank, parse_period("2026"), ReportFilter(agencies={"XYZ"}), policy=POLICY
        )
    assert refused.value.field == "agencies"
    with pytest.raises(ReportInputError) as refused:
        await reports.report(
            blank, parse_period("2026"), ReportFilter(fields={"astrology"}), policy=POLICY
        )
    assert refused.value.field == "fields"


async def test_an_empty_period_is_an_empty_report(blank):
    await write(blank, year(), AS_OF, "rebuild")
    r = await reports.report(blank, parse_period("2024"), policy=POLICY, as_of=at(7, 31))
    assert r.empty and r.volumes.received == 0 and r.turnaround.median is None


def still_in_review() -> Trail:
    """Critique, from STNMT: its one expert accepted in March and has said nothing since."""
    t = Trail("R-S", "STNMT", "critique", ["environment"], at(3, 2))
    t.stage(at(3, 3), "screening_accepted", "council", actor="coordinator:VP01")
    t.expert(at(3, 4), "expert_invited", "E09")
    t.expert(at(3, 5), "invitation_accepted", "E09")
    t.stage(at(3, 5, 10), "review_opened", "review")
    return t


@pytest.mark.parametrize("how", ["rebuild", "refresh"])
async def test_an_expert_silent_for_months_still_carries_the_load(blank, how):
    """Their months are counted up to their last event; the months after it read what is
    still open."""
    trails = [*year(), still_in_review()]
    await write(blank, trails, AS_OF, how)
    period = parse_period("2026")
    expected = build_report(
        [t.facts for t in trails],
        [e for t in trails for e in t.events],
        period,
        policy=POLICY,
        as_of=AS_OF,
    )
    got = await reports.report(blank, period, policy=POLICY, as_of=AS_OF)
    silent = next(e for e in got.experts if e.expert_code == "E09")
    assert [silent.load[m] for m in ("2026-02", "2026-03", "2026-06", "2026-07", "2026-08")] == [
        0,
        1,
        1,
        1,
        0,
    ]
    assert got.model_dump() == expected.model_dump()
