"""The read side at volume: 100,000 requests in PostgreSQL, timed as people read them.

The rows are written straight into the tables (COPY), shaped as the engine writes them: five
years of requests from 60 agencies (a few send most), the three kinds, 24 fields, about one in
ten still open and spread over the stages by age, with their councils, assignments and audit
trail (about 20 audit rows a closed request). Then, each query warm (`--repeat` times after a
few unmeasured):

- GET /requests through the real FastAPI app (httpx's ASGI transport, a bearer token): as the
  office (every filter the API offers, combinations, page 1 and a deep page), as an agency
  and as an expert;
- the office board's query (db.queries.open_requests) with each of its filters.

It runs twice in one database: without the read-side indexes (db/migrations/0014, dropped)
and with them (that migration run again), printing p50 / p99 of each and the key lines of
each query's plan both ways, as a pooled connection runs it warm (EXPLAIN ANALYZE of a
prepared statement's sixth run). Target: p99 ≤ 50 ms.

    PYTHONPATH=. .venv/bin/python -m benchmarks.read_side [--requests 100000] [--repeat 100]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client

from benchmarks.stack import AUDIT_COLUMNS, MS, pct, postgres, register_many
from db import queries as q
from db.migrate import MIGRATIONS
from domain.models import Stage
from infra.settings import CONFIG, Settings
from starter.api import create_app
from starter.api.auth import create_token
from starter.api.routes import decode_cursor, encode_cursor
from starter.portal.office import BOARD_LIMIT
from starter.registry import COORDINATORS, seed

# The migration whose indexes are measured without and with (its CREATE INDEX statements);
# where it is not there yet, the queries are timed once, as the schema has them.
READ_INDEXES = MIGRATIONS / "0014_read_side_indexes.sql"

FIELDS = [
    "moi-truong", "quy-hoach", "giao-thong", "xay-dung", "nong-nghiep", "thuy-loi", "y-te",
    "giao-duc", "kinh-te", "tai-chinh", "dat-dai", "cong-nghe-thong-tin", "nang-luong",
    "du-lich", "van-hoa", "lao-dong", "khoa-hoc-cong-nghe", "phap-luat", "do-thi",
    "lam-nghiep", "thuy-san", "khoang-san", "cong-nghiep", "thuong-mai",
]  # fmt: skip
KINDS = {"advisory": (0.6, 3), "critique": (0.3, 5), "social_assessment": (0.1, 5)}
COORDINATOR_CODES = {"VP01": 0.5, "VP02": 0.35, "PCT01": 0.15}
AGENCIES = 60
EXPERTS = 600
YEARS = 5

# Where an open request stands by its age in days: the stage entered last before that day.
OPEN_BY_AGE = [
    (0.004, Stage.intake),
    (4, Stage.screening),
    (6, Stage.council),
    (35, Stage.review),
    (45, Stage.synthesis),
    (50, Stage.approval),
    (51, Stage.delivered),
    (float("inf"), Stage.adoption),
]
PAST_SCREENING = {
    Stage.council,
    Stage.review,
    Stage.synthesis,
    Stage.approval,
    Stage.delivered,
    Stage.adoption,
    Stage.closed,
}
# How far along a stage is (a supplement is screening's).
RANK = {s: i for i, (_, s) in enumerate(OPEN_BY_AGE)} | {Stage.supplement: 1, Stage.closed: 8}


def chance_open(age: float) -> float:
    """How likely a request of this age (days) is still open."""
    for days, p in ((40, 0.98), (100, 0.7), (200, 0.15), (365, 0.02)):
        if age < days:
            return p
    return 0.001


@dataclass
class Rows:
    requests: list[tuple] = field(default_factory=list)
    councils: list[tuple] = field(default_factory=list)
    assignments: list[tuple] = field(default_factory=list)
    audit: list[tuple] = field(default_factory=list)


class Generator:
    """Requests as the engine would have left them, oldest first (as they were written)."""

    def __init__(self, n: int, seed: int = 16) -> None:
        self.rng = random.Random(seed)
        self.n = n
        self.now = datetime.now(UTC)
        self.agencies = [f"S{i:02d}" for i in range(AGENCIES)]
        # A few agencies send most requests (Zipf-like).
        self.agency_weights = [1 / (i + 1) ** 0.9 for i in range(AGENCIES)]
        self.field_weights = [1 / (i + 1) ** 0.7 for i in range(len(FIELDS))]
        self.experts = [f"E-{i:04d}" for i in range(EXPERTS)]
        self.expert_fields = {
            e: self.rng.sample(FIELDS, self.rng.randint(1, 3)) for e in self.experts
        }
        self.by_field: dict[str, list[str]] = {f: [] for f in FIELDS}
        for e, fs in self.expert_fields.items():
            for f_ in fs:
                self.by_field[f_].append(e)
        self.ids: set[str] = set()

    def ages(self) -> list[float]:
        """Days since submission, volume growing over the years; oldest first."""
        span = YEARS * 365
        return sorted((span * (1 - self.rng.random() ** 0.5) for _ in range(self.n)), reverse=True)

    def request_id(self) -> str:
        while (rid := f"R-{self.rng.getrandbits(40):010X}") in self.ids:
            pass
        self.ids.add(rid)
        return rid

    def one(self, age: float, out: Rows) -> None:
        rng = self.rng
        rid = self.request_id()
        agency = rng.choices(self.agencies, self.agency_weights)[0]
        kind = rng.choices(list(KINDS), [w for w, _ in KINDS.values()])[0]
        size = KINDS[kind][1]
        fields = list(
            dict.fromkeys(rng.choices(FIELDS, self.field_weights, k=rng.choice((1, 1, 2, 3))))
        )
        submitted = self.now - timedelta(days=age)
        coordinator = "coordinator:" + rng.choices(*zip(*COORDINATOR_CODES.items(), strict=True))[0]
        if rng.random() < chance_open(age):
            t = age * rng.uniform(0.6, 1.4)
            stage = next(s for days, s in OPEN_BY_AGE if t < days)
            if stage == Stage.screening and t > 1 and rng.random() < 0.2:
                stage = Stage.supplement
            end = self.now
        else:
            stage = rng.choices(
                [Stage.closed, Stage.declined, Stage.withdrawn], [0.88, 0.07, 0.05]
            )[0]
            end = submitted + timedelta(days=min(age, rng.uniform(40, 150)))
        # What it went through: withdrawn ones at some point before the conclusion went out.
        reached = stage
        if stage == Stage.withdrawn:
            reached = rng.choice([Stage.screening, Stage.council, Stage.review, Stage.synthesis])
        elif stage == Stage.declined:
            reached = Stage.screening
        final = stage in (Stage.closed, Stage.declined, Stage.withdrawn)
        deadline = None
        overdue = False
        if not final and stage != Stage.intake:
            deadline = self.now + timedelta(days=rng.uniform(-8, 25))
            overdue = deadline < self.now - timedelta(days=3) and rng.random() < 0.8
        agency_actor = f"agency:{agency}"
        events: list[tuple[str, str | None, str, str]] = []  # action, stage, actor, key

        def event(action: str, st: Stage | str | None, actor: str, key: str = "") -> None:
            events.append((action, st.value if isinstance(st, Stage) else st, actor, key))

        if stage != Stage.intake:
            event("submitted", Stage.screening, agency_actor)
        supplemented = stage == Stage.supplement or (
            reached in PAST_SCREENING and rng.random() < 0.1
        )
        if supplemented:
            event("supplement_requested", Stage.supplement, coordinator)
            if stage != Stage.supplement:
                event("supplement_received", Stage.screening, agency_actor)
        if stage == Stage.declined:
            event("screening_declined", Stage.declined, coordinator)
        council: list[tuple[str, str]] = []
        if reached in PAST_SCREENING or (stage == Stage.withdrawn and reached != Stage.screening):
            event("screening_accepted", Stage.council, coordinator)
            event("council_proposed", Stage.council, "system")
            pool = self.by_field[fields[0]]
            chosen = rng.sample(pool, size) if len(pool) >= size else rng.sample(self.experts, size)
            council = [(e, "chair" if i == 0 else "member") for i, e in enumerate(chosen)]
            out.councils.append(
                (
                    rid,
                    '{"members": ['
                    + ", ".join(f'{{"expert_code": "{e}", "role": "{r}"}}' for e, r in council)
                    + "]}",
                    "proposed" if stage == Stage.council and rng.random() < 0.5 else "confirmed",
                    submitted + timedelta(days=min(age, 5)),
                )
            )
        seated = RANK[reached] >= RANK[Stage.council] and council
        if seated and not (reached == Stage.council and rng.random() < 0.5):
            for code, role in council:
                key = f"review-{rid}-expert-{code}"
                invited = submitted + timedelta(days=min(age, 6))
                if reached in (Stage.council, Stage.review):
                    state = rng.choices(["invited", "accepted", "submitted"], [0.2, 0.45, 0.35])[0]
                else:
                    state = "submitted"
                if stage == Stage.withdrawn:
                    state = "cancelled"
                late = state == "accepted" and rng.random() < 0.1
                out.assignments.append(
                    (
                        rid,
                        code,
                        role,
                        state,
                        invited,
                        invited + timedelta(days=3),
                        None if state == "invited" else invited + timedelta(days=1),
                        None if state == "invited" else invited + timedelta(days=25),
                        None,
                        invited + timedelta(days=2),
                        late,
                    )
                )
                event("expert_invited", None, "system", key)
                if state != "invited":
                    event("invitation_accepted", None, f"expert:{code}", key)
                if rng.random() < 0.3:
                    event("reminder_sent", None, "system", key)
                if state == "submitted":
                    event("opinion_submitted", None, f"expert:{code}", key)
        steps = [
            (Stage.review, "review_opened", "system"),
            (Stage.synthesis, "synthesis_opened", "system"),
            (Stage.approval, "conclusion_drafted", f"expert:{council[0][0]}" if council else ""),
            (Stage.delivered, "conclusion_approved", coordinator),
            (Stage.adoption, "adoption_answer_requested", "system"),
            (Stage.closed, "adoption_answered", agency_actor),
        ]
        for st, action, actor in steps:
            if RANK[reached] >= RANK[st] and stage not in (
                Stage.declined,
                Stage.withdrawn,
            ):
                if st == Stage.delivered and rng.random() < 0.15:
                    event("conclusion_returned", Stage.synthesis, coordinator)
                    event("conclusion_drafted", Stage.approval, actor)
                event(action, st, actor)
        if stage == Stage.withdrawn:
            event("withdrawal_confirmed", Stage.withdrawn, agency_actor)
        step = (end - submitted) / (len(events) + 1)
        for i, (action, st, actor, key) in enumerate(events):
            out.audit.append(
                (
                    f"{key or f'review-{rid}'}:{action}:{i}",
                    rid,
                    submitted + step * (i + 1),
                    actor,
                    action,
                    st,
                    "{}",
                )
            )
        out.requests.append(
            (
                rid,
                f"review-{rid}",
                agency,
                f"{rid[2:]}/{agency}-KH",
                kind,
                f"Dự thảo đề án {fields[0]} giai đoạn {submitted.year}-{submitted.year + 5}"
                f" ({rid})",
                "Đề nghị Liên hiệp hội tư vấn, phản biện các nội dung của dự thảo. " * 3,
                fields,
                '[{"name": "Dự thảo.pdf", "uri": "https://vanban.example.gov.vn/x.pdf",'
                ' "sha256": "' + "ab" * 32 + '"}]',
                '{"name": "Văn thư", "email": "vanthu@so.example.gov.vn"}',
                stage.value,
                deadline,
                submitted,
                end if final else self.now - timedelta(days=rng.uniform(0, min(age, 10))),
                end if final else None,
                overdue,
                size,
                3,
                15,
            )
        )


REQUEST_COLUMNS = [
    "id", "workflow_id", "agency_code", "agency_reference", "kind", "title", "summary",
    "expertise_fields", "documents", "requested_by", "stage", "next_deadline", "submitted_at",
    "updated_at", "closed_at", "overdue", "council_size", "alternates", "review_window_days",
]  # fmt: skip
ASSIGNMENT_COLUMNS = [
    "request_id", "expert_code", "role", "state", "invited_at", "respond_by", "responded_at",
    "due_at", "decline_reason", "updated_at", "overdue",
]  # fmt: skip


async def build(uri: str, pool: asyncpg.Pool, n: int) -> Generator:
    gen = Generator(n)
    await seed(pool, COORDINATORS, CONFIG / "coordinators.sample.csv")
    await register_many(pool, gen.agencies, gen.expert_fields)
    # A plain connection: jsonb goes in as its text, as COPY reads it.
    conn = await asyncpg.connect(uri)
    try:
        ages = gen.ages()
        for start in range(0, n, 5000):
            rows = Rows()
            for age in ages[start : start + 5000]:
                gen.one(age, rows)
            await conn.copy_records_to_table(
                "requests", records=rows.requests, columns=REQUEST_COLUMNS
            )
            await conn.copy_records_to_table(
                "councils",
                records=rows.councils,
                columns=["request_id", "proposal", "status", "proposed_at"],
            )
            await conn.copy_records_to_table(
                "assignments", records=rows.assignments, columns=ASSIGNMENT_COLUMNS
            )
            await conn.copy_records_to_table("audit_log", records=rows.audit, columns=AUDIT_COLUMNS)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return gen


# --- what is timed ---------------------------------------------------------------------------


@dataclass
class ApiCase:
    """GET /requests as `who` with these query parameters; `deep`: from a cursor 90% down."""

    who: str
    params: dict[str, Any]
    deep: bool = False

    @property
    def name(self) -> str:
        shown = "&".join(f"{k}={v}" for k, v in self.params.items()) or "-"
        return f"{self.who:<12} {shown}{' (deep page)' if self.deep else ''}"


@dataclass
class BoardCase:
    """The board's query with these filters."""

    filters: dict[str, str]

    @property
    def name(self) -> str:
        shown = " ".join(f"{k}={v}" for k, v in self.filters.items()) or "-"
        return f"board        {shown}"


API_CASES = [
    ApiCase("office", {}),
    ApiCase("office", {}, deep=True),
    ApiCase("office", {"limit": 200}),
    ApiCase("office", {"stage": "closed"}),
    ApiCase("office", {"stage": "review"}),
    ApiCase("office", {"stage": "approval"}),
    ApiCase("office", {"stage": "intake"}),
    ApiCase("office", {"stage": "review"}, deep=True),
    ApiCase("office", {"kind": "social_assessment"}),
    ApiCase("office", {"kind": "critique"}, deep=True),
    ApiCase("office", {"overdue": "true"}),
    ApiCase("office", {"overdue": "false"}),
    ApiCase("office", {"stage": "review", "kind": "critique"}),
    ApiCase("office", {"stage": "review", "overdue": "true"}),
    ApiCase("office", {"stage": "synthesis", "kind": "advisory", "overdue": "false"}),
    ApiCase("big agency", {}),
    ApiCase("big agency", {}, deep=True),
    ApiCase("big agency", {"stage": "review"}),
    ApiCase("big agency", {"overdue": "true"}),
    ApiCase("small agency", {}),
    ApiCase("small agency", {"stage": "approval", "kind": "critique"}),
    ApiCase("expert", {}),
    ApiCase("expert", {}, deep=True),
    ApiCase("expert", {"stage": "review"}),
    ApiCase("expert", {"overdue": "true"}),
]


def board_cases(gen: Generator) -> list[BoardCase]:
    big, small = gen.agencies[0], gen.agencies[-1]
    return [
        BoardCase({}),
        BoardCase({"agency": big}),
        BoardCase({"agency": small}),
        BoardCase({"kind": "social_assessment"}),
        BoardCase({"field": FIELDS[0]}),
        BoardCase({"field": FIELDS[-1]}),
        BoardCase({"screened_by": "VP01"}),
        BoardCase({"screened_by": "PCT01"}),
        BoardCase({"screened_by": "VP99"}),  # screened nothing: the whole board looked through
        BoardCase({"agency": big, "kind": "critique"}),
        BoardCase({"field": FIELDS[1], "screened_by": "VP02"}),
    ]


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


class Explained:
    """Stands in for a connection: a query function run on it answers with its statement's
    plan instead of its rows — the plan a pooled connection runs it with once warm. asyncpg
    prepares a statement once per connection, and PostgreSQL plans its first five runs for
    their values, then keeps a generic plan if that seems no dearer: so the statement is
    prepared, run five times, and its sixth run explained (EXPLAIN ANALYZE EXECUTE)."""

    def __init__(self, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        self.conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[str]:
        values = f"({', '.join(literal(a) for a in args)})" if args else ""
        await self.conn.execute(f"PREPARE explained AS {sql}")
        try:
            for _ in range(5):
                await self.conn.execute(f"EXECUTE explained{values}")
            rows = await self.conn.fetch(f"EXPLAIN (ANALYZE) EXECUTE explained{values}")
        finally:
            await self.conn.execute("DEALLOCATE explained")
        return [r[0] for r in rows]


NODE = re.compile(
    r"(Scan|Sort|Join|Nested Loop|Limit|Aggregate|SubPlan|InitPlan|Unique|Append|Materialize)"
)


def key_lines(plan: list[str], most: int = 9) -> list[str]:
    """The plan's nodes (what is scanned, by which index, sorted how) with their actual time
    and rows, estimates dropped; then its execution time."""
    lines = []
    for line in plan:
        if NODE.search(line) or "Sort Key" in line or "Index Cond" in line:
            lines.append(re.sub(r"\(cost=[^)]*\) ", "", line.rstrip()))
    total = next((ln.strip() for ln in plan if ln.startswith("Execution Time")), "")
    return [*lines[:most], *(["  …"] if len(lines) > most else []), "  " + total]


@dataclass
class Subjects:
    """Who reads: a token each, and the codes the filters name."""

    headers: dict[str, dict[str, str]]
    subject: dict[str, tuple[str | None, str | None]]  # who -> (agency, expert) as the route has
    deep_cursor: dict[tuple[str, str], str] = field(default_factory=dict)


async def subjects(pool: asyncpg.Pool, gen: Generator) -> Subjects:
    async with pool.acquire() as conn:
        expert = await conn.fetchval(
            "SELECT expert_code FROM assignments GROUP BY expert_code"
            " ORDER BY count(*) DESC LIMIT 1"
        )
    people = {
        "office": ("coordinator", "VP01", (None, None)),
        "big agency": ("agency", gen.agencies[0], (gen.agencies[0], None)),
        "small agency": ("agency", gen.agencies[-1], (gen.agencies[-1], None)),
        "expert": ("expert", expert, (None, expert)),
    }
    headers, subject = {}, {}
    for who, (role, code, seen_as) in people.items():
        headers[who] = {"Authorization": f"Bearer {(await create_token(pool, role, code))[1]}"}
        subject[who] = seen_as
    return Subjects(headers, subject)


async def deep_cursor(pool: asyncpg.Pool, who: Subjects, case: ApiCase) -> str:
    """The cursor of the row 90% of the way down what this reader sees with these filters."""
    key = (case.who, repr(sorted(case.params.items())))
    if key not in who.deep_cursor:
        agency, expert = who.subject[case.who]
        async with pool.acquire() as conn:
            rows = await q.requests_page(
                conn,
                agency=agency,
                expert=expert,
                stage=case.params.get("stage"),
                kind=case.params.get("kind"),
                overdue=None,
                after=None,
                limit=1_000_000,
            )
        who.deep_cursor[key] = encode_cursor(rows[int(len(rows) * 0.9)])
    return who.deep_cursor[key]


async def timed(run, repeat: int) -> list[float]:
    for _ in range(5):  # warm: the statement prepared, its pages in the cache
        await run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        times.append(time.perf_counter() - started)
    return times


async def measure(
    pool: asyncpg.Pool, http: httpx.AsyncClient, who: Subjects, gen: Generator, repeat: int
) -> dict[str, tuple[list[float], list[str]]]:
    """Each case's times and plan."""
    out: dict[str, tuple[list[float], list[str]]] = {}
    for case in API_CASES:
        params = dict(case.params)
        if case.deep:
            params["cursor"] = await deep_cursor(pool, who, case)

        async def get(params: dict = params, case: ApiCase = case) -> None:
            r = await http.get("/requests", params=params, headers=who.headers[case.who])
            assert r.status_code == 200, r.text

        times = await timed(get, repeat)
        agency, expert = who.subject[case.who]
        overdue = {"true": True, "false": False}.get(params.get("overdue", ""))
        async with pool.acquire() as conn:
            plan = await q.requests_page(
                Explained(conn),
                agency=agency,
                expert=expert,
                stage=params.get("stage"),
                kind=params.get("kind"),
                overdue=overdue,
                after=decode_cursor(params["cursor"]) if "cursor" in params else None,
                limit=int(params.get("limit", 50)) + 1,
            )
        out[f"GET /requests {case.name}"] = (times, plan)
    for case in board_cases(gen):
        filters = {"agency": None, "kind": None, "field": None, "screened_by": None}
        filters.update(case.filters)

        async def board(filters: dict = filters) -> None:
            async with pool.acquire() as conn:
                await q.open_requests(conn, **filters, limit=BOARD_LIMIT)

        times = await timed(board, repeat)
        async with pool.acquire() as conn:
            plan = await q.open_requests(Explained(conn), **filters, limit=BOARD_LIMIT)
        out[f"{case.name}"] = (times, plan)
    return out


def index_names(sql: str) -> list[str]:
    return re.findall(r"CREATE INDEX (?:IF NOT EXISTS )?(\w+)", sql, re.I)


async def main(n: int, repeat: int) -> None:
    async with postgres("advisory-read-", max_size=10) as (uri, pool):
        started = time.perf_counter()
        gen = await build(uri, pool, n)
        async with pool.acquire() as conn:
            counts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM requests) AS requests,"
                " (SELECT count(*) FROM requests"
                "   WHERE stage NOT IN ('closed', 'declined', 'withdrawn')) AS open,"
                " (SELECT count(*) FROM assignments) AS assignments,"
                " (SELECT count(*) FROM audit_log) AS audit,"
                " (SELECT pg_size_pretty(pg_database_size(current_database()))) AS size"
            )
        print(
            f"{counts['requests']:,} requests ({counts['open']:,} open), "
            f"{counts['assignments']:,} assignments, {counts['audit']:,} audit rows, "
            f"database {counts['size']}; built in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        sql = READ_INDEXES.read_text(encoding="utf-8") if READ_INDEXES.exists() else ""
        names = index_names(sql)
        with_ = f"with {READ_INDEXES.stem[:4]}"
        who = await subjects(pool, gen)
        # Reads need no Temporal server: a client that would connect on first use, never used.
        client = await Client.connect("127.0.0.1:7233", lazy=True)
        app = create_app(Settings(deliver_notifications=False), client=client, pool=pool)
        phases: dict[str, dict[str, tuple[list[float], list[str]]]] = {}
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api"
            ) as http,
        ):
            for phase in ("without", with_) if names else ("as is",):
                async with pool.acquire() as conn:
                    if phase == "without":
                        for name in names:
                            await conn.execute(f"DROP INDEX {name}")
                    elif names:
                        await conn.execute(sql)
                    await conn.execute("ANALYZE")
                # Fresh connections: no statement prepared (nor plan kept) from the other phase.
                await pool.expire_connections()
                print(
                    f"timing {len(API_CASES)} + {len(board_cases(gen))} queries, {phase}"
                    f" {', '.join(names)} ...",
                    flush=True,
                )
                phases[phase] = await measure(pool, http, who, gen, repeat)

        print("\nplans, as a pooled connection runs them warm (EXPLAIN ANALYZE):")
        for name in next(iter(phases.values())):
            print(f"\n{name}")
            for phase, measured in phases.items():
                print(f"  {phase}:")
                for line in key_lines(measured[name][1]):
                    print(f"    {line}")
        print(f"\n{n:,} requests, {repeat} times each (warm), ms; target p99 <= 50 ms")
        print(f"{'query':<78}" + "".join(f"{phase:>16}" for phase in phases))
        print(f"{'':<78}" + f"{'p50':>8}{'p99':>8}" * len(phases))
        for name in next(iter(phases.values())):
            cells = []
            for measured in phases.values():
                times = measured[name][0]
                cells += [statistics.median(times) * MS, pct(times, 0.99) * MS]
            flag = "  over" if cells[-1] > 50 else ""
            print(f"{name:<78}" + "".join(f"{c:8.1f}" for c in cells) + flag)
        for phase, measured in phases.items():
            worst = max(pct(t, 0.99) for t, _ in measured.values())
            print(f"worst p99 {phase}: {worst * MS:.1f} ms")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=100)
    args = p.parse_args()
    asyncio.run(main(args.requests, args.repeat))
