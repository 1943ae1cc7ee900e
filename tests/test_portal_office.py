"""The Union's office's pages, through the real app over HTTP, a real PostgreSQL, a real
Temporal server with a worker and a real SMTP sink for sign-in: the board (its groups, its
order, its filters, an unknown filter), a case's page, screening (accept, supplement, decline),
approval (return, then approve; a returned draft never approved), the deadline's extension,
the inbox read per person, and who may read or act. Assertions are on what a person sees and
on rows."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx

from db import queries as q
from domain.messages import ScreeningInput
from domain.models import Actor, Contact, Operator, Stage
from starter import service
from starter.api import create_app
from tests import factories as f
from tests.conftest import register_agency
from tests.test_lifecycle import accept_and_submit, review_to_synthesis, until
from tests.test_portal_auth import (
    PORTAL,
    csrf_of,
    new_coordinator,
    new_expert,
    portal_settings,
    signed_in_as,
    text_of,
)
from workflows.review import ReviewRequestWorkflow

Browser = Callable[..., Awaitable[httpx.AsyncClient]]


@asynccontextmanager
async def office_portal(env, pool, mail, worker) -> AsyncIterator[Browser]:
    """The app, and a way to open a browser of one's own, signed in by the e-mailed link as
    the person registered for `email`."""
    app = create_app(
        portal_settings(mail), client=env.client, pool=pool, task_queue=worker.task_queue
    )
    async with app.router.lifespan_context(app), AsyncExitStack() as browsers:

        async def browser(email: str) -> httpx.AsyncClient:
            n = uuid.uuid4().int
            client = (f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}", 40000)
            http = await browsers.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app, client=client), base_url=PORTAL
                )
            )
            await signed_in_as(http, mail, email)
            return http

        yield browser


async def operator(pool) -> str:
    """An operator of the registry: their e-mail."""
    tag = uuid.uuid4().hex[:8]
    o = Operator(code=f"OP{tag}", name=f"Vận hành {tag}", email=f"op.{tag}@portal.example.vn")
    async with pool.acquire() as conn:
        await q.upsert_operator(conn, o)
    return o.email


async def coordinator(pool) -> tuple[str, Actor]:
    """A coordinator of the registry: (e-mail, as actions record them)."""
    c = await new_coordinator(pool)
    return c.email, Actor(role="coordinator", code=c.code, name=c.name, title=c.title)


async def agency(pool) -> tuple[str, str]:
    """A registered agency of the test's own: (code, its contact's e-mail)."""
    tag = uuid.uuid4().hex[:6].upper()
    email = f"van.thu.{tag.lower()}@so.example.gov.vn"
    await register_agency(
        pool,
        f"O{tag}",
        name=f"Sở Thử nghiệm {tag}",
        contacts=[Contact(name="Lê Thị Thư", email=email)],
    )
    return f"O{tag}", email


async def in_screening(env, worker, pool, policy, registry, code: str, **changes) -> str:
    """A request of agency `code`, submitted and waiting for screening."""
    sub = f.submission(registry.field, agency={"code": code, "name": "x"}, **changes)
    rid = (
        await service.submit(env.client, pool, sub, policy, task_queue=worker.task_queue)
    ).request_id
    await until(lambda s: s.stage == Stage.screening, service.request_handle(env.client, rid))
    return rid


async def stage_of(pool, rid: str) -> str:
    async with pool.acquire() as conn:
        return (await q.get_request(conn, rid))["stage"]


async def count_events(pool, rid: str, action: str) -> int:
    async with pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE request_id = $1 AND action = $2", rid, action
        )


def once_of(page: str) -> str:
    return re.search(r'name="once" value="([^"]+)"', page).group(1)


def form_of(page: str, **fields) -> dict:
    """The page's form (its CSRF token, its `once`, its draft's version) with `fields`."""
    data = {"csrf_token": csrf_of(page), "once": once_of(page)}
    version = re.search(r'name="version" value="([^"]*)"', page)
    if version:
        data["version"] = version.group(1)
    return {**data, **fields}


def error_beside(page: str, field: str) -> str:
    found = re.search(rf'<p class="error-message" id="f-{re.escape(field)}-error">(.*?)</p>', page)
    assert found, f"no message beside {field}"
    return text_of(found.group(1))


def row_ids(page: str) -> list[str]:
    """The requests the board lists, in its order."""
    return re.findall(r'<th scope="row">\s*<a href="/portal/cases/(R-\w+)">', page)


def group_of(page: str, stage: str) -> str:
    found = re.search(rf'<section aria-labelledby="stage-{stage}">(.*?)</section>', page, re.S)
    assert found, f"no group {stage}"
    return found.group(1)


# --- the board -----------------------------------------------------------------------------------


async def test_the_board_groups_orders_and_filters(env, worker, pool, mail, policy, registry):
    await registry.add(3)
    email, me = await coordinator(pool)
    code, _ = await agency(pool)
    other, _ = await agency(pool)
    accepted = await in_screening(env, worker, pool, policy, registry, code)
    asked = await in_screening(env, worker, pool, policy, registry, code, kind="critique")
    waiting = await in_screening(env, worker, pool, policy, registry, code)
    late = await in_screening(env, worker, pool, policy, registry, code)
    elsewhere = await in_screening(env, worker, pool, policy, registry, other)
    await service.request_update(
        env.client,
        accepted,
        ReviewRequestWorkflow.screen,
        ScreeningInput(decision="accept", actor=me),
    )
    await service.request_update(
        env.client,
        asked,
        ReviewRequestWorkflow.screen,
        ScreeningInput(decision="supplement", note="Bổ sung tờ trình", actor=f.COORDINATOR),
    )
    await until(lambda s: s.stage == Stage.review, service.request_handle(env.client, accepted))
    # The board reads PostgreSQL: a screening deadline three days gone is an overdue request.
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE requests SET next_deadline = $2 WHERE id = $1",
            late,
            datetime.now(UTC) - timedelta(days=3),
        )

    async with office_portal(env, pool, mail, worker) as browser:
        http = await browser(email)
        home = await http.get("/portal/")
        assert 'href="/portal/board"' in home.text and 'href="/portal/inbox"' in home.text

        page = await http.get("/portal/board", params={"agency": code})
        assert page.status_code == 200
        shown = page.text
        # Grouped by stage, in the order a request goes; the overdue first in its group.
        assert row_ids(shown) == [late, waiting, asked, accepted]
        screening = group_of(shown, "screening")
        assert row_ids(screening) == [late, waiting]
        seen = text_of(screening)
        assert "Sơ loại hồ sơ (2)" in seen
        assert re.search(r"\d\d/\d\d/\d{4} \((quá hạn \d+ ngày làm việc|đã quá hạn)\)", seen)
        assert re.search(r"\d\d/\d\d/\d{4} \(còn \d+ ngày làm việc\)", seen)
        assert "Văn phòng: sơ loại hồ sơ" in seen
        title = f.submission(registry.field).title
        agency_name = f"Sở Thử nghiệm {code[1:]}"
        assert f"{title} {agency_name} · Tư vấn" in seen
        assert "Cơ quan đề nghị: gửi hồ sơ bổ sung theo yêu cầu" in text_of(
            group_of(shown, "supplement")
        )
        review = text_of(group_of(shown, "review"))
        assert "Hội đồng: đã nhận 0/3 ý kiến; 3 lời mời chưa được trả lời" in review
        assert f"sơ loại: {me.name}" in review
        assert elsewhere not in shown

        # Filters: a plain GET form, each narrowing the rows.
        kind = await http.get("/portal/board", params={"agency": code, "kind": "critique"})
        assert row_ids(kind.text) == [asked]
        assert '<option value="critique" selected>' in kind.text
        mine = await http.get("/portal/board", params={"agency": code, "coordinator": me.code})
        assert row_ids(mine.text) == [accepted]
        field = await http.get("/portal/board", params={"field": registry.field})
        assert set(row_ids(field.text)) == {late, waiting, asked, accepted, elsewhere}
        none = await http.get("/portal/board", params={"agency": other, "kind": "critique"})
        assert none.status_code == 200 and row_ids(none.text) == []
        assert "Không có hồ sơ đang xử lý nào phù hợp với điều kiện lọc." in text_of(none.text)

        # An unknown value is refused beside its filter, and nothing is listed as if it
        # had matched.
        unknown = await http.get("/portal/board", params={"agency": "NOPE", "field": "x-y"})
        assert unknown.status_code == 422
        assert error_beside(unknown.text, "agency").endswith(
            "Không có cơ quan nào được đăng ký với mã “NOPE”."
        )
        assert error_beside(unknown.text, "field").endswith(
            "Không có chuyên gia nào thuộc lĩnh vực “x-y”."
        )
        assert row_ids(unknown.text) == []
        assert "Vui lòng sửa điều kiện lọc ở trên để xem bảng theo dõi." in text_of(unknown.text)

        await http.get("/portal/language/en")
        english = await http.get("/portal/board", params={"agency": code})
        seen = text_of(english.text)
        assert "The office: screening the request" in seen
        assert re.search(r"\d\d/\d\d/\d{4} \(\d+ working days? left\)", seen)


# --- screening -----------------------------------------------------------------------------------


async def test_screening_accepts_asks_for_a_supplement_and_declines(
    env, worker, pool, mail, policy, registry
):
    await registry.add(3)
    email, _ = await coordinator(pool)
    code, _ = await agency(pool)
    accept, supplement, decline = [
        await in_screening(env, worker, pool, policy, registry, code) for _ in range(3)
    ]
    async with office_portal(env, pool, mail, worker) as browser:
        http = await browser(email)

        case = await http.get(f"/portal/cases/{accept}")
        seen = text_of(case.text)
        assert "Đang chờ: Văn phòng: sơ loại hồ sơ." in seen
        assert "Dự thảo đề án.pdf" in seen and "Sở Thử nghiệm" in seen
        assert f'href="/portal/cases/{accept}/screening"' in case.text
        assert re.search(r"\d\d/\d\d/\d{4} — Hồ sơ được tiếp nhận", seen)

        page = await http.get(f"/portal/cases/{accept}/screening")
        seen = text_of(page.text)
        assert "Dự thảo đề án.pdf" in seen
        days = policy.kinds["advisory"].supplement_days
        assert re.search(
            rf"Cơ quan đề nghị có {days} ngày làm việc để gửi hồ sơ bổ sung, "
            r"đến hết ngày \d\d/\d\d/\d{4}\.",
            seen,
        )

        # Without its CSRF token: refused, nothing done.
        forged = await http.post(
            f"/portal/cases/{accept}/screening", data={"once": "x", "decision": "accept"}
        )
        assert forged.status_code == 403
        assert await stage_of(pool, accept) == "screening"

        # Accepted; the same form sent again (a double click) is the one action.
        sent = form_of(page.text, decision="accept")
        done = await http.post(f"/portal/cases/{accept}/screening", data=sent)
        assert done.status_code == 303 and done.headers["location"] == f"/portal/cases/{accept}"
        again = await http.post(f"/portal/cases/{accept}/screening", data=sent)
        assert again.status_code == 303
        assert await count_events(pool, accept, "screening_accepted") == 1
        stage = await stage_of(pool, accept)
        assert stage in ("council", "review")
        # What to do now: the council's page or the review's (council.py's), linked.
        case = await http.get(f"/portal/cases/{accept}")
        step = re.search(rf'class="button" href="(/portal/cases/{accept}/{stage})"', case.text)
        assert step, text_of(case.text)
        assert (await http.get(step.group(1))).status_code == 200

        # A supplement asked for, with its note.
        page = await http.get(f"/portal/cases/{supplement}/screening")
        note = "Đề nghị bổ sung tờ trình và ý kiến của các sở liên quan."
        done = await http.post(
            f"/portal/cases/{supplement}/screening",
            data=form_of(page.text, decision="supplement", note=note),
        )
        assert done.status_code == 303
        assert await stage_of(pool, supplement) == "supplement"
        seen = text_of((await http.get(f"/portal/cases/{supplement}")).text)
        assert "Nội dung Văn phòng đề nghị cơ quan bổ sung" in seen and note in seen
        assert "Đang chờ: Cơ quan đề nghị: gửi hồ sơ bổ sung theo yêu cầu." in seen

        # Declined: first without a reason, then with too short a one, each refused beside
        # the field with what was typed kept; then declined.
        page = await http.get(f"/portal/cases/{decline}/screening")
        blank = await http.post(
            f"/portal/cases/{decline}/screening",
            data=form_of(page.text, decision="decline", reason="  "),
        )
        assert blank.status_code == 422
        assert error_beside(blank.text, "reason").endswith("Vui lòng nhập thông tin này.")
        short = await http.post(
            f"/portal/cases/{decline}/screening",
            data=form_of(page.text, decision="decline", reason="Kh"),
        )
        assert short.status_code == 422
        assert error_beside(short.text, "reason").endswith("Vui lòng viết ít nhất 3 ký tự.")
        assert ">Kh</textarea>" in short.text
        assert await stage_of(pool, decline) == "screening"
        reason = "Nội dung không thuộc phạm vi tư vấn, phản biện của Liên hiệp hội."
        done = await http.post(
            f"/portal/cases/{decline}/screening",
            data=form_of(short.text, decision="decline", reason=reason),
        )
        assert done.status_code == 303, text_of(done.text)
        assert await stage_of(pool, decline) == "declined"
        # Sent twice: the request has ended, and the repeat is the same one decline.
        twice = await http.post(
            f"/portal/cases/{decline}/screening",
            data=form_of(short.text, decision="decline", reason=reason),
        )
        assert twice.status_code == 303
        assert await count_events(pool, decline, "screening_declined") == 1
        seen = text_of((await http.get(f"/portal/cases/{decline}")).text)
        assert "Lý do Văn phòng từ chối hồ sơ" in seen and reason in seen
        assert "Bước từ chối" in seen

        # The screening page of a request already screened says so, and offers no choice.
        later = await http.get(f"/portal/cases/{accept}/screening")
        assert "Hồ sơ này không chờ sơ loại" in text_of(later.text)
        assert 'name="decision"' not in later.text


# --- approval ------------------------------------------------------------------------------------


async def test_return_then_approve_and_a_returned_draft_is_never_approved(
    env, worker, pool, mail, policy, registry
):
    await registry.add(3)
    email, me = await coordinator(pool)
    code, _ = await agency(pool)
    rid = await in_screening(env, worker, pool, policy, registry, code)
    handle = service.request_handle(env.client, rid)
    state = await review_to_synthesis(env, rid, handle)
    chair = next(a.expert_code for a in state.assignments if a.role == "chair")
    for a in state.assignments:
        await accept_and_submit(env, rid, a.expert_code)
    await until(lambda s: s.stage == Stage.synthesis, handle)
    await service.request_update(
        env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
    )
    await until(lambda s: s.stage == Stage.approval, handle)

    async with office_portal(env, pool, mail, worker) as browser:
        http = await browser(email)
        case = await http.get(f"/portal/cases/{rid}")
        assert f'href="/portal/cases/{rid}/approval"' in case.text
        # And to the request's workflow in the Temporal UI (which links back here).
        ui = f"http://127.0.0.1:8233/namespaces/default/workflows/review-{rid}"
        assert f'href="{ui}"' in case.text
        page = await http.get(f"/portal/cases/{rid}/approval")
        seen = text_of(page.text)
        assert f.draft(chair).draft.text in seen
        # The council's opinions beside it, the confidential notes the office's to read.
        assert seen.count("Cần bổ sung đánh giá tác động môi trường.") == 3
        assert "Số liệu chương 3 chưa khớp với phụ lục." in seen
        assert f"Bạn ký với tư cách {me.name}, {me.title}." in seen
        stale = page.text

        # Returned: without comments refused beside the field, then with them.
        refused = await http.post(
            f"/portal/cases/{rid}/approval", data=form_of(stale, do="return", comments="")
        )
        assert refused.status_code == 422
        assert error_beside(refused.text, "comments").endswith("Vui lòng nhập thông tin này.")
        comments = "Làm rõ nguồn vốn ngân sách trong mục 2."
        returned = await http.post(
            f"/portal/cases/{rid}/approval", data=form_of(stale, do="return", comments=comments)
        )
        assert returned.status_code == 303
        assert await stage_of(pool, rid) == "synthesis"
        seen = text_of((await http.get(f"/portal/cases/{rid}")).text)
        assert "Dự thảo kết luận được trả lại để chỉnh sửa" in seen and comments in seen

        # The returned draft, approved from the page opened before: refused, nothing changed.
        late = await http.post(f"/portal/cases/{rid}/approval", data=form_of(stale, do="approve"))
        assert late.status_code == 422
        assert "Dự thảo này đã được trả lại chủ trì hội đồng nên không thể phê duyệt" in text_of(
            late.text
        )
        assert await stage_of(pool, rid) == "synthesis"
        async with pool.acquire() as conn:
            assert not await conn.fetchval(
                "SELECT count(*) FROM conclusions"
                " WHERE request_id = $1 AND approved_at IS NOT NULL",
                rid,
            )

        # The chair's next draft: the old page still names the returned one, and is refused.
        await service.request_update(
            env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
        )
        await until(lambda s: s.stage == Stage.approval, handle)
        older = await http.post(f"/portal/cases/{rid}/approval", data=form_of(stale, do="approve"))
        assert older.status_code == 422
        assert "Đã có dự thảo mới hơn (lần 2)" in text_of(older.text)
        assert await stage_of(pool, rid) == "approval"

        page = await http.get(f"/portal/cases/{rid}/approval")
        sent = form_of(page.text, do="approve")
        approved = await http.post(f"/portal/cases/{rid}/approval", data=sent)
        assert approved.status_code == 303, text_of(approved.text)
        twice = await http.post(f"/portal/cases/{rid}/approval", data=sent)
        assert twice.status_code == 303, text_of(twice.text)
        async with pool.acquire() as conn:
            signed = await conn.fetch(
                "SELECT version, approved_by FROM conclusions WHERE request_id = $1"
                " AND approved_at IS NOT NULL",
                rid,
            )
        assert [dict(s) for s in signed] == [{"version": 2, "approved_by": me.name}]
        assert await count_events(pool, rid, "conclusion_approved") == 1
        assert await stage_of(pool, rid) in ("delivered", "adoption")
        seen = text_of((await http.get(f"/portal/cases/{rid}")).text)
        assert "Kết luận đã được phê duyệt và ký" in seen


# --- the deadline --------------------------------------------------------------------------------


async def test_the_stage_deadline_is_extended_from_the_case_page(
    env, worker, pool, mail, policy, registry
):
    email, me = await coordinator(pool)
    code, _ = await agency(pool)
    rid = await in_screening(env, worker, pool, policy, registry, code)
    async with pool.acquire() as conn:
        before = (await q.get_request(conn, rid))["next_deadline"]
    async with office_portal(env, pool, mail, worker) as browser:
        http = await browser(email)
        page = await http.get(f"/portal/cases/{rid}")
        refused = await http.post(
            f"/portal/cases/{rid}/extend",
            data=form_of(page.text, days="0", reason="Chờ ý kiến Sở Tư pháp."),
        )
        assert refused.status_code == 422
        assert "Vui lòng nhập một số nguyên" in error_beside(refused.text, "days")
        assert "Chờ ý kiến Sở Tư pháp.</textarea>" in refused.text
        done = await http.post(
            f"/portal/cases/{rid}/extend",
            data=form_of(refused.text, days="3", reason="Chờ ý kiến Sở Tư pháp."),
        )
        assert done.status_code == 303, text_of(done.text)
        async with pool.acquire() as conn:
            after = (await q.get_request(conn, rid))["next_deadline"]
        assert after > before
        seen = text_of((await http.get(f"/portal/cases/{rid}")).text)
        assert f"Thời hạn được gia hạn ({me.name}, {me.title})" in seen
        assert "Chờ ý kiến Sở Tư pháp." in seen


# --- the inbox -----------------------------------------------------------------------------------


async def test_the_inbox_is_read_by_each_coordinator_on_their_own(
    env, worker, pool, mail, policy, registry
):
    first, _ = await coordinator(pool)
    second, _ = await coordinator(pool)
    code, _ = await agency(pool)
    rid = await in_screening(env, worker, pool, policy, registry, code)
    async with pool.acquire() as conn:
        notice = await conn.fetchval(
            "SELECT id FROM outbox WHERE request_id = $1 AND recipient_kind = 'coordinator'"
            " AND event = 'request_submitted'",
            rid,
        )
        theirs = await conn.fetchval(
            "SELECT id FROM outbox WHERE request_id = $1 AND recipient_kind = 'agency'", rid
        )
    async with office_portal(env, pool, mail, worker) as browser:
        a = await browser(first)
        b = await browser(second)
        page = await a.get("/portal/inbox")
        assert page.status_code == 200
        item = re.search(
            rf'<li class="unread">(?:(?!</li>).)*?/portal/inbox/{notice}/read', page.text, re.S
        )
        assert item, "the notification is not unread"
        seen = text_of(item.group(0))
        assert "chưa đọc" in seen and "Có hồ sơ mới chờ sơ loại" in seen
        assert f'href="/portal/cases/{rid}"' in item.group(0)

        marked = await a.post(
            f"/portal/inbox/{notice}/read", data={"csrf_token": csrf_of(page.text)}
        )
        assert marked.status_code == 303 and marked.headers["location"] == "/portal/inbox"
        again = await a.post(
            f"/portal/inbox/{notice}/read", data={"csrf_token": csrf_of(page.text)}
        )
        assert again.status_code == 303
        after = await a.get("/portal/inbox")
        assert f"/portal/inbox/{notice}/read" not in after.text
        assert f"/portal/inbox/{notice}/read" not in (await a.get("/portal/inbox?unread=1")).text
        # Read for the first coordinator only.
        assert f"/portal/inbox/{notice}/read" in (await b.get("/portal/inbox")).text
        async with pool.acquire() as conn:
            readers = await conn.fetch(
                "SELECT reader FROM inbox_reads WHERE outbox_id = $1", notice
            )
        assert len(readers) == 1 and readers[0]["reader"].startswith("coordinator:")

        # Someone else's notification is not the office's to mark.
        foreign = await a.post(
            f"/portal/inbox/{theirs}/read", data={"csrf_token": csrf_of(page.text)}
        )
        assert foreign.status_code == 404


# --- who may read and act ------------------------------------------------------------------------


async def test_only_the_office_acts_and_operators_read(env, worker, pool, mail, policy, registry):
    code, agency_email = await agency(pool)
    rid = await in_screening(env, worker, pool, policy, registry, code)
    expert = await new_expert(pool)
    paths = [
        "/portal/board",
        f"/portal/cases/{rid}",
        f"/portal/cases/{rid}/screening",
        "/portal/inbox",
    ]
    async with office_portal(env, pool, mail, worker) as browser:
        for email in (agency_email, expert.email):
            http = await browser(email)
            for path in paths:
                page = await http.get(path)
                assert page.status_code == 403, path
                assert "Bạn không có quyền truy cập trang này" in text_of(page.text)
            refused = await http.post(
                f"/portal/cases/{rid}/screening",
                data={"csrf_token": csrf_of(page.text), "decision": "accept", "once": "x"},
            )
            assert refused.status_code == 403

        ops = await browser(await operator(pool))
        board = await ops.get("/portal/board", params={"agency": code})
        assert board.status_code == 200 and row_ids(board.text) == [rid]
        assert 'href="/portal/inbox"' not in board.text
        case = await ops.get(f"/portal/cases/{rid}")
        assert case.status_code == 200
        assert "Bước này do cán bộ điều phối thực hiện" in text_of(case.text)
        assert f'href="/portal/cases/{rid}/screening"' not in case.text
        page = await ops.get(f"/portal/cases/{rid}/screening")
        assert page.status_code == 200 and 'name="decision"' not in page.text
        tried = await ops.post(
            f"/portal/cases/{rid}/screening",
            data={"csrf_token": csrf_of(page.text), "decision": "accept", "once": "x"},
        )
        assert tried.status_code == 403
        assert (await ops.get("/portal/inbox")).status_code == 403
        assert await stage_of(pool, rid) == "screening"
        missing = await ops.get("/portal/cases/R-0000000000")
        assert missing.status_code == 404 and "Không tìm thấy" in text_of(missing.text)
