"""The whole lifecycle on the time-skipping server with rows asserted in PostgreSQL."""

from __future__ import annotations

import asyncio

from temporalio.client import WorkflowHandle

from domain.messages import (
    AcceptInput,
    ApproveInput,
    ReturnConclusionInput,
    ScreeningInput,
)
from domain.models import AssignmentState, Stage
from starter import service
from tests import factories as f
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.review import ReviewRequestWorkflow


async def until(predicate, handle: WorkflowHandle, timeout: float = 20.0):
    """Poll the request's state query until `predicate(state)` holds (the workflow runs on its
    own; the test only watches)."""
    async with asyncio.timeout(timeout):
        while True:
            state = await handle.query(ReviewRequestWorkflow.state)
            if predicate(state):
                return state
            await asyncio.sleep(0.05)


async def start(env, worker, policy, registry, n_experts=3, **changes):
    await registry.add(n_experts)
    sub = f.submission(registry.field, **changes)
    result = await service.submit(env.client, sub, policy, task_queue=worker.task_queue)
    handle = service.request_handle(env.client, result.request_id)
    await until(lambda s: s.stage == Stage.screening, handle)
    return result.request_id, handle


async def review_to_synthesis(env, rid, handle, accept_all=True):
    await service.request_update(
        env.client, rid, ReviewRequestWorkflow.screen, ScreeningInput(decision="accept")
    )
    state = await until(
        lambda s: (
            s.stage == Stage.review
            and len(s.assignments) == 3
            and all(a.respond_by for a in s.assignments)
        ),
        handle,
    )
    return state


async def test_full_lifecycle_reaches_closed_with_rows(env, worker, policy, registry, pool):
    rid, handle = await start(env, worker, policy, registry)
    state = await review_to_synthesis(env, rid, handle)
    chair = next(a.expert_code for a in state.assignments if a.role == "chair")
    for a in state.assignments:
        view = await service.assignment_update(
            env.client,
            rid,
            a.expert_code,
            ExpertAssignmentWorkflow.accept,
            AcceptInput(expert_code=a.expert_code),
        )
        assert view.state == AssignmentState.accepted and view.due_at is not None
        view = await service.assignment_update(
            env.client,
            rid,
            a.expert_code,
            ExpertAssignmentWorkflow.submit_opinion,
            f.opinion(a.expert_code),
        )
        assert view.state == AssignmentState.submitted
    await until(lambda s: s.stage == Stage.synthesis, handle)
    state = await service.request_update(
        env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
    )
    assert state.stage == Stage.approval
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.return_conclusion,
        ReturnConclusionInput(comments="Bổ sung kiến nghị về nguồn vốn."),
    )
    assert state.stage == Stage.synthesis
    await service.request_update(
        env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
    )
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.approve_conclusion,
        ApproveInput(approved_by="Phó Chủ tịch Liên hiệp hội"),
    )
    assert state.stage == Stage.delivered
    await until(lambda s: s.stage == Stage.adoption, handle)
    state = await service.request_update(
        env.client, rid, ReviewRequestWorkflow.answer_adoption, f.adoption()
    )
    assert state.stage == Stage.closed
    final = await handle.result()
    assert final.stage == Stage.closed

    async with pool.acquire() as conn:
        req = await conn.fetchrow("SELECT * FROM requests WHERE id = $1", rid)
        assert req["stage"] == "closed" and req["closed_at"] is not None
        actions = [
            r["action"]
            for r in await conn.fetch(
                "SELECT action FROM audit_log WHERE idempotency_key LIKE $1 ORDER BY id",
                f"review-{rid}:%",
            )
        ]
        assert actions == [
            "submitted",
            "screening_accepted",
            "council_proposed",
            "review_opened",
            "synthesis_opened",
            "conclusion_drafted",
            "conclusion_returned",
            "conclusion_drafted",
            "conclusion_approved",
            "adoption_answer_requested",
            "adoption_answered",
        ]
        assert await conn.fetchval("SELECT count(*) FROM opinions WHERE request_id = $1", rid) == 3
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM assignments WHERE request_id = $1 AND state = 'submitted'",
                rid,
            )
            == 3
        )
        versions = await conn.fetch(
            "SELECT version, returned_comments, approved_by FROM conclusions"
            " WHERE request_id = $1 ORDER BY version",
            rid,
        )
        assert [v["version"] for v in versions] == [1, 2]
        assert versions[0]["returned_comments"] and versions[1]["approved_by"]
        assert (
            await conn.fetchval("SELECT status FROM adoption_answers WHERE request_id = $1", rid)
            == "partially_adopted"
        )
        events = await conn.fetch(
            "SELECT recipient_kind, event FROM outbox WHERE request_id = $1", rid
        )
        by_event = {}
        for e in events:
            by_event.setdefault(e["event"], []).append(e["recipient_kind"])
        assert by_event["request_received"] == ["agency"]
        assert sorted(by_event["invitation"]) == ["expert"] * 3
        assert by_event["conclusion_delivered"] == ["agency"]
        assert len(by_event["review_completed"]) == 3
        assert by_event["adoption_answered"] == ["coordinator"]
