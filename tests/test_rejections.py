"""Bad input to every update is refused by its validator (or by decoding, for a payload that does
not fit the model): the caller gets a message naming the field or rule, the workflow's history
gains no accepted update, and nothing changes in PostgreSQL.

Payloads are sent as plain dicts through untyped handles, so the client cannot check them first:
what is being tested is the worker's refusal, exactly as a caller in another language would
meet it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from domain.ids import assignment_workflow_id
from domain.models import Stage
from tests import factories as f
from tests.test_lifecycle import start, until

ACCEPTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
# Everything a transition writes; each is snapshotted whole, row by row.
TABLES = ("requests", "assignments", "opinions", "conclusions", "adoption_answers", "outbox")

DOC = {
    "name": "Phụ lục bổ sung.pdf",
    "uri": "https://vanban.example.gov.vn/sgtvt/phu-luc.pdf",
    "sha256": "cd" * 32,
}
OPINION = {
    "recommendation": "endorse",
    "summary": "Đồng ý với dự thảo.",
    "comments_for_agency": "Bổ sung số liệu chương 2.",
}
DRAFT = {"recommendation": "endorse", "text": "Hội đồng thống nhất đồng ý với dự thảo."}
CONTACT = {"name": "Trần Văn Khánh", "email": "khanh.tv@sgtvt.example.gov.vn"}
ADOPTION = {"status": "adopted", "explanation": "Tiếp thu toàn bộ.", "answered_by": CONTACT}


# --- helpers ------------------------------------------------------------------------------------


def failure_text(err: WorkflowUpdateFailedError) -> str:
    """Every message along the failure's cause chain: a validator's ApplicationError carries the
    rule itself; a payload that fails pydantic arrives as "Failed decoding arguments" caused by
    the ValidationError, whose text names the field."""
    parts: list[str] = []
    cause: BaseException | None = err.cause
    while cause is not None:
        parts.append(cause.message if isinstance(cause, ApplicationError) else str(cause))
        cause = cause.__cause__
    return "\n".join(parts)


async def db_snapshot(pool: asyncpg.Pool, rid: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        snap: dict[str, Any] = {
            "audit_log": await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE request_id = $1", rid
            )
        }
        for table in TABLES:
            key = "id" if table == "requests" else "request_id"
            rows = await conn.fetch(
                f"SELECT row_to_json(t)::text AS j FROM {table} t WHERE {key} = $1", rid
            )
            snap[table] = sorted(r["j"] for r in rows)
    return snap


async def accepted_update_ids(handle: WorkflowHandle) -> list[str]:
    history = await handle.fetch_history()
    return [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
        for e in history.events
        if e.event_type == ACCEPTED
    ]


# A coordinator's updates carry the signed-in coordinator; a test that means to leave the
# actor out says so ({"actor": None}).
COORDINATORS_UPDATES = {
    "screen",
    "confirm_council",
    "add_expert",
    "extend_deadline",
    "extend",
    "replace_expert",
    "approve_conclusion",
    "return_conclusion",
}


def signed(update: str, arg: Any) -> Any:
    if update in COORDINATORS_UPDATES and isinstance(arg, dict) and "actor" not in arg:
        return {**arg, "actor": f.COORDINATOR.model_dump()}
    return arg


class Rejections:
    """Sends bad updates to one request's workflows and checks each left no trace."""

    def __init__(self, env, pool: asyncpg.Pool, rid: str) -> None:
        self.client = env.client
        self.pool = pool
        self.rid = rid

    def request(self) -> WorkflowHandle:
        return self.client.get_workflow_handle(f"review-{self.rid}")

    def assignment(self, code: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(assignment_workflow_id(self.rid, code))

    async def refused(self, handle: WorkflowHandle, update: str, arg: Any, *expected: str) -> str:
        db_before = await db_snapshot(self.pool, self.rid)
        accepted_before = await accepted_update_ids(handle)
        update_id = f"bad-{update}-{uuid.uuid4().hex[:8]}"

        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await handle.execute_update(update, signed(update, arg), id=update_id)
        text = failure_text(caught.value)
        for fragment in expected:
            assert fragment in text, f"{update}: {fragment!r} not in {text!r}"

        history = await handle.fetch_history()
        accepted_after = [
            e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
            for e in history.events
            if e.event_type == ACCEPTED
        ]
        assert accepted_after == accepted_before, f"{update} was accepted into the history"
        assert not any(update_id in str(e) for e in history.events), (
            f"{update}: an event in the history names the refused update"
        )
        db_after = await db_snapshot(self.pool, self.rid)
        assert db_after["audit_log"] == db_before["audit_log"], f"{update} wrote an audit row"
        assert db_after == db_before, f"{update} changed PostgreSQL"
        return text

    async def done(self, handle: WorkflowHandle, update: str, arg: Any) -> Any:
        """A valid action, to move the request on (and show the refusals broke nothing)."""
        return await handle.execute_update(update, signed(update, arg))


async def settled(handle: WorkflowHandle, signals: int, timeout: float = 10.0) -> None:
    """Wait until an assignment workflow has told its request about `signals` changes and
    finished the task after the last one: only then has it stopped writing rows, so the
    snapshot taken before a refusal is not still changing under it."""
    signalled = EventType.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED
    async with asyncio.timeout(timeout):
        while True:
            events = (await handle.fetch_history()).events
            if (
                sum(e.event_type == signalled for e in events) >= signals
                # Idle: its last task is done, or it sleeps on a deadline timer.
                and events[-1].event_type
                in (
                    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                    EventType.EVENT_TYPE_TIMER_STARTED,
                )
            ):
                return
            await asyncio.sleep(0.05)


async def db_stage(pool: asyncpg.Pool, rid: str, stage: Stage, timeout: float = 10.0) -> None:
    """Wait until PostgreSQL has the stage: the query shows a new stage before the activity that
    records it has finished, and a snapshot taken in between would see that write."""
    async with asyncio.timeout(timeout):
        while True:
            async with pool.acquire() as conn:
                if await conn.fetchval("SELECT stage FROM requests WHERE id = $1", rid) == stage:
                    return
            await asyncio.sleep(0.05)


async def in_review(env, worker, policy, registry, pool):
    rid, handle = await start(env, worker, policy, registry)
    r = Rejections(env, pool, rid)
    await r.done(r.request(), "screen", {"decision": "accept"})
    state = await until(
        lambda s: (
            s.stage == Stage.review
            and len(s.assignments) == 3
            and all(a.respond_by for a in s.assignments)
        ),
        handle,
    )
    for a in state.assignments:
        await settled(r.assignment(a.expert_code), 1)
    chair = next(a.expert_code for a in state.assignments if a.role == "chair")
    members = [a.expert_code for a in state.assignments if a.role == "member"]
    return r, handle, chair, members


# --- screening and supplement -------------------------------------------------------------------


async def test_screening_and_supplement_refusals(env, worker, policy, registry, pool):
    rid, handle = await start(env, worker, policy, registry)
    await db_stage(pool, rid, Stage.screening)
    r = Rejections(env, pool, rid)
    req = r.request()

    # Actions of later stages, while the request is in screening.
    await r.refused(
        req,
        "approve_conclusion",
        {},
        "cannot decide conclusion",
        "in screening, not approval",
    )
    await r.refused(
        req,
        "return_conclusion",
        {"comments": "Bổ sung nguồn vốn."},
        "cannot decide conclusion",
        "in screening, not approval",
    )
    await r.refused(
        req,
        "draft_conclusion",
        {"expert_code": "E-1", "draft": DRAFT},
        "cannot draft conclusion",
        "in screening, not synthesis",
    )
    await r.refused(
        req,
        "answer_adoption",
        {"answer": ADOPTION},
        "cannot answer adoption",
        "in screening, not adoption",
    )
    await r.refused(req, "supplement", {"documents": [DOC]}, "cannot supplement", "not supplement")
    await r.refused(
        req, "add_expert", {"expert_code": "E-1"}, "cannot add an expert", "in screening"
    )

    # Screening decisions that break a rule.
    await r.refused(req, "screen", {"decision": "decline", "note": ""}, "note", "to decline")
    await r.refused(
        req, "screen", {"decision": "supplement", "note": "  ok  "}, "note", "to supplement"
    )

    # Payloads that do not fit the model at all.
    await r.refused(req, "screen", {"decision": "maybe"}, "decision", "'accept', 'supplement'")
    # A field the model does not know is not among them: a caller of a newer release may send
    # one, and the worker ignores it (tests/test_versioning.py); the API and the CLI refuse it
    # from people before it reaches an update.
    await r.refused(req, "screen", {}, "decision", "Field required")
    await r.refused(req, "withdraw", {"reason": "no"}, "reason", "at least 3 characters")
    await r.refused(req, "add_expert", {"expert_code": "not a code!"}, "expert_code")

    # Still in screening, untouched: the coordinator asks for a supplement.
    state = await r.done(req, "screen", {"decision": "supplement", "note": "Thiếu phụ lục."})
    assert state["stage"] == "supplement"

    await r.refused(req, "screen", {"decision": "accept"}, "cannot screen", "not screening")
    await r.refused(req, "supplement", {"documents": []}, "documents", "at least 1 item")
    await r.refused(
        req, "supplement", {"documents": [{**DOC, "sha256": "xyz"}]}, "sha256", "64 hexadecimal"
    )
    await r.refused(
        req, "supplement", {"documents": [{**DOC, "uri": "ftp://x.example/a.pdf"}]}, "uri", "scheme"
    )

    state = await r.done(req, "supplement", {"documents": [DOC], "note": "Đã bổ sung."})
    assert state["stage"] == "screening" and state["supplement_round"] == 1


# --- the council and the assignments ------------------------------------------------------------


async def test_review_and_assignment_refusals(env, worker, policy, registry, pool):
    r, handle, chair, members = await in_review(env, worker, policy, registry, pool)
    req = r.request()
    member, other = members
    mine = r.assignment(member)

    # The request, while the council reviews.
    await r.refused(req, "screen", {"decision": "accept"}, "cannot screen", "in review")
    await r.refused(
        req,
        "draft_conclusion",
        {"expert_code": chair, "draft": DRAFT},
        "cannot draft conclusion",
        "in review, not synthesis",
    )
    await r.refused(
        req, "add_expert", {"expert_code": other}, f"expert_code: {other} already has a role"
    )
    await r.refused(req, "withdraw", {"reason": ""}, "reason")

    # An invitation answered by someone else, or out of order.
    await r.refused(
        mine, "accept", {"expert_code": other}, f"expert_code: {other} is not the expert"
    )
    await r.refused(
        mine, "decline", {"expert_code": other, "reason": "Bận công tác."}, "is not the expert"
    )
    await r.refused(
        mine,
        "submit_opinion",
        {"expert_code": member, "opinion": OPINION},
        "accept the invitation first",
    )
    await r.refused(mine, "accept", {"expert_code": "bad code!"}, "expert_code", "pattern")
    await r.refused(
        mine, "decline", {"expert_code": member, "reason": "no"}, "reason", "at least 3"
    )
    await r.refused(mine, "decline", {"expert_code": member}, "reason", "Field required")

    view = await r.done(mine, "accept", {"expert_code": member})
    assert view["state"] == "accepted"

    await r.refused(mine, "accept", {"expert_code": member}, "already accepted")
    await r.refused(
        mine,
        "decline",
        {"expert_code": member, "reason": "Bận công tác."},
        "cannot decline",
        "already accepted",
    )
    await r.refused(
        mine,
        "submit_opinion",
        {"expert_code": other, "opinion": OPINION},
        f"expert_code: {other} is not the expert",
    )
    await r.refused(
        mine,
        "submit_opinion",
        {"expert_code": member, "opinion": {**OPINION, "recommendation": "maybe"}},
        "recommendation",
        "'endorse'",
    )
    await r.refused(
        mine,
        "submit_opinion",
        {"expert_code": member, "opinion": {**OPINION, "summary": "   "}},
        "summary",
        "at least 1 character",
    )

    # The refusals left the assignment able to go on.
    view = await r.done(mine, "submit_opinion", {"expert_code": member, "opinion": OPINION})
    assert view["state"] == "submitted"
    state = await until(lambda s: s.assignment(member).state == "submitted", handle)
    assert state.stage == Stage.review


# --- synthesis, approval and adoption -----------------------------------------------------------


async def test_conclusion_and_adoption_refusals(env, worker, policy, registry, pool):
    r, handle, chair, members = await in_review(env, worker, policy, registry, pool)
    req = r.request()
    for code in (chair, *members):
        await r.done(r.assignment(code), "accept", {"expert_code": code})
        await r.done(
            r.assignment(code), "submit_opinion", {"expert_code": code, "opinion": OPINION}
        )
    await until(lambda s: s.stage == Stage.synthesis, handle)
    await db_stage(pool, r.rid, Stage.synthesis)

    await r.refused(
        req,
        "draft_conclusion",
        {"expert_code": members[0], "draft": DRAFT},
        f"expert_code: {members[0]} is not the chair",
    )
    await r.refused(
        req,
        "draft_conclusion",
        {"expert_code": chair, "draft": {**DRAFT, "text": ""}},
        "text",
        "at least 1 character",
    )
    await r.refused(req, "approve_conclusion", {}, "in synthesis, not approval")
    await r.refused(req, "add_expert", {"expert_code": "E-1"}, "cannot add an expert")

    state = await r.done(req, "draft_conclusion", {"expert_code": chair, "draft": DRAFT})
    assert state["stage"] == "approval"

    await r.refused(
        req,
        "draft_conclusion",
        {"expert_code": chair, "draft": DRAFT},
        "in approval, not synthesis",
    )
    await r.refused(req, "return_conclusion", {"comments": "x"}, "comments", "at least 3")
    # No one signs an unsigned conclusion; an expert cannot sign it either.
    await r.refused(req, "approve_conclusion", {"actor": None}, "actor", "signed-in coordinator")
    expert = {"role": "expert", "code": chair, "name": "Chủ tịch hội đồng"}
    await r.refused(req, "approve_conclusion", {"actor": expert}, "signed-in coordinator")
    await r.refused(req, "answer_adoption", {"answer": ADOPTION}, "in approval, not adoption")

    state = await r.done(req, "approve_conclusion", {})
    assert state["stage"] == "delivered"
    await until(lambda s: s.stage == Stage.adoption, handle)
    await db_stage(pool, r.rid, Stage.adoption)

    await r.refused(
        req, "withdraw", {"reason": "Không còn nhu cầu."}, "cannot withdraw", "adoption"
    )
    await r.refused(req, "add_expert", {"expert_code": "E-1"}, "in adoption")
    await r.refused(
        req, "answer_adoption", {"answer": {**ADOPTION, "status": "maybe"}}, "status", "'adopted'"
    )
    await r.refused(
        req,
        "answer_adoption",
        {"answer": {**ADOPTION, "answered_by": {**CONTACT, "email": "not-an-email"}}},
        "email",
    )

    state = await r.done(req, "answer_adoption", {"answer": ADOPTION})
    assert state["stage"] == "closed"


# --- add_expert: the one check a validator cannot make ------------------------------------------


async def test_unknown_expert_is_refused_after_acceptance(env, worker, policy, registry, pool):
    """Whether a code is in the registry needs PostgreSQL, and a validator may not do I/O, so
    add_expert checks it in the handler: the update is accepted into the history, then fails.
    PostgreSQL is still untouched. (If this check ever moves into the validator, this test
    fails and should join the refusals above.)"""
    r, handle, *_ = await in_review(env, worker, policy, registry, pool)
    req = r.request()
    db_before = await db_snapshot(pool, r.rid)
    accepted_before = await accepted_update_ids(req)

    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await req.execute_update(
            "add_expert", signed("add_expert", {"expert_code": "NOBODY-1"}), id="add-nobody"
        )
    assert "expert_code: NOBODY-1 is not in the expert registry" in failure_text(caught.value)

    assert await accepted_update_ids(req) == [*accepted_before, "add-nobody"]
    assert await db_snapshot(pool, r.rid) == db_before
    state = await until(lambda s: s.stage == Stage.review, handle)
    assert len(state.assignments) == 3


# --- add_expert twice: the second is refused, and the request survives --------------------------


async def test_same_expert_added_twice_at_once(env, worker, policy, registry, pool):
    """Two add_expert of one expert at the same moment (a double click, a retried command): one
    invites the expert, the other is refused by the validator. Before the fix both were accepted,
    the expert was invited twice, and the second child workflow with the same id failed the
    whole request."""
    r, handle, *_ = await in_review(env, worker, policy, registry, pool)
    (extra,) = await registry.add(1)
    req = r.request()
    accepted_before = await accepted_update_ids(req)

    results = await asyncio.gather(
        req.execute_update(
            "add_expert", signed("add_expert", {"expert_code": extra.code}), id="add-1"
        ),
        req.execute_update(
            "add_expert", signed("add_expert", {"expert_code": extra.code}), id="add-2"
        ),
        return_exceptions=True,
    )
    refused = [x for x in results if isinstance(x, BaseException)]
    assert len(refused) == 1, results
    assert isinstance(refused[0], WorkflowUpdateFailedError)
    assert f"expert_code: {extra.code}" in failure_text(refused[0])
    # Only the update that went through is in the history.
    accepted = await accepted_update_ids(req)
    assert len(accepted) == len(accepted_before) + 1
    assert accepted[-1] in ("add-1", "add-2")

    state = await until(lambda s: len(s.assignments) == 4, handle)
    assert [a.expert_code for a in state.assignments].count(extra.code) == 1
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await settled(r.assignment(extra.code), 1)
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM assignments WHERE request_id = $1 AND expert_code = $2",
                r.rid,
                extra.code,
            )
            == 1
        )
    # And the request still works: the new expert can accept.
    view = await r.done(r.assignment(extra.code), "accept", {"expert_code": extra.code})
    assert view["state"] == "accepted"


async def test_alternate_added_by_hand_is_not_invited_again(env, worker, policy, registry, pool):
    """The coordinator adds an expert who was the proposal's alternate; when a member later
    declines, that expert must not be invited a second time as the replacement (a second child
    with the same id failed the whole request)."""
    rid, handle = await start(env, worker, policy, registry, n_experts=4)
    r = Rejections(env, pool, rid)
    req = r.request()
    await r.done(req, "screen", {"decision": "accept"})
    state = await until(
        lambda s: (
            s.stage == Stage.review
            and len(s.assignments) == 3
            and all(a.respond_by for a in s.assignments)
        ),
        handle,
    )
    (alternate,) = state.alternates_left
    member = next(a.expert_code for a in state.assignments if a.role == "member")
    await settled(r.assignment(member), 1)

    await r.done(req, "add_expert", {"expert_code": alternate})
    state = await until(lambda s: s.assignment(alternate) is not None, handle)
    assert state.alternates_left == []

    await r.done(r.assignment(member), "decline", {"expert_code": member, "reason": "Bận."})
    state = await until(lambda s: s.assignment(member).state == "declined", handle)
    await asyncio.sleep(0.5)  # give the run loop its chance to (wrongly) invite a replacement
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    state = await handle.query("state")
    codes = [a["expert_code"] for a in state["assignments"]]
    assert codes.count(alternate) == 1 and len(codes) == 4
