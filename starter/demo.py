"""`advisory demo`: one request through the whole lifecycle against the running stack, with
the sample request, printing each stage as the engine reaches it."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from temporalio.client import Client

from db import queries as q
from domain.messages import (
    AcceptInput,
    AdoptionInput,
    ApproveInput,
    DraftConclusionInput,
    RequestState,
    ReturnConclusionInput,
    ScreeningInput,
    SubmitOpinionInput,
)
from domain.models import RequestSubmission, Role, Stage
from infra.documents import DocumentStore, document_store
from infra.settings import CONFIG, Settings
from starter import service
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.review import ReviewRequestWorkflow

# The Union's office as config/coordinators.sample.csv has it: who screens, and who signs.
SCREENS, SIGNS = "VP02", "PCT01"

RECOMMENDATIONS = ["endorse_with_changes", "endorse", "endorse_with_changes", "do_not_endorse"]


async def _until(
    client: Client, rid: str, predicate: Callable[[RequestState], bool], timeout: float = 60
) -> RequestState:
    async with asyncio.timeout(timeout):
        while True:
            state = await service.request_state(client, rid)
            if predicate(state):
                return state
            await asyncio.sleep(0.2)


async def run_demo(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    out: Callable[[str], None] = print,
    task_queue: str | None = None,
) -> str:
    data = json.loads((CONFIG / "request.sample.json").read_text(encoding="utf-8"))
    # A fresh agency reference per run: the same reference would (rightly) find the old request.
    data["agency_reference"] += f"/DEMO-{datetime.now(UTC):%Y%m%d%H%M%S%f}"
    store = document_store(settings, pool)
    # The agency uploads its draft and cover letter (PDFs made now, as its office would).
    owner = f"agency:{data['agency']['code']}"
    data["documents"] = [
        {"id": (await _upload(pool, store, name, body, owner)).id}
        for name, body in (
            ("Dự thảo quy hoạch.pdf", [data["title"], data["summary"]]),
            ("Tờ trình.pdf", [f"Tờ trình về việc đề nghị phản biện: {data['title']}"]),
        )
    ]
    submission = RequestSubmission.model_validate(data)
    policy = settings.load_policy()
    kind_policy = policy.for_kind(submission.kind)
    out(
        f"policy for {submission.kind.value} ({kind_policy.calendar} days): "
        f"screening {kind_policy.screening_days}, respond {kind_policy.respond_days}, "
        f"review {kind_policy.review_days}, synthesis {kind_policy.synthesis_days}, "
        f"approval {kind_policy.approval_days}, adoption answer {kind_policy.adoption_days}; "
        f"council of {kind_policy.council_size}"
    )
    kwargs = {"task_queue": task_queue} if task_queue else {}
    screener = await service.signed_in(pool, "coordinator", SCREENS)
    signer = await service.signed_in(pool, "coordinator", SIGNS)
    submitted = await service.submit(client, pool, submission, policy, **kwargs)
    rid = submitted.request_id
    out(f"[intake]     {rid} submitted by {submission.agency.code}: {submission.title}")

    state = await _until(client, rid, lambda s: s.stage == Stage.screening)
    out(f"[screening]  due {state.stage_deadline:%Y-%m-%d}; {screener.name} accepts it")
    await service.request_update(
        client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(decision="accept", note="Hồ sơ đầy đủ.", actor=screener),
    )
    state = await _until(
        client,
        rid,
        lambda s: (
            s.stage in (Stage.review, Stage.council)
            and bool(s.council)
            and all(a.respond_by for a in s.assignments)
            and len(s.assignments) == len(s.council.members)
        ),
    )
    council = state.council
    assert council is not None
    if not state.assignments:
        raise RuntimeError(
            f"no eligible experts ({council.shortfall}); seed the registry: advisory experts seed"
        )
    out(
        f"[council]    proposed {len(council.members)} members, "
        f"{len(council.alternates)} alternates; excluded: {len(council.excluded)}"
    )
    for m in council.members:
        out(f"             {m.expert_code} {m.role.value}: {m.reason}")
    out(f"[review]     {len(state.assignments)} invitations sent")
    for i, a in enumerate(state.assignments):
        view = await service.assignment_update(
            client,
            rid,
            a.expert_code,
            ExpertAssignmentWorkflow.accept,
            AcceptInput(expert_code=a.expert_code),
        )
        out(f"             {a.expert_code} accepted, opinion due {view.due_at:%Y-%m-%d}")
        await service.assignment_update(
            client,
            rid,
            a.expert_code,
            ExpertAssignmentWorkflow.submit_opinion,
            SubmitOpinionInput.model_validate(
                {
                    "expert_code": a.expert_code,
                    "opinion": {
                        "recommendation": RECOMMENDATIONS[i % len(RECOMMENDATIONS)],
                        "summary": "Dự thảo có cơ sở khoa học; cần làm rõ phân vùng xả thải.",
                        "comments_for_agency": "Bổ sung số liệu quan trắc 2021–2025 và lộ trình.",
                        "confidential_note": "",
                    },
                }
            ),
        )
        out(f"             {a.expert_code} submitted an opinion")
    state = await _until(client, rid, lambda s: s.stage == Stage.synthesis)
    chair = next(a.expert_code for a in state.assignments if a.role == Role.chair)
    out(f"[synthesis]  all opinions in; chair {chair} drafts the conclusion")
    draft = DraftConclusionInput.model_validate(
        {
            "expert_code": chair,
            "draft": {
                "recommendation": "endorse_with_changes",
                "text": "Hội đồng thống nhất đề nghị thông qua dự thảo với các sửa đổi đã nêu.",
            },
        }
    )
    await service.request_update(client, rid, ReviewRequestWorkflow.draft_conclusion, draft)
    out(f"[approval]   {signer.name} returns the draft once with comments")
    await service.request_update(
        client,
        rid,
        ReviewRequestWorkflow.return_conclusion,
        ReturnConclusionInput(comments="Nêu rõ kiến nghị về nguồn lực thực hiện.", actor=signer),
    )
    await service.request_update(client, rid, ReviewRequestWorkflow.draft_conclusion, draft)
    out(f"[approval]   redrafted; {signer.name}, {signer.title}, approves and signs")
    await service.request_update(
        client,
        rid,
        ReviewRequestWorkflow.approve_conclusion,
        ApproveInput(actor=signer),
    )
    out("[delivered]  conclusion sent to the agency")
    state = await _until(client, rid, lambda s: s.stage == Stage.adoption)
    out(f"[adoption]   the agency's answer due {state.stage_deadline:%Y-%m-%d}")
    await service.request_update(
        client,
        rid,
        ReviewRequestWorkflow.answer_adoption,
        AdoptionInput.model_validate(
            {
                "answer": {
                    "status": "partially_adopted",
                    "explanation": "Tiếp thu phần lớn ý kiến; lộ trình giữ nguyên do nguồn vốn.",
                    "answered_by": data["requested_by"],
                }
            }
        ),
    )
    state = await _until(client, rid, lambda s: s.stage == Stage.closed)
    out(f"[closed]     {rid} closed. See it with: advisory show {rid}")
    path = await _save_conclusion(pool, store, rid, settings.data_dir / "demo")
    out(f"             the signed conclusion: {path}")
    return rid


def sample_pdf(lines: list[str]) -> bytes:
    """A one-page PDF of these lines, in the conclusion's font."""
    from fpdf import FPDF

    from activities.letterhead import font_files

    pdf = FPDF(format="A4")
    for style, path in font_files().items():
        pdf.add_font("Serif", style, str(path))
    pdf.add_page()
    pdf.set_font("Serif", size=13)
    for line in lines:
        pdf.multi_cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


async def _upload(
    pool: asyncpg.Pool, store: DocumentStore, name: str, lines: list[str], owner: str
):
    from starter import documents

    return await documents.upload(pool, store, io.BytesIO(sample_pdf(lines)), name, owner)


async def _save_conclusion(
    pool: asyncpg.Pool, store: DocumentStore, rid: str, directory: Path
) -> Path:
    """The request's conclusion PDF, copied out of the store for a reader to open."""

    async with pool.acquire() as conn:
        doc = await conn.fetchrow(
            "SELECT d.name, d.sha256 FROM conclusion_numbers n"
            " JOIN documents d ON d.id = n.document_id WHERE n.request_id = $1",
            rid,
        )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{rid} {doc['name']}"
    with path.open("wb") as f:
        async for chunk in store.read(doc["sha256"]):
            f.write(chunk)
    return path


PARKED = [
    # (agency code, where the request is left); names come from the agency registry
    ("SXD", Stage.screening),
    ("SNNMT", Stage.supplement),
    ("SYT", Stage.review),
]


async def park_requests(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    out: Callable[[str], None] = print,
    task_queue: str | None = None,
) -> list[str]:
    """Leaves one request in each of screening, supplement and review (an expert has given
    an opinion, the others are still to answer), from three agencies, so an operator has a
    board to filter by stage and agency."""
    policy = settings.load_policy()
    kwargs = {"task_queue": task_queue} if task_queue else {}
    stamp = f"{datetime.now(UTC):%Y%m%d%H%M%S%f}"
    screener = await service.signed_in(pool, "coordinator", SCREENS)
    ids = []
    for code, stage in PARKED:
        data = json.loads((CONFIG / "request.sample.json").read_text(encoding="utf-8"))
        data["agency"] = {"code": code}
        data["agency_reference"] = f"{code}/DEMO-{stamp}"
        data["kind"] = "advisory"  # a council of three
        rid = (
            await service.submit(
                client, pool, RequestSubmission.model_validate(data), policy, **kwargs
            )
        ).request_id
        await _until(client, rid, lambda s: s.stage == Stage.screening)
        if stage == Stage.supplement:
            await service.request_update(
                client,
                rid,
                ReviewRequestWorkflow.screen,
                ScreeningInput(
                    decision="supplement",
                    note="Bổ sung báo cáo đánh giá tác động.",
                    actor=screener,
                ),
            )
        elif stage == Stage.review:
            await service.request_update(
                client,
                rid,
                ReviewRequestWorkflow.screen,
                ScreeningInput(decision="accept", actor=screener),
            )
            state = await _until(
                client,
                rid,
                # The council seated and invited, as in the walk-through above (or, with
                # too few experts free, the request waits in council for the coordinator).
                lambda s: (
                    s.stage in (Stage.review, Stage.council)
                    and bool(s.council)
                    and all(a.respond_by for a in s.assignments)
                    and len(s.assignments) == len(s.council.members)
                ),
            )
            if state.assignments:
                first = state.assignments[0].expert_code
                await service.assignment_update(
                    client,
                    rid,
                    first,
                    ExpertAssignmentWorkflow.accept,
                    AcceptInput(expert_code=first),
                )
                await service.assignment_update(
                    client,
                    rid,
                    first,
                    ExpertAssignmentWorkflow.submit_opinion,
                    SubmitOpinionInput.model_validate(
                        {
                            "expert_code": first,
                            "opinion": {
                                "recommendation": "endorse_with_changes",
                                "summary": "Cơ bản tán thành.",
                                "comments_for_agency": "Làm rõ nguồn kinh phí.",
                                "confidential_note": "",
                            },
                        }
                    ),
                )
        state = await _until(
            client,
            rid,
            lambda s, stage=stage: (
                (
                    s.stage == stage
                    and (stage != Stage.review or s.assignments[0].state.value == "submitted")
                )
                or (stage == Stage.review and s.stage == Stage.council)
            ),
        )
        out(f"  left in {state.stage.value:<11} {rid}  {code}: {state.waiting_for}")
        if state.council and state.council.shortfall:
            out(f"    {state.council.shortfall}")
        await _invited_can_answer(pool, state, out)
        ids.append(rid)
    return ids


async def _invited_can_answer(pool: asyncpg.Pool, state, out: Callable[[str], None]) -> None:
    """Who can still answer from their invitation e-mail, whose "Nhận lời" link opens the
    portal already signed in."""
    invited = [a.expert_code for a in state.assignments if a.state.value == "invited"]
    if not invited:
        return
    async with pool.acquire() as conn:
        rows = [await q.get_expert(conn, code) for code in invited]
    out("    each can answer in the portal from the invitation e-mail (its Nhận lời / Từ chối")
    out("    links sign them in; `make up` keeps the mail in .data/mail/):")
    for row in rows:
        out(f"      {row['code']} {row['name']} <{row['email']}>")
