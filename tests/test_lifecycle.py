"""The whole lifecycle on the time-skipping server with rows asserted in PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowHandle

from domain.messages import (
    AcceptInput,
    AddExpertInput,
    ApproveInput,
    DeclineInput,
    ReturnConclusionInput,
    ScreeningInput,
    SupplementInput,
    WithdrawInput,
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
    result = await service.submit(
        env.client, registry.pool, sub, policy, task_queue=worker.task_queue
    )
    handle = service.request_handle(env.client, result.request_id)
    await until(lambda s: s.stage == Stage.screening, handle)
    return result.request_id, handle


async def review_to_synthesis(env, rid, handle, accept_all=True):
    await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(actor=f.COORDINATOR, decision="accept"),
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
        ReturnConclusionInput(actor=f.COORDINATOR, comments="Bổ sung kiến nghị về nguồn vốn."),
    )
    assert state.stage == Stage.synthesis
    await service.request_update(
        env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
    )
    # A decision read beside the returned draft is not taken on the new one.
    with pytest.raises(service.ActionError, match="draft 1 is no longer the one to decide on"):
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.approve_conclusion,
            ApproveInput(actor=f.COORDINATOR, version=1),
        )
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.approve_conclusion,
        ApproveInput(actor=f.COORDINATOR, version=2),
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
        # The intake's audit row names what reports count a request by, kind and fields, so
        # the audit log alone can be reported on.
        intake = await conn.fetchval(
            "SELECT details FROM audit_log WHERE request_id = $1 AND action = 'submitted'", rid
        )
        assert intake["kind"] == req["kind"]
        assert intake["expertise_fields"] == list(req["expertise_fields"]) == [registry.field]
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
        # The reports count it as its transitions wrote it, in their own transactions.
        counted = await conn.fetchrow(
            "SELECT delivered_at, adoption_status FROM report_requests WHERE request_id = $1",
            rid,
        )
        assert counted["delivered_at"] is not None
        assert counted["adoption_status"] == "partially_adopted"
        answers = await conn.fetch(
            "SELECT answer FROM report_assignments WHERE request_id = $1", rid
        )
        assert [a["answer"] for a in answers] == ["accepted"] * 3
        opinions = await conn.fetchval(
            "SELECT count(*) FROM report_deadlines WHERE request_id = $1"
            " AND party = 'expert' AND deadline = 'review' AND settled",
            rid,
        )
        assert opinions == 3
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


async def outbox(pool, rid):
    async with pool.acquire() as conn:
        return [
            (r["recipient_kind"], r["recipient_code"], r["event"])
            for r in await conn.fetch(
                "SELECT recipient_kind, recipient_code, event FROM outbox"
                " WHERE request_id = $1 ORDER BY id",
                rid,
            )
        ]


async def accept_and_submit(env, rid, code):
    await service.assignment_update(
        env.client, rid, code, ExpertAssignmentWorkflow.accept, AcceptInput(expert_code=code)
    )
    await service.assignment_update(
        env.client, rid, code, ExpertAssignmentWorkflow.submit_opinion, f.opinion(code)
    )


async def test_declining_chair_is_replaced_by_the_next_alternate(
    env, worker, policy, registry, pool
):
    rid, handle = await start(env, worker, policy, registry, n_experts=5)
    state = await review_to_synthesis(env, rid, handle)
    assert state.alternates_left and len(state.alternates_left) == 2
    first_alternate = state.alternates_left[0]
    chair = next(a.expert_code for a in state.assignments if a.role == "chair")

    view = await service.assignment_update(
        env.client,
        rid,
        chair,
        ExpertAssignmentWorkflow.decline,
        DeclineInput(expert_code=chair, reason="Đang công tác nước ngoài."),
    )
    assert view.state == AssignmentState.declined

    state = await until(lambda s: len(s.assignments) == 4, handle)
    replacement = state.assignment(first_alternate)
    assert replacement is not None and replacement.role == "chair"
    assert replacement.state == AssignmentState.invited
    assert state.alternates_left == [state.alternates_left[0]] and len(state.alternates_left) == 1

    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT state, decline_reason, responded_at FROM assignments"
            " WHERE request_id = $1 AND expert_code = $2",
            rid,
            chair,
        )
        assert row["state"] == "declined" and row["decline_reason"] == "Đang công tác nước ngoài."
        assert row["responded_at"] is not None
    await until(lambda s: s.assignment(first_alternate).respond_by is not None, handle)
    sent = await outbox(pool, rid)
    assert ("coordinator", None, "expert_declined") in sent
    assert ("expert", first_alternate, "invitation") in sent

    # The replacement chair carries the request on to synthesis and drafts the conclusion.
    for a in state.assignments:
        if a.state == AssignmentState.invited:
            await accept_and_submit(env, rid, a.expert_code)
    await until(lambda s: s.stage == Stage.synthesis, handle)
    with pytest.raises(service.ActionError, match="not the chair"):
        await service.request_update(
            env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
        )
    state = await service.request_update(
        env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(first_alternate)
    )
    assert state.stage == Stage.approval


async def test_alternates_exhausted_waits_for_the_coordinator_to_add_an_expert(
    env, worker, policy, registry, pool
):
    rid, handle = await start(env, worker, policy, registry, n_experts=3)
    state = await review_to_synthesis(env, rid, handle)
    assert state.alternates_left == []
    codes = [a.expert_code for a in state.assignments]
    await service.assignment_update(
        env.client,
        rid,
        codes[2],
        ExpertAssignmentWorkflow.decline,
        DeclineInput(expert_code=codes[2], reason="Xung đột lợi ích."),
    )
    for code in codes[:2]:
        await accept_and_submit(env, rid, code)
    state = await until(lambda s: "add an expert" in s.waiting_for, handle)
    assert state.stage == Stage.review  # waiting, not failed
    assert ("coordinator", None, "experts_needed") in await outbox(pool, rid)

    # An expert from the requester's own organisation is refused, with the rule named.
    [own] = await registry.add(1, organisation="Sở Giao thông Vận tải")
    with pytest.raises(service.ActionError, match="same organisation as the requester"):
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.add_expert,
            AddExpertInput(actor=f.COORDINATOR, expert_code=own.code),
        )
    [extra] = await registry.add(1)
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.add_expert,
        AddExpertInput(actor=f.COORDINATOR, expert_code=extra.code),
    )
    assert state.assignment(extra.code) is not None
    await until(lambda s: s.assignment(extra.code).respond_by is not None, handle)
    await accept_and_submit(env, rid, extra.code)
    state = await until(lambda s: s.stage == Stage.synthesis, handle)
    assert sum(a.state == AssignmentState.submitted for a in state.assignments) == 3


async def test_withdrawal_during_review_cancels_every_assignment(
    env, worker, policy, registry, pool
):
    rid, handle = await start(env, worker, policy, registry)
    state = await review_to_synthesis(env, rid, handle)
    codes = [a.expert_code for a in state.assignments]
    await accept_and_submit(env, rid, codes[0])
    await service.assignment_update(
        env.client,
        rid,
        codes[1],
        ExpertAssignmentWorkflow.accept,
        AcceptInput(expert_code=codes[1]),
    )
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.withdraw,
        WithdrawInput(reason="Dự thảo đã được thay thế bằng phiên bản mới."),
    )
    assert state.stage == Stage.withdrawn
    final = await handle.result()
    assert final.stage == Stage.withdrawn

    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT stage FROM requests WHERE id = $1", rid) == "withdrawn"
        states = dict(
            await conn.fetch(
                "SELECT expert_code, state FROM assignments WHERE request_id = $1", rid
            )
        )
    assert states == {codes[0]: "submitted", codes[1]: "cancelled", codes[2]: "cancelled"}
    sent = await outbox(pool, rid)
    assert ("expert", codes[1], "assignment_cancelled") in sent
    assert ("expert", codes[2], "assignment_cancelled") in sent
    assert ("expert", codes[0], "request_withdrawn") in sent  # already done: told, not cancelled
    assert ("agency", "SGTVT", "withdrawal_confirmed") in sent
    # Each expert hears about it exactly once.
    for code in codes:
        assert (
            sum(
                1
                for k, c, _ in sent
                if c == code and _ in ("assignment_cancelled", "request_withdrawn")
            )
            == 1
        )
    with pytest.raises(service.ActionError, match="nothing more can be done"):
        await service.assignment_update(
            env.client,
            rid,
            codes[2],
            ExpertAssignmentWorkflow.accept,
            AcceptInput(expert_code=codes[2]),
        )


async def test_withdrawal_during_screening(env, worker, policy, registry, pool):
    rid, handle = await start(env, worker, policy, registry)
    state = await service.request_update(
        env.client, rid, ReviewRequestWorkflow.withdraw, WithdrawInput(reason="Nộp nhầm hồ sơ.")
    )
    assert state.stage == Stage.withdrawn and state.assignments == []
    # Refused by the workflow while it finishes, or by the server once it has ended.
    with pytest.raises(service.ActionError, match="nothing more can be done"):
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="accept"),
        )
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT stage FROM requests WHERE id = $1", rid) == "withdrawn"


async def test_supplement_loop_then_accept(env, worker, policy, registry, pool):
    rid, handle = await start(env, worker, policy, registry)
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(
            actor=f.COORDINATOR, decision="supplement", note="Thiếu báo cáo đánh giá tác động."
        ),
    )
    assert state.stage == Stage.supplement and state.stage_deadline is not None
    doc = {"name": "ĐTM.pdf", "uri": "https://vanban.example.gov.vn/dtm.pdf", "sha256": "cd" * 32}
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.supplement,
        SupplementInput.model_validate({"documents": [doc], "note": "Bổ sung ĐTM"}),
    )
    assert state.stage == Stage.screening and state.supplement_round == 1
    await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(actor=f.COORDINATOR, decision="accept"),
    )
    await until(lambda s: s.stage == Stage.review, handle)
    async with pool.acquire() as conn:
        docs = await conn.fetchval("SELECT documents FROM requests WHERE id = $1", rid)
        actions = [
            r["action"]
            for r in await conn.fetch(
                "SELECT action FROM audit_log WHERE request_id = $1 ORDER BY id", rid
            )
        ]
    assert [d["name"] for d in docs] == ["Dự thảo đề án.pdf", "ĐTM.pdf"]
    assert actions[:4] == [
        "submitted",
        "supplement_requested",
        "supplemented",
        "screening_accepted",
    ]
    sent = await outbox(pool, rid)
    assert ("agency", "SGTVT", "supplement_requested") in sent
    assert ("coordinator", None, "supplement_received") in sent


async def test_declined_at_screening(env, worker, policy, registry, pool):
    rid, handle = await start(env, worker, policy, registry)
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(
            actor=f.COORDINATOR,
            decision="decline",
            note="Không thuộc phạm vi phản biện của Liên hiệp hội.",
        ),
    )
    assert state.stage == Stage.declined
    assert (await handle.result()).stage == Stage.declined
    assert ("agency", "SGTVT", "request_declined") in await outbox(pool, rid)


async def test_duplicate_submission_gives_the_same_request(env, worker, policy, registry, pool):
    await registry.add(3)
    sub = f.submission(registry.field)
    first = await service.submit(env.client, pool, sub, policy, task_queue=worker.task_queue)
    again = sub.model_copy(update={"agency_reference": f"  {sub.agency_reference.upper()} "})
    second = await service.submit(env.client, pool, again, policy, task_queue=worker.task_queue)
    assert first.created and not second.created
    assert first.request_id == second.request_id
    handle = service.request_handle(env.client, first.request_id)
    await until(lambda s: s.stage == Stage.screening, handle)
    # Even after the request has ended, the same reference never opens a second one.
    await service.request_update(
        env.client,
        first.request_id,
        ReviewRequestWorkflow.withdraw,
        WithdrawInput(reason="Kiểm tra trùng lặp."),
    )
    third = await service.submit(env.client, pool, sub, policy, task_queue=worker.task_queue)
    assert third.request_id == first.request_id and not third.created
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM requests WHERE agency_code = $1 AND agency_reference = $2",
                sub.agency.code,
                sub.agency_reference,
            )
            == 1
        )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE request_id = $1 AND action = 'submitted'",
                first.request_id,
            )
            == 1
        )
