"""An intake burst: N submissions (1,000 by default) at once through the HTTP API, as agencies'
document systems would send them on a deadline day.

The stack is its own: embedded PostgreSQL, the Temporal dev server, one worker and the API as
processes of their own (`worker.py`, `advisory api`), notifications delivered to a real SMTP
server (starter.mailsink). Twenty agencies post their submissions, `--clients` at a time (all
at once by default: a burst). Prints the time until every submission was accepted (its 201),
until every request waits in screening (PostgreSQL says so), and until every notification
those intakes wrote was delivered (outbox rows settled, e-mails received), each counted from
the first submission, with submissions/s and intakes/s.

    PYTHONPATH=. .venv/bin/python -m benchmarks.intake [--requests 1000] [--clients N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import httpx

from benchmarks.stack import Process, engine_env, latency, postgres, temporal, until, until_serving
from db import queries as q
from domain.models import Expert, RegisteredAgency
from infra.logging import configure_logging
from starter.api.auth import create_token
from starter.mailsink import MailSink
from tests import factories as f
from tests.conftest import free_port

FIELD = "bench-intake"
AGENCIES = 20
KINDS = ("advisory", "critique", "social_assessment")


async def main(n: int, clients: int) -> None:
    configure_logging("console", "WARNING")
    async with postgres("advisory-intake-", max_size=5) as (db_url, pool), temporal() as env:
        agencies = [
            RegisteredAgency(code=f"BI{i:02d}", name=f"Sở thử tải {i}") for i in range(AGENCIES)
        ]
        async with pool.acquire() as conn:
            for a in agencies:
                await q.upsert_agency(conn, a)
            for i in range(10):
                await q.upsert_expert(
                    conn,
                    Expert(
                        code=f"BI-{i:02d}",
                        name=f"Chuyên gia {i}",
                        email=f"bi{i}@bench.example.vn",
                        organisation=f"Viện {i}",
                        member_association="Hội Khoa học",
                        fields=[FIELD],
                        load_limit=5,
                    ),
                )
        tokens = {
            a.code: {"Authorization": f"Bearer {(await create_token(pool, 'agency', a.code))[1]}"}
            for a in agencies
        }
        sink = MailSink(port=free_port()).start()
        port = free_port()
        stack = engine_env(
            db_url,
            env,
            f"intake-{uuid.uuid4().hex[:8]}",
            ADVISORY_SMTP_HOST=sink.host,
            ADVISORY_SMTP_PORT=str(sink.port),
            ADVISORY_SMTP_STARTTLS="false",
            ADVISORY_COORDINATOR_EMAIL="vanphong@bench.example.vn",
        )
        worker = Process.worker(stack).start()
        api = Process.api(stack, port).start()
        try:
            await worker.until_logged("worker started")
            await until_serving(f"http://127.0.0.1:{port}", api)
            await burst(n, clients, port, agencies, tokens, pool, sink, worker)
        finally:
            api.stop()
            worker.stop()
            sink.stop()


async def burst(n, clients, port, agencies, tokens, pool, sink, worker) -> None:
    posted: list[float] = []
    ids: list[str] = []
    refused: list[str] = []
    gate = asyncio.Semaphore(clients)

    async def submit(i: int, http: httpx.AsyncClient) -> None:
        a = agencies[i % len(agencies)]
        body = f.submission(
            FIELD, kind=KINDS[i % len(KINDS)], agency={"code": a.code, "name": a.name}
        ).model_dump(mode="json")
        async with gate:
            sent = time.perf_counter()
            r = await http.post("/requests", json=body, headers=tokens[a.code])
            posted.append(time.perf_counter() - sent)
        if r.status_code == 201:
            ids.append(r.json()["request_id"])
        else:
            refused.append(f"{r.status_code} {r.text[:200]}")

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=300
    ) as http:
        print(f"{n} submissions, {clients} at a time ...", flush=True)
        started = time.perf_counter()
        await asyncio.gather(*(submit(i, http) for i in range(n)))
        accepted = time.perf_counter() - started
    if refused:
        print(f"{len(refused)} refused, the first: {refused[0]}")

    async def in_screening() -> bool:
        worker.check()
        async with pool.acquire() as conn:
            left = await conn.fetchval(
                "SELECT count(*) FROM requests WHERE id = ANY($1::text[]) AND stage = 'intake'",
                ids,
            )
            known = await conn.fetchval(
                "SELECT count(*) FROM requests WHERE id = ANY($1::text[])", ids
            )
        return known == len(ids) and left == 0

    await until(in_screening)
    screening = time.perf_counter() - started

    async def delivered() -> bool:
        worker.check()
        async with pool.acquire() as conn:
            return not await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE request_id = ANY($1::text[])"
                " AND status = 'pending'",
                ids,
            )

    await until(delivered)
    drained = time.perf_counter() - started
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT status, count(*) FROM outbox WHERE request_id = ANY($1::text[])"
            " GROUP BY status ORDER BY status",
            ids,
        )
        stages = await conn.fetch(
            "SELECT stage, count(*) FROM requests WHERE id = ANY($1::text[]) GROUP BY stage",
            ids,
        )
    counted = ", ".join(f"{r[0]} {r[1]}" for r in rows)
    reached = ", ".join(f"{r[0]} {r[1]}" for r in stages)
    print()
    print(f"accepted (201)            {len(ids)} of {n} after {accepted:6.1f} s"
          f"   {len(ids) / accepted:6.1f} submissions/s")  # fmt: skip
    print(f"  each POST /requests     {latency(posted)}")
    print(f"all in screening after    {screening:6.1f} s   {len(ids) / screening:6.1f} intakes/s"
          f"   ({reached})")  # fmt: skip
    print(f"notifications delivered   {drained:6.1f} s   outbox rows: {counted};"
          f" e-mails received {len(sink.messages)}")  # fmt: skip
    print(f"worker RSS at the end     {worker.rss_mib():6.0f} MiB")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--clients", type=int, help="submissions in flight at once (all of them)")
    args = p.parse_args()
    asyncio.run(main(args.requests, args.clients or args.requests))
