"""The engine's own Prometheus series, served by the worker beside the SDK's runtime metrics.

Counters and the time-in-stage histogram move where the work happens (the persistence and
delivery activities); the gauges — requests by stage, overdue, notifications waiting — are read
from PostgreSQL every few seconds, so every worker reports the same totals (aggregate them
with max, not sum).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = structlog.get_logger("metrics")
REGISTRY = CollectorRegistry()

TRANSITIONS = Counter(
    "advisory_transitions",
    "Transitions recorded, by action and the stage they lead to.",
    ["action", "stage"],
    registry=REGISTRY,
)
TIME_IN_STAGE = Histogram(
    "advisory_time_in_stage_seconds",
    "Workflow time a request spent in a stage, observed when it leaves the stage.",
    ["stage"],
    # From minutes to a season: stages last hours (screening) to months (adoption).
    buckets=[
        t.total_seconds()
        for t in (
            timedelta(minutes=10),
            timedelta(hours=1),
            timedelta(hours=8),
            timedelta(days=1),
            timedelta(days=3),
            timedelta(days=7),
            timedelta(days=14),
            timedelta(days=30),
            timedelta(days=60),
            timedelta(days=120),
        )
    ],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "advisory_notifications",
    "Notification deliveries settled, by channel and outcome (delivered, failed, skipped).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = Counter(
    "advisory_delivery_attempts",
    "Delivery attempts, by channel and outcome (delivered, error).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
REQUESTS = Gauge("advisory_requests", "Requests by current stage.", ["stage"], registry=REGISTRY)
OVERDUE = Gauge(
    "advisory_requests_overdue",
    "Open requests with a deadline (theirs or an expert's) past its grace period.",
    registry=REGISTRY,
)
NOTIFICATIONS_WAITING = Gauge(
    "advisory_notifications_by_status",
    "Outbox rows by status (pending, delivered, failed, cancelled).",
    ["status"],
    registry=REGISTRY,
)

STAGES = (
    "intake",
    "screening",
    "supplement",
    "council",
    "review",
    "synthesis",
    "approval",
    "delivered",
    "adoption",
    "closed",
    "declined",
    "withdrawn",
    "lapsed",
)


async def refresh(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        by_stage = dict(await conn.fetch("SELECT stage, count(*) FROM requests GROUP BY stage"))
        overdue = await conn.fetchval(
            """
            SELECT count(*) FROM requests r
            WHERE r.closed_at IS NULL AND (r.overdue OR EXISTS (
                SELECT 1 FROM assignments a WHERE a.request_id = r.id AND a.overdue))
            """
        )
        by_status = dict(await conn.fetch("SELECT status, count(*) FROM outbox GROUP BY status"))
    for stage in {*STAGES, *by_stage}:
        REQUESTS.labels(stage).set(by_stage.get(stage, 0))
    OVERDUE.set(overdue)
    for status in {"pending", "delivered", "failed", "cancelled", *by_status}:
        NOTIFICATIONS_WAITING.labels(status).set(by_status.get(status, 0))


async def keep_fresh(pool: asyncpg.Pool, every: float = 15) -> None:
    """Runs until cancelled; a failed read is logged and tried again at the next tick."""
    while True:
        try:
            await refresh(pool)
        except (asyncpg.PostgresError, OSError) as e:
            log.warning("metrics refresh failed", error=str(e))
        await asyncio.sleep(every)


def serve(address: str) -> tuple[str, int]:
    """Serves /metrics on `host:port` (port 0: any free one); returns where."""
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "0.0.0.0", registry=REGISTRY)
    return server.server_address[0], server.server_address[1]
