"""`advisory demo --history`: the past recorded through the engine's own recording path, read
back as the reports read it. Nine months, ending on a fixed day, in a database of the module's
own (the reports count everything in a database)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta

import asyncpg
import httpx
import pytest
import pytest_asyncio

from activities.persistence import PersistenceActivities
from db.pool import create_pool
from db.reports import report
from domain.calendar import VN_TZ, working_calendar
from domain.ids import is_history
from domain.models import Stage
from domain.reports import AuditEvent, ReportFilter, RequestFacts, build_report, parse_period
from infra.documents import document_store
from starter.api import create_app
from starter.cli import build_parser, main
from starter.history import ensure_registries, generate_history, summary
from starter.history_plan import parse_span, span_start
from tests.conftest import create_database, run_cli
from tests.test_portal_auth import PORTAL, portal_settings, signed_in_as, text_of

SEED, SPAN = 7, "9m"
NOW = datetime(2026, 6, 30, 17, 30, tzinfo=VN_TZ)
START = span_start(NOW.date(), 9)
PERIOD = parse_period(f"{START}..{NOW.date()}")

# Every table a transition writes.
TABLES = {
    "requests": "id",
    "audit_log": "idempotency_key",
    "assignments": "request_id, expert_code",
    "opinions": "request_id, expert_code",
    "conclusions": "request_id, version",
    "adoption_answers": "request_id",
    "documents": "id",
}

# Where a request may go from each stage (the lifecycle of README and DESIGN.md).
NEXT = {
    None: {Stage.screening},
    Stage.screening: {Stage.council, Stage.supplement, Stage.declined, Stage.withdrawn},
    Stage.supplement: {Stage.screening, Stage.closed, Stage.withdrawn},
    Stage.council: {Stage.review, Stage.withdrawn},
    Stage.review: {Stage.synthesis, Stage.withdrawn},
    Stage.synthesis: {Stage.approval, Stage.withdrawn},
    Stage.approval: {Stage.synthesis, Stage.delivered, Stage.withdrawn},
    Stage.delivered: {Stage.adoption},
    Stage.adoption: {Stage.closed},
}


@pytest_asyncio.fixture(scope="module")
async def past(pg_url, settings):
    pool = await create_pool(await create_database(pg_url), max_size=5)
    run = await generate_history(pool, settings, span=SPAN, seed_number=SEED, now=NOW)
    yield pool, run
    await pool.close()


async def read_log(conn) -> tuple[list[RequestFacts], list[AuditEvent]]:
    facts = [
        RequestFacts(**dict(r))
        for r in await conn.fetch(
            "SELECT id, agency_code, kind, expertise_fields, submitted_at FROM requests"
        )
    ]
    events = [
        AuditEvent(**dict(r))
        for r in await conn.fetch(
            "SELECT request_id, at, actor, action, stage, details FROM audit_log ORDER BY id"
        )
    ]
    return facts, events


async def rows(conn, table: str) -> list[tuple]:
    """A table's rows, without the serial ids a database hands out, in key order."""
    records = await conn.fetch(f"SELECT * FROM {table} ORDER BY {TABLES[table]}")
    return [
        tuple((k, v) for k, v in r.items() if (table, k) != ("audit_log", "id")) for r in records
    ]


async def test_every_request_has_ended_before_now(past):
    pool, run = past
    async with pool.acquire() as conn:
        requests = await conn.fetch("SELECT * FROM requests")
        still_open = await conn.fetchval(
            "SELECT count(*) FROM assignments WHERE state IN ('invited', 'accepted') OR overdue"
        )
    assert len(requests) == len(run.recorded) == len(run.plan.requests) > 50
    assert all(is_history(r["id"]) for r in requests)
    assert {r["stage"] for r in requests} == {"closed", "withdrawn", "declined"}
    assert all(r["closed_at"] <= NOW and r["next_deadline"] is None for r in requests)
    assert not any(r["overdue"] for r in requests)
    assert still_open == 0
    # What was still running on the day is left out (no workflow would ever end it).
    assert run.plan.unfinished > 0


async def test_the_reports_have_something_to_show_for_every_measure(past, policy):
    pool, _ = past
    async with pool.acquire() as conn:
        r = await report(conn, PERIOD, policy=policy, as_of=NOW)
        received = await conn.fetchval("SELECT count(*) FROM requests")
    v = r.volumes
    assert v.received == received
    assert v.completed and v.withdrawn and v.declined and v.lapsed
    assert r.turnaround.count == v.completed and r.turnaround.median > 0
    # Supplements asked and answered (a second screening), and one that lapsed.
    assert r.time_in_stage["supplement"].count > v.lapsed
    assert r.on_time_for("agency", "supplement").on_time
    # Extensions granted to more than one party.
    assert len({o.party for o in r.on_time if o.extensions}) >= 3
    assert all(o.extension_days >= o.extensions for o in r.on_time)
    # Experts: declines, silence, late opinions; some habitually so.
    t = r.experts_total
    assert t.accepted and t.declined and t.expired
    assert t.opinions_on_time > t.opinions_late > 0
    assert max(e.opinions_late for e in r.experts) >= 3
    assert any(e.load.get("2025-11", 0) >= 3 for e in r.experts)
    # Every answer on adoption, some of them after the deadline.
    a = r.adoption
    assert a.adopted and a.partially_adopted and a.not_adopted and a.answered_late
    assert a.delivered == a.adopted + a.partially_adopted + a.not_adopted
    # Seasons: the Tết month receives less than the year-end planning months.
    months = r.per_month
    assert months["2026-02"].received < months["2025-11"].received
    assert months["2026-02"].received < months["2025-10"].received


async def test_the_report_tables_agree_with_the_definitions_over_the_whole_past(past, policy):
    """The report tables, kept by each recorded transition, against `build_report` over every
    audit event: the same report for each quarter and month and for filters on the past's
    own agencies, kinds and fields."""
    pool, _ = past
    async with pool.acquire() as conn:
        facts, events = await read_log(conn)
        periods = [PERIOD, parse_period("2025-Q4"), parse_period("2026-Q1")]
        periods += [parse_period(m) for m in ("2025-10", "2026-02", "2026-06")]
        top = max({f.agency_code for f in facts}, key=[f.agency_code for f in facts].count)
        field = facts[0].expertise_fields[0]
        filters = [
            ReportFilter(),
            ReportFilter(agencies={top}),
            ReportFilter(kinds={"critique"}),
            ReportFilter(fields={field}),
            ReportFilter(agencies={top}, kinds={"advisory"}),
        ]
        for period in periods:
            for chosen in filters:
                expected = build_report(
                    facts, events, period, policy=policy, as_of=NOW, report_filter=chosen
                )
                # Through the pool: the experts' load counted on a second connection.
                got = await report(pool, period, chosen, policy=policy, as_of=NOW)
                assert got.model_dump() == expected.model_dump(), (period.label, chosen)


async def test_unanswered_adoptions_show_as_the_log_stood_before_the_answer(past, policy):
    pool, _ = past
    async with pool.acquire() as conn:
        facts, events = await read_log(conn)
    month_ends = [
        datetime.combine(date(y, m, 1), time.min, VN_TZ) - timedelta(seconds=1)
        for y, m in ((2025, 11), (2025, 12), (2026, 1), (2026, 2), (2026, 3), (2026, 4), (2026, 5))
        + ((2026, 6),)
    ]
    no_answer = [
        build_report(facts, events, PERIOD, policy=policy, as_of=at).adoption.no_answer
        for at in month_ends
    ]
    assert any(no_answer)


async def test_people_act_on_working_days_in_office_hours_and_nothing_after_now(past, policy):
    pool, _ = past
    cal = working_calendar(policy.calendar)
    async with pool.acquire() as conn:
        events = await conn.fetch("SELECT at, actor, action FROM audit_log")
    assert len(events) > 1000
    assert all(e["at"] <= NOW for e in events)
    days = {cal.local_date(e["at"]) for e in events}
    assert all(cal.is_working_day(d) for d in days)
    people = [e["at"].astimezone(VN_TZ).time() for e in events if e["actor"] != "system"]
    assert all(time(7, 30) <= t <= time(17, 0) for t in people)
    # The Tết break of 2026 (16–20 February) has no event at all.
    assert not any(date(2026, 2, 14) <= d <= date(2026, 2, 22) for d in days)


async def test_every_trail_is_a_possible_life(past):
    pool, _ = past
    async with pool.acquire() as conn:
        _, events = await read_log(conn)
    trails: dict[str, list[AuditEvent]] = defaultdict(list)
    for e in events:
        trails[e.request_id].append(e)
    actions = set()
    for rid, trail in trails.items():
        assert trail[0].action == "submitted", rid
        assert trail == sorted(trail, key=lambda e: e.at), rid
        stage, experts = None, {}
        for e in trail:
            actions.add(e.action)
            if e.stage is not None and e.stage != stage:
                assert e.stage in NEXT[stage], (rid, stage, e.action, e.stage)
                stage = e.stage
            code = e.details.get("expert_code") if e.stage is None else None
            if code is not None:
                seen = experts.setdefault(code, [])
                assert bool(seen) != (e.action == "expert_invited"), (rid, code, e.action)
                if e.action == "opinion_submitted":
                    assert "invitation_accepted" in seen, (rid, code)
                seen.append(e.action)
        assert stage is not None and stage.is_final, rid
        assert trail[-1].stage == stage, rid
    # The engine's whole vocabulary, automatic steps and people's actions alike.
    assert {
        "submitted",
        "screening_accepted",
        "screening_declined",
        "supplement_requested",
        "supplemented",
        "supplement_lapsed",
        "council_proposed",
        "review_opened",
        "expert_invited",
        "invitation_accepted",
        "invitation_declined",
        "invitation_expired",
        "opinion_submitted",
        "assignment_cancelled",
        "quorum_reached",
        "synthesis_opened",
        "conclusion_drafted",
        "conclusion_returned",
        "conclusion_approved",
        "adoption_answer_requested",
        "adoption_answered",
        "withdrawn",
        "deadline_extended",
        "deadline_escalated",
        "reminder_sent",
    } <= actions


async def test_a_second_run_writes_nothing(past, settings):
    pool, first = past
    async with pool.acquire() as conn:
        before = {t: await rows(conn, t) for t in TABLES}
    again = await generate_history(pool, settings, span=SPAN, seed_number=SEED, now=NOW)
    async with pool.acquire() as conn:
        after = {t: await rows(conn, t) for t in TABLES}
    assert after == before
    assert again.recorded == [] and again.transitions == 0
    assert again.already == len(first.plan.requests)
    assert "nothing new" in summary(again, settings)[0]


async def test_the_same_seed_gives_the_same_rows_and_completes_a_cut_short_run(
    past, pg_url, settings
):
    pool, first = past
    other = await create_pool(await create_database(pg_url), max_size=5)
    try:
        # A run stopped halfway through a request: its first transitions are in.
        await ensure_registries(other, settings)
        cut = next(p for p in first.plan.requests if p.outcome == "closed")
        recording = PersistenceActivities(
            other,
            "office@test.example",
            store=document_store(settings, other),
            policy=settings.load_policy(),
        )
        for t in cut.transitions[: len(cut.transitions) // 2]:
            await recording.record_past(t)
        run = await generate_history(other, settings, span=SPAN, seed_number=SEED, now=NOW)
        assert len(run.recorded) == len(first.plan.requests)
        async with pool.acquire() as a, other.acquire() as b:
            for table in TABLES:
                assert await rows(a, table) == await rows(b, table), table
        # Another seed is another past, beside this one.
        again = await generate_history(other, settings, span="2m", seed_number=SEED + 1, now=NOW)
        ids = {p.request_id for p in again.recorded}
        assert ids and not ids & {p.request_id for p in first.plan.requests}
    finally:
        await other.close()


def test_spans_and_seeds_are_checked_with_their_rule(capsys):
    assert parse_span("2y") == 24 and parse_span("18m") == 18 and parse_span("10Y") == 120
    assert span_start(date(2026, 12, 3), 24) == date(2024, 12, 1)
    assert span_start(date(2026, 1, 31), 1) == date(2025, 12, 1)
    for bad in ("3w", "0m", "11y", "2", "y", "-1y", ""):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["demo", f"--history={bad}"])
        err = capsys.readouterr().err
        assert "--history" in err and "2y or 18m" in err, err
    for bad in ("x", "-3", "1000000"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["demo", "--history", "2y", f"--seed={bad}"])
        err = capsys.readouterr().err
        assert "--seed" in err and "0 to 999999" in err, err
    assert main(["demo", "--seed", "3"]) == 2
    assert "--seed: only with --history" in capsys.readouterr().err


async def test_the_command_records_the_past_up_to_today(pg_url):
    url = await create_database(pg_url)
    done = await run_cli("demo", "--history", "6m", env_vars={"DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert "/portal/reports" in done.stdout
    conn = await asyncpg.connect(url)
    try:
        stages = await conn.fetch("SELECT id, stage FROM requests")
        last = await conn.fetchval("SELECT max(at) FROM audit_log")
    finally:
        await conn.close()
    assert stages and all(is_history(r["id"]) for r in stages)
    assert {r["stage"] for r in stages} <= {"closed", "withdrawn", "declined"}
    assert last <= datetime.now(VN_TZ)


async def test_a_past_request_reads_as_a_case_file_in_the_portal(past, env, mail):
    """No workflow runs for it: the case page is read from PostgreSQL alone."""
    pool, run = past
    app = create_app(portal_settings(mail), client=env.client, pool=pool, task_queue="history")
    closed = next(p for p in run.recorded if p.outcome == "closed" and p.adoption)
    transport = httpx.ASGITransport(app=app, client=("10.7.7.7", 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=PORTAL) as http,
    ):
        # The sample office's first coordinator, registered with the past.
        await signed_in_as(http, mail, "lan.nt@lienhiephoi.example.vn")
        page = await http.get(f"/portal/cases/{closed.request_id}")
    assert page.status_code == 200, page.text
    text = text_of(page.text)
    assert closed.request_id in text
    assert closed.transitions[0].intake.submission.title in text
