"""`advisory demo --history 2y`: the Union's past, so that the reports have something to show on
a fresh machine. The requests of the span (starter.history_plan) are recorded through the
engine's own recording path — `PersistenceActivities`, one transaction per transition keyed
`<workflow id>:<step>` — exactly as their workflows would have recorded them; no workflow runs
for them, so only those that had ended by now are recorded.

Running it again writes nothing: a request already recorded to its end is left as it is, and
one cut short (the run was stopped) is completed, its recorded transitions found by their keys.
Ids are `HIST-<seed>-<day>-<n>`, which no submission gets.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from activities.persistence import PersistenceActivities
from domain.calendar import working_calendar
from domain.ids import HISTORY_PREFIX
from domain.models import Stage
from infra.documents import document_store
from infra.settings import Settings
from starter.history_plan import (
    HistoryPlan,
    PastRequest,
    Registries,
    parse_span,
    plan_history,
    span_start,
)
from starter.registry import AGENCIES, COORDINATORS, EXPERTS, Registry, read_entries, seed

FINAL = [s.value for s in Stage if s.is_final]
# Requests recorded side by side (each one's transitions in order, on its own connection).
WRITERS = 4


@dataclass
class HistoryRun:
    """What a run planned and what it wrote."""

    plan: HistoryPlan
    now: datetime
    seed: int
    recorded: list[PastRequest] = field(default_factory=list)  # with something new written
    transitions: int = 0  # transitions written
    already: int = 0  # requests found recorded to their end: left as they were
    seconds: float = 0.0


async def ensure_registries(pool: asyncpg.Pool, settings: Settings) -> Registries:
    """The experts, agencies and coordinators the dev stack registers (its files, seeded the
    way `make up` seeds them), and the active ones among them: who the past is made of."""

    def active(registry: Registry, path) -> list:
        return [e for _, e in read_entries(registry, path)[0] if e.active]

    for registry, path in (
        (EXPERTS, settings.experts_file),
        (AGENCIES, settings.agencies_file),
        (COORDINATORS, settings.coordinators_file),
    ):
        await seed(pool, registry, path)
    return Registries(
        agencies=active(AGENCIES, settings.agencies_file),
        experts=active(EXPERTS, settings.experts_file),
        coordinators=active(COORDINATORS, settings.coordinators_file),
    )


async def generate_history(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    span: str,
    seed_number: int,
    now: datetime | None = None,
) -> HistoryRun:
    """Plans the past of `span` ("2y", "18m") up to `now` and records what is not recorded
    yet. Raises ValueError naming the rule when the span is not one."""
    months = parse_span(span)
    now = now or datetime.now(UTC)
    started = time.perf_counter()
    reg = await ensure_registries(pool, settings)
    policy = settings.load_policy()
    cal = working_calendar(policy.calendar)
    plan = plan_history(seed_number, span_start(cal.local_date(now), months), now, reg, policy, cal)
    run = HistoryRun(plan=plan, now=now, seed=seed_number)
    async with pool.acquire() as conn:
        ended = {
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM requests WHERE id = ANY($1::text[]) AND stage = ANY($2::text[])",
                [p.request_id for p in plan.requests],
                FINAL,
            )
        }
    todo = [p for p in plan.requests if p.request_id not in ended]
    run.already = len(plan.requests) - len(todo)
    # The recording path, with nothing to deliver and no letterhead to issue conclusions in.
    persistence = PersistenceActivities(
        pool,
        settings.coordinator_email,
        store=document_store(settings, pool),
        policy=policy,
        delivery=None,
        union=None,
    )
    queue: asyncio.Queue[PastRequest] = asyncio.Queue()
    for p in todo:
        queue.put_nowait(p)

    async def writer() -> None:
        while not queue.empty():
            past = queue.get_nowait()
            written = 0
            for t in past.transitions:  # in order: each reads the stage the last one left
                written += (await persistence.record_past(t)).applied
            if written:
                run.recorded.append(past)
                run.transitions += written

    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    run.recorded.sort(key=lambda p: p.request_id)
    run.seconds = time.perf_counter() - started
    return run


OUTCOMES = ("closed", "withdrawn", "declined", "lapsed")


def summary(run: HistoryRun, settings: Settings) -> list[str]:
    """What a person reads after a run: what was written, by year and outcome, and where to
    look."""
    plan = run.plan
    span = f"{plan.start} to {run.now.astimezone(UTC):%Y-%m-%d}"
    if not run.recorded:
        lines = [
            f"history {span}, seed {run.seed}: nothing new to record; "
            + (
                f"its {run.already} requests were already recorded."
                if run.already
                else "no request of the span had ended by now."
            )
        ]
    else:
        lines = [
            f"history {span}, seed {run.seed}: recorded {len(run.recorded)} requests "
            f"({run.transitions} transitions) in {run.seconds:.1f} s"
            + (f"; {run.already} were already recorded" if run.already else "")
            + ".",
            "",
            f"  {'submitted in':<13}{'requests':>9}" + "".join(f"{o:>11}" for o in OUTCOMES),
        ]
        by_year: dict[int, Counter[str]] = defaultdict(Counter)
        for p in run.recorded:
            by_year[p.submitted_at.year][p.outcome] += 1
        for year in sorted(by_year):
            c = by_year[year]
            lines.append(
                f"  {year:<13}{sum(c.values()):>9}" + "".join(f"{c[o]:>11}" for o in OUTCOMES)
            )
        answers = Counter(p.adoption for p in run.recorded if p.adoption)
        lines += [
            "",
            "  answers on adoption: "
            + ", ".join(f"{k.replace('_', ' ')} {answers[k]}" for k in sorted(answers)),
        ]
    lines += [
        f"  left out: {plan.unfinished} requests still running today (the engine would be "
        "running them).",
        "",
        f"Look at the reports: {settings.portal_url.rstrip('/')}/portal/reports "
        "(signed in as a coordinator); the requests are in `advisory list --stage closed` "
        f"and on the portal's case pages (their ids start {HISTORY_PREFIX}).",
    ]
    return lines


def print_summary(run: HistoryRun, settings: Settings, out: Callable[[str], None] = print) -> None:
    for line in summary(run, settings):
        out(line)
