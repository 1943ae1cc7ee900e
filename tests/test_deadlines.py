"""Deadlines on the time-skipping server: reminders at working-day instants (across Tết),
none after the work is done, silence and declines handing over to alternates, escalation,
extensions, replacement, quorum, lapsed supplements, and a long request continued as new.

The server's clock is shared by the session and only moves forward: each test first moves it
to a known weekday morning, then skips weeks in one call. Instants are asserted on the audit
log's `at`, which is the workflow's own time when it acted.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
import pytest_asyncio

from db import queries as q
from domain import search_attributes as sa
from domain.calendar import VN_TZ, WorkingCalendar
from domain.messages import (
    AcceptInput,
    ApproveInput,
    ExtendAssignmentInput,
    ExtendInput,
    ReplaceExpertInput,
    ScreeningInput,
    WithdrawInput,
)
from domain.models import AssignmentState, Stage
from domain.policy import Policy, ReminderSchedule
from starter import service
from tests import factories as f
from tests.conftest import start_time_skipping
from tests.test_lifecycle import accept_and_submit, outbox, until
from worker import build_worker
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.review import ReviewRequestWorkflow

VN = VN_TZ


@pytest_asyncio.fixture
async def env():
    """A time-skipping server of this test's own. Skipping weeks fires every timer on the
    server, and a timer of an earlier test's request (whose worker is gone) would hold the
    clock: each deadline test gets a clock, and requests, of its own."""
    e = await start_time_skipping()
    yield e
    await e.shutdown()


@pytest_asyncio.fixture
async def worker(env, pool, settings):
    async with build_worker(env.client, pool, settings, task_queue=f"tq-{uuid.uuid4().hex}") as w:
        yield w


def vn(y, m, d, hh=0, mm=0, ss=0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=VN)


def policy_with(policy: Policy, **changes) -> Policy:
    """The shipped policy with the advisory kind changed; reminders given as dicts."""
    kind = policy.kinds["advisory"]
    reminders = kind.reminders.model_copy(
        update={k: ReminderSchedule(**v) for k, v in changes.pop("reminders", {}).items()}
    )
    kind = kind.model_copy(update={**changes, "reminders": reminders})
    return policy.model_copy(update={"kinds": {**policy.kinds, "advisory": kind}})


async def advance(env, span: timedelta) -> None:
    """Skips time in steps of a few days: the server fires every timer on the way, and each
    step's call must return within the client's RPC timeout even on a loaded machine."""
    step = timedelta(days=3)
    while span > timedelta(0):
        await env.sleep(min(step, span))
        span -= step


async def move_clock_to(env, when: datetime) -> None:
    now = await env.get_current_time()
    if when <= now:
        raise AssertionError(f"the session clock is already past {when} ({now})")
    await advance(env, when - now)


async def next_monday_9am(env) -> datetime:
    now = (await env.get_current_time()).astimezone(VN)
    day = now.date() + timedelta(days=7 - now.weekday())
    return vn(day.year, day.month, day.day, 9)


async def audit(pool, rid, *, workflow_suffix: str = "", actions=None):
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT idempotency_key, at, action, details FROM audit_log"
            " WHERE request_id = $1 ORDER BY id",
            rid,
        )
    return [
        # Timers fire within milliseconds of their instant; compare to the second.
        (r["at"].astimezone(VN).replace(microsecond=0), r["action"], r["details"])
        for r in rows
        if r["idempotency_key"].split(":")[0].endswith(workflow_suffix)
        and (actions is None or r["action"] in actions)
    ]


async def open_review(
    env,
    worker,
    policy,
    registry,
    n_experts=1,
    history_limit=None,
    assignment_limit=None,
    **kind,
):
    await registry.add(n_experts)
    pol = policy_with(policy, **kind)
    sub = f.submission(registry.field)
    rid = (
        await service.submit(
            env.client,
            registry.pool,
            sub,
            pol,
            task_queue=worker.task_queue,
            history_limit=history_limit,
            assignment_history_limit=assignment_limit,
        )
    ).request_id
    handle = service.request_handle(env.client, rid)
    await until(lambda s: s.stage == Stage.screening, handle)
    await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(actor=f.COORDINATOR, decision="accept"),
    )
    size = pol.kinds["advisory"].council_size
    state = await until(
        lambda s: (
            s.stage == Stage.review
            and len(s.assignments) == size
            and all(a.respond_by for a in s.assignments)
        ),
        handle,
    )
    return rid, handle, state


async def audit_until(pool, rid, action: str, timeout: float = 10.0):
    """The state query shows a new stage as soon as the workflow decides it; the row follows
    when the activity commits. Wait for the row."""
    async with asyncio.timeout(timeout):
        while True:
            if rows := await audit(pool, rid, actions={action}):
                return rows
            await asyncio.sleep(0.05)


REVIEW_SCHEDULE = {"before": [3, 1], "overdue_every": 2, "grace": 5}


async def test_review_reminders_fall_on_working_days_across_tet(
    env, worker, policy, registry, pool
):
    await move_clock_to(env, vn(2027, 1, 25, 9))  # Monday, ten days before Tết 2027
    rid, handle, state = await open_review(
        env,
        worker,
        policy,
        registry,
        council_size=1,
        quorum=1,
        alternates=0,
        review_days=10,
        reminders={"review": REVIEW_SCHEDULE},
    )
    [a] = state.assignments
    view = await service.assignment_update(
        env.client,
        rid,
        a.expert_code,
        ExpertAssignmentWorkflow.accept,
        AcceptInput(expert_code=a.expert_code),
    )
    # 10 working days from Mon 25 Jan: Tết (4–10 Feb) and two weekends do not count.
    assert view.due_at == vn(2027, 2, 15, 23, 59, 59)

    await advance(env, vn(2027, 2, 24) - await env.get_current_time())
    expert = f"-expert-{a.expert_code}"
    acted = await audit(
        pool, rid, workflow_suffix=expert, actions={"reminder_sent", "review_overdue"}
    )
    assert [(at, action, d.get("when")) for at, action, d in acted] == [
        (vn(2027, 2, 3, 8), "reminder_sent", "before"),  # 3 working days before (Tết between)
        (vn(2027, 2, 12, 8), "reminder_sent", "before"),  # 1 working day before
        (vn(2027, 2, 17, 8), "reminder_sent", "overdue"),  # 2 working days past due
        (vn(2027, 2, 19, 8), "reminder_sent", "overdue"),  # 4 working days past due
        (vn(2027, 2, 22, 23, 59, 59), "review_overdue", None),  # grace of 5 ends: escalate
    ]
    sent = await outbox(pool, rid)
    assert sent.count(("expert", a.expert_code, "review_reminder")) == 4
    assert ("coordinator", None, "expert_overdue") in sent
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT overdue FROM assignments WHERE request_id = $1", rid)
            is True
        )
    state = await handle.query(ReviewRequestWorkflow.state)
    assert state.overdue and state.assignments[0].overdue
    # What the operator reads in the UI, as of the escalation (Mon 22 Feb): five working
    # days after Mon 15 Feb.
    assert state.waiting_for.startswith("0 of 1 opinions")
    assert f"expert {a.expert_code} overdue 5 working days" in state.waiting_for
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.OVERDUE) is True
    assert described.typed_search_attributes.get(sa.OPINIONS_RECEIVED) == 0
    assert described.typed_search_attributes.get(sa.OPINIONS_EXPECTED) == 1
    child = await service.assignment_handle(env.client, rid, a.expert_code).describe()
    assert child.typed_search_attributes.get(sa.EXPERT_CODE) == a.expert_code
    assert child.typed_search_attributes.get(sa.ASSIGNMENT_STATE) == "accepted"
    assert child.typed_search_attributes.get(sa.ASSIGNMENT_DUE) == vn(2027, 2, 15, 23, 59, 59)

    # The opinion arrives late: the flag clears and no reminder follows.
    await accept_and_submit_late(env, rid, a.expert_code)
    state = await until(lambda s: s.stage == Stage.synthesis, handle)
    assert not state.overdue
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT overdue FROM assignments WHERE request_id = $1", rid)
            is False
        )
    assert (await handle.describe()).typed_search_attributes.get(sa.OVERDUE) is False


async def accept_and_submit_late(env, rid, code):
    await service.assignment_update(
        env.client, rid, code, ExpertAssignmentWorkflow.submit_opinion, f.opinion(code)
    )


CAL = WorkingCalendar()


def at_hour(day, hour=8) -> datetime:
    return vn(day.year, day.month, day.day, hour)


async def skip(env, days: float) -> None:
    await advance(env, timedelta(days=days))


async def test_no_reminder_after_the_work_is_done(env, worker, policy, registry, pool):
    await move_clock_to(env, await next_monday_9am(env))
    rid, handle, state = await open_review(
        env,
        worker,
        policy,
        registry,
        council_size=1,
        quorum=1,
        alternates=0,
        review_days=10,
        reminders={"review": REVIEW_SCHEDULE},
    )
    [a] = state.assignments
    view = await service.assignment_update(
        env.client,
        rid,
        a.expert_code,
        ExpertAssignmentWorkflow.accept,
        AcceptInput(expert_code=a.expert_code),
    )
    first = at_hour(CAL.shift_day(view.due_at.date(), -3, "working"))
    await advance(env, first + timedelta(hours=1) - await env.get_current_time())
    suffix = f"-expert-{a.expert_code}"
    assert len(await audit(pool, rid, workflow_suffix=suffix, actions={"reminder_sent"})) == 1

    await accept_and_submit_late(env, rid, a.expert_code)
    done_at = await env.get_current_time()
    await skip(env, 40)  # past the due date, every overdue reminder and the grace period
    reminders = await audit(pool, rid, workflow_suffix=suffix, actions={"reminder_sent"})
    assert len(reminders) == 1 and reminders[0][0] < done_at
    assert await audit(pool, rid, workflow_suffix=suffix, actions={"review_overdue"}) == []
    async with pool.acquire() as conn:
        # The reminder issued before the opinion, not yet delivered, is withdrawn with it.
        statuses = await conn.fetch(
            "SELECT status FROM outbox WHERE request_id = $1 AND event = 'review_reminder'", rid
        )
    assert [r["status"] for r in statuses] == ["cancelled"]
    child = service.assignment_handle(env.client, rid, a.expert_code)
    assert (await child.result()).state == AssignmentState.submitted


async def test_silence_past_respond_by_invites_the_next_alternate(
    env, worker, policy, registry, pool
):
    start = await next_monday_9am(env)
    await move_clock_to(env, start)
    rid, handle, state = await open_review(
        env,
        worker,
        policy,
        registry,
        n_experts=2,
        council_size=1,
        quorum=1,
        alternates=1,
        respond_days=2,
        reminders={"respond": {"before": [1], "overdue_every": 0, "grace": 0}},
    )
    [silent] = state.assignments
    alternate = state.alternates_left[0]
    respond_by = CAL.add_working_days(start, 2)
    assert silent.respond_by == respond_by

    await skip(env, 7)
    state = await until(lambda s: len(s.assignments) == 2, handle)
    assert state.assignment(silent.expert_code).state == AssignmentState.expired
    replacement = state.assignment(alternate)
    assert replacement.role == "chair"
    assert replacement.invited_at.replace(microsecond=0) == respond_by
    acted = await audit(
        pool,
        rid,
        workflow_suffix=f"-expert-{silent.expert_code}",
        actions={"reminder_sent", "invitation_expired"},
    )
    assert [(at, action) for at, action, _ in acted] == [
        (at_hour(CAL.shift_day(respond_by.date(), -1, "working")), "reminder_sent"),
        (respond_by, "invitation_expired"),
    ]
    sent = await outbox(pool, rid)
    assert ("expert", silent.expert_code, "respond_reminder") in sent
    assert ("expert", silent.expert_code, "invitation_expired") in sent
    assert ("coordinator", None, "expert_silent") in sent
    assert ("expert", alternate, "invitation") in sent
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT state FROM assignments WHERE request_id = $1 AND expert_code = $2",
                rid,
                silent.expert_code,
            )
            == "expired"
        )


async def test_extension_moves_every_pending_reminder(env, worker, policy, registry, pool):
    await move_clock_to(env, await next_monday_9am(env))
    rid, handle, state = await open_review(
        env,
        worker,
        policy,
        registry,
        council_size=1,
        quorum=1,
        alternates=0,
        review_days=10,
        reminders={"review": REVIEW_SCHEDULE},
    )
    [a] = state.assignments
    view = await service.assignment_update(
        env.client,
        rid,
        a.expert_code,
        ExpertAssignmentWorkflow.accept,
        AcceptInput(expert_code=a.expert_code),
    )
    old_due = view.due_at
    view = await service.assignment_update(
        env.client,
        rid,
        a.expert_code,
        ExpertAssignmentWorkflow.extend,
        ExtendAssignmentInput(
            actor=f.COORDINATOR, expert_code=a.expert_code, days=5, reason="Bổ sung tài liệu"
        ),
    )
    new_due = CAL.add_working_days(old_due, 5)
    assert view.due_at == new_due
    await advance(env, new_due + timedelta(hours=1) - await env.get_current_time())
    acted = await audit(
        pool, rid, workflow_suffix=f"-expert-{a.expert_code}", actions={"reminder_sent"}
    )
    expected = [at_hour(CAL.shift_day(new_due.date(), -n, "working")) for n in (3, 1)]
    assert [at for at, _, _ in acted] == expected
    sent = await outbox(pool, rid)
    assert ("expert", a.expert_code, "deadline_extended") in sent

    # The stage's own deadline extends too, audited with the reason.
    before = (await handle.query(ReviewRequestWorkflow.state)).stage_deadline
    now = await env.get_current_time()
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.extend_deadline,
        ExtendInput(actor=f.COORDINATOR, days=10, reason="Chờ ý kiến chuyên gia"),
    )
    assert state.stage == Stage.review
    # Counted from the old deadline, or from today when that has already passed.
    assert state.stage_deadline == CAL.add_working_days(max(before, now), 10)
    extended = await audit(pool, rid, actions={"deadline_extended"})
    assert [d["reason"] for _, _, d in extended] == ["Bổ sung tài liệu", "Chờ ý kiến chuyên gia"]
    # The days granted, beside the dates: counted from today once the deadline has passed, the
    # dates alone would say more days than were granted.
    assert [d["days"] for _, _, d in extended] == [5, 10]


async def test_replacement_cancels_the_old_assignment_and_its_reminders(
    env, worker, policy, registry, pool
):
    await move_clock_to(env, await next_monday_9am(env))
    rid, handle, state = await open_review(
        env,
        worker,
        policy,
        registry,
        n_experts=3,
        council_size=2,
        quorum=2,
        alternates=1,
        reminders={"review": REVIEW_SCHEDULE},
    )
    member = next(a for a in state.assignments if a.role == "member")
    alternate = state.alternates_left[0]
    await service.assignment_update(
        env.client,
        rid,
        member.expert_code,
        ExpertAssignmentWorkflow.accept,
        AcceptInput(expert_code=member.expert_code),
    )
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.replace_expert,
        ReplaceExpertInput(
            actor=f.COORDINATOR, expert_code=member.expert_code, reason="Không liên lạc được"
        ),
    )
    assert state.assignment(member.expert_code).state == AssignmentState.cancelled
    assert state.assignment(alternate).role == "member"
    replaced_at = await env.get_current_time()
    await skip(env, 60)
    late = [
        at
        for at, _, _ in await audit(
            pool,
            rid,
            workflow_suffix=f"-expert-{member.expert_code}",
            actions={"reminder_sent", "review_overdue"},
        )
        if at >= replaced_at
    ]
    assert late == []
    sent = await outbox(pool, rid)
    assert ("expert", member.expert_code, "assignment_cancelled") in sent
    assert ("expert", alternate, "invitation") in sent
    replaced = await audit(pool, rid, actions={"expert_replaced"})
    assert replaced[0][2]["replacement"] == alternate
    with pytest.raises(service.ActionError, match="cannot be replaced"):
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.replace_expert,
            ReplaceExpertInput(
                actor=f.COORDINATOR, expert_code=member.expert_code, reason="Lần nữa"
            ),
        )


async def test_quorum_at_the_review_deadline(env, worker, policy, registry, pool):
    await move_clock_to(env, await next_monday_9am(env))
    rid, handle, state = await open_review(
        env,
        worker,
        policy,
        registry,
        n_experts=3,
        council_size=3,
        quorum=2,
        alternates=0,
        respond_days=2,
        review_days=10,
    )
    chair = next(a.expert_code for a in state.assignments if a.role == "chair")
    members = [a.expert_code for a in state.assignments if a.role == "member"]
    await accept_and_submit(env, rid, chair)
    await accept_and_submit(env, rid, members[0])
    await service.assignment_update(
        env.client,
        rid,
        members[1],
        ExpertAssignmentWorkflow.accept,
        AcceptInput(expert_code=members[1]),
    )
    review_due = (await handle.query(ReviewRequestWorkflow.state)).stage_deadline
    await skip(env, 30)
    state = await until(lambda s: s.stage == Stage.synthesis, handle)
    assert state.assignment(members[1]).state == AssignmentState.cancelled
    [(at, _, details)] = await audit(pool, rid, actions={"quorum_reached"})
    # Not before the deadline. It is recorded once the open assignment has recorded its
    # cancellation, and the test server may skip time while that round trip is in flight,
    # so there is no tight upper bound (on an idle machine it is within seconds).
    assert at >= review_due
    assert details["cancelled"] == [members[1]]


async def test_all_opinions_in_starts_synthesis_before_the_deadline(
    env, worker, policy, registry, pool
):
    rid, handle, state = await open_review(
        env, worker, policy, registry, council_size=1, quorum=1, alternates=0
    )
    review_due = (await handle.query(ReviewRequestWorkflow.state)).stage_deadline
    await accept_and_submit(env, rid, state.assignments[0].expert_code)
    [(at, _, _)] = await audit_until(pool, rid, "synthesis_opened")
    assert at < review_due - timedelta(days=7)


async def test_supplement_that_never_comes_lapses_and_closes(env, worker, policy, registry, pool):
    start = await next_monday_9am(env)
    await move_clock_to(env, start)
    await registry.add(1)
    pol = policy_with(
        policy,
        supplement_days=5,
        reminders={"supplement": {"before": [1], "overdue_every": 1, "grace": 2}},
    )
    rid = (
        await service.submit(
            env.client, pool, f.submission(registry.field), pol, task_queue=worker.task_queue
        )
    ).request_id
    handle = service.request_handle(env.client, rid)
    await until(lambda s: s.stage == Stage.screening, handle)
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(actor=f.COORDINATOR, decision="supplement", note="Thiếu phụ lục kinh phí"),
    )
    due = state.stage_deadline
    assert due == CAL.add_working_days(start, 5)
    await skip(env, 20)
    final = await until(lambda s: s.stage == Stage.closed, handle)
    assert "supplement" in final.closed_reason
    acted = await audit(pool, rid, actions={"reminder_sent", "supplement_lapsed"})
    assert [(at, action) for at, action, _ in acted] == [
        (at_hour(CAL.shift_day(due.date(), -1, "working")), "reminder_sent"),
        (at_hour(CAL.shift_day(due.date(), 1, "working")), "reminder_sent"),
        (CAL.add_working_days(due, 2), "supplement_lapsed"),
    ]
    sent = await outbox(pool, rid)
    assert sent.count(("agency", "SGTVT", "supplement_reminder")) == 2
    assert ("agency", "SGTVT", "request_lapsed") in sent


async def test_overdue_screening_escalates_and_lists_as_overdue(
    env, worker, policy, registry, pool
):
    start = await next_monday_9am(env)
    await move_clock_to(env, start)
    await registry.add(1)
    pol = policy_with(
        policy,
        screening_days=3,
        reminders={"screening": {"before": [1], "overdue_every": 0, "grace": 1}},
    )
    rid = (
        await service.submit(
            env.client, pool, f.submission(registry.field), pol, task_queue=worker.task_queue
        )
    ).request_id
    handle = service.request_handle(env.client, rid)
    await until(lambda s: s.stage == Stage.screening, handle)
    await skip(env, 10)
    state = await until(lambda s: s.overdue, handle)
    assert state.stage == Stage.screening  # flagged, still waiting for the coordinator
    due = CAL.add_working_days(start, 3)
    [(at, _, _)] = await audit(pool, rid, actions={"deadline_escalated"})
    assert at == CAL.add_working_days(due, 1)
    assert ("coordinator", None, "stage_overdue") in await outbox(pool, rid)
    assert (await handle.describe()).typed_search_attributes.get(sa.OVERDUE) is True
    async with pool.acquire() as conn:
        listed = [r["id"] for r in await q.list_requests(conn, overdue=True, limit=500)]
    assert rid in listed
    # Screening it clears the flag.
    await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(actor=f.COORDINATOR, decision="accept"),
    )
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT overdue FROM requests WHERE id = $1", rid) is False
        listed = [r["id"] for r in await q.list_requests(conn, overdue=True, limit=500)]
    assert rid not in listed


WITHDRAW_AT = ["screening", "supplement", "review", "synthesis", "approval"]


@pytest.mark.parametrize("stage", WITHDRAW_AT)
async def test_withdrawal_in_each_stage_stops_every_timer(
    env, worker, policy, registry, pool, stage
):
    await move_clock_to(env, await next_monday_9am(env))
    await registry.add(2)
    pol = policy_with(policy, council_size=2, quorum=2, alternates=0)
    rid = (
        await service.submit(
            env.client, pool, f.submission(registry.field), pol, task_queue=worker.task_queue
        )
    ).request_id
    handle = service.request_handle(env.client, rid)
    await until(lambda s: s.stage == Stage.screening, handle)
    experts: list[str] = []
    if stage == "supplement":
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="supplement", note="Thiếu phụ lục"),
        )
    elif stage != "screening":
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="accept"),
        )
        state = await until(
            lambda s: len(s.assignments) == 2 and all(a.respond_by for a in s.assignments),
            handle,
        )
        experts = [a.expert_code for a in state.assignments]
        chair = next(a.expert_code for a in state.assignments if a.role == "chair")
        if stage == "review":
            await service.assignment_update(
                env.client,
                rid,
                experts[0],
                ExpertAssignmentWorkflow.accept,
                AcceptInput(expert_code=experts[0]),
            )
        else:
            for code in experts:
                await accept_and_submit(env, rid, code)
            await until(lambda s: s.stage == Stage.synthesis, handle)
            if stage == "approval":
                await service.request_update(
                    env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
                )
    assert (await handle.query(ReviewRequestWorkflow.state)).stage.value == stage
    state = await service.request_update(
        env.client, rid, ReviewRequestWorkflow.withdraw, WithdrawInput(reason="Rút hồ sơ")
    )
    assert state.stage == Stage.withdrawn
    withdrawn_at = await env.get_current_time()
    await skip(env, 90)
    # No reminder, escalation or lapse after the withdrawal.
    assert [a for a in await audit(pool, rid) if a[0] > withdrawn_at] == []
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT stage FROM requests WHERE id = $1", rid) == "withdrawn"
        states = {
            r["state"]
            for r in await conn.fetch("SELECT state FROM assignments WHERE request_id = $1", rid)
        }
    assert not states & {"invited", "accepted"}
    sent = await outbox(pool, rid)
    for code in experts:
        told = [
            e
            for _, c, e in sent
            if c == code and e in ("assignment_cancelled", "request_withdrawn")
        ]
        assert len(told) == 1, (code, told)


async def test_withdrawal_after_delivery_is_refused(env, worker, policy, registry, pool):
    rid, handle, state = await open_review(
        env, worker, policy, registry, council_size=1, quorum=1, alternates=0
    )
    code = state.assignments[0].expert_code
    await accept_and_submit(env, rid, code)
    await until(lambda s: s.stage == Stage.synthesis, handle)
    await service.request_update(
        env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(code)
    )
    await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.approve_conclusion,
        ApproveInput(actor=f.COORDINATOR),
    )
    await until(lambda s: s.stage == Stage.adoption, handle)
    with pytest.raises(service.ActionError, match="only before the conclusion is delivered"):
        await service.request_update(
            env.client, rid, ReviewRequestWorkflow.withdraw, WithdrawInput(reason="Quá muộn")
        )


async def run_lengths(env, workflow_id: str) -> list[int]:
    """History lengths of every run of a workflow, first run first."""
    lengths, run_id = [], None
    while True:
        history = await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        lengths.append(len(history.events))
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return lengths[::-1]
        run_id = started.continued_execution_run_id


async def test_a_long_review_continues_as_new_and_still_completes(
    env, worker, policy, registry, pool
):
    """Four months of reminders, overdue reminders, extensions and replacements: the busiest
    assignment continues as new whenever its history passes the limit, carrying its deadline
    and pending actions across, its reminders keep coming in the new runs, and the request
    still closes with its whole record. (The request's own continue-as-new is proven on the
    dev server in test_e2e: the time-skipping server cannot skip time once a parent with live
    children has continued as new — temporalio/sdk-java#1539.)"""
    limit = 150
    await move_clock_to(env, await next_monday_9am(env))
    rid, handle, state = await open_review(
        env,
        worker,
        policy,
        registry,
        n_experts=8,
        assignment_limit=limit,
        council_size=2,
        quorum=2,
        alternates=5,
        review_days=5,
        reminders={"review": {"before": [2, 1], "overdue_every": 1, "grace": 30}},
        # Four months of weekly extensions: more than the shipped policy allows one deadline.
        max_extensions=20,
        max_extension_days=120,
    )
    chair = next(a.expert_code for a in state.assignments if a.role == "chair")
    await service.assignment_update(
        env.client, rid, chair, ExpertAssignmentWorkflow.accept, AcceptInput(expert_code=chair)
    )

    async def current_member() -> str:
        s = await until(
            lambda s: any(
                a.role == "member" and a.state.is_open and a.respond_by for a in s.assignments
            ),
            handle,
        )
        code = next(a.expert_code for a in s.assignments if a.role == "member" and a.state.is_open)
        if s.assignment(code).state == AssignmentState.invited:
            await service.assignment_update(
                env.client,
                rid,
                code,
                ExpertAssignmentWorkflow.accept,
                AcceptInput(expert_code=code),
            )
        return code

    replaced = []
    for month in range(4):
        member = await current_member()
        for week in range(4):
            await skip(env, 7)
            await service.assignment_update(
                env.client,
                rid,
                chair,
                ExpertAssignmentWorkflow.extend,
                ExtendAssignmentInput(
                    actor=f.COORDINATOR, expert_code=chair, days=3, reason=f"Gia hạn {month}.{week}"
                ),
            )
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.replace_expert,
            ReplaceExpertInput(actor=f.COORDINATOR, expert_code=member, reason="Không phản hồi"),
        )
        replaced.append(member)
    member = await current_member()
    # The work finally comes in, and the request goes to the end.
    await service.assignment_update(
        env.client, rid, member, ExpertAssignmentWorkflow.submit_opinion, f.opinion(member)
    )
    await service.assignment_update(
        env.client, rid, chair, ExpertAssignmentWorkflow.submit_opinion, f.opinion(chair)
    )
    await until(lambda s: s.stage == Stage.synthesis, handle)
    await service.request_update(
        env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
    )
    await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.approve_conclusion,
        ApproveInput(actor=f.COORDINATOR),
    )
    await until(lambda s: s.stage == Stage.adoption, handle)
    state = await service.request_update(
        env.client, rid, ReviewRequestWorkflow.answer_adoption, f.adoption()
    )
    assert state.stage == Stage.closed
    assert [a.expert_code for a in state.assignments if a.state == "cancelled"] == replaced

    chair_runs = await run_lengths(env, service.assignment_handle(env.client, rid, chair).id)
    request_runs = await run_lengths(env, handle.id)
    print(f"\nhistory lengths per run: request {request_runs}, busiest assignment {chair_runs}")
    assert len(chair_runs) > 1
    # Bounded: a run passes the limit only by what it does before it can stop cleanly (an
    # action or reminder being recorded, the request told of it, a second's pause).
    assert max(chair_runs) < limit + 45
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT action, at FROM audit_log WHERE request_id = $1"
            " AND idempotency_key LIKE $2 ORDER BY id",
            rid,
            f"%-expert-{chair}:%",
        )
        assert await conn.fetchval("SELECT stage FROM requests WHERE id = $1", rid) == "closed"
    actions = [r["action"] for r in rows]
    assert actions.count("deadline_extended") == 16  # each recorded once, across every run
    assert actions.count("reminder_sent") >= 16 and actions[-1] == "opinion_submitted"
