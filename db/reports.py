"""The reports' reads and the tables behind them.

`report()` is the one entry point the portal, the CLI and the exports use: each measure of
`domain.reports` is a query over the report tables (db/migrations/0015_report_rows.sql), which
hold each request as `domain.reports.request_rows` reads it, and each expert's load per month.
`refresh()` rewrites one request's rows in the transaction that records its transition (and
`recount()` the months of the experts whose assignments it changed); `rebuild()` writes them
for requests that have none (after the migration, or for data recorded before it).

Every query takes the same first six arguments: the filter's agencies, kinds and folded fields
($1–$3, empty: any), the period's first and last local day ($4, $5) and the report's moment
($6). tests/test_report_tables.py checks that these queries and `domain.reports.build_report`
give the same report.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from domain.calendar import VN_TZ
from domain.models import AdoptionStatus, RequestKind
from domain.policy import Policy
from domain.reports import (
    ON_TIME_ROWS,
    STAGES,
    AdoptionRow,
    AuditEvent,
    ExpertRow,
    OnTime,
    Report,
    ReportFilter,
    ReportPeriod,
    RequestFacts,
    RequestRows,
    Spread,
    StageTime,
    Volumes,
    by_party,
    experts_total,
    request_rows,
)

Conn = asyncpg.Connection | asyncpg.Pool
# A year's percentiles and the experts' running load sort a few hundred thousand rows.
REPORT_WORK_MEM = "64MB"
_ZONE = "Asia/Ho_Chi_Minh"  # the local time the measures' months are counted in (VN_TZ)
SPARE_WAIT = 0.05  # seconds a report waits for a second connection before making do with one

# Every report table names its request's agency, kind and (folded) fields: one table per
# measure.
_ADMITS = """
    (cardinality($1::text[]) = 0 OR agency_code = ANY($1))
    AND (cardinality($2::text[]) = 0 OR kind = ANY($2))
    AND (cardinality($3::text[]) = 0 OR fields && $3)
"""


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


# --- keeping the tables current ------------------------------------------------------------------

_WHOSE = ("request_id", "agency_code", "kind", "fields")
_TABLES: dict[str, tuple[str, ...]] = {
    "report_requests": (
        "request_id",
        "agency_code",
        "kind",
        "fields",
        "received_at",
        "received_on",
        "delivered_at",
        "delivered_on",
        "turnaround_days",
        "ending",
        "ended_at",
        "ended_on",
        "adoption_status",
        "adoption_due",
        "answered_late",
    ),
    "report_visits": (*_WHOSE, "stage", "left_at", "left_on", "left_by", "days"),
    "report_deadlines": (
        *_WHOSE,
        "party",
        "deadline",
        "expert_code",
        "due",
        "counted_at",
        "counted_on",
        "on_time",
        "settled",
    ),
    "report_extensions": (*_WHOSE, "party", "deadline", "at", "on_day", "days"),
    "report_assignments": (
        *_WHOSE,
        "expert_code",
        "invited_at",
        "invited_on",
        "answer",
        "closed_at",
    ),
}


def _by_table(rows: list[RequestRows]) -> dict[str, list[dict[str, Any]]]:
    return {
        "report_requests": [r.request for r in rows],
        "report_visits": [v for r in rows for v in r.visits],
        "report_deadlines": [d for r in rows for d in r.deadlines],
        "report_extensions": [x for r in rows for x in r.extensions],
        "report_assignments": [a for r in rows for a in r.assignments],
    }


async def _write(conn: asyncpg.Connection, rows: list[RequestRows]) -> None:
    """Replaces the rows of these requests (their old rows go with report_requests')."""
    await conn.execute(
        "DELETE FROM report_requests WHERE request_id = ANY($1)",
        [r.request["request_id"] for r in rows],
    )
    for table, records in _by_table(rows).items():
        if records:
            columns = _TABLES[table]
            await conn.copy_records_to_table(
                table, records=[tuple(r[c] for c in columns) for r in records], columns=columns
            )


def _facts(row: asyncpg.Record) -> RequestFacts:
    return RequestFacts(
        id=row["id"],
        agency_code=row["agency_code"],
        kind=row["kind"],
        expertise_fields=row["expertise_fields"],
        submitted_at=row["submitted_at"],
    )


def _event(row: asyncpg.Record) -> AuditEvent:
    return AuditEvent(
        request_id=row["request_id"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        stage=row["stage"],
        details=row["details"],
    )


_FACTS = "SELECT id, agency_code, kind, expertise_fields, submitted_at FROM requests"
_EVENTS = "SELECT request_id, at, actor, action, stage, details FROM audit_log"


async def refresh(conn: asyncpg.Connection, request_id: str, policy: Policy) -> None:
    """Rewrites one request's report rows from its whole trail, inside the caller's
    transaction. The request's row is locked first, so two transitions of one request
    committing together rewrite its rows one after the other, the second reading the first's
    event. Experts whose assignments on it changed have their months counted again."""
    facts = await conn.fetchrow(f"{_FACTS} WHERE id = $1 FOR UPDATE", request_id)
    if facts is None:
        return
    events = await conn.fetch(f"{_EVENTS} WHERE request_id = $1 ORDER BY id", request_id)
    rows = request_rows(_facts(facts), map(_event, events), policy)
    before = {
        (r["expert_code"], r["invited_at"], r["closed_at"])
        for r in await conn.fetch(
            "SELECT expert_code, invited_at, closed_at FROM report_assignments"
            " WHERE request_id = $1",
            request_id,
        )
    }
    after = {(a["expert_code"], a["invited_at"], a["closed_at"]) for a in rows.assignments}
    await _write(conn, [rows])
    await recount(conn, {code for code, _, _ in before ^ after})


async def rebuild(conn: asyncpg.Connection, policy: Policy, *, batch: int = 2000) -> int:
    """Writes the rows of every request that has none; returns how many. Run by `advisory
    migrate` and the dev stack after migrating, so data recorded before the tables existed
    is reported too."""
    done, experts = 0, set()
    while True:
        missing = await conn.fetch(
            f"{_FACTS} q WHERE NOT EXISTS"
            " (SELECT 1 FROM report_requests r WHERE r.request_id = q.id)"
            " ORDER BY id LIMIT $1",
            batch,
        )
        if not missing:
            break
        events: dict[str, list[AuditEvent]] = defaultdict(list)
        for e in await conn.fetch(
            f"{_EVENTS} WHERE request_id = ANY($1) ORDER BY id", [r["id"] for r in missing]
        ):
            events[e["request_id"]].append(_event(e))
        rows = [request_rows(_facts(r), events[r["id"]], policy) for r in missing]
        async with conn.transaction():
            await _write(conn, rows)
        experts |= {a["expert_code"] for r in rows for a in r.assignments}
        done += len(missing)
    async with conn.transaction():
        await recount(conn, experts)
    return done


async def recount(conn: asyncpg.Connection, experts: set[str]) -> None:
    """Counts these experts' load in every month again (report_expert_months), inside the
    caller's transaction: per month, the most of their assignments open at once — a running
    count over openings (+1) and closings (−1) in time order, read at the month's first
    instant and at each opening in it. Each expert is locked first (in one order, so two
    transactions never wait on each other), so that a count reads every assignment
    committed before it."""
    if not experts:
        return
    codes = sorted(experts)
    for code in codes:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", code)
    await conn.execute("DELETE FROM report_expert_months WHERE expert_code = ANY($1)", codes)
    await conn.execute(
        f"""
        INSERT INTO report_expert_months (expert_code, month, peak)
        WITH spans AS (
            SELECT expert_code, invited_at AS o, closed_at AS c FROM report_assignments
            WHERE expert_code = ANY($1)
        ),
        bounds AS (
            SELECT expert_code,
                date_trunc('month', min(o) AT TIME ZONE '{_ZONE}') AS first,
                date_trunc('month', max(greatest(o, c)) AT TIME ZONE '{_ZONE}') AS last
            FROM spans GROUP BY 1
        ),
        moments AS (
            -- at one instant: closings first, then openings, then the month's first instant
            SELECT expert_code, o AS t, 1 AS k, 1 AS delta FROM spans
            UNION ALL SELECT expert_code, c, 0, -1 FROM spans WHERE c IS NOT NULL
            UNION ALL SELECT expert_code, m AT TIME ZONE '{_ZONE}', 2, 0
                FROM bounds, generate_series(first, last, interval '1 month') m
        ),
        counted AS (
            SELECT expert_code, t, k, sum(delta) OVER (
                PARTITION BY expert_code COLLATE "C" ORDER BY t, k ROWS UNBOUNDED PRECEDING) AS n
            FROM moments
        )
        SELECT expert_code, date_trunc('month', t AT TIME ZONE '{_ZONE}')::date, max(n)
        FROM counted WHERE k > 0 GROUP BY 1, 2
        """,
        codes,
    )


# --- the measures --------------------------------------------------------------------------------


async def report(
    db: Conn,
    period: ReportPeriod,
    report_filter: ReportFilter | None = None,
    *,
    policy: Policy,
    as_of: datetime | None = None,
) -> Report:
    """The report of `period` over the requests `report_filter` admits, at `as_of` (default:
    now; the rows are the log as it stands, so a moment before its last event reads later
    events as already known). A filter naming an agency or field nobody knows raises
    `ReportInputError`. `policy` is not read here: the rows were worked out with it.

    Given a pool, the experts' load (the costliest measure) is counted on a second connection
    while the others are, both reading one snapshot."""
    chosen = report_filter or ReportFilter()
    when = as_of or datetime.now(UTC)
    if not isinstance(db, asyncpg.Pool):
        async with _reading(db):
            return await _report([db], period, chosen, when)
    async with db.acquire() as first:
        try:
            # Only a connection to spare: a report never waits for a second one while holding
            # its first (reports at once would each hold one and wait for another).
            second = await db.acquire(timeout=SPARE_WAIT)
        except TimeoutError:
            async with _reading(first):
                return await _report([first], period, chosen, when)
        try:
            async with _reading(first) as snapshot, _reading(second, snapshot):
                return await _report([first, second], period, chosen, when)
        finally:
            await db.release(second)


@asynccontextmanager
async def _reading(conn: asyncpg.Connection, snapshot: str | None = None):
    """A read-only transaction that sees one snapshot (another connection's, when given: it
    must be the transaction's first statement), with room to sort a year's rows in memory,
    each query planned for the values given (a filter not set folds away, a month's range is
    planned as a month; a generic plan, cached after five runs, knows neither)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if snapshot is not None:
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        await conn.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        yield await conn.fetchval("SELECT pg_export_snapshot()") if snapshot is None else None


async def _check(conn: asyncpg.Connection, chosen: ReportFilter) -> None:
    """Refuses a filter naming an agency or a field nobody knows (`ReportFilter.check_known`),
    reading only what it names."""
    agencies = await conn.fetch(
        "SELECT code FROM agencies WHERE code = ANY($1::text[])", list(chosen.agencies)
    )
    fields: list[str] = []
    if chosen.fields:
        fields = await conn.fetchval(
            """
            SELECT coalesce(array_agg(f), '{}') FROM unnest($1::text[]) f
            WHERE EXISTS (SELECT 1 FROM experts, jsonb_object_keys(expertise) k
                          WHERE lower(k) = f)
               OR EXISTS (SELECT 1 FROM report_requests WHERE fields @> ARRAY[f])
            """,
            sorted(chosen.folded_fields),
        )
    chosen.check_known([a["code"] for a in agencies], fields)


async def _report(
    conns: list[asyncpg.Connection], period: ReportPeriod, chosen: ReportFilter, as_of: datetime
) -> Report:
    main, side = conns[0], conns[-1]
    await _check(main, chosen)
    args = (
        sorted(chosen.agencies),
        sorted(k.value for k in chosen.kinds),
        sorted(chosen.folded_fields),
        period.start,
        period.end,
        as_of,
    )
    windows = _windows(period, as_of)
    end = period.end
    # The experts' load is read from report_expert_months when it holds the answer: no
    # filter, whole months, and nothing in the tables after the report's moment.
    counted = bool(
        windows
        and not (chosen.agencies or chosen.kinds or chosen.fields)
        and period.start.day == 1
        and end == _month_end(end.year, end.month)
        and (await _counted_through(main) or as_of) <= as_of
    )

    async def load(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
        if counted:
            return await _load_counted(conn, windows)
        return await _load(conn, args, windows)

    measures: dict[str, Callable[[asyncpg.Connection], Awaitable[Any]]] = {
        "load": load,
        "adoption": lambda c: _adoption(c, args),
        "turnaround": lambda c: _turnaround(c, args),
        "volumes": lambda c: _volumes(c, args, period),
        "stages": lambda c: _time_in_stage(c, args),
        "on_time": lambda c: _on_time(c, args),
        "invitations": lambda c: _invitations(c, args),
    }

    async def run(conn: asyncpg.Connection, names: list[str]) -> dict[str, Any]:
        return {name: await measures[name](conn) for name in names}

    if side is main:
        found = await run(main, list(measures))
    else:
        # About half the work on each connection: counted live, the load costs as much as
        # all the others; read, it costs little and the volumes go with it.
        first = ["load", "adoption", "turnaround", *(["volumes"] if counted else [])]
        second = [name for name in measures if name not in first]
        a, b = await asyncio.gather(run(main, first), run(side, second))
        found = a | b
    volumes = found["volumes"]
    on_time, opinions = found["on_time"]
    experts = _experts(found["invitations"], opinions, found["load"], period.months())
    adoption = found["adoption"]
    return Report(
        period=period,
        filter=chosen,
        as_of=as_of,
        volumes=volumes["all"][""],
        by_kind=volumes["kind"],
        by_agency=volumes["agency"],
        by_field=volumes["field"],
        per_month=volumes["month"],
        turnaround=found["turnaround"],
        time_in_stage=found["stages"],
        on_time=on_time,
        on_time_by_party=by_party(on_time),
        experts=experts,
        experts_total=experts_total(experts),
        adoption=adoption["all"][""],
        adoption_by_agency=adoption["agency"],
        adoption_by_kind=adoption["kind"],
    )


_HAPPENED = f"""
    SELECT 'received' AS measure, received_on AS day, kind, agency_code, fields
        FROM report_requests WHERE {_ADMITS}
        AND received_on BETWEEN $4 AND $5 AND received_at <= $6
    UNION ALL
    SELECT 'completed', delivered_on, kind, agency_code, fields FROM report_requests
        WHERE {_ADMITS} AND delivered_on BETWEEN $4 AND $5 AND delivered_at <= $6
    UNION ALL
    SELECT ending, ended_on, kind, agency_code, fields FROM report_requests
        WHERE {_ADMITS} AND ended_on BETWEEN $4 AND $5 AND ended_at <= $6
"""


async def _volumes(conn: Conn, args: tuple, period: ReportPeriod) -> dict[str, dict[str, Volumes]]:
    counted = await conn.fetch(
        f"""
        SELECT measure, kind, agency_code, to_char(day, 'YYYY-MM') AS month, count(*) AS n
        FROM ({_HAPPENED}) h GROUP BY 1, 2, 3, 4
        """,
        *args,
    )
    # A request counts under each of its fields (of the filter's, when it names fields).
    by_field = await conn.fetch(
        f"""
        SELECT measure, f AS field, count(*) AS n
        FROM ({_HAPPENED}) h, unnest(h.fields) f
        WHERE cardinality($3::text[]) = 0 OR f = ANY($3)
        GROUP BY 1, 2
        """,
        *args,
    )
    out: dict[str, dict[str, Volumes]] = {
        "all": {"": Volumes()},
        "kind": {k.value: Volumes() for k in RequestKind},
        "agency": defaultdict(Volumes),
        "field": defaultdict(Volumes),
        "month": {m: Volumes() for m in period.months()},
    }
    for r in counted:
        for group, key in (
            ("all", ""),
            ("kind", r["kind"]),
            ("agency", r["agency_code"]),
            ("month", r["month"]),
        ):
            v = out[group][key]
            setattr(v, r["measure"], getattr(v, r["measure"]) + r["n"])
    for r in by_field:
        v = out["field"][r["field"]]
        setattr(v, r["measure"], getattr(v, r["measure"]) + r["n"])
    out["agency"] = dict(sorted(out["agency"].items()))
    out["field"] = dict(sorted(out["field"].items()))
    return out


def _spread_of(row: asyncpg.Record) -> dict[str, int | None]:
    return {"count": row["n"], "median": row["median"], "p90": row["p90"]}


_SPREAD = """count(*) AS n,
    percentile_disc(0.5) WITHIN GROUP (ORDER BY {0}) AS median,
    percentile_disc(0.9) WITHIN GROUP (ORDER BY {0}) AS p90"""


async def _turnaround(conn: Conn, args: tuple) -> Spread:
    row = await conn.fetchrow(
        f"""
        SELECT {_SPREAD.format("turnaround_days")} FROM report_requests r
        WHERE {_ADMITS} AND delivered_on BETWEEN $4 AND $5 AND delivered_at <= $6
        """,
        *args,
    )
    return Spread(**_spread_of(row))


async def _time_in_stage(conn: Conn, args: tuple) -> dict[str, StageTime]:
    rows = await conn.fetch(
        f"""
        SELECT v.stage, {_SPREAD.format("v.days")},
            count(*) FILTER (WHERE v.left_by = 'withdrawn') AS withdrawn
        FROM report_visits v
        WHERE {_ADMITS} AND v.left_on BETWEEN $4 AND $5 AND v.left_at <= $6
        GROUP BY v.stage
        """,
        *args,
    )
    found = {r["stage"]: r for r in rows}
    return {
        s.value: (
            StageTime(**_spread_of(found[s.value]), left_by_withdrawal=found[s.value]["withdrawn"])
            if s.value in found
            else StageTime()
        )
        for s in STAGES
    }


async def _on_time(conn: Conn, args: tuple) -> tuple[list[OnTime], dict[str, list[bool]]]:
    counted = await conn.fetch(
        f"""
        SELECT d.party, d.deadline, d.expert_code,
            count(*) FILTER (WHERE d.on_time) AS on_time,
            count(*) FILTER (WHERE NOT d.on_time) AS late
        FROM report_deadlines d
        WHERE {_ADMITS} AND d.counted_on BETWEEN $4 AND $5 AND d.counted_at <= $6
            AND (d.settled OR d.due < $6)
        GROUP BY 1, 2, 3
        """,
        *args,
    )
    extended = await conn.fetch(
        f"""
        SELECT x.party, x.deadline, count(*) AS n, sum(x.days) AS days
        FROM report_extensions x
        WHERE {_ADMITS} AND x.on_day BETWEEN $4 AND $5 AND x.at <= $6
        GROUP BY 1, 2
        """,
        *args,
    )
    rows = {key: OnTime(party=key[0], deadline=key[1]) for key in ON_TIME_ROWS}
    opinions: dict[str, list[bool]] = defaultdict(list)
    for c in counted:
        row = rows[(c["party"], c["deadline"])]
        row.on_time += c["on_time"]
        row.late += c["late"]
        if (c["party"], c["deadline"]) == ("expert", "review"):
            opinions[c["expert_code"] or ""] += [True] * c["on_time"] + [False] * c["late"]
    for x in extended:
        row = rows[(x["party"], x["deadline"])]
        row.extensions += x["n"]
        row.extension_days += x["days"]
    return list(rows.values()), opinions


async def _invitations(conn: Conn, args: tuple) -> list[asyncpg.Record]:
    """Invitations sent in the period, per expert and answer."""
    return await conn.fetch(
        f"""
        SELECT a.expert_code, coalesce(a.answer, 'unanswered') AS answer, count(*) AS n
        FROM report_assignments a
        WHERE {_ADMITS} AND a.invited_on BETWEEN $4 AND $5 AND a.invited_at <= $6
        GROUP BY 1, 2
        """,
        *args,
    )


def _experts(
    invitations: list[asyncpg.Record],
    opinions: dict[str, list[bool]],
    peaks: dict[str, dict[str, int]],
    months: list[str],
) -> list[ExpertRow]:
    rows: dict[str, ExpertRow] = {}
    for a in invitations:
        r = rows.setdefault(a["expert_code"], ExpertRow(expert_code=a["expert_code"]))
        r.invited += a["n"]
        setattr(r, a["answer"], getattr(r, a["answer"]) + a["n"])
    for code, kept in opinions.items():
        r = rows.setdefault(code, ExpertRow(expert_code=code))
        r.opinions_on_time += sum(kept)
        r.opinions_late += len(kept) - sum(kept)
    for code in sorted(set(peaks) | set(rows)):
        load = {m: peaks.get(code, {}).get(m, 0) for m in months}
        if code in rows or any(load.values()):
            rows.setdefault(code, ExpertRow(expert_code=code)).load = load
    return [rows[c] for c in sorted(rows)]


def _windows(period: ReportPeriod, as_of: datetime) -> list[tuple[str, datetime, datetime]]:
    """Each month of the period as the instants of it inside the period and before `as_of`
    (months wholly after it left out)."""
    windows = []
    for m in period.months():
        y, mo = int(m[:4]), int(m[5:])
        first = max(date(y, mo, 1), period.start)
        last = min(_month_end(y, mo), period.end)
        start = datetime.combine(first, time.min, VN_TZ)
        end = min(datetime.combine(last + timedelta(days=1), time.min, VN_TZ), as_of)
        if end > start:
            windows.append((m, start, end))
    return windows


def _month_end(y: int, m: int) -> date:
    return (date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1)) - timedelta(days=1)


async def _load_counted(
    conn: Conn, windows: list[tuple[str, datetime, datetime]]
) -> dict[str, dict[str, int]]:
    """The experts' load read from report_expert_months: right for whole months without a
    filter, when nothing in the tables is later than the report's moment. A month after an
    expert's last counted one has seen no opening or closing of theirs: what was open then
    is what is still open now."""
    first, last = (date.fromisoformat(f"{windows[i][0]}-01") for i in (0, -1))
    counted = await conn.fetch(
        "SELECT expert_code, to_char(month, 'YYYY-MM') AS month, peak"
        " FROM report_expert_months WHERE month BETWEEN $1 AND $2",
        first,
        last,
    )
    latest = {
        r["expert_code"]: r["month"].strftime("%Y-%m")
        for r in await conn.fetch(
            "SELECT expert_code, max(month) AS month FROM report_expert_months GROUP BY 1"
        )
    }
    still_open = {
        r["expert_code"]: r["n"]
        for r in await conn.fetch(
            "SELECT expert_code, count(*) AS n FROM report_assignments"
            " WHERE closed_at IS NULL GROUP BY 1"
        )
    }
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in counted:
        out[r["expert_code"]][r["month"]] = r["peak"]
    for code, n in still_open.items():
        for month, _, _ in windows:
            if month > latest.get(code, month):
                out[code][month] = n
    return out


async def _counted_through(conn: Conn) -> datetime | None:
    """The latest opening or closing of any assignment in the tables."""
    return await conn.fetchval(
        "SELECT greatest((SELECT max(invited_at) FROM report_assignments),"
        " (SELECT max(closed_at) FROM report_assignments))"
    )


async def _load(
    conn: Conn, args: tuple, windows: list[tuple[str, datetime, datetime]]
) -> dict[str, dict[str, int]]:
    """Per expert and month, the most assignments open at once (as `domain.reports._peak`
    counts them) among the requests the filter admits: a running count over openings (+1)
    and closings (−1) in time order, read at each month's first instant and at every opening
    inside the month."""
    if not windows:
        return {}
    rows = await conn.fetch(
        f"""
        WITH spans AS (
            SELECT a.expert_code, a.invited_at AS o, a.closed_at AS c
            FROM report_assignments a
            WHERE {_ADMITS} AND a.invited_at < $9 AND a.invited_at <= $6
                AND (a.closed_at IS NULL OR a.closed_at > ($7::timestamptz[])[1])
                AND $4::date <= $5::date
        ),
        moments AS (
            -- at one instant: closings first, then openings, then the month's first instant
            SELECT expert_code, o AS t, 1 AS k, 1 AS delta FROM spans
            UNION ALL SELECT expert_code, c, 0, -1 FROM spans WHERE c IS NOT NULL AND c < $9
            UNION ALL SELECT x.expert_code, s, 2, 0
                FROM (SELECT DISTINCT expert_code FROM spans) x, unnest($7::timestamptz[]) s
        ),
        counted AS (
            SELECT expert_code, t, k, sum(delta) OVER (
                PARTITION BY expert_code COLLATE "C" ORDER BY t, k ROWS UNBOUNDED PRECEDING) AS n
            FROM moments
        ),
        placed AS (
            SELECT expert_code, t, k, n, width_bucket(t, $7::timestamptz[]) AS month
            FROM counted WHERE k > 0 AND t >= ($7::timestamptz[])[1]
        )
        SELECT expert_code, month, max(n) AS peak FROM placed
        WHERE t < ($8::timestamptz[])[month] AND (k = 2 OR t > ($7::timestamptz[])[month])
        GROUP BY 1, 2
        """,
        *args,
        [w[1] for w in windows],
        [w[2] for w in windows],
        max(w[2] for w in windows),
    )
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        out[r["expert_code"]][windows[r["month"] - 1][0]] = r["peak"]
    return out


async def _adoption(conn: Conn, args: tuple) -> dict[str, dict[str, AdoptionRow]]:
    rows = await conn.fetch(
        f"""
        SELECT r.agency_code, r.kind,
            CASE WHEN r.adoption_status IS NOT NULL THEN r.adoption_status
                 WHEN r.adoption_due < $6 THEN 'no_answer'
                 ELSE 'awaiting' END AS answer,
            count(*) AS n, count(*) FILTER (WHERE r.answered_late) AS late
        FROM report_requests r
        WHERE {_ADMITS} AND r.delivered_on BETWEEN $4 AND $5 AND r.delivered_at <= $6
        GROUP BY 1, 2, 3
        """,
        *args,
    )
    out: dict[str, dict[str, AdoptionRow]] = {
        "all": {"": AdoptionRow()},
        "agency": defaultdict(AdoptionRow),
        "kind": {k.value: AdoptionRow() for k in RequestKind},
    }
    assert {s.value for s in AdoptionStatus} <= set(AdoptionRow.model_fields)
    for r in rows:
        for group, key in (("all", ""), ("agency", r["agency_code"]), ("kind", r["kind"])):
            row = out[group][key]
            row.delivered += r["n"]
            setattr(row, r["answer"], getattr(row, r["answer"]) + r["n"])
            row.answered_late += r["late"]
    out["agency"] = dict(sorted(out["agency"].items()))
    return out
