"""A retried transition writes nothing twice: the first attempt commits, then fails before its
result reaches Temporal (as when a worker dies right after COMMIT); the retry must find the
transition already recorded."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from temporalio import activity

from activities.persistence import PersistenceActivities
from domain.messages import ScreeningInput, TransitionInput, TransitionResult
from domain.models import Stage
from infra.documents import document_store
from starter import service
from tests import factories as f
from tests.test_lifecycle import until
from worker import activities_for, build_worker
from workflows.review import ReviewRequestWorkflow


class FailAfterCommit:
    """The real persistence activity, made to fail once after its transaction committed."""

    def __init__(self, real: PersistenceActivities, step: str) -> None:
        self.real = real
        self.step = step
        self.results: list[tuple[int, TransitionResult]] = []

    @activity.defn(name="record_transition")
    async def record_transition(self, t: TransitionInput) -> TransitionResult:
        result = await self.real.record_transition(t)
        if t.step == self.step:
            attempt = activity.info().attempt
            self.results.append((attempt, result))
            if attempt == 1:
                raise ConnectionResetError("connection lost after COMMIT")
        return result


async def test_retry_after_commit_writes_nothing_twice(env, pool, settings, policy, registry):
    await registry.add(3)
    real = PersistenceActivities(
        pool, settings.coordinator_email, store=document_store(settings, pool), policy=policy
    )
    flaky = FailAfterCommit(real, step="screened-0")
    acts = [a for a in activities_for(pool, settings) if a.__name__ != "record_transition"]
    task_queue = f"tq-{uuid.uuid4().hex}"
    async with build_worker(
        env.client,
        pool,
        settings,
        task_queue=task_queue,
        activities=[flaky.record_transition, *acts],
    ):
        sub = f.submission(registry.field)
        rid = (
            await service.submit(env.client, pool, sub, policy, task_queue=task_queue)
        ).request_id
        handle = service.request_handle(env.client, rid)
        await until(lambda s: s.stage == Stage.screening, handle)
        state = await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="accept"),
        )
        assert state.stage == Stage.council
        await until(lambda s: s.stage == Stage.review, handle)

    # Two attempts: the first wrote and failed, the second found it written.
    assert [(a, r.applied) for a, r in flaky.results] == [(1, True), (2, False)]
    assert flaky.results[0][1].audit_id == flaky.results[1][1].audit_id
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE request_id = $1"
                " AND action = 'screening_accepted'",
                rid,
            )
            == 1
        )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE request_id = $1 AND event = 'request_accepted'",
                rid,
            )
            == 1
        )
        assert await conn.fetchval("SELECT stage FROM requests WHERE id = $1", rid) == "review"


async def test_the_same_transition_twice_is_recorded_once(pool, settings, policy, registry):
    """Directly: the activity called twice with one step is one audit row, one outbox row."""
    from datetime import UTC, datetime

    from domain.messages import IntakeRecord
    from domain.models import Notice, Recipient

    sub = f.submission(registry.field)
    rid = sub.request_id()
    t = TransitionInput(
        workflow_id=f"review-{rid}",
        request_id=rid,
        step="intake",
        at=datetime.now(UTC),
        actor="agency:SGTVT",
        action="submitted",
        stage=Stage.screening,
        intake=IntakeRecord(submission=sub, submitted_at=datetime.now(UTC)),
        notify=[Notice(recipient=Recipient(kind="agency"), event="request_received")],
    )
    acts = PersistenceActivities(
        pool, settings.coordinator_email, store=document_store(settings, pool), policy=policy
    )
    first = await acts.record_transition(t)
    second = await acts.record_transition(t)
    assert first.applied and not second.applied and first.audit_id == second.audit_id
    assert len(first.outbox_ids) == 1 and second.outbox_ids == []
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE request_id = $1", rid) == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE request_id = $1", rid) == 1
        # The audit log is append-only in the database itself.
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM audit_log WHERE request_id = $1", rid)
