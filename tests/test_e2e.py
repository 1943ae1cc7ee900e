"""End to end on the Temporal dev server (the one `make up` runs): the CLI as a person uses
it, `advisory demo` to closed, and the request found by its search attributes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re

import pytest
import pytest_asyncio

from db import queries as q
from domain import search_attributes as sa
from domain.models import Stage
from infra.settings import CONFIG
from starter.demo import park_requests, run_demo
from starter.registry import EXPERTS, seed
from tests.conftest import advisory, run_cli
from worker import build_worker


@pytest_asyncio.fixture(scope="module")
async def stack(dev_env, pool, settings):
    """A worker on the default task queue, as `make up` runs it, and the sample registry."""
    await seed(pool, EXPERTS, CONFIG / "experts.sample.json")
    async with build_worker(dev_env.client, pool, settings):
        yield dev_env


async def test_demo_reaches_closed_and_is_found_by_search_attributes(stack, settings, pool):
    lines: list[str] = []
    rid = await run_demo(stack.client, pool, settings, out=lines.append)
    stages = [line.split("]")[0].strip("[ ") for line in lines if line.startswith("[")]
    assert stages == [
        "intake",
        "screening",
        "council",
        "review",
        "synthesis",
        "approval",
        "approval",
        "delivered",
        "adoption",
        "closed",
    ]
    query = f"ReviewStage = 'closed' AND AgencyCode = 'STNMT' AND WorkflowId = 'review-{rid}'"
    async with asyncio.timeout(20):
        while True:
            found = [w async for w in stack.client.list_workflows(query)]
            if found:
                break
            await asyncio.sleep(0.2)
    [wf] = found
    assert wf.typed_search_attributes.get(sa.KIND) == "critique"
    received = wf.typed_search_attributes.get(sa.OPINIONS_RECEIVED)
    expected = wf.typed_search_attributes.get(sa.OPINIONS_EXPECTED)
    assert expected == 5 and 3 <= received <= expected
    handle = stack.client.get_workflow_handle(f"review-{rid}")
    described = await handle.describe()
    assert "STNMT" in (await described.static_summary())

    # What Temporal stores (and its UI shows without the key) names no one: the submission,
    # the opinions and the adoption answer are ciphertext; summary and details stay readable.
    raw = (await handle.fetch_history()).to_json()
    stored = b"\n".join(base64.b64decode(d) for d in re.findall(r'"data": "([^"]+)"', raw))
    assert "critique · STNMT".encode() in stored  # the summary, readable
    for person in ("hong.nt@stnmt.example.gov.vn", "Nguyễn Thị Hồng", "0204 3854 000"):
        assert person.encode() not in stored, person
    assert b"binary/encrypted" in b"".join(
        base64.b64decode(m) for m in re.findall(r'"encoding": "([^"]+)"', raw)
    )
    # The summary names no title; the details link to the request's case page.
    assert await described.static_summary() == f"critique · STNMT · {rid}"
    details = await described.static_details()
    assert details.startswith(f"[Case {rid} in the portal](http")
    assert details.endswith(f"/portal/cases/{rid})")
    metadata = await handle.query("__temporal_workflow_metadata")
    assert metadata.current_details == "closed"

    # Each expert's assignment is found by expert code and state, and names no person.
    query = (
        f"WorkflowType = 'ExpertAssignmentWorkflow' AND WorkflowId STARTS_WITH 'review-{rid}-'"
        " AND AssignmentState = 'submitted'"
    )
    async with asyncio.timeout(20):
        while True:
            children = [w async for w in stack.client.list_workflows(query)]
            if len(children) >= received:
                break
            await asyncio.sleep(0.2)
    assert len(children) == received
    for child in children:
        code = child.typed_search_attributes.get(sa.EXPERT_CODE)
        assert child.id == f"review-{rid}-expert-{code}"
        assert child.typed_search_attributes.get(sa.ASSIGNMENT_DUE) is None  # no longer due
        summary = await (
            await stack.client.get_workflow_handle(child.id).describe()
        ).static_summary()
        assert code in summary and "@" not in summary
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT stage FROM requests WHERE id = $1", rid) == "closed"
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE request_id = $1", rid) > 10
        # The audit trail names the registered people who acted, and the conclusion is signed
        # by the approving coordinator's registered name and title.
        actors = dict(
            await conn.fetch(
                "SELECT action, actor FROM audit_log WHERE request_id = $1"
                " AND action IN ('screening_accepted', 'conclusion_returned',"
                " 'conclusion_approved')",
                rid,
            )
        )
        named = {r["action"]: r["actor_name"] for r in await q.audit_trail(conn, rid)}
        signed = await conn.fetchrow(
            "SELECT approved_by, approver_title FROM conclusions"
            " WHERE request_id = $1 AND approved_at IS NOT NULL",
            rid,
        )
    assert actors == {
        "screening_accepted": "coordinator:VP02",
        "conclusion_returned": "coordinator:PCT01",
        "conclusion_approved": "coordinator:PCT01",
    }
    assert tuple(signed) == ("Vũ Quang Hải", "Phó Chủ tịch Liên hiệp hội")
    assert named["conclusion_approved"] == "Vũ Quang Hải, Phó Chủ tịch Liên hiệp hội"
    assert named["screening_accepted"] == "Hoàng Minh Đức, Phó Chánh Văn phòng"
    assert named["submitted"] == "Sở Tài nguyên và Môi trường tỉnh Bắc Giang"

    # The agency's uploaded PDFs are round 0; the conclusion a reader opens reads right.
    import pypdf

    async with pool.acquire() as conn:
        docs = [(d["name"], d["round"], d["stored"]) for d in await q.request_documents(conn, rid)]
    assert docs[:2] == [("Dự thảo quy hoạch.pdf", 0, True), ("Tờ trình.pdf", 0, True)]
    saved = lines[-1].split("the signed conclusion: ", 1)[1]
    text = " ".join(" ".join(p.extract_text() for p in pypdf.PdfReader(saved).pages).split())
    for expected in ("PHÓ CHỦ TỊCH", "Vũ Quang Hải", "Sở Tài nguyên và Môi trường tỉnh Bắc Giang"):
        assert expected in text, expected


async def test_demo_leaves_a_board_found_by_stage_agency_and_opinions(stack, settings, pool):
    screening, supplement, review = await park_requests(stack.client, pool, settings, out=print)
    for rid, query in [
        (screening, "ReviewStage = 'screening' AND AgencyCode = 'SXD'"),
        (supplement, "ReviewStage = 'supplement' AND AgencyCode = 'SNNMT'"),
        (review, "ReviewStage = 'review' AND AgencyCode = 'SYT' AND OpinionsReceived = 1"),
    ]:
        query += f" AND WorkflowId = 'review-{rid}'"
        async with asyncio.timeout(20):
            while True:
                if [w async for w in stack.client.list_workflows(query)]:
                    break
                await asyncio.sleep(0.2)  # visibility catches up


async def test_cli_against_the_stack(stack, database_url, tmp_path):
    env_vars = {
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "DATABASE_URL": database_url,
    }
    request = json.loads((CONFIG / "request.sample.json").read_text(encoding="utf-8"))
    request["agency_reference"] = f"CLI-{os.getpid()}-{tmp_path.name}"
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")

    out = await run_cli("--json", "submit", str(path), env_vars=env_vars)
    assert out.returncode == 0, out.stderr
    rid = json.loads(out.stdout)["request_id"]
    again = await run_cli("submit", str(path), env_vars=env_vars)
    assert again.returncode == 0 and "already exists" in again.stdout

    listed = await run_cli("--json", "list", "--agency", "STNMT", env_vars=env_vars)
    assert rid in [r["id"] for r in json.loads(listed.stdout)]
    # Not past its screening deadline yet, so not stuck; the UI's filter finds it too.
    stuck = await run_cli("--json", "list", "--stage", "screening", "--stuck", env_vars=env_vars)
    assert rid not in [r["id"] for r in json.loads(stuck.stdout)]
    query = f"ReviewStage = 'screening' AND AgencyCode = 'STNMT' AND WorkflowId = 'review-{rid}'"
    async with asyncio.timeout(20):
        while True:
            by_query = await run_cli("--json", "list", "--query", query, env_vars=env_vars)
            assert by_query.returncode == 0, by_query.stderr
            if found := json.loads(by_query.stdout):
                break
            await asyncio.sleep(0.3)
    assert found[0]["ReviewStage"] == "screening" and found[0]["OpinionsExpected"] == 5
    bad = await run_cli("list", "--query", "ReviewStage = = 'x'", env_vars=env_vars)
    assert bad.returncode == 2 and bad.stderr.startswith("advisory: --query: ")

    # Screening refuses a decline without a reason: one line, exit 2, nothing changed.
    refused = await run_cli("screen", rid, "decline", env_vars=env_vars)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "note" in refused.stderr
    shown = await run_cli("--json", "show", rid, env_vars=env_vars)
    assert json.loads(shown.stdout)["state"]["stage"] == Stage.screening.value

    declined = await run_cli("screen", rid, "decline", "--note", "Ngoài phạm vi", env_vars=env_vars)
    assert declined.returncode == 0, declined.stderr
    assert "[declined]" in declined.stdout
    after = await run_cli("approve", rid, env_vars=env_vars)
    assert after.returncode == 2 and "nothing more can be done" in after.stderr


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"kind": "advice"}, "kind: Input should be 'advisory', 'critique' or"),
        (
            {"documents": [{"name": "a", "uri": "https://x.example/a", "sha256": "xyz"}]},
            "documents.0.sha256: must be 64 hexadecimal characters",
        ),
        ({"requested_by": {"name": "A", "email": "not-an-email"}}, "requested_by.email"),
        ({"expertise_fields": []}, "expertise_fields: List should have at least 1 item"),
    ],
)
def test_cli_rejects_a_bad_request_file_naming_the_field(tmp_path, payload, expected):
    request = json.loads((CONFIG / "request.sample.json").read_text(encoding="utf-8"))
    request.update(payload)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    # No server is needed to refuse it: nothing is sent.
    out = advisory("submit", str(path), env_vars={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert out.returncode == 2
    assert out.stderr.startswith("advisory: invalid input: ") and expected in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_cli_missing_file_is_one_line(tmp_path):
    out = advisory("submit", str(tmp_path / "none.json"), env_vars={})
    assert (
        out.returncode == 2 and out.stderr == f"advisory: {tmp_path / 'none.json'}: no such file\n"
    )


async def test_request_continues_as_new_with_live_assignments(stack, policy, registry, pool):
    """On the real (dev) server: a request whose history passes its limit during review
    continues as new with its experts still working; actions sent all at once around the
    switch are each recorded once, and the request goes on to close."""
    import asyncio as aio

    from domain.messages import (
        AcceptInput,
        ApproveInput,
        ExtendInput,
        ReplaceExpertInput,
        ScreeningInput,
    )
    from starter import service
    from tests import factories as f
    from tests.test_deadlines import policy_with, run_lengths
    from tests.test_lifecycle import until
    from workflows.assignment import ExpertAssignmentWorkflow
    from workflows.review import ReviewRequestWorkflow

    client = stack.client
    await registry.add(6)
    # Twelve extensions of the review deadline: more than the shipped policy allows.
    pol = policy_with(policy, council_size=2, quorum=2, alternates=4, max_extensions=20)
    rid = (
        await service.submit(client, pool, f.submission(registry.field), pol, history_limit=120)
    ).request_id
    handle = service.request_handle(client, rid)
    await until(lambda s: s.stage == Stage.screening, handle)
    await service.request_update(
        client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(actor=f.COORDINATOR, decision="accept"),
    )
    state = await until(
        lambda s: len(s.assignments) == 2 and all(a.respond_by for a in s.assignments), handle
    )
    chair = next(a.expert_code for a in state.assignments if a.role == "chair")
    await service.assignment_update(
        client, rid, chair, ExpertAssignmentWorkflow.accept, AcceptInput(expert_code=chair)
    )
    for round_ in range(3):
        await aio.gather(
            *[
                service.request_update(
                    client,
                    rid,
                    ReviewRequestWorkflow.extend_deadline,
                    ExtendInput(actor=f.COORDINATOR, days=1, reason=f"Gia hạn {round_}.{i}"),
                )
                for i in range(4)
            ]
        )
        member = next(
            a.expert_code
            for a in (await handle.query(ReviewRequestWorkflow.state)).assignments
            if a.role == "member" and a.state.is_open
        )
        await service.request_update(
            client,
            rid,
            ReviewRequestWorkflow.replace_expert,
            ReplaceExpertInput(actor=f.COORDINATOR, expert_code=member, reason="Thay chuyên gia"),
        )
    state = await until(
        lambda s: any(
            a.role == "member" and a.state.is_open and a.respond_by for a in s.assignments
        ),
        handle,
    )
    member = next(
        a.expert_code for a in state.assignments if a.role == "member" and a.state.is_open
    )
    for code in (member, chair):
        if code == member:
            await service.assignment_update(
                client, rid, code, ExpertAssignmentWorkflow.accept, AcceptInput(expert_code=code)
            )
        await service.assignment_update(
            client, rid, code, ExpertAssignmentWorkflow.submit_opinion, f.opinion(code)
        )
    await until(lambda s: s.stage == Stage.synthesis, handle)
    await service.request_update(
        client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
    )
    await service.request_update(
        client, rid, ReviewRequestWorkflow.approve_conclusion, ApproveInput(actor=f.COORDINATOR)
    )
    await until(lambda s: s.stage == Stage.adoption, handle)
    state = await service.request_update(
        client, rid, ReviewRequestWorkflow.answer_adoption, f.adoption()
    )
    assert state.stage == Stage.closed

    runs = await run_lengths(stack, handle.id)
    print(f"\nrequest history per run on the dev server: {runs}")
    # A run stops at the first moment nothing is in flight after passing its limit, so it
    # passes the limit by at most the actions already arriving (here bursts of four
    # extensions and a replacement, ~20-40 events each); production limits are thousands.
    assert len(runs) > 1 and max(runs) < 120 * 3
    async with pool.acquire() as conn:
        extended = await conn.fetch(
            "SELECT details->>'reason' AS reason FROM audit_log"
            " WHERE request_id = $1 AND action = 'deadline_extended'",
            rid,
        )
        assert await conn.fetchval("SELECT stage FROM requests WHERE id = $1", rid) == "closed"
    reasons = sorted(r["reason"] for r in extended)
    assert reasons == sorted(f"Gia hạn {r}.{i}" for r in range(3) for i in range(4))


async def test_the_cli_uploads_files_with_a_submission_and_a_supplement(
    stack, database_url, tmp_path, pool
):
    from tests.test_documents import docx, pdf

    env_vars = {
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "DATABASE_URL": database_url,
    }
    request = json.loads((CONFIG / "request.sample.json").read_text(encoding="utf-8"))
    request["agency_reference"] = f"FILES-{os.getpid()}-{tmp_path.name}"
    del request["documents"]
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    draft = tmp_path / "Dự thảo quy hoạch.pdf"
    draft.write_bytes(pdf("Du thao quy hoach"))
    fake = tmp_path / "phụ lục.pdf"
    fake.write_bytes(b"not a pdf at all")

    refused = await run_cli(
        "submit", str(path), "--attach", str(draft), "--attach", str(fake), env_vars=env_vars
    )
    assert refused.returncode == 2 and "phụ lục.pdf is not a PDF" in refused.stderr
    out = await run_cli("--json", "submit", str(path), "--attach", str(draft), env_vars=env_vars)
    assert out.returncode == 0, out.stderr
    rid = json.loads(out.stdout)["request_id"]
    supplement = await run_cli(
        "screen", rid, "supplement", "--note", "Bổ sung tờ trình", env_vars=env_vars
    )
    assert supplement.returncode == 0, supplement.stderr
    letter = tmp_path / "Tờ trình.docx"
    letter.write_bytes(docx())
    sent = await run_cli("supplement", rid, "--attach", str(letter), env_vars=env_vars)
    assert sent.returncode == 0, sent.stderr
    async with pool.acquire() as conn:
        rows = await q.request_documents(conn, rid)
        orphans = await conn.fetchval(
            "SELECT count(*) FROM documents WHERE name = 'Dự thảo quy hoạch.pdf'"
            " AND request_id IS NULL"
        )
    assert [(r["name"], r["round"], r["stored"]) for r in rows] == [
        ("Dự thảo quy hoạch.pdf", 0, True),
        ("Tờ trình.docx", 1, True),
    ]
    assert orphans == 0  # the refused call kept nothing
