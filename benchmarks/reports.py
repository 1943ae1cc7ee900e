"""Reports at volume: 100,000 requests and about 3 million audit events in PostgreSQL, each
report timed warm as the portal and `advisory report` ask for it.

The data: a year of the demo's history (`advisory demo --history`, written through the
engine's recording path) gives realistic trails — supplements, declines and alternates, late
experts, extensions, returned drafts, partial adoptions — and each of `--requests` requests is
one of those trails again, moved by whole weeks (so weekdays stay weekdays) to a submission
date spread over three years with volume growing, from one of 60 agencies (a few send most),
its experts drawn from 600. The requests and audit rows are written by COPY; the report tables
are then built from the audit log by `db.reports.rebuild`, as `advisory migrate` builds them
for data recorded before them (timed: its rate is also what a backfill takes).

Timed, each `--repeat` times after three unmeasured runs: `db.reports.report` for a year, a
quarter, a month and the whole three years, without filters and with an agency (the biggest,
a small one), a kind, a field, and an agency with a kind. The baseline, in the same process on
the same data: the measures computed in Python over every audit event of the requests
(`domain.reports.build_report`, which is how reports were read before the tables), for the
year, once. Target: p99 < 1 s. Last, what keeping the tables adds to a transition's
transaction (`db.reports.refresh`, rolled back).

    PYTHONPATH=. .venv/bin/python -m benchmarks.reports [--requests 100000] [--repeat 20]
                                                     [--database URI]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from benchmarks.stack import AUDIT_COLUMNS, MS, latency, pct, postgres, register_many
from db import reports
from db.pool import create_pool
from domain.policy import Policy
from domain.reports import (
    AuditEvent,
    ReportFilter,
    ReportPeriod,
    RequestFacts,
    build_report,
    parse_period,
)
from infra.settings import Settings

AGENCIES = 60
EXPERTS = 600
YEARS = 3


@dataclass
class Template:
    facts: RequestFacts
    events: list[AuditEvent]


async def templates(pool: asyncpg.Pool, settings: Settings) -> list[Template]:
    """A year of the demo's history, recorded through the engine's recording path, read back
    as trails."""
    from starter.history import generate_history

    await generate_history(pool, settings, span="1y", seed_number=17)
    async with pool.acquire() as conn:
        facts = {
            r["id"]: RequestFacts(**dict(r))
            for r in await conn.fetch(
                "SELECT id, agency_code, kind, expertise_fields, submitted_at FROM requests"
            )
        }
        events: dict[str, list[AuditEvent]] = defaultdict(list)
        for e in await conn.fetch(
            "SELECT request_id, at, actor, action, stage, details FROM audit_log ORDER BY id"
        ):
            events[e["request_id"]].append(AuditEvent(**dict(e)))
        # Start again empty: the clones are the data set.
        await conn.execute(
            "TRUNCATE report_requests, audit_log, requests, assignments, opinions,"
            " conclusions, adoption_answers, councils, outbox CASCADE"
        )
    return [Template(facts[rid], evs) for rid, evs in events.items() if evs]


class Cloner:
    def __init__(self, patterns: list[Template], seed: int = 17) -> None:
        self.rng = random.Random(seed)
        self.patterns = patterns
        self.agencies = [f"S{i:02d}" for i in range(AGENCIES)]
        self.agency_weights = [1 / (i + 1) ** 0.9 for i in range(AGENCIES)]
        self.experts = [f"E-{i:04d}" for i in range(EXPERTS)]
        self.today = datetime.now(UTC)

    def submitted(self) -> datetime:
        """Within the last three years, volume growing."""
        span = YEARS * 365
        return self.today - timedelta(days=span * (1 - self.rng.random() ** 0.5))

    def one(self, n: int, requests: list[tuple], audit: list[tuple]) -> None:
        rng = self.rng
        p = rng.choice(self.patterns)
        rid = f"R-B{n:09d}"
        # Whole weeks, and never past today: every event of the trail has happened.
        weeks = (self.submitted() - p.facts.submitted_at).days // 7
        room = (self.today - p.events[-1].at).days // 7
        shift = timedelta(weeks=min(weeks, room))
        agency = rng.choices(self.agencies, self.agency_weights)[0]
        experts: dict[str, str] = {}

        def expert(code: str) -> str:
            return experts.setdefault(code, rng.choice(self.experts))

        submitted = p.facts.submitted_at + shift
        last = submitted
        for i, e in enumerate(p.events):
            details: dict[str, Any] = dict(e.details)
            if "expert_code" in details:
                details["expert_code"] = expert(details["expert_code"])
            for k in ("from", "to", "deadline_at"):
                if isinstance(details.get(k), str) and details[k][:2] == "20":
                    details[k] = (datetime.fromisoformat(details[k]) + shift).isoformat()
            actor = e.actor
            if actor.startswith("agency:"):
                actor = f"agency:{agency}"
            elif actor.startswith("expert:"):
                actor = f"expert:{expert(actor[7:])}"
            last = e.at + shift
            audit.append(
                (
                    f"{rid}:{i}",
                    rid,
                    last,
                    actor,
                    e.action,
                    e.stage and e.stage.value,
                    json.dumps(details, ensure_ascii=False),
                )
            )
        requests.append(
            (
                rid,
                f"bench-{rid}",
                agency,
                f"{rid}/KH",
                p.facts.kind.value,
                f"Dự thảo đề án số {n}",
                "Đề nghị Liên hiệp hội tư vấn, phản biện các nội dung của dự thảo.",
                p.facts.expertise_fields,
                "[]",
                '{"name": "Văn thư", "email": "vanthu@so.example.gov.vn"}',
                "closed",
                submitted,
                last,
            )
        )


REQUEST_COLUMNS = [
    "id", "workflow_id", "agency_code", "agency_reference", "kind", "title", "summary",
    "expertise_fields", "documents", "requested_by", "stage", "submitted_at", "updated_at",
]  # fmt: skip


async def build(uri: str, pool: asyncpg.Pool, settings: Settings, n: int) -> tuple[int, float]:
    """The data set; returns the audit rows written and the seconds the report tables took."""
    patterns = await templates(pool, settings)
    print(f"templates: {len(patterns)} requests of the demo's history")
    cloner = Cloner(patterns)
    fields = sorted({f for p in patterns for f in p.facts.expertise_fields})[:3]
    await register_many(pool, cloner.agencies, dict.fromkeys(cloner.experts, fields))
    # A plain connection: jsonb goes in as its text, as COPY reads it.
    conn = await asyncpg.connect(uri)
    try:
        events = 0
        started = time.perf_counter()
        for start in range(0, n, 5000):
            requests: list[tuple] = []
            audit: list[tuple] = []
            for i in range(start, min(n, start + 5000)):
                cloner.one(i, requests, audit)
            await conn.copy_records_to_table("requests", records=requests, columns=REQUEST_COLUMNS)
            await conn.copy_records_to_table("audit_log", records=audit, columns=AUDIT_COLUMNS)
            events += len(audit)
    finally:
        await conn.close()
    print(
        f"written: {n:,} requests, {events:,} audit rows in {time.perf_counter() - started:.0f} s"
    )
    async with pool.acquire() as conn:
        started = time.perf_counter()
        built = await reports.rebuild(conn, settings.load_policy())
        took = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE")
        sizes = await conn.fetch(
            "SELECT relname, n_live_tup FROM pg_stat_user_tables"
            " WHERE relname LIKE 'report_%' ORDER BY relname"
        )
    print(
        f"report tables: {built:,} requests in {took:.0f} s ({built / took:,.0f} a second); "
        + ", ".join(f"{r['relname']} {r['n_live_tup']:,}" for r in sizes)
    )
    return events, took


async def python_report(pool: asyncpg.Pool, period: ReportPeriod, policy: Policy):
    """The baseline: every request and audit event read, the measures computed in Python."""
    async with pool.acquire() as conn:
        facts = [
            RequestFacts(**dict(r))
            for r in await conn.fetch(
                "SELECT id, agency_code, kind, expertise_fields, submitted_at FROM requests"
            )
        ]
        events = [
            AuditEvent(**dict(e))
            for e in await conn.fetch(
                "SELECT request_id, at, actor, action, stage, details FROM audit_log ORDER BY id"
            )
        ]
    return build_report(facts, events, period, policy=policy, as_of=datetime.now(UTC))


async def main(n: int, repeat: int, database: str | None) -> None:
    settings = Settings()
    if database:
        pool = await create_pool(database, max_size=4)
        try:
            await measure(pool, settings.load_policy(), repeat)
        finally:
            await pool.close()
        return
    async with postgres("advisory-bench-reports-") as (uri, pool):
        await build(uri, pool, settings, n)
        await measure(pool, settings.load_policy(), repeat)


async def measure(pool: asyncpg.Pool, policy: Policy, repeat: int) -> None:
    this_year = date.today().year
    periods = [
        str(this_year),
        f"{this_year}-Q2",
        f"{this_year}-07",
        f"{this_year - 2}-01-01..{this_year}-12-31",
    ]
    async with pool.acquire() as conn:
        big = await conn.fetchval(
            "SELECT agency_code FROM requests GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        )
        small = await conn.fetchval(
            "SELECT agency_code FROM requests GROUP BY 1 ORDER BY count(*) LIMIT 1"
        )
        field = await conn.fetchval(
            "SELECT f FROM requests, unnest(expertise_fields) f GROUP BY 1"
            " ORDER BY count(*) DESC LIMIT 1"
        )
    filters = {
        "-": ReportFilter(),
        f"agency {big}": ReportFilter(agencies={big}),
        f"agency {small}": ReportFilter(agencies={small}),
        "kind critique": ReportFilter(kinds={"critique"}),
        f"field {field}": ReportFilter(fields={field}),
        f"agency {big} + advisory": ReportFilter(agencies={big}, kinds={"advisory"}),
    }
    worst: dict[str, float] = {}
    print(f"\n{'period':<24} {'filter':<24} {'received':>8}   db.reports.report (a pool), warm")
    for text in periods:
        period = parse_period(text)
        for name, chosen in filters.items():
            times = []
            for i in range(repeat + 3):
                started = time.perf_counter()
                r = await reports.report(pool, period, chosen, policy=policy)
                if i >= 3:
                    times.append(time.perf_counter() - started)
            worst[text] = max(worst.get(text, 0.0), pct(times, 0.99))
            print(f"{text:<24} {name:<24} {r.volumes.received:>8,}   {latency(times)}")
    print()
    for text, p99 in worst.items():
        print(f"worst p99, {text:<24} {p99 * MS:6.0f} ms (target < 1,000 ms)")
    await write_path(pool, policy)
    print("\nbaseline: build_report in Python over every audit event, the year once")
    started = time.perf_counter()
    r = await python_report(pool, parse_period(periods[0]), policy)
    print(f"{periods[0]:<24} {r.volumes.received:>8,}   {time.perf_counter() - started:6.1f} s")


async def write_path(pool: asyncpg.Pool, policy: Policy, n: int = 200) -> None:
    """What keeping the tables costs each transition: `db.reports.refresh` of a request as
    its recording transaction runs it (rolled back), with no expert's months to count again
    and with one (one of its assignments taken away first)."""
    async with pool.acquire() as conn:
        ids = [
            r["request_id"]
            for r in await conn.fetch(
                "SELECT request_id FROM report_requests ORDER BY random() LIMIT $1", n
            )
        ]
        for recounted in (False, True):
            times = []
            for rid in ids:
                tx = conn.transaction()
                await tx.start()
                if recounted:
                    await conn.execute(
                        "DELETE FROM report_assignments WHERE ctid = (SELECT min(ctid)"
                        " FROM report_assignments WHERE request_id = $1)",
                        rid,
                    )
                started = time.perf_counter()
                await reports.refresh(conn, rid, policy)
                times.append(time.perf_counter() - started)
                await tx.rollback()
            what = "an expert's months counted again" if recounted else "no expert's months"
            print(f"\nrefresh in a transition, {what}: {latency(times)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--database",
        help="time the reports of a database this script built before (its URI), building nothing",
    )
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.repeat, args.database))
