"""The expert registry in PostgreSQL: import from CSV and JSON (bad rows by line, good rows
applied, re-import changes nothing), deactivation, proposals from a few hundred experts for
many requests at once that never over-commit anyone, and the coordinator confirming or
editing a council."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime

import pytest

from activities.council import CouncilActivities
from db import queries as q
from domain.messages import ConfirmCouncilInput, ProposeCouncilInput, ScreeningInput
from domain.models import Stage
from starter import service
from starter.registry import EXPERTS, import_file
from tests import factories as f
from tests.test_deadlines import policy_with
from tests.test_lifecycle import until
from workflows.review import ReviewRequestWorkflow

HEADER = (
    "code,name,email,organisation,member_association,expertise,languages,load_limit,active,"
    "conflicts,unavailable\n"
)


async def screened_in(env, worker, pol, registry):
    """A request of the registry's field, submitted and accepted at screening."""
    rid = (
        await service.submit(
            env.client,
            registry.pool,
            f.submission(registry.field),
            pol,
            task_queue=worker.task_queue,
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
    return rid, handle


async def test_csv_import_reports_bad_rows_by_line_and_applies_the_rest(pool, tmp_path):
    tag = uuid.uuid4().hex[:6]
    path = tmp_path / "experts.csv"
    path.write_text(
        HEADER + f'C{tag}-1,Nguyễn Văn A,a@x.vn,Viện A,Hội 1,"moi-truong:5; thuy-loi:3",'
        '"vi; en",4,yes,"STNMT","2027-01-04..2027-01-15"\n'
        + f"C{tag}-2,Trần B,not-an-email,Viện B,Hội 2,moi-truong:4,vi,3,true,,\n"
        + f"C{tag}-3,Lê C,c@x.vn,Viện C,Hội 2,moi-truong:9,vi,3,true,,\n"
        + f"C{tag}-4,Phạm D,d@x.vn,Viện D,Hội 3,kinh-te,vi,,no,,\n"
        + f"C{tag}-1,Trùng,dup@x.vn,Viện E,Hội 3,kinh-te:2,vi,3,true,,\n"
        + f"C{tag}-5,Hồ E,e@x.vn,Viện E,Hội 3,y-te:2,vi,3,true,,2027-02-01..2027-01-01\n",
        encoding="utf-8",
    )
    report = await import_file(pool, EXPERTS, path)
    assert report.added == [f"C{tag}-1", f"C{tag}-4"]
    assert report.errors == [
        "line 3: email: value is not a valid email address: An email address must have an @-sign.",
        "line 4: expertise.moi-truong: Input should be less than or equal to 5",
        f"line 6: code: C{tag}-1 already given on line 2",
        "line 7: unavailable.0: end must not be before start",
    ]
    async with pool.acquire() as conn:
        a = await q.get_expert(conn, f"C{tag}-1")
        d = await q.get_expert(conn, f"C{tag}-4")
    assert a["expertise"] == {"moi-truong": 5, "thuy-loi": 3} and a["languages"] == ["vi", "en"]
    assert a["conflicts"] == ["STNMT"] and a["load_limit"] == 4
    assert a["unavailable"] == [{"start": "2027-01-04", "end": "2027-01-15"}]
    assert d["expertise"] == {"kinh-te": 3} and d["active"] is False

    again = await import_file(pool, EXPERTS, path)
    assert again.added == [] and again.changed == []
    assert again.unchanged == [f"C{tag}-1", f"C{tag}-4"]

    json_path = tmp_path / "update.json"
    json_path.write_text(
        json.dumps(
            [
                {
                    "code": f"C{tag}-4",
                    "name": "Phạm D",
                    "email": "d@x.vn",
                    "organisation": "Viện D",
                    "member_association": "Hội 3",
                    "expertise": {"kinh-te": 4},
                    "active": True,
                },
                {"code": f"C{tag}-9", "name": "Thiếu email"},
            ]
        ),
        encoding="utf-8",
    )
    updated = await import_file(pool, EXPERTS, json_path)
    assert updated.changed == [f"C{tag}-4"]
    assert updated.errors == ["entry 2: email: Field required"]


async def test_deactivated_expert_is_explained_not_proposed(pool, registry):
    experts = await registry.add(2)
    async with pool.acquire() as conn:
        assert await q.set_active(conn, "experts", experts[0].code, False) is True
        assert await q.set_active(conn, "experts", experts[0].code, False) is False
    acts = CouncilActivities(pool)
    sub = f.submission(registry.field)
    proposal = await acts.reserve_expert(
        ProposeCouncilInput(
            request_id=sub.request_id(),
            agency_code="SGTVT",
            expertise_fields=[registry.field],
            council_size=1,
            alternates=0,
            exclude=[experts[0].code],
        )
    )
    assert proposal.shortfall == f"{experts[0].code}: inactive"


async def test_concurrent_proposals_never_overcommit_an_expert(pool):
    """300 generated experts, 40 requests proposed at the same moment: the advisory lock and
    the seats reserved by proposals keep every expert within their limit."""
    rng = random.Random(11)
    tag = uuid.uuid4().hex[:6]
    fields = [f"f{tag}-{i}" for i in range(6)]
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        for i in range(300):
            await conn.execute(
                "INSERT INTO experts (code, name, email, organisation, member_association,"
                " fields, expertise, load_limit) VALUES ($1, 'X', 'x@x.vn', $2, $3, $4, $5, $6)",
                f"P{tag}-{i:03d}",
                f"Viện {rng.randint(0, 30)}",
                f"Hội {rng.randint(0, 8)}",
                sorted(exp := {f: rng.randint(1, 5) for f in rng.sample(fields, 2)}),
                exp,
                rng.randint(1, 2),
            )
        reqs = []
        for i in range(40):
            rid = f"R-{tag}-{i:02d}"
            req_fields = rng.sample(fields, 2)
            await conn.execute(
                "INSERT INTO requests (id, workflow_id, agency_code, agency_reference, kind,"
                " title, summary, expertise_fields, documents, requested_by, stage,"
                " submitted_at, updated_at, council_size, alternates, review_window_days)"
                " VALUES ($1, $1, 'SGTVT', $1, 'advisory', 't', 's', $2, '[]', '{}', 'council',"
                " $3, $3, 7, 2, 10)",
                rid,
                req_fields,
                now,
            )
            reqs.append((rid, req_fields))
    acts = CouncilActivities(pool)
    proposals = await asyncio.gather(
        *[
            acts.propose_council(
                ProposeCouncilInput(
                    request_id=rid,
                    agency_code="SGTVT",
                    expertise_fields=fs,
                    council_size=7,
                    alternates=2,
                    now=now,
                    review_window_days=10,
                )
            )
            for rid, fs in reqs
        ]
    )
    seats: dict[str, int] = {}
    for p in proposals:
        for m in p.members:
            seats[m.expert_code] = seats.get(m.expert_code, 0) + 1
    async with pool.acquire() as conn:
        limits = dict(
            await conn.fetch("SELECT code, load_limit FROM experts WHERE code LIKE $1", f"P{tag}-%")
        )
        stored = await conn.fetchval(
            "SELECT count(*) FROM councils WHERE request_id LIKE $1", f"R-{tag}-%"
        )
    assert stored == 40
    assert sum(seats.values()) > 200  # the councils are largely filled
    assert all(n <= limits[code] for code, n in seats.items())
    # Asked again, each request gets the proposal it was given, not a new one.
    again = await acts.propose_council(
        ProposeCouncilInput(
            request_id=reqs[0][0],
            agency_code="SGTVT",
            expertise_fields=reqs[0][1],
            council_size=7,
            alternates=2,
            now=now,
        )
    )
    assert again == proposals[0]


async def test_coordinator_confirms_an_edited_council_rechecked(
    env, worker, policy, registry, pool
):
    experts = await registry.add(4)
    [own] = await registry.add(1, organisation="Sở Giao thông Vận tải")
    pol = policy_with(
        policy, council_size=2, quorum=2, alternates=1, council_confirmation="coordinator"
    )
    rid, handle = await screened_in(env, worker, pol, registry)
    state = await until(
        lambda s: (
            s.council is not None and "confirm" not in s.waiting_for and s.stage == Stage.council
        ),
        handle,
    )
    await asyncio.sleep(0.2)
    state = await handle.query(ReviewRequestWorkflow.state)
    assert state.stage == Stage.council and state.assignments == []  # waits for the coordinator
    proposed = [m.expert_code for m in state.council.members]
    async with pool.acquire() as conn:
        row = await q.get_council(conn, rid)
    assert row["status"] == "proposed"
    assert [m["expert_code"] for m in row["proposal"]["members"]] == proposed
    assert f"{own.code}: same organisation as the requester" in row["proposal"]["excluded"]

    # An edited council with a conflicted member is refused, naming the member and the rule.
    spare = next(e.code for e in experts if e.code not in proposed)
    with pytest.raises(service.ActionError, match=f"{own.code}: same organisation"):
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.confirm_council,
            ConfirmCouncilInput(
                actor=f.COORDINATOR, members=[proposed[0], own.code], chair=proposed[0]
            ),
        )
    with pytest.raises(Exception, match="chair: must be one of the members"):
        ConfirmCouncilInput(actor=f.COORDINATOR, members=[proposed[0]], chair=spare)

    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.confirm_council,
        ConfirmCouncilInput(actor=f.COORDINATOR, members=[spare, proposed[1]], chair=spare),
    )
    state = await until(lambda s: s.stage == Stage.review and len(s.assignments) == 2, handle)
    assert {a.expert_code: a.role.value for a in state.assignments} == {
        spare: "chair",
        proposed[1]: "member",
    }
    async with pool.acquire() as conn:
        row = await q.get_council(conn, rid)
        actions = [r["action"] for r in await q.audit_trail(conn, rid)]
    assert row["status"] == "confirmed" and row["confirmed_by"] == "coordinator:VP01"
    assert [m["expert_code"] for m in row["proposal"]["members"]] == [spare, proposed[1]]
    assert actions.index("council_proposed") < actions.index("council_confirmed")
    with pytest.raises(service.ActionError, match="in review, not council"):
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.confirm_council,
            ConfirmCouncilInput(actor=f.COORDINATOR),
        )


async def test_not_enough_experts_notifies_the_coordinator_and_waits(
    env, worker, policy, registry, pool
):
    await registry.add(1)
    await registry.add(1, organisation="Sở Giao thông Vận tải")
    rid, handle = await screened_in(env, worker, policy, registry)
    state = await until(
        lambda s: s.council is not None and len(s.assignments) == 1 and s.stage == Stage.review,
        handle,
    )
    assert state.council.shortfall == (
        f"not enough experts: needs 3 in {registry.field}; 2 match the fields; excluded: "
        "1 from the requester's own organisation; 1 could be seated"
    )
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT payload FROM outbox WHERE request_id = $1 AND event = 'council_shortfall'", rid
        )
    assert row["payload"]["shortfall"] == state.council.shortfall
    # It went on with whom it has (in review once that invitation was recorded), waiting.


async def test_an_alternate_who_became_ineligible_is_skipped(env, worker, policy, registry, pool):
    """Alternates come from a proposal that may be weeks old: each is checked again before
    being invited."""
    from domain.messages import DeclineInput
    from workflows.assignment import ExpertAssignmentWorkflow

    await registry.add(3)
    pol = policy_with(policy, council_size=1, quorum=1, alternates=2)
    rid, handle = await screened_in(env, worker, pol, registry)
    state = await until(lambda s: len(s.assignments) == 1 and s.assignments[0].respond_by, handle)
    first_alt, second_alt = state.alternates_left
    async with pool.acquire() as conn:
        await q.set_active(conn, "experts", first_alt, False)
    member = state.assignments[0].expert_code
    await service.assignment_update(
        env.client,
        rid,
        member,
        ExpertAssignmentWorkflow.decline,
        DeclineInput(expert_code=member, reason="Bận việc khác"),
    )
    state = await until(lambda s: len(s.assignments) == 2, handle)
    assert state.assignments[1].expert_code == second_alt
    assert state.assignment(first_alt) is None


async def test_adding_an_expert_already_on_the_proposed_council_is_refused(
    env, worker, policy, registry, pool
):
    from domain.messages import AddExpertInput

    await registry.add(3)
    pol = policy_with(
        policy, council_size=2, quorum=2, alternates=1, council_confirmation="coordinator"
    )
    rid, handle = await screened_in(env, worker, pol, registry)
    state = await until(lambda s: s.council is not None, handle)
    proposed = state.council.members[0].expert_code
    with pytest.raises(service.ActionError, match="already on the proposed council"):
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.add_expert,
            AddExpertInput(actor=f.COORDINATOR, expert_code=proposed),
        )
    state = await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.confirm_council,
        ConfirmCouncilInput(actor=f.COORDINATOR),
    )
    state = await until(lambda s: len(s.assignments) == 2, handle)
    assert sorted(a.expert_code for a in state.assignments) == sorted(
        m.expert_code for m in state.council.members
    )
