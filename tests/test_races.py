"""Races a review of the request workflow found, each closed with the test that failed before
(run against commit 535078c, the workflow as it was then). An action is placed exactly inside
another's window by holding a chosen activity at its start (`Gates`): the activities are the
real ones, they only wait for the test to let them go.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Worker

from db import queries as q
from domain.messages import (
    AcceptInput,
    AddExpertInput,
    ConfirmCouncilInput,
    ExtendInput,
    ProposeCouncilInput,
    ReplaceExpertInput,
    ScreeningInput,
    TransitionInput,
    TransitionResult,
    WithdrawInput,
)
from domain.models import AssignmentState, CouncilProposal, Stage
from starter import service
from tests import factories as f
from tests.conftest import start_time_skipping
from tests.test_deadlines import open_review, policy_with, run_lengths, skip
from tests.test_lifecycle import accept_and_submit, outbox, until
from worker import SANDBOX, WORKFLOWS, activities_for, build_worker
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.review import ReviewRequestWorkflow

# --- holding activities at their start ----------------------------------------------------------


@dataclass
class Gate:
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_reached(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.reached.wait(), timeout)


class Gates:
    def __init__(self) -> None:
        self._held: dict[tuple[str, str | None], Gate] = {}

    def hold(self, name: str, expert_code: str | None = None) -> Gate:
        """Holds the next activity `name` (for a transition: its action) of this expert."""
        gate = self._held[(name, expert_code)] = Gate()
        return gate

    async def pass_through(self, name: str, expert_code: str | None = None) -> None:
        gate = self._held.pop((name, expert_code), None) or self._held.pop((name, None), None)
        if gate is None:
            return
        gate.reached.set()
        while not gate.release.is_set():
            # Heartbeats let a cancellation reach an activity that has not done its work yet.
            activity.heartbeat()
            await asyncio.sleep(0.05)


def gated_worker(client, pool, settings, gates: Gates) -> Worker:
    acts = {a.__temporal_activity_definition.name: a for a in activities_for(pool, settings)}
    record, propose = acts.pop("record_transition"), acts.pop("propose_council")
    # check_expert: the registry check's name before seats were reserved, so this file also
    # runs against 535078c, where each of its tests fails.
    reserve_name = "reserve_expert" if "reserve_expert" in acts else "check_expert"
    reserve = acts.pop(reserve_name)

    @activity.defn(name="record_transition")
    async def record_transition(t: TransitionInput) -> TransitionResult:
        await gates.pass_through(t.action, t.assignment.expert_code if t.assignment else None)
        return await record(t)

    @activity.defn(name="propose_council")
    async def propose_council(inp: ProposeCouncilInput) -> CouncilProposal:
        await gates.pass_through("propose_council")
        return await propose(inp)

    @activity.defn(name=reserve_name)
    async def reserve_expert(inp: ProposeCouncilInput) -> CouncilProposal:
        await gates.pass_through("reserve_expert", inp.exclude[0])
        return await reserve(inp)

    return Worker(
        client,
        task_queue=f"tq-{uuid.uuid4().hex}",
        workflows=WORKFLOWS,
        workflow_runner=SANDBOX,
        activities=[*acts.values(), record_transition, propose_council, reserve_expert],
        max_heartbeat_throttle_interval=timedelta(milliseconds=100),
        default_heartbeat_throttle_interval=timedelta(milliseconds=100),
    )


@pytest_asyncio.fixture
async def own_env():
    """A time-skipping server of this test's own (as in test_deadlines)."""
    e = await start_time_skipping()
    yield e
    await e.shutdown()


CONFIRMING = dict(council_size=2, quorum=2, alternates=1, council_confirmation="coordinator")


async def proposed_for_confirmation(env, worker, policy, registry, **submit):
    await registry.add(4)
    pol = policy_with(policy, **CONFIRMING)
    rid = (
        await service.submit(
            env.client,
            registry.pool,
            f.submission(registry.field),
            pol,
            task_queue=worker.task_queue,
            **submit,
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
    state = await until(lambda s: s.council is not None, handle)
    return rid, handle, state


# --- 1. continue-as-new while the council waits for its confirmation -----------------------------


async def test_continue_as_new_while_the_council_awaits_confirmation_keeps_that_step(
    dev_env, policy, registry, pool, settings
):
    """Before: the next run skipped the confirmation, told the coordinator "experts needed",
    and `confirm_council` was accepted but never answered. On the dev server: an update that
    meets a continue-as-new is carried to the next run there, not on the time-skipping one."""
    env = dev_env
    async with build_worker(env.client, pool, settings, task_queue=f"tq-{uuid.uuid4().hex}") as w:
        await confirmed_after_continue_as_new(env, w, policy, registry, pool)


async def confirmed_after_continue_as_new(env, worker, policy, registry, pool):
    rid, handle, state = await proposed_for_confirmation(
        env, worker, policy, registry, history_limit=15
    )

    async def proposed_in_an_earlier_run() -> bool:
        events = (await handle.fetch_history()).events
        continued = events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        proposes = [
            e
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == "propose_council"
        ]
        return bool(continued) and not proposes

    async with asyncio.timeout(20):
        while not await proposed_in_an_earlier_run():  # noqa: ASYNC110 (watches a history)
            await asyncio.sleep(0.1)
    state = await handle.query(ReviewRequestWorkflow.state)
    assert state.stage == Stage.council and state.assignments == []

    async with asyncio.timeout(20):
        state = await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.confirm_council,
            ConfirmCouncilInput(actor=f.COORDINATOR),
        )
    state = await until(
        lambda s: (
            s.stage == Stage.review
            and all(a.respond_by for a in s.assignments)
            and len(s.assignments) == 2
        ),
        handle,
    )
    assert len(await run_lengths(env, handle.id)) > 1
    sent = await outbox(pool, rid)
    assert ("coordinator", None, "experts_needed") not in sent
    assert sorted(c for k, c, e in sent if e == "invitation") == sorted(
        m.expert_code for m in state.council.members
    )


# --- 6. add_expert while the proposal awaits confirmation -----------------------------------------


async def test_add_expert_while_the_council_awaits_confirmation_is_refused_at_once(
    env, worker, policy, registry, pool
):
    """Before: the call hung until someone confirmed, then invited one more than the council."""
    rid, handle, state = await proposed_for_confirmation(env, worker, policy, registry)
    [spare] = await registry.add(1)
    async with asyncio.timeout(10):
        with pytest.raises(service.ActionError, match="awaits confirmation"):
            await service.request_update(
                env.client,
                rid,
                ReviewRequestWorkflow.add_expert,
                AddExpertInput(actor=f.COORDINATOR, expert_code=spare.code),
            )
    await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.confirm_council,
        ConfirmCouncilInput(actor=f.COORDINATOR),
    )
    state = await until(lambda s: len(s.assignments) == 2 and s.stage == Stage.review, handle)
    await asyncio.sleep(0.3)
    state = await handle.query(ReviewRequestWorkflow.state)
    assert len(state.assignments) == 2 and state.assignment(spare.code) is None


# --- 7. a withdrawal while the council is being proposed ------------------------------------------


async def test_withdrawal_during_the_proposal_invites_nobody(env, pool, settings, policy, registry):
    """Before: every member was invited, then each was told of a cancellation."""
    gates = Gates()
    async with gated_worker(env.client, pool, settings, gates) as worker:
        await registry.add(3)
        rid = (
            await service.submit(
                env.client, pool, f.submission(registry.field), policy, task_queue=worker.task_queue
            )
        ).request_id
        handle = service.request_handle(env.client, rid)
        await until(lambda s: s.stage == Stage.screening, handle)
        proposing = gates.hold("propose_council")
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="accept"),
        )
        await proposing.wait_reached()
        withdrawal = asyncio.create_task(
            service.request_update(
                env.client,
                rid,
                ReviewRequestWorkflow.withdraw,
                WithdrawInput(reason="Đã có văn bản thay thế."),
            )
        )
        await asyncio.sleep(0.5)  # the withdrawal is admitted while the proposal is under way
        proposing.release.set()
        async with asyncio.timeout(30):
            state = await withdrawal
        assert state.stage == Stage.withdrawn and state.assignments == []
        await handle.result()
    events = {e for _, _, e in await outbox(pool, rid)}
    assert "invitation" not in events and "assignment_cancelled" not in events
    async with pool.acquire() as conn:
        assert await q.assignments_of(conn, rid) == []


# --- 2. a refused replacement keeps its alternate -------------------------------------------------


async def test_a_replacement_refused_because_the_seat_closed_keeps_the_alternate(
    env, pool, settings, policy, registry
):
    """Before: the handler took the alternate off the list, the run loop then refused the swap
    (the expert had submitted meanwhile), and the alternate was lost for good."""
    gates = Gates()
    async with gated_worker(env.client, pool, settings, gates) as worker:
        rid, handle, state = await open_review(env, worker, policy, registry, n_experts=4)
        (alternate,) = state.alternates_left
        member = next(a.expert_code for a in state.assignments if a.role == "member")
        await service.assignment_update(
            env.client,
            rid,
            member,
            ExpertAssignmentWorkflow.accept,
            AcceptInput(expert_code=member),
        )
        reserving = gates.hold("reserve_expert", alternate)
        replacement = asyncio.create_task(
            service.request_update(
                env.client,
                rid,
                ReviewRequestWorkflow.replace_expert,
                ReplaceExpertInput(
                    actor=f.COORDINATOR, expert_code=member, reason="Chậm trễ nhiều lần."
                ),
            )
        )
        await reserving.wait_reached()
        # The expert submits at this very moment.
        await service.assignment_update(
            env.client, rid, member, ExpertAssignmentWorkflow.submit_opinion, f.opinion(member)
        )
        await until(lambda s: s.assignment(member).state == AssignmentState.submitted, handle)
        reserving.release.set()
        with pytest.raises(service.ActionError, match="seat closed first"):
            await replacement
        state = await handle.query(ReviewRequestWorkflow.state)
        assert state.alternates_left == [alternate]
        assert state.assignment(alternate) is None
        assert state.assignment(member).state == AssignmentState.submitted


# --- 5. an expert's state reaches the request only once recorded ----------------------------------


async def test_the_request_never_counts_an_opinion_before_it_is_recorded(
    env, pool, settings, policy, registry
):
    """Before: `accept` told the request the live view, which a concurrent `submit_opinion` had
    already marked submitted: synthesis opened before the opinion was in PostgreSQL."""
    gates = Gates()
    async with gated_worker(env.client, pool, settings, gates) as worker:
        rid, handle, state = await open_review(env, worker, policy, registry, n_experts=3)
        *first, last = [a.expert_code for a in state.assignments]
        for code in first:
            await accept_and_submit(env, rid, code)
        accepting = gates.hold("invitation_accepted", last)
        submitting = gates.hold("opinion_submitted", last)
        accept = asyncio.create_task(
            service.assignment_update(
                env.client,
                rid,
                last,
                ExpertAssignmentWorkflow.accept,
                AcceptInput(expert_code=last),
            )
        )
        await accepting.wait_reached()
        opinion = asyncio.create_task(
            service.assignment_update(
                env.client, rid, last, ExpertAssignmentWorkflow.submit_opinion, f.opinion(last)
            )
        )
        await asyncio.sleep(0.3)
        accepting.release.set()
        await accept
        await asyncio.sleep(1.5)  # time enough for the request to (wrongly) open synthesis
        state = await handle.query(ReviewRequestWorkflow.state)
        assert state.stage == Stage.review
        assert state.assignment(last).state == AssignmentState.accepted
        submitting.release.set()
        try:
            await opinion
        except service.ActionError:  # sent before the acceptance was recorded: sent again
            await service.assignment_update(
                env.client, rid, last, ExpertAssignmentWorkflow.submit_opinion, f.opinion(last)
            )
        await until(lambda s: s.stage == Stage.synthesis, handle)
        async with pool.acquire() as conn:
            assert len(await q.opinions_of(conn, rid)) == 3


# --- 3. a cancellation racing a respond-by expiry -------------------------------------------------


async def test_cancellation_at_the_moment_an_invitation_expires_still_records_it(
    own_env, pool, settings, policy, registry
):
    """Before: the expiry's transition was cancelled with the assignment before it ran, and
    PostgreSQL kept the assignment `invited` for good (in the expert's tasks and load)."""
    env, gates = own_env, Gates()
    async with gated_worker(env.client, pool, settings, gates) as worker:
        rid, handle, state = await open_review(
            env,
            worker,
            policy,
            registry,
            n_experts=1,
            council_size=1,
            quorum=1,
            alternates=0,
            respond_days=1,
            reminders={"respond": {"before": [], "overdue_every": 0, "grace": 0}},
        )
        (code,) = [a.expert_code for a in state.assignments]
        expiring = gates.hold("invitation_expired", code)
        clock = asyncio.create_task(skip(env, 4))
        await expiring.wait_reached()
        withdrawal = asyncio.create_task(
            service.request_update(
                env.client, rid, ReviewRequestWorkflow.withdraw, WithdrawInput(reason="Rút lại.")
            )
        )
        await asyncio.sleep(1.0)  # the assignment is being cancelled while its expiry records
        expiring.release.set()
        async with asyncio.timeout(30):
            assert (await withdrawal).stage == Stage.withdrawn
        await clock
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT state FROM assignments WHERE request_id = $1 AND expert_code = $2", rid, code
        )
        assert row["state"] in ("expired", "cancelled")
        assert not [t for t in await q.expert_tasks(conn, code) if t["request_id"] == rid]


# --- 4. an extension during a quorum close --------------------------------------------------------


async def test_an_extension_while_the_review_closes_on_its_quorum_is_refused(
    own_env, pool, settings, policy, registry
):
    """Before: the coordinator was told "extended" for a review that was already closing."""
    env, gates = own_env, Gates()
    async with gated_worker(env.client, pool, settings, gates) as worker:
        rid, handle, state = await open_review(
            env, worker, policy, registry, n_experts=3, respond_days=1, review_days=2
        )
        chair = next(a.expert_code for a in state.assignments if a.role == "chair")
        late = [a.expert_code for a in state.assignments if a.role == "member"]
        for code in (chair, late[0]):
            await accept_and_submit(env, rid, code)
        await service.assignment_update(
            env.client,
            rid,
            late[1],
            ExpertAssignmentWorkflow.accept,
            AcceptInput(expert_code=late[1]),
        )
        cancelling = gates.hold("assignment_cancelled", late[1])
        clock = asyncio.create_task(skip(env, 6))
        await cancelling.wait_reached()  # past the deadline with the quorum: closing
        with pytest.raises(service.ActionError, match="closing on its quorum|moved on"):
            await service.request_update(
                env.client,
                rid,
                ReviewRequestWorkflow.extend_deadline,
                ExtendInput(actor=f.COORDINATOR, days=5, reason="Chờ ý kiến thứ ba."),
            )
        cancelling.release.set()
        await clock
        await until(lambda s: s.stage == Stage.synthesis, handle)
    async with pool.acquire() as conn:
        actions = [r["action"] for r in await q.audit_trail(conn, rid)]
    assert "quorum_reached" in actions and "deadline_extended" not in actions


# --- 8. one free seat, two requests ---------------------------------------------------------------


async def test_two_requests_inviting_an_expert_with_one_free_seat_one_wins(
    env, worker, policy, registry, pool
):
    """Before: the registry check ran outside the matching lock and the seat was written later
    by the assignment: both requests saw room, and the expert carried two with a limit of one."""
    first, *_ = await open_review(env, worker, policy, registry, n_experts=3)
    second, *_ = await open_review(env, worker, policy, registry, n_experts=0)
    [busy] = await registry.add(1, load_limit=1)
    results = await asyncio.gather(
        *[
            service.request_update(
                env.client,
                rid,
                ReviewRequestWorkflow.add_expert,
                AddExpertInput(actor=f.COORDINATOR, expert_code=busy.code),
            )
            for rid in (first, second)
        ],
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1, results
    assert isinstance(refused[0], service.ActionError) and "load" in str(refused[0])
    winner = next(
        rid for rid, r in zip((first, second), results, strict=True) if r is not refused[0]
    )
    await until(
        lambda s: s.assignment(busy.code).respond_by is not None,
        service.request_handle(env.client, winner),
    )
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT request_id FROM assignments WHERE expert_code = $1", busy.code
        )
        assert [r["request_id"] for r in rows] == [winner]
        assert (await q.get_expert(conn, busy.code))["load"] == 1


# --- 9. review opens before the invitations are readable ----------------------------------------


async def test_review_opens_only_once_every_invitation_is_recorded(
    env, pool, settings, policy, registry
):
    """Before: the request's row said review while its invitations were not yet written, so a
    reader saw a review with no one invited."""
    gates = Gates()
    async with gated_worker(env.client, pool, settings, gates) as worker:
        experts = await registry.add(3)
        rid = (
            await service.submit(
                env.client, pool, f.submission(registry.field), policy, task_queue=worker.task_queue
            )
        ).request_id
        handle = service.request_handle(env.client, rid)
        await until(lambda s: s.stage == Stage.screening, handle)
        last = experts[-1].code
        inviting = gates.hold("expert_invited", last)
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="accept"),
        )
        await inviting.wait_reached()
        await until(lambda s: sum(a.respond_by is not None for a in s.assignments) == 2, handle)
        await asyncio.sleep(0.3)
        async with pool.acquire() as conn:
            stage = await conn.fetchval("SELECT stage FROM requests WHERE id = $1", rid)
            invited = await conn.fetchval(
                "SELECT count(*) FROM assignments WHERE request_id = $1", rid
            )
        assert (stage, invited) == ("council", 2)
        inviting.release.set()
        state = await until(lambda s: s.stage == Stage.review, handle)
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT expert_code FROM assignments WHERE request_id = $1", rid
            )
        assert sorted(r["expert_code"] for r in rows) == sorted(e.code for e in experts)
        assert all(a.respond_by is not None for a in state.assignments)


async def test_an_added_expert_is_readable_when_the_action_answers(
    env, pool, settings, policy, registry
):
    """Before: add_expert answered once the assignment was started, and a read right after
    the answer could miss the invitation."""
    gates = Gates()
    async with gated_worker(env.client, pool, settings, gates) as worker:
        rid, handle, _ = await open_review(env, worker, policy, registry, n_experts=3)
        [extra] = await registry.add(1)
        inviting = gates.hold("expert_invited", extra.code)
        adding = asyncio.create_task(
            service.request_update(
                env.client,
                rid,
                ReviewRequestWorkflow.add_expert,
                AddExpertInput(actor=f.COORDINATOR, expert_code=extra.code),
            )
        )
        await inviting.wait_reached()
        await asyncio.sleep(0.3)
        assert not adding.done()
        inviting.release.set()
        async with asyncio.timeout(30):
            state = await adding
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT state, respond_by FROM assignments WHERE request_id = $1"
                " AND expert_code = $2",
                rid,
                extra.code,
            )
        assert row["state"] == "invited" and row["respond_by"] is not None
        assert state.assignment(extra.code).respond_by == row["respond_by"]
