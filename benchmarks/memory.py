"""A worker's memory with many requests open: N requests (10,000 by default) waiting in review
on ONE worker process, its sticky cache bounded by ADVISORY_WORKER_CACHED_WORKFLOWS.

The worker runs as its own process (`worker.py`), so its resident memory (VmRSS of
/proc/<pid>/status) is its alone; the embedded PostgreSQL and the Temporal dev server are the
run's own. Notifications are written, not delivered (ADVISORY_NOTIFY=false): deliveries end,
open requests stay. Each request (advisory: a council of three) is submitted, accepted at
screening, and its council proposed and invited by the engine, `--clients` at a time, until
it waits in review: its workflow and its three experts' assignment workflows, each waiting
on a timer. Requests are opened in two halves; prints the worker's RSS idle and after each
half, the workflow runs its cache holds (the SDK's temporal_sticky_cache_size), what a cached
run costs (the second half's RSS over its runs: what the first ones cost once is left out)
and RSS per request open. Then the worker is killed (SIGKILL, as a crash) and another started:
prints the time until every request has processed a signal and answered a query (its own
assignment's view sent back unchanged, then the query, which is answered after the signals
before it), and the RSS after. A crashed worker's sticky queue keeps each request's next task
until Temporal's sticky timeout (the SDK's 10 s), then it goes to the task queue.

    PYTHONPATH=. .venv/bin/python -m benchmarks.memory [--requests 10000] [--cache 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import uuid

import httpx

from benchmarks.stack import Process, engine_env, postgres, temporal, until
from db import queries as q
from domain.messages import AssignmentChanged, ScreeningInput
from domain.models import Expert, RegisteredAgency, Stage
from infra.settings import CONFIG, load_policy
from starter import service
from tests import factories as f
from tests.conftest import free_port
from workflows.review import ReviewRequestWorkflow

PER_FIELD = 100  # requests per expertise field, each field with experts enough for all
KIB = 1024


class Worker:
    """The worker process, and what its SDK metrics say of its cache."""

    def __init__(self, stack: dict[str, str]) -> None:
        self.metrics = f"127.0.0.1:{free_port()}"
        self.process = Process.worker({**stack, "ADVISORY_SDK_METRICS": self.metrics})

    async def start(self) -> float:
        """Starts it; the seconds until it polls."""
        started = time.perf_counter()
        self.process.start()
        await self.process.until_logged("worker started")
        return time.perf_counter() - started

    async def cached(self) -> int:
        """Workflow runs in its sticky caches (both task queues)."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://{self.metrics}/metrics")).text
        sizes = re.findall(r"^temporal_sticky_cache_size\{.*\} (\S+)$", text, re.M)
        return sum(int(float(size)) for size in sizes)

    def rss(self) -> float:
        return self.process.rss_mib()


async def main(n: int, cache: int, clients: int) -> None:
    policy = load_policy(CONFIG / "policy.toml")
    size = policy.for_kind("advisory").council_size
    async with postgres("advisory-memory-", max_size=10) as (db_url, pool), temporal() as env:
        client = env.client
        agencies = [RegisteredAgency(code=f"BM{i:02d}", name=f"Sở {i}") for i in range(10)]
        fields = [f"bench-memory-{i}" for i in range((n + PER_FIELD - 1) // PER_FIELD)]
        async with pool.acquire() as conn:
            for a in agencies:
                await q.upsert_agency(conn, a)
            for k, field in enumerate(fields):
                # Ten experts of load limit 50: 500 seats for a hundred councils of three.
                for i in range(10):
                    await q.upsert_expert(
                        conn,
                        Expert(
                            code=f"M{k:03d}-{i:02d}",
                            name=f"Chuyên gia {i}",
                            email=f"m{i}.{field}@bench.example.vn",
                            organisation=f"Viện {i}",
                            member_association="Hội Khoa học",
                            fields=[field],
                            load_limit=50,
                        ),
                    )
        task_queue = f"memory-{uuid.uuid4().hex[:8]}"
        stack = engine_env(
            db_url,
            env,
            task_queue,
            ADVISORY_NOTIFY="false",
            ADVISORY_WORKER_CACHED_WORKFLOWS=str(cache),
        )
        worker = Worker(stack)
        await worker.start()
        try:
            await asyncio.sleep(3)
            idle = worker.rss()
            print(f"worker idle: RSS {idle:.0f} MiB (cache bound {cache} runs per task queue)")
            gate = asyncio.Semaphore(clients)

            async def open_one(i: int) -> str:
                a = agencies[i % len(agencies)]
                sub = f.submission(fields[i // PER_FIELD], agency={"code": a.code, "name": a.name})
                async with gate:
                    rid = (
                        await service.submit(client, pool, sub, policy, task_queue=task_queue)
                    ).request_id
                    # Under load a submission may answer before its intake is recorded.
                    await until(lambda: _in_screening(client, rid), poll=0.2, timeout=600)
                    await service.request_update(
                        client,
                        rid,
                        ReviewRequestWorkflow.screen,
                        ScreeningInput(actor=f.COORDINATOR, decision="accept"),
                    )
                return rid

            rids: list[str] = []

            async def all_in_review() -> bool:
                worker.process.check()
                async with pool.acquire() as conn:
                    waiting = await conn.fetchval(
                        """
                        SELECT count(*) FROM requests r
                        WHERE r.id = ANY($1::text[]) AND r.stage = 'review'
                          AND (SELECT count(*) FROM assignments a WHERE a.request_id = r.id
                               AND a.state = 'invited' AND a.respond_by IS NOT NULL) = $2
                        """,
                        rids,
                        size,
                    )
                return waiting == len(rids)

            # In two halves: what the second adds is what a request costs, without what the
            # first ones cost once (modules imported, the sandbox's first runs).
            readings = []
            started = time.perf_counter()
            for half in (range(n // 2), range(n // 2, n)):
                print(f"opening {len(half)} requests, {clients} at a time ...", flush=True)
                rids.extend(await asyncio.gather(*(open_one(i) for i in half)))
                await until(all_in_review, poll=2)
                await asyncio.sleep(5)  # settled: the last tasks done, nothing in flight
                readings.append((len(rids), worker.rss(), await worker.cached()))
                print(
                    f"  {len(rids)} open in review: worker RSS {readings[-1][1]:.0f} MiB, "
                    f"{readings[-1][2]} workflow runs cached",
                    flush=True,
                )
            opened = time.perf_counter() - started
            (_, half_rss, half_cached), (_, open_rss, cached) = readings
            print(f"{n} requests open in review after {opened:.0f} s ({n / opened:.1f}/s)")
            if cached > half_cached:
                per_run = (open_rss - half_rss) * KIB / (cached - half_cached)
                print(
                    f"per cached workflow run {per_run:.0f} KiB (the second half's), "
                    f"{per_run * (1 + size):.0f} KiB per request with its {1 + size} runs cached"
                )
            else:
                print(
                    f"the cache was full ({cached} runs) from the first half on: the second "
                    f"half added {open_rss - half_rss:+.0f} MiB"
                )
            print(
                f"worker RSS idle {idle:.0f} MiB, with {n} requests open {open_rss:.0f} MiB "
                f"({(open_rss - idle) * KIB / n:.0f} KiB per request open, all costs in), "
                f"{cached} of their {n * (1 + size)} workflow runs cached"
            )

            views = {}
            for rid in rids:
                state = await service.request_state(client, rid)
                views[rid] = state.assignments[0]
            worker.process.kill()
            worker = Worker(stack)
            polling = await worker.start()
            restarted = time.perf_counter()
            answered: list[float] = []

            async def resume(rid: str) -> None:
                handle = service.request_handle(client, rid)
                async with gate:
                    await handle.signal(
                        ReviewRequestWorkflow.assignment_changed, AssignmentChanged(view=views[rid])
                    )
                    state = await handle.query(ReviewRequestWorkflow.state)
                assert state.stage == "review", state.stage
                answered.append(time.perf_counter() - restarted)

            await asyncio.gather(*(resume(rid) for rid in rids))
            resumed = time.perf_counter() - restarted
            answered.sort()
            print(
                f"after SIGKILL, a new worker polled in {polling:.1f} s; every request answered "
                f"a query after a signal {resumed:.1f} s later ({n / resumed:.0f} requests/s; "
                f"half of them by {answered[len(answered) // 2]:.1f} s)"
            )
            await asyncio.sleep(3)
            print(
                f"worker after resuming them: RSS {worker.rss():.0f} MiB, "
                f"{await worker.cached()} runs cached"
            )
        finally:
            worker.process.stop()


async def _in_screening(client, rid: str) -> bool:
    state = await service.request_handle(client, rid).query(ReviewRequestWorkflow.state)
    return state.stage == Stage.screening


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--cache", type=int, default=1000, help="ADVISORY_WORKER_CACHED_WORKFLOWS")
    p.add_argument("--clients", type=int, default=20)
    args = p.parse_args()
    asyncio.run(main(args.requests, args.cache, args.clients))
