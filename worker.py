"""The worker: connects, registers the workflows and the bound activity methods, and runs until
SIGINT or SIGTERM, finishing the activities in hand before it exits."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import metrics
from activities.calendar import CalendarActivities
from activities.council import CouncilActivities
from activities.notify import NotificationActivities
from activities.persistence import PersistenceActivities
from db.pool import open_pool
from domain.ids import TASK_QUEUE, notification_task_queue
from infra.codec import KeyError_
from infra.documents import StoreSettingError, document_store
from infra.logging import BindActivityContext, configure_logging
from infra.settings import Settings, TemporalSettingError, get_settings
from infra.temporal import connect, metrics_runtime
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.notification import RequestNotificationsWorkflow
from workflows.review import ReviewRequestWorkflow

# Requests and their experts run on the task queue; notification deliveries on their own
# (domain.ids.notification_task_queue), so the operators' view of the task queue is the case
# board. WORKFLOWS is every type this process runs (the replayer checks them all).
REQUEST_WORKFLOWS = [ReviewRequestWorkflow, ExpertAssignmentWorkflow]
WORKFLOWS = [*REQUEST_WORKFLOWS, RequestNotificationsWorkflow]

# The domain models and the libraries they validate with are pure and deterministic: passing
# them through saves re-importing them into every workflow's sandbox (and e-mail validation
# imports lazily, which the sandbox would otherwise flag on each run).
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "domain",
        "pydantic",
        "pydantic_core",
        "email_validator",
        "idna",
        "dns",
        # The working-day calendar (the UI's "overdue N working days" is counted in the
        # workflow; it never reaches the history) and what it loads lazily.
        "holidays",
        "dateutil",
    )
)
log = structlog.get_logger("worker")


def activities_for(
    pool: asyncpg.Pool, settings: Settings, notify: NotificationActivities | None = None
) -> list:
    policy = settings.load_policy()
    persistence = PersistenceActivities(
        pool,
        settings.coordinator_email,
        store=document_store(settings, pool),
        policy=policy,
        coordinator_language=settings.coordinator_language,
        delivery=settings.delivery() if settings.deliver_notifications else None,
        union=policy.union,
    )
    council = CouncilActivities(pool)
    calendar = CalendarActivities()
    notify = notify or NotificationActivities(pool, settings)
    return [
        notify.send_email,
        notify.send_webhook,
        notify.delivery_failed,
        persistence.record_transition,
        council.propose_council,
        council.reserve_expert,
        council.release_seat,
        council.reserve_council,
        calendar.due_date,
        calendar.reminder_plan,
    ]


@dataclass
class EngineWorker:
    """What a worker process runs: one worker polling the task queue (requests, experts) and
    one polling its notifications queue; `async with` runs both, `task_queue` is the first's."""

    requests: Worker
    notifications: Worker
    _running: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def task_queue(self) -> str:
        return self.requests.task_queue

    async def __aenter__(self) -> EngineWorker:
        async with AsyncExitStack() as starting:
            await starting.enter_async_context(self.notifications)
            await starting.enter_async_context(self.requests)
            self._running = starting.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._running.aclose()


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    task_queue: str = TASK_QUEUE,
    activities: list | None = None,
) -> EngineWorker:
    # Both get every activity: an activity runs on its workflow's queue, so only deliveries'
    # ever reach the notifications queue, and there is no second list to keep in step.
    activities = activities if activities is not None else activities_for(pool, settings)

    def worker(queue: str, workflows: list, slots: int, workflow_slots: int = 0) -> Worker:
        return Worker(
            client,
            task_queue=queue,
            workflows=workflows,
            workflow_runner=SANDBOX,
            activities=activities,
            # Explicit limits (ADVISORY_WORKER_*: 20 each suits two cores), each activity
            # holding a pool connection while it writes.
            max_concurrent_activities=slots,
            max_concurrent_workflow_tasks=workflow_slots or slots,
            max_cached_workflows=settings.worker_cached_workflows,
            graceful_shutdown_timeout=timedelta(seconds=20),
            interceptors=[BindActivityContext()],
        )

    return EngineWorker(
        requests=worker(
            task_queue,
            REQUEST_WORKFLOWS,
            settings.worker_activities,
            settings.worker_workflow_tasks,
        ),
        # Deliveries wait on SMTP and webhooks, seldom on CPU: fewer slots, so a burst of
        # them never takes every pool connection from the requests.
        notifications=worker(
            notification_task_queue(task_queue), [RequestNotificationsWorkflow], 10
        ),
    )


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    sdk_metrics = settings.sdk_metrics_address if settings.sdk_metrics_address != "off" else None
    try:
        client = await connect(settings, runtime=metrics_runtime(sdk_metrics))
    except (KeyError_, TemporalSettingError) as err:
        # No payload keys (nothing starts rather than send them in clear), or a connection
        # setting that cannot be used: said by name, not as a traceback.
        log.error("worker not started", reason=str(err))
        raise SystemExit(2) from None
    pool = await open_pool(settings, max_size=settings.worker_db_connections)
    try:
        notify = NotificationActivities(pool, settings)
        worker = build_worker(
            client,
            pool,
            settings,
            task_queue=settings.task_queue,
            activities=activities_for(pool, settings, notify),
        )
    except StoreSettingError as err:  # ADVISORY_DOCUMENT_STORE names no store it can use
        log.error("worker not started", reason=str(err))
        await pool.close()
        raise SystemExit(2) from None
    refresher = None
    if settings.metrics_address != "off":
        host, port = metrics.serve(settings.metrics_address)
        refresher = asyncio.create_task(metrics.keep_fresh(pool))
        log.info("engine metrics", url=f"http://{host}:{port}/metrics")
    if sdk_metrics is not None:
        log.info("sdk metrics", url=f"http://{sdk_metrics}/metrics")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker started",
        task_queue=settings.task_queue,
        notifications=notification_task_queue(settings.task_queue),
    )
    async with worker:
        await stop.wait()
        log.info("worker stopping")
    if refresher is not None:
        refresher.cancel()
    await notify.close()
    await pool.close()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
