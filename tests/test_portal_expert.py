"""The expert's pages, through the real app over HTTP, a real Temporal (the session's
time-skipping server, a worker of this test's own) and a real PostgreSQL. Each expert signs in
by the link their e-mail carries (`task_link`), which lands on the task's page. One request
runs from the invitations to the chair's draft: the assertions are on what each person sees
and on the rows the engine writes."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx

from domain.calendar import working_calendar
from domain.messages import ReturnConclusionInput, ScreeningInput
from domain.models import Stage
from infra.documents import document_store
from infra.settings import Settings
from starter import service
from starter.api import create_app
from starter.documents import upload
from starter.portal import task_link
from starter.portal.i18n import deadline_text
from tests import factories as f
from tests.test_deadlines import open_review
from tests.test_documents import pdf
from tests.test_lifecycle import accept_and_submit, until
from tests.test_portal_auth import PORTAL, csrf_of, new_expert, open_link, text_of
from workflows.review import ReviewRequestWorkflow

Browser = Callable[..., Awaitable[httpx.AsyncClient]]


@asynccontextmanager
async def portal(env, pool, worker) -> AsyncIterator[Browser]:
    """The app, and a way to open a browser of one's own signed in as an expert: the link of
    their e-mail, opened and its button pressed, landing on `next_path`."""
    settings = Settings(
        deliver_notifications=False,
        portal_secret="test-portal-secret-" + "x" * 32,
        portal_url=PORTAL,
    )
    app = create_app(settings, client=env.client, pool=pool, task_queue=worker.task_queue)
    async with app.router.lifespan_context(app), AsyncExitStack() as browsers:

        async def browser(expert, next_path: str = "/portal/tasks") -> httpx.AsyncClient:
            n = uuid.uuid4().int
            client = (f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}", 40000)
            transport = httpx.ASGITransport(app=app, client=client)
            http = await browsers.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url=PORTAL)
            )
            link = task_link(
                settings, "expert", expert["code"], expert["email"], next_path, timedelta(days=7)
            )
            used = await open_link(http, link)
            assert used.status_code == 303 and used.headers["location"] == next_path
            return http

        yield browser


async def seat(pool, rid: str, code: str):
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT state, role, respond_by, due_at, decline_reason FROM assignments"
            " WHERE request_id = $1 AND expert_code = $2",
            rid,
            code,
        )


async def expert_row(pool, code: str):
    async with pool.acquire() as conn:
        return await conn.fetchrow("SELECT code, name, email FROM experts WHERE code = $1", code)


async def post(http: httpx.AsyncClient, path: str, page: httpx.Response, **fields):
    """Submits the form of `page` (its CSRF token and its `once`) with `fields`."""
    once = re.search(r'name="once" value="([^"]*)"', page.text)
    data = {"csrf_token": csrf_of(page.text), "once": once.group(1) if once else "", **fields}
    return await http.post(path, data=data)


def error_beside(page: str, name: str) -> str:
    found = re.search(rf'<p class="error-message" id="f-{name}-error">(.*?)</p>', page, re.S)
    assert found, f"no message beside {name}"
    return text_of(found.group(1))


async def test_experts_answer_write_and_the_chair_concludes(env, worker, pool, policy, registry):
    # A council of three and one alternate, for the member who declines.
    rid, handle, state = await open_review(env, worker, policy, registry, n_experts=4)
    chair_code = next(a.expert_code for a in state.assignments if a.role == "chair")
    member_b, member_c = [a.expert_code for a in state.assignments if a.role == "member"]
    chair = await expert_row(pool, chair_code)
    outsider = await new_expert(pool)
    title = f.submission(registry.field).title
    tasks_path, task_path = "/portal/tasks", f"/portal/tasks/{rid}"

    async with portal(env, pool, worker) as browser:
        # --- the chair's invitation: the task list, the task, the answer -----------------------
        http = await browser(chair)
        tasks = await http.get(tasks_path)
        assert tasks.status_code == 200
        seen = text_of(tasks.text)
        respond_by = (await seat(pool, rid, chair_code))["respond_by"]
        calendar = working_calendar(policy.calendar)
        due = deadline_text(respond_by, datetime.now(UTC), calendar, "vi")
        assert re.search(r"\d\d/\d\d/\d{4} \(còn \d+ ngày làm việc\)", due)
        assert f"{title} Trả lời lời mời {due}" in seen
        assert f'href="{task_path}"' in tasks.text
        assert 'href="/portal/tasks"' in (await http.get("/portal/")).text  # the home links

        page = await http.get(task_path)
        seen = text_of(page.text)
        for words in (
            title,
            "Loại hình Tư vấn",
            "Cơ quan đề nghị Sở Giao thông Vận tải",
            "Đề nghị tư vấn về phương án huy động vốn",
            "Dự thảo đề án.pdf",
            "Vị trí trong hội đồng chủ trì hội đồng",
            "Trạng thái được mời",
            f"Vui lòng trả lời chậm nhất ngày {due}",
        ):
            assert words in seen, words
        assert f'href="{task_path}/accept"' in page.text

        # A form without its CSRF token is refused, and nothing is accepted.
        form = await http.get(f"{task_path}/accept")
        assert "Nhận lời" in text_of(form.text)
        forged = await http.post(f"{task_path}/accept", data={"once": "x"})
        assert forged.status_code == 403
        assert (await seat(pool, rid, chair_code))["state"] == "invited"

        accepted = await post(http, f"{task_path}/accept", form)
        assert accepted.status_code == 303
        assert accepted.headers["location"] == f"{task_path}/opinion"
        assert (await seat(pool, rid, chair_code))["state"] == "accepted"
        # The same form sent again (a double click) is the same one action.
        again = await post(http, f"{task_path}/accept", form)
        assert again.status_code == 303
        # A fresh form for an invitation already answered: the refusal, on the page.
        answered = await post(http, f"{task_path}/accept", await http.get(f"{task_path}/accept"))
        assert answered.status_code == 422
        assert "Lời mời này đã ở trạng thái “đã nhận lời”" in text_of(answered.text)

        # --- a member declines: first without a reason, then declaring a conflict -------------
        b = await browser(await expert_row(pool, member_b), f"{task_path}/decline")
        form = await b.get(f"{task_path}/decline")
        refused = await post(b, f"{task_path}/decline", form, reason="  ")
        assert refused.status_code == 422
        assert error_beside(refused.text, "reason").endswith("Vui lòng nhập thông tin này.")
        assert (await seat(pool, rid, member_b))["state"] == "invited"
        kept = await post(b, f"{task_path}/decline", form, reason="x", conflict="yes")
        assert kept.status_code == 422 and "checked" in kept.text
        assert error_beside(kept.text, "reason").endswith("Vui lòng viết ít nhất 3 ký tự.")

        declined = await post(
            b, f"{task_path}/decline", form, reason="Tôi là cố vấn của Sở.", conflict="yes"
        )
        assert declined.status_code == 303
        row = await seat(pool, rid, member_b)
        assert row["state"] == "declined"
        assert row["decline_reason"] == "Xung đột lợi ích: Tôi là cố vấn của Sở."
        after = text_of((await b.get(declined.headers["location"])).text)
        assert "Bạn đã từ chối lời mời" in after

        # --- another expert's task is a missing page, whatever they try ---------------------
        other = await browser({"code": outsider.code, "email": outsider.email})
        for path in (task_path, f"{task_path}/opinion", "/portal/tasks/no-such-request"):
            missing = await other.get(path)
            assert missing.status_code == 404
            assert "Không tìm thấy" in text_of(missing.text)
        home = await other.get(tasks_path)
        sneaked = await other.post(
            f"{task_path}/opinion",
            data={"csrf_token": csrf_of(home.text), "do": "save", "summary": "x"},
        )
        assert sneaked.status_code == 404
        async with pool.acquire() as conn:
            assert not await conn.fetchval(
                "SELECT count(*) FROM portal_drafts WHERE request_id = $1 AND person = $2",
                rid,
                f"expert:{outsider.code}",
            )

        # --- the chair's opinion: a draft kept across a closed tab, then sent (twice) ---------
        form = await http.get(f"{task_path}/opinion")
        typed = {
            "recommendation": "endorse_with_changes",
            "summary": "Đề án khả thi <nếu> bổ sung nguồn vốn.",
            "comments_for_agency": "",
            "confidential_note": "Chương 3 cần xem lại.",
        }
        saved = await post(http, f"{task_path}/opinion", form, do="save", **typed)
        assert saved.status_code == 303
        later = await browser(chair, f"{task_path}/opinion")
        reopened = await later.get(f"{task_path}/opinion")
        assert "Đã lưu nháp lúc" in text_of(reopened.text)
        assert "Đề án khả thi &lt;nếu&gt; bổ sung nguồn vốn.</textarea>" in reopened.text
        assert '<option value="endorse_with_changes" selected>' in reopened.text

        # Refused: the message beside the field, everything typed still there and saved.
        refused = await post(later, f"{task_path}/opinion", reopened, do="send", **typed)
        assert refused.status_code == 422
        assert error_beside(refused.text, "comments_for_agency").endswith(
            "Vui lòng nhập thông tin này."
        )
        assert "Chương 3 cần xem lại.</textarea>" in refused.text
        assert "Đã lưu nháp lúc" in text_of(refused.text)

        typed["comments_for_agency"] = "Bổ sung đánh giá tác động môi trường."
        sent = await post(later, f"{task_path}/opinion", refused, do="send", **typed)
        assert sent.status_code == 303
        assert sent.headers["location"] == task_path
        assert "Ý kiến của bạn đã được gửi" in text_of(
            (await later.get(sent.headers["location"])).text
        )
        twice = await post(later, f"{task_path}/opinion", refused, do="send", **typed)
        assert twice.status_code == 303, text_of(twice.text)
        async with pool.acquire() as conn:
            opinions = await conn.fetch(
                "SELECT recommendation, summary FROM opinions WHERE request_id = $1"
                " AND expert_code = $2",
                rid,
                chair_code,
            )
            drafts = await conn.fetchval(
                "SELECT count(*) FROM portal_drafts WHERE request_id = $1 AND person = $2",
                rid,
                f"expert:{chair_code}",
            )
        assert [dict(o) for o in opinions] == [
            {"recommendation": "endorse_with_changes", "summary": typed["summary"]}
        ]
        assert drafts == 0

        # --- the others' opinions; the chair drafts the conclusion ----------------------------
        state = await until(lambda s: len(s.assignments) == 4, handle)
        alternate = next(
            a.expert_code
            for a in state.assignments
            if a.expert_code not in (chair_code, member_b) and a.expert_code != member_c
        )
        for code in (member_c, alternate):
            await accept_and_submit(env, rid, code)
        await until(lambda s: s.stage == Stage.synthesis, handle)

        tasks = text_of((await http.get(tasks_path)).text)
        assert f"{title} Dự thảo kết luận" in tasks
        page = await http.get(f"{task_path}/conclusion")
        assert page.status_code == 200
        seen = text_of(page.text)
        for code in (chair_code, member_c, alternate):
            assert (await expert_row(pool, code))["name"] in seen
        assert seen.count("Tán thành, đề nghị chỉnh sửa, bổ sung") >= 3
        assert "Cần bổ sung đánh giá tác động môi trường." in seen
        # The others' confidential notes are for the office only.
        assert "Số liệu chương 3 chưa khớp với phụ lục." not in seen

        draft = {
            "recommendation": "endorse_with_changes",
            "text": "Hội đồng đồng ý, đề nghị bổ sung.",
        }
        saved = await post(http, f"{task_path}/conclusion", page, do="save", **draft)
        assert saved.status_code == 303
        page = await http.get(f"{task_path}/conclusion")
        assert "Hội đồng đồng ý, đề nghị bổ sung.</textarea>" in page.text
        sent = await post(http, f"{task_path}/conclusion", page, do="send", **draft)
        assert sent.status_code == 303
        async with pool.acquire() as conn:
            assert (
                await conn.fetchval("SELECT stage FROM requests WHERE id = $1", rid) == "approval"
            )
        done = text_of((await http.get(sent.headers["location"])).text)
        assert "Dự thảo kết luận đã được gửi Văn phòng Liên hiệp hội để phê duyệt." in done

        # --- returned with comments: the chair reads them beside the next draft --------------
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.return_conclusion,
            ReturnConclusionInput(actor=f.COORDINATOR, comments="Làm rõ nguồn vốn ngân sách."),
        )
        page = await http.get(f"{task_path}/conclusion")
        seen = text_of(page.text)
        assert "Văn phòng Liên hiệp hội đã trả lại dự thảo" in seen
        assert "Làm rõ nguồn vốn ngân sách." in seen
        assert "Hội đồng đồng ý, đề nghị bổ sung.</textarea>" in page.text


async def test_english_pages_and_the_documents_links(env, worker, pool, settings, policy, registry):
    """An uploaded document is offered from the portal's download path; the pages and the
    conflict's marker are in English for an expert who reads English."""
    experts = await registry.add(3)
    stored = await upload(
        pool, document_store(settings, pool), io.BytesIO(pdf()), "Tờ trình.pdf", "agency:SGTVT"
    )
    sub = f.submission(
        registry.field, documents=[{"id": stored.id}, f.submission("x").documents[0]]
    )
    rid = (
        await service.submit(env.client, pool, sub, policy, task_queue=worker.task_queue)
    ).request_id
    handle = service.request_handle(env.client, rid)
    await until(lambda s: s.stage == Stage.screening, handle)
    await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(actor=f.COORDINATOR, decision="accept"),
    )
    state = await until(
        lambda s: len(s.assignments) == 3 and all(a.respond_by for a in s.assignments), handle
    )
    member = next(a.expert_code for a in state.assignments if a.role == "member")
    assert member in {e.code for e in experts}
    async with portal(env, pool, worker) as browser:
        http = await browser(await expert_row(pool, member))
        page = await http.get(f"/portal/tasks/{rid}")
        assert f'href="/portal/requests/{rid}/documents/{stored.id}">Tờ trình.pdf</a>' in page.text
        assert 'href="https://vanban.example.gov.vn/sgtvt/de-an.pdf"' in page.text

        await http.get("/portal/language/en")
        page = await http.get(f"/portal/tasks/{rid}/decline")
        seen = text_of(page.text)
        assert '<html lang="en">' in page.text
        assert "I have a conflict of interest" in seen
        declined = await post(
            http, f"/portal/tasks/{rid}/decline", page, reason="Travelling.", conflict="yes"
        )
        assert declined.status_code == 303
    assert (await seat(pool, rid, member))["decline_reason"] == "Conflict of interest: Travelling."
