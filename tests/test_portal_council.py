"""The coordinator's council pages, through the real app over HTTP, a real PostgreSQL and a real
Temporal (the session's time-skipping server, or one of the test's own when time must pass)
with a worker of the test's own. A registry where one expert declared a conflict with the
agency, one is away and one is at their load limit: the page says who sits, who waits and who
is left out, and why; an edit naming them is refused beside each, nothing changed; a valid edit
and a confirmation as proposed seat the council. Then the review: who is overdue and by how
many working days, an extension, one refused by the policy, a replacement, an expert added.
Assertions are on what a person sees and on the request's state and rows."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest_asyncio

from db import portal as portal_db
from db import queries as q
from domain.calendar import working_calendar
from domain.messages import AcceptInput, DeclineInput, ScreeningInput
from domain.models import Expert, Period, Stage
from infra.settings import Settings
from starter import service
from starter.api import create_app
from starter.portal import council, task_link
from starter.portal.i18n import deadline_text, format_date
from starter.portal.people import SESSION_COOKIE, hash_session
from tests import factories as f
from tests.conftest import start_time_skipping
from tests.test_deadlines import (
    move_clock_to,
    next_monday_9am,
    open_review,
    policy_with,
    vn,
)
from tests.test_lifecycle import until
from tests.test_portal_auth import PORTAL, csrf_of, text_of
from worker import build_worker
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.review import ReviewRequestWorkflow

Browser = Callable[..., Awaitable[httpx.AsyncClient]]
COORDINATOR = ("coordinator", "VP01", "lan.nt@lienhiephoi.example.vn")
AGENCY = ("agency", "SGTVT", "khanh.tv@sgtvt.example.gov.vn")
SETTINGS = Settings(
    deliver_notifications=False,
    portal_secret="test-portal-secret-" + "x" * 32,
    portal_url=PORTAL,
)


@asynccontextmanager
async def portal(env, pool, worker) -> AsyncIterator[Browser]:
    """The app, and a way to open a browser of one's own signed in as anyone: by the link an
    e-mail would carry (coordinators, experts, agencies), or, for an operator, who signs in
    by no link, a session made for them."""
    app = create_app(SETTINGS, client=env.client, pool=pool, task_queue=worker.task_queue)
    async with app.router.lifespan_context(app), AsyncExitStack() as browsers:

        async def browser(role: str, code: str, email: str) -> httpx.AsyncClient:
            n = uuid.uuid4().int
            client = (f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}", 40000)
            transport = httpx.ASGITransport(app=app, client=client)
            http = await browsers.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url=PORTAL)
            )
            if role == "operator":
                session = secrets.token_urlsafe(32)
                async with pool.acquire() as conn:
                    await portal_db.insert_session(
                        conn, hash_session(session), role, code, email, "vi", timedelta(hours=1)
                    )
                http.cookies.set(SESSION_COOKIE, session, domain="127.0.0.1", path="/portal")
                return http
            link = task_link(SETTINGS, role, code, email, "/portal/", timedelta(days=1))
            page = await http.get(httpx.URL(link).path)
            used = await http.post(httpx.URL(link).path, data={"csrf_token": csrf_of(page.text)})
            assert used.status_code == 303, text_of(used.text)
            return http

        yield browser


async def post(http: httpx.AsyncClient, path: str, page: httpx.Response, **fields):
    """Submits the form of `page` (its CSRF token and its `once`) with `fields`."""
    once = re.search(r'name="once" value="([^"]*)"', page.text)
    data = {"csrf_token": csrf_of(page.text), "once": once.group(1) if once else "", **fields}
    return await http.post(path, data=data)


def error_beside(page: str, name: str) -> str:
    found = re.search(rf'<p class="error-message" id="f-{re.escape(name)}-error">(.*?)</p>', page)
    assert found, f"no message beside {name}"
    return text_of(found.group(1))


def has_error_beside(page: str, name: str) -> bool:
    return f'id="f-{name}-error"' in page


async def add_expert(pool, code: str, name: str, field: str, level: int, **changes) -> Expert:
    e = Expert(
        code=code,
        name=name,
        email=f"{code.lower()}@experts.example.vn",
        organisation=changes.pop("organisation", "Trường Đại học Nông Lâm Bắc Giang"),
        member_association=changes.pop("member_association", "Hội Khoa học Kinh tế"),
        expertise={field: level},
        **changes,
    )
    async with pool.acquire() as conn:
        await q.upsert_expert(conn, e)
    return e


async def proposed(env, worker, pool, pol, field: str) -> tuple[str, object]:
    """A request of the agency SGTVT in `field`, screened in; its council proposed."""
    sub = f.submission(field)
    rid = (
        await service.submit(env.client, pool, sub, pol, task_queue=worker.task_queue)
    ).request_id
    handle = service.request_handle(env.client, rid)
    await until(lambda s: s.stage == Stage.screening, handle)
    await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.screen,
        ScreeningInput(actor=f.COORDINATOR, decision="accept"),
    )
    await until(lambda s: s.council_status is not None, handle)
    return rid, handle


async def council_row(pool, rid: str):
    async with pool.acquire() as conn:
        return await q.get_council(conn, rid)


async def test_the_council_explained_an_edit_refused_beside_each_member_then_confirmed(
    env, worker, pool, policy
):
    tag = uuid.uuid4().hex[:6].upper()
    field = f"quy-hoach-{tag.lower()}"
    a = await add_expert(
        pool, f"K{tag}-A", "Phạm Thị An", field, 5, member_association="Hội Quy hoạch"
    )
    b = await add_expert(
        pool, f"K{tag}-B", "Trần Văn Bình", field, 4, member_association="Hội Kiến trúc sư"
    )
    c = await add_expert(
        pool, f"K{tag}-C", "Lê Thị Cúc", field, 3, member_association="Hội Xây dựng"
    )
    d = await add_expert(
        pool, f"K{tag}-D", "Đỗ Văn Dũng", field, 2, member_association="Hội Quy hoạch"
    )
    conflicted = await add_expert(pool, f"K{tag}-E", "Vũ Văn Em", field, 5, conflicts=["SGTVT"])
    away = await add_expert(
        pool,
        f"K{tag}-F",
        "Hoàng Thị Phương",
        field,
        5,
        unavailable=[Period(start=date(2020, 1, 1), end=date(2100, 12, 31))],
    )
    busy = await add_expert(pool, f"K{tag}-G", "Ngô Văn Giang", field, 5, load_limit=1)
    # Their one place: a seat held on another open request.
    other = f.submission(f"khac-{tag.lower()}")
    other_rid = (
        await service.submit(env.client, pool, other, policy, task_queue=worker.task_queue)
    ).request_id
    async with pool.acquire() as conn:
        await q.reserve_seat(conn, other_rid, busy.code, datetime.now(UTC))

    pol = policy_with(policy, council_confirmation="coordinator")
    rid, handle = await proposed(env, worker, pool, pol, field)
    path = f"/portal/cases/{rid}/council"

    async with portal(env, pool, worker) as browser:
        http = await browser(*COORDINATOR)
        page = await http.get(path)
        assert page.status_code == 200, text_of(page.text)
        seen = text_of(page.text)
        for words in (
            "Hội đồng chuyên gia",
            f.submission(field).title,
            "Theo quy định áp dụng cho hồ sơ này, cán bộ điều phối xác nhận hoặc chỉnh sửa hội "
            "đồng đề xuất trước khi mời chuyên gia.",
            "Hội đồng này đang chờ cán bộ điều phối xác nhận.",
            # The chair, and why: the fields with levels, score, load, association.
            f"Chủ trì Phạm Thị An {a.code} Lý do làm chủ trì có mức chuyên môn cao nhất trong "
            f"lĩnh vực chính: mức 5 về {field} Lĩnh vực phù hợp {field} (mức 5, lĩnh vực chính) "
            "Điểm phù hợp 10 Số nhiệm vụ đang đảm nhận 0/3 nhiệm vụ Hội thành viên Hội Quy hoạch",
            f"Thành viên Trần Văn Bình {b.code}",
            f"Thành viên Lê Thị Cúc {c.code}",
            f"Dự khuyết thứ 1 Đỗ Văn Dũng {d.code}",
            # Everyone left out, with the engine's reason.
            f"Vũ Văn Em {conflicted.code} — xung đột lợi ích: đã khai báo xung đột lợi ích "
            "với sgtvt",
            f"Hoàng Thị Phương {away.code} — vắng mặt từ 01/01/2020 đến 31/12/2100, trùng thời "
            "gian góp ý, phản biện",
            f"Ngô Văn Giang {busy.code} — đã đủ số nhiệm vụ tối đa (1/1 nhiệm vụ)",
        ):
            assert words in seen, words
        assert f'href="/portal/cases/{rid}"' in page.text
        assert "Xác nhận hội đồng như đề xuất" in seen
        assert f'href="{path}/edit"' in page.text

        # An edit naming the conflicted, the away and the busy expert: refused beside each,
        # what was ticked kept, and nothing changed.
        form = await http.get(f"{path}/edit")
        assert form.status_code == 200
        assert f'value="{a.code}" checked' in form.text
        assert f'name="chair" value="{a.code}" checked' in form.text
        chosen = [a.code, conflicted.code, away.code, busy.code]
        refused = await post(http, f"{path}/edit", form, members=chosen, chair=a.code, other="")
        assert refused.status_code == 422, text_of(refused.text)
        assert "xung đột lợi ích" in error_beside(refused.text, f"member-{conflicted.code}")
        assert "vắng mặt từ 01/01/2020" in error_beside(refused.text, f"member-{away.code}")
        assert "đã đủ số nhiệm vụ tối đa (1/1" in error_beside(refused.text, f"member-{busy.code}")
        assert not has_error_beside(refused.text, f"member-{a.code}")
        for code in chosen:
            assert f'value="{code}" checked' in refused.text
        state = await handle.query(ReviewRequestWorkflow.state)
        assert state.council_status == "proposed" and state.assignments == []
        row = await council_row(pool, rid)
        assert row["status"] == "proposed"
        assert [m["expert_code"] for m in row["proposal"]["members"]] == [a.code, b.code, c.code]

        # A chair who is not ticked: said beside the chair, before anything is sent.
        unticked = await post(http, f"{path}/edit", refused, members=[b.code], chair=a.code)
        assert unticked.status_code == 422
        assert "Chủ trì phải là thành viên hội đồng" in text_of(unticked.text)

        # Corrected on the refused page, with an alternate the coordinator chose: confirmed.
        done = await post(
            http, f"{path}/edit", refused, members=[b.code, c.code, d.code], chair=b.code, other=""
        )
        assert done.status_code == 303, text_of(done.text)
        assert done.headers["location"] == f"/portal/cases/{rid}/review"
        state = await until(lambda s: s.stage == Stage.review and len(s.assignments) == 3, handle)
        assert {x.expert_code: x.role.value for x in state.assignments} == {
            b.code: "chair",
            c.code: "member",
            d.code: "member",
        }
        row = await council_row(pool, rid)
        assert row["status"] == "confirmed" and row["confirmed_by"] == "coordinator:VP01"

        after = text_of((await http.get(path)).text)
        assert re.search(
            r"Đã được Nguyễn Thị Lan, Chánh Văn phòng Liên hiệp hội xác nhận ngày \d\d/\d\d/\d{4}",
            after,
        )
        assert f"Chủ trì Trần Văn Bình {b.code}" in after
        assert f"Đỗ Văn Dũng {d.code} Lĩnh vực phù hợp {field}" in after
        assert "Người chọn cán bộ điều phối" in after
        assert "Xác nhận hội đồng như đề xuất" not in after


async def test_confirmed_as_proposed_once_and_who_may_see_or_act(
    env, worker, pool, policy, registry
):
    experts = await registry.add(4)
    pol = policy_with(policy, council_confirmation="coordinator")
    rid, handle = await proposed(env, worker, pool, pol, registry.field)
    path = f"/portal/cases/{rid}/council"
    member = experts[0]

    async with portal(env, pool, worker) as browser:
        # The agency and an expert: not their pages, whatever they try.
        for who in (AGENCY, ("expert", member.code, member.email)):
            other = await browser(*who)
            for page in (path, f"{path}/edit", f"/portal/cases/{rid}/review"):
                refused = await other.get(page)
                assert refused.status_code == 403, page
                assert "Bạn không có quyền truy cập trang này" in text_of(refused.text)
            sneaked = await other.post(path, data={"csrf_token": csrf_of(refused.text)})
            assert sneaked.status_code == 403

        # An operator reads the proposal, without its buttons; posting is refused.
        operator = await browser("operator", "Trực vận hành", "ops@lienhiephoi.example.vn")
        page = await operator.get(path)
        assert page.status_code == 200
        seen = text_of(page.text)
        assert "Hội đồng này đang chờ cán bộ điều phối xác nhận." in seen
        assert "Xác nhận hội đồng như đề xuất" not in seen
        forbidden = await operator.post(path, data={"csrf_token": csrf_of(page.text)})
        assert forbidden.status_code == 403
        assert "Bạn không có quyền truy cập trang này" in text_of(forbidden.text)
        assert (await operator.get(f"/portal/cases/{rid}/review")).status_code == 200

        http = await browser(*COORDINATOR)
        page = await http.get(path)
        # Without its CSRF token: refused, and nothing is confirmed.
        forged = await http.post(path, data={"once": "x"})
        assert forged.status_code == 403
        state = await handle.query(ReviewRequestWorkflow.state)
        assert state.council_status == "proposed"
        assert (await http.get("/portal/cases/R-0000000000/council")).status_code == 404

        confirmed = await post(http, path, page)
        assert confirmed.status_code == 303
        assert confirmed.headers["location"] == f"/portal/cases/{rid}/review"
        # Sent again (a double click): the same one confirmation, no error.
        again = await post(http, path, page)
        assert again.status_code == 303
        state = await until(lambda s: s.stage == Stage.review and len(s.assignments) == 3, handle)
        assert [x.expert_code for x in state.assignments] == [
            m.expert_code for m in state.council.members
        ]
        async with pool.acquire() as conn:
            actions = [r["action"] for r in await q.audit_trail(conn, rid)]
        assert actions.count("council_confirmed") == 1
        # A fresh form for a council no longer waiting: the refusal, on the page.
        late = await post(http, path, await http.get(path))
        assert late.status_code == 422
        assert "Chưa thể thực hiện lúc này: hồ sơ đang ở bước “hội đồng đang góp ý" in text_of(
            late.text
        )

        review = await http.get(f"/portal/cases/{rid}/review")
        seen = text_of(review.text)
        assert review.status_code == 200
        for m in state.council.members:
            assert m.expert_code in seen
        assert seen.count("Trạng thái được mời") == 3

        # In English for a coordinator who reads English.
        await http.get("/portal/language/en")
        english = text_of((await http.get(f"/portal/cases/{rid}/review")).text)
        assert "Review follow-up" in english and "State invited" in english


@pytest_asyncio.fixture
async def own_env():
    """A time-skipping server of this test's own: weeks pass in it (tests/test_deadlines.py)."""
    e = await start_time_skipping()
    yield e
    await e.shutdown()


@pytest_asyncio.fixture
async def own_worker(own_env, pool, settings):
    queue = f"tq-{uuid.uuid4().hex}"
    async with build_worker(own_env.client, pool, settings, task_queue=queue) as w:
        yield w


async def name_of(pool, code: str) -> str:
    async with pool.acquire() as conn:
        return (await q.get_expert(conn, code))["name"]


async def due_at(pool, rid: str, code: str):
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT state, due_at, respond_by FROM assignments"
            " WHERE request_id = $1 AND expert_code = $2",
            rid,
            code,
        )


async def test_review_follow_up_overdue_extended_replaced_and_completed(
    own_env, own_worker, pool, policy, registry, monkeypatch
):
    env, worker = own_env, own_worker
    monday = await next_monday_9am(env)
    await move_clock_to(env, monday)
    rid, handle, state = await open_review(
        env,
        worker,
        policy,
        registry,
        n_experts=5,
        council_size=3,
        quorum=2,
        alternates=1,
        review_days=3,
        max_extension_days=10,
    )
    first, second, third = [x.expert_code for x in state.assignments]
    [alternate] = state.alternates_left
    async with pool.acquire() as conn:
        codes = [
            r["code"]
            for r in await conn.fetch(
                "SELECT code FROM experts WHERE $1 = ANY(fields) ORDER BY code", registry.field
            )
        ]
    [spare] = [x for x in codes if x not in (first, second, third, alternate)]
    for code in (first, second, third):
        await service.assignment_update(
            env.client, rid, code, ExpertAssignmentWorkflow.accept, AcceptInput(expert_code=code)
        )
    # Accepted on Monday with 3 working days: due Thursday. The next Monday they are two
    # working days late (Friday, Monday), within the review's grace.
    thursday = monday + timedelta(days=3)
    assert (await due_at(pool, rid, first))["due_at"] == vn(
        thursday.year, thursday.month, thursday.day, 23, 59, 59
    )
    later = monday + timedelta(days=7, hours=1)
    await move_clock_to(env, later)
    # The pages count from the engine's clock, as they would in production.
    monkeypatch.setattr(council, "now", lambda: later)
    calendar = working_calendar(policy.calendar)
    review_path = f"/portal/cases/{rid}/review"

    async with portal(env, pool, worker) as browser:
        http = await browser(*COORDINATOR)
        page = await http.get(review_path)
        assert page.status_code == 200, text_of(page.text)
        seen = text_of(page.text)
        for code in (first, second, third):
            due = (await due_at(pool, rid, code))["due_at"]
            shown = deadline_text(due, later, calendar, "vi")
            assert shown.endswith("(quá hạn 2 ngày làm việc)"), shown
            assert f"{code} quá hạn 2 ngày làm việc" in seen
            assert f"Hạn gửi ý kiến {shown}" in seen
        assert "Ý kiến đã nhận 0/3" in seen
        assert f'href="/portal/cases/{rid}"' in page.text

        # --- extend the first expert: their date moves ---------------------------------------
        form = await http.get(f"{review_path}/{first}/extend")
        assert form.status_code == 200
        assert "Quy định cho phép gia hạn mỗi mốc thời hạn tối đa 5 lần" in text_of(form.text)
        before = (await due_at(pool, rid, first))["due_at"]
        extended = await post(
            http,
            f"{review_path}/{first}/extend",
            form,
            days="3",
            reason="Chuyên gia đi công tác, xin thêm thời gian.",
        )
        assert extended.status_code == 303, text_of(extended.text)
        moved = (await due_at(pool, rid, first))["due_at"]
        assert moved > before
        assert (
            calendar.working_days_between(calendar.local_date(later), calendar.local_date(moved))
            == 3
        )
        seen = text_of((await http.get(review_path)).text)
        assert "Số lần đã gia hạn 1 (thêm 3 ngày)" in seen
        assert deadline_text(moved, later, calendar, "vi").endswith("(còn 3 ngày làm việc)")

        # --- an extension past the policy: refused beside the days, what was typed kept -----
        form = await http.get(f"{review_path}/{second}/extend")
        second_due = (await due_at(pool, rid, second))["due_at"]
        too_long = await post(
            http, f"{review_path}/{second}/extend", form, days="11", reason="Xin thêm hai tuần."
        )
        assert too_long.status_code == 422
        assert error_beside(too_long.text, "days").endswith(
            "Chỉ được kéo dài hạn gửi ý kiến thêm tối đa 10 ngày: quy định cho phép tổng cộng "
            "10 ngày."
        )
        assert 'value="11"' in too_long.text and "Xin thêm hai tuần.</textarea>" in too_long.text
        assert (await due_at(pool, rid, second))["due_at"] == second_due
        blank = await post(http, f"{review_path}/{second}/extend", too_long, days="", reason="")
        assert blank.status_code == 422
        assert error_beside(blank.text, "days").endswith(
            "Vui lòng nhập một số nguyên trong phạm vi cho phép."
        )

        # --- replace the second expert by the next alternate: the alternate is invited ------
        form = await http.get(f"{review_path}/{second}/replace")
        next_alternate = (
            f"Chuyên gia dự khuyết tiếp theo: {await name_of(pool, alternate)} ({alternate})"
        )
        assert next_alternate in text_of(form.text)
        replaced = await post(
            http,
            f"{review_path}/{second}/replace",
            form,
            replacement="",
            other_code="",
            reason="Quá hạn, không liên lạc được với chuyên gia.",
        )
        assert replaced.status_code == 303, text_of(replaced.text)
        assert (await due_at(pool, rid, second))["state"] == "cancelled"
        state = await until(
            lambda s: (
                s.assignment(alternate) is not None
                and s.assignment(alternate).respond_by is not None
            ),
            handle,
        )
        assert state.assignment(alternate).state == "invited"
        assert (await due_at(pool, rid, alternate))["state"] == "invited"
        seen = text_of((await http.get(review_path)).text)
        assert re.search(rf"{alternate} Vị trí thành viên hội đồng Trạng thái được mời", seen)
        assert (
            f"Trạng thái đã hủy Hạn trả lời {format_date(state.assignment(second).respond_by)} "
            f"Hạn gửi ý kiến {format_date(second_due)} Người thay thế "
            f"{await name_of(pool, alternate)} ({alternate}) — Quá hạn, không liên lạc được với "
            "chuyên gia."
        ) in seen

        # --- the alternate declines: none is left, the page asks for an expert -------------
        await service.assignment_update(
            env.client,
            rid,
            alternate,
            ExpertAssignmentWorkflow.decline,
            DeclineInput(expert_code=alternate, reason="Đang điều trị tại bệnh viện."),
        )
        await until(lambda s: s.assignment(alternate).state == "declined", handle)
        page = await http.get(review_path)
        seen = text_of(page.text)
        assert "Hội đồng còn thiếu 1 chuyên gia và không còn chuyên gia dự khuyết." in seen
        assert "Lý do từ chối Đang điều trị tại bệnh viện." in seen
        assert f'href="{review_path}/add"' in page.text

        # Someone already on the request: refused beside the code typed.
        form = await http.get(f"{review_path}/add")
        assert spare in text_of(form.text)
        refused = await post(
            http, f"{review_path}/add", form, expert_code="other", other_code=second
        )
        assert refused.status_code == 422
        assert error_beside(refused.text, "other_code").endswith(
            f"Chuyên gia {second} đã có vai trò trong hồ sơ này."
        )
        added = await post(http, f"{review_path}/add", refused, expert_code=spare, other_code="")
        assert added.status_code == 303, text_of(added.text)
        state = await until(
            lambda s: s.assignment(spare) is not None and s.assignment(spare).respond_by,
            handle,
        )
        assert state.assignment(spare).state == "invited"
        seen = text_of((await http.get(review_path)).text)
        assert "không còn chuyên gia dự khuyết" not in seen
