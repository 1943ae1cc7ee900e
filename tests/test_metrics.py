"""The Prometheus endpoints answer with the engine's series (moved by real transitions and
deliveries) and with the SDK's runtime metrics."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from activities import metrics
from domain.messages import ScreeningInput
from domain.models import Stage
from infra.temporal import metrics_runtime
from starter import service
from tests import factories as f
from tests.conftest import CONVERTER, free_port, start_time_skipping
from tests.test_lifecycle import until
from worker import build_worker
from workflows.review import ReviewRequestWorkflow


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_engine_metrics_count_transitions_time_in_stage_and_requests(
    pool, settings, policy, registry
):
    env = await start_time_skipping()
    try:
        async with build_worker(
            env.client, pool, settings, task_queue=f"tq-{uuid.uuid4().hex}"
        ) as w:
            declined = sample(
                "advisory_transitions_total", action="screening_declined", stage="declined"
            )
            in_screening = sample("advisory_time_in_stage_seconds_count", stage="screening")
            seconds = sample("advisory_time_in_stage_seconds_sum", stage="screening")

            await registry.add(3)
            sub = f.submission(registry.field)
            rid = (
                await service.submit(env.client, pool, sub, policy, task_queue=w.task_queue)
            ).request_id
            handle = service.request_handle(env.client, rid)
            await until(lambda s: s.stage == Stage.screening, handle)
            await env.sleep(timedelta(days=2))  # two days on the coordinator's desk
            await service.request_update(
                env.client,
                rid,
                ReviewRequestWorkflow.screen,
                ScreeningInput(actor=f.COORDINATOR, decision="decline", note="Ngoài phạm vi."),
            )
    finally:
        await env.shutdown()

    await metrics.refresh(pool)
    host, port = metrics.serve("127.0.0.1:0")
    served = scrape(f"http://{host}:{port}/metrics")
    key = ("advisory_transitions_total", (("action", "screening_declined"), ("stage", "declined")))
    assert served[key] == declined + 1
    assert served[("advisory_time_in_stage_seconds_count", (("stage", "screening"),))] == (
        in_screening + 1
    )
    spent = served[("advisory_time_in_stage_seconds_sum", (("stage", "screening"),))] - seconds
    assert timedelta(days=2) <= timedelta(seconds=spent) < timedelta(days=2, minutes=5)
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM requests WHERE stage = 'declined'")
    assert served[("advisory_requests", (("stage", "declined"),))] == stored >= 1
    assert ("advisory_requests_overdue", ()) in served
    assert ("advisory_notifications_by_status", (("status", "pending"),)) in served


async def test_worker_serves_the_sdk_runtime_metrics(dev_env, pool, settings, policy, registry):
    address = f"127.0.0.1:{free_port()}"
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        data_converter=CONVERTER,
        runtime=metrics_runtime(address),
    )
    async with build_worker(client, pool, settings, task_queue=f"tq-{uuid.uuid4().hex}") as w:
        await registry.add(3)
        sub = f.submission(registry.field)
        rid = (await service.submit(client, pool, sub, policy, task_queue=w.task_queue)).request_id
        await until(lambda s: s.stage == Stage.screening, service.request_handle(client, rid))
        async with asyncio.timeout(20):
            while True:
                names = {name for name, _ in scrape(f"http://{address}/metrics")}
                if any(n.startswith("temporal_workflow_task") for n in names):
                    break
                await asyncio.sleep(0.5)
    assert "temporal_request_total" in names  # the client's calls to the server
    assert any(n.startswith("temporal_activity") for n in names), sorted(names)
