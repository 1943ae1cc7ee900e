"""API latency under load: 20 concurrent clients, each an agency submitting requests and, once
the council is invited, its experts accepting and submitting opinions, all over HTTP against
the API and one worker as processes of their own (benchmarks/stack.py), the Temporal dev server
with its SQLite file and embedded PostgreSQL. Prints p50 / p99 of submit and of an opinion's
submission, then where an opinion's time goes: from each
assignment's history, the median time from one event to the next between the workflow task
that took the update and the update's completion.

    PYTHONPATH=. .venv/bin/python -m benchmarks.api_load [--clients 20] [--rounds 3] [--in-memory]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx
from temporalio.api.enums.v1 import EventType

from benchmarks.stack import Process, engine_env, pct, postgres, temporal, until_serving
from db import queries as q
from domain.ids import assignment_workflow_id
from domain.models import Expert, RegisteredAgency
from infra.logging import configure_logging
from infra.settings import CONFIG
from starter.api.auth import create_token
from starter.registry import COORDINATORS, seed
from tests import factories as f
from tests.conftest import free_port

FIELD = "bench-field"


async def until(http: httpx.AsyncClient, url: str, headers: dict, ok) -> dict:
    while True:
        r = await http.get(url, headers=headers)
        if r.status_code == 200 and ok(r.json()):
            return r.json()
        await asyncio.sleep(0.1)


async def client_run(
    http: httpx.AsyncClient,
    n: int,
    rounds: int,
    pool,
    coordinator: dict,
    expert_tokens: dict[str, dict],
    submits: list[float],
    opinions: list[float],
    seats: list[int],
    assignments: list[str],
) -> None:
    code = f"BENCH{n:02d}"
    async with pool.acquire() as conn:
        await q.upsert_agency(conn, RegisteredAgency(code=code, name=f"Sở {n}"))
    agency = {"Authorization": f"Bearer {(await create_token(pool, 'agency', code))[1]}"}
    for _ in range(rounds):
        sub = f.submission(FIELD, agency={"code": code, "name": f"Sở {n}"})
        body = sub.model_dump(mode="json")
        started = time.perf_counter()
        resp = await http.post("/requests", json=body, headers=agency)
        submits.append(time.perf_counter() - started)
        assert resp.status_code == 201, resp.text
        rid = resp.json()["request_id"]
        await until(http, f"/requests/{rid}", coordinator, lambda j: j["stage"] == "screening")
        resp = await http.post(
            f"/requests/{rid}/screening", json={"decision": "accept"}, headers=coordinator
        )
        assert resp.status_code == 200, resp.text
        seen = await until(
            http,
            f"/requests/{rid}",
            coordinator,
            lambda j: (
                # An advisory request's council: three seats, each invited.
                j["stage"] == "review"
                and len(j["assignments"]) == 3
                and all(a["respond_by"] for a in j["assignments"])
            ),
        )
        seats.append(len(seen["assignments"]))
        for a in seen["assignments"]:
            assignments.append(assignment_workflow_id(rid, a["expert_code"]))
            headers = expert_tokens[a["expert_code"]]
            resp = await http.post(f"/requests/{rid}/assignment/accept", headers=headers)
            assert resp.status_code == 200, resp.text
            opinion = f.opinion(a["expert_code"]).opinion.model_dump(mode="json")
            started = time.perf_counter()
            resp = await http.post(
                f"/requests/{rid}/assignment/opinion", json=opinion, headers=headers
            )
            opinions.append(time.perf_counter() - started)
            assert resp.status_code == 200, resp.text


async def main(clients: int, rounds: int, in_memory: bool) -> None:
    configure_logging("console", "WARNING")
    async with (
        postgres("advisory-load-", max_size=10) as (db_url, pool),
        temporal(in_memory) as env,
    ):
        async with pool.acquire() as conn:
            # Enough experts that every council can be seated while the others are busy.
            for i in range(clients * 3 * 2):
                await q.upsert_expert(
                    conn,
                    Expert(
                        code=f"B-{i:03d}",
                        name=f"Chuyên gia {i}",
                        email=f"b{i}@bench.example.vn",
                        organisation=f"Viện {i}",
                        member_association=f"Hội {i % 12}",
                        fields=[FIELD],
                        load_limit=rounds + 2,
                    ),
                )
        # The office acts as a coordinator of the registry.
        await seed(pool, COORDINATORS, CONFIG / "coordinators.sample.csv")
        coordinator = {
            "Authorization": f"Bearer {(await create_token(pool, 'coordinator', 'VP01'))[1]}"
        }
        expert_tokens = {
            f"B-{i:03d}": {
                "Authorization": f"Bearer {(await create_token(pool, 'expert', f'B-{i:03d}'))[1]}"
            }
            for i in range(clients * 3 * 2)
        }
        port = free_port()
        stack = engine_env(db_url, env, f"load-{uuid.uuid4().hex[:8]}", ADVISORY_NOTIFY="false")
        worker = Process.worker(stack).start()
        api = Process.api(stack, port).start()
        submits: list[float] = []
        opinions: list[float] = []
        seats: list[int] = []
        assignments: list[str] = []
        limits = httpx.Limits(max_connections=clients * 2)
        try:
            await worker.until_logged("worker started")
            await until_serving(f"http://127.0.0.1:{port}", api)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
            ) as http:
                started = time.perf_counter()
                await asyncio.gather(
                    *(
                        client_run(
                            http,
                            n,
                            rounds,
                            pool,
                            coordinator,
                            expert_tokens,
                            submits,
                            opinions,
                            seats,
                            assignments,
                        )
                        for n in range(clients)
                    )
                )
                elapsed = time.perf_counter() - started
            cpu = {p.name: p.cpu_seconds() for p in (worker, api)}
            steps = await opinion_steps(env.client, assignments)
        finally:
            api.stop()
            worker.stop()
    ms = 1000
    print(f"{clients} concurrent clients, {rounds} requests each, {elapsed:.1f} s in all")
    print(f"council seats seen per request: {sorted(set(seats))}")
    print("CPU used: " + ", ".join(f"{name} {s:.1f} s" for name, s in cpu.items()))
    for name, values in (("submit", submits), ("opinion", opinions)):
        print(
            f"{name:<8} n={len(values):<4} p50 {statistics.median(values) * ms:6.1f} ms   "
            f"p99 {pct(values, 0.99) * ms:6.1f} ms   max {max(values) * ms:6.1f} ms"
        )
    server_side = [sum(gap for _, gap in run) / ms for run in steps]
    print(
        f"of an opinion's {statistics.median(opinions) * ms:.1f} ms (p50), "
        f"{statistics.median(server_side) * ms:.1f} ms from its workflow task to its answer:"
    )
    for i, (name, _) in enumerate(steps[0]):
        taken = [run[i][1] for run in steps if len(run) > i and run[i][0] == name]
        print(
            f"  → {name:<48} p50 {statistics.median(taken):6.1f} ms  p99 {pct(taken, 0.99):6.1f} ms"
        )


async def opinion_steps(client, workflow_ids: list[str]) -> list[list[tuple[str, float]]]:
    """For each assignment, the events of its `submit_opinion` update, from the workflow task
    scheduled to take it to the update's completion: (event type, ms since the event before)."""
    runs = []
    for wid in workflow_ids:
        events = [e async for e in client.get_workflow_handle(wid).fetch_history_events()]
        accepted = next(
            i
            for i, e in enumerate(events)
            if e.HasField("workflow_execution_update_accepted_event_attributes")
            and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
            == "submit_opinion"
        )
        first = max(
            i
            for i in range(accepted)
            if events[i].HasField("workflow_task_scheduled_event_attributes")
        )
        last = next(
            i
            for i in range(accepted, len(events))
            if events[i].HasField("workflow_execution_update_completed_event_attributes")
        )
        run = []
        for before, event in zip(events[first:last], events[first + 1 : last + 1], strict=True):
            gap = event.event_time.ToDatetime() - before.event_time.ToDatetime()
            name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()
            run.append((name, gap.total_seconds() * 1000))
        runs.append(run)
    return runs


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--in-memory", action="store_true", help="the dev server without its SQLite file"
    )
    args = p.parse_args()
    asyncio.run(main(args.clients, args.rounds, args.in_memory))
