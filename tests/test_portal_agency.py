"""The requesting agency's pages, through the real app over HTTP, a real PostgreSQL, a real
Temporal server with a worker and a real SMTP sink for sign-in: submitting with files (and
being refused field by field), the list, a request's page, a download, a supplement, a
withdrawal, another agency's request, a form without its CSRF token. Assertions are on what
a person sees and on rows."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from db import queries as q
from domain.messages import ApproveInput, ScreeningInput
from domain.models import Contact, Stage
from starter import service
from tests import factories as f
from tests.conftest import register_agency
from tests.test_documents import pdf
from tests.test_lifecycle import accept_and_submit, review_to_synthesis, until
from tests.test_portal_auth import (
    csrf_of,
    portal,
    portal_settings,
    signed_in_as,
    text_of,
)
from workflows.review import ReviewRequestWorkflow


async def new_agency(pool) -> tuple[str, str]:
    """A registered agency with one contact who signs in; (code, e-mail)."""
    tag = uuid.uuid4().hex[:6].upper()
    email = f"van.thu.{tag.lower()}@so.example.gov.vn"
    await register_agency(pool, f"S{tag}", contacts=[Contact(name="Lê Thị Thư", email=email)])
    return f"S{tag}", email


def once_of(page: str) -> str:
    return re.search(r'name="once" value="([^"]+)"', page).group(1)


def request_form(page: str, field: str, **changes) -> dict:
    data = {
        "csrf_token": csrf_of(page),
        "once": once_of(page),
        "kind": "critique",
        "title": "Dự thảo Quy hoạch bảo vệ môi trường lưu vực sông Cầu",
        "agency_reference": f"{uuid.uuid4().hex[:6]}/STNMT-MT",
        "summary": "Đề nghị phản biện dự thảo quy hoạch, tập trung vào phân vùng xả thải.",
        "expertise_fields": field,
        "requested_by.name": "Lê Thị Thư",
        "requested_by.email": "thu.lt@so.example.gov.vn",
    }
    data.update(changes)
    return data


def error_beside(page: str, field: str) -> str:
    found = re.search(rf'<p class="error-message" id="f-{re.escape(field)}-error">(.*?)</p>', page)
    assert found, f"no message beside {field}"
    return text_of(found.group(1))


async def submitted(http, field: str, **changes) -> tuple[str, dict]:
    """A request submitted through the portal with one PDF; (request id, the form sent)."""
    page = (await http.get("/portal/requests/new")).text
    data = request_form(page, field, **changes)
    files = [("files", ("Dự thảo.pdf", pdf("Du thao"), "application/pdf"))]
    r = await http.post("/portal/requests/new", data=data, files=files)
    assert r.status_code == 303, text_of(r.text)
    return r.headers["location"].rsplit("/", 1)[1], data


async def test_an_agency_submits_with_files_and_follows_its_request(
    env, worker, pool, mail, registry
):
    await registry.add(1)
    code, email = await new_agency(pool)
    settings = portal_settings(mail)
    async with portal(env, pool, settings, task_queue=worker.task_queue) as http:
        await signed_in_as(http, mail, email)
        home = await http.get("/portal/")
        assert home.status_code == 303 and home.headers["location"] == "/portal/requests"
        empty = await http.get("/portal/requests")
        assert "Quý cơ quan chưa gửi hồ sơ nào." in text_of(empty.text)

        page = (await http.get("/portal/requests/new")).text
        # The contact who signed in is filled in ahead; the agency is never typed.
        assert 'value="Lê Thị Thư"' in page and f'value="{email}"' in page
        assert f'value="{registry.field}"' in page
        assert 'name="agency.code"' not in page

        # Refused: no title, and one file that is not a PDF whatever its name.
        data = request_form(page, registry.field, title="")
        refused = await http.post(
            "/portal/requests/new",
            data=data,
            files=[
                ("files", ("Dự thảo.pdf", pdf("Du thao"), "application/pdf")),
                ("files", ("phụ lục.pdf", b"MZ\x90\x00 a program", "application/pdf")),
            ],
        )
        assert refused.status_code == 422
        assert error_beside(refused.text, "title") == "Lỗi: Vui lòng nhập thông tin này."
        assert "phụ lục.pdf không phải là tệp PDF" in error_beside(refused.text, "files")
        assert f'value="{data["agency_reference"]}"' in refused.text
        assert data["summary"] in refused.text
        assert "vui lòng chọn lại tệp" in text_of(refused.text)
        async with pool.acquire() as conn:
            assert not await conn.fetchval(
                "SELECT count(*) FROM requests WHERE agency_code = $1", code
            )
            assert not await conn.fetchval(
                "SELECT count(*) FROM documents WHERE uploaded_by = $1", f"agency:{code}"
            )

        # Accepted: two PDFs, and the request's page.
        data = request_form(page, registry.field)
        two = [
            ("files", ("Dự thảo quy hoạch.pdf", pdf("Du thao", pad=2000), "application/pdf")),
            ("files", ("Tờ trình.pdf", pdf("To trinh"), "application/pdf")),
        ]
        done = await http.post("/portal/requests/new", data=data, files=two)
        assert done.status_code == 303, text_of(done.text)
        location = done.headers["location"]
        assert re.fullmatch(r"/portal/requests/R-[0-9A-F]{10}", location)
        shown = await http.get(location)
        seen = text_of(shown.text)
        assert "Dự thảo quy hoạch.pdf" in seen and "Tờ trình.pdf" in seen
        assert "Bước sơ loại hồ sơ" in seen
        assert "Đang chờ Văn phòng Liên hiệp hội: sơ loại hồ sơ" in seen
        assert re.search(r"\d\d/\d\d/\d{4} — Hồ sơ được tiếp nhận", seen)
        assert "Rút hồ sơ" in seen and "Bổ sung hồ sơ" not in seen

        # Posted twice (a double click): the same request, no error, nothing more stored.
        again = await http.post("/portal/requests/new", data=data, files=two)
        assert again.status_code == 303 and again.headers["location"] == location
        async with pool.acquire() as conn:
            assert (
                await conn.fetchval("SELECT count(*) FROM requests WHERE agency_code = $1", code)
                == 1
            )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM documents WHERE uploaded_by = $1", f"agency:{code}"
                )
                == 2
            )

        listed = text_of((await http.get("/portal/requests")).text)
        assert data["agency_reference"] in listed and data["title"] in listed
        assert re.search(r"\d\d/\d\d/\d{4} \(còn \d+ ngày làm việc\)", listed)

        # A download streams the bytes and is in the audit log as the agency's.
        link = re.search(
            r'href="(/portal/requests/R-\w+/documents/D-\w+)">Tờ trình.pdf', shown.text
        )
        got = await http.get(link.group(1))
        assert got.status_code == 200 and got.content == pdf("To trinh")
        assert got.headers["content-disposition"].endswith(
            f"filename*=UTF-8''{quote('Tờ trình.pdf')}"
        )
        async with pool.acquire() as conn:
            rows = await q.audit_trail(conn, location.rsplit("/", 1)[1])
        downloads = [r for r in rows if r["action"] == "document_downloaded"]
        assert [(r["actor"], r["details"]["name"]) for r in downloads] == [
            (f"agency:{code}", "Tờ trình.pdf")
        ]


async def test_supplement_withdraw_and_what_another_agency_gets(env, worker, pool, mail, registry):
    code, email = await new_agency(pool)
    _, other_email = await new_agency(pool)
    settings = portal_settings(mail)
    async with portal(env, pool, settings, task_queue=worker.task_queue) as http:
        await signed_in_as(http, mail, email)
        rid, _ = await submitted(http, registry.field)
        await service.request_update(
            env.client,
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(decision="supplement", note="Bổ sung tờ trình", actor=f.COORDINATOR),
        )
        page = await http.get(f"/portal/requests/{rid}")
        seen = text_of(page.text)
        assert "Bước chờ bổ sung hồ sơ" in seen and "Bổ sung tờ trình" in seen
        assert "Bổ sung hồ sơ" in seen

        form = (await http.get(f"/portal/requests/{rid}/supplement")).text
        letter = [("files", ("Tờ trình bổ sung.pdf", pdf("Bo sung"), "application/pdf"))]
        # Without its CSRF token: refused, nothing stored, nothing done.
        forged = await http.post(
            f"/portal/requests/{rid}/supplement",
            data={"once": once_of(form), "note": "x"},
            files=letter,
        )
        assert forged.status_code == 403
        async with pool.acquire() as conn:
            assert (await q.get_request(conn, rid))["stage"] == "supplement"
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM documents WHERE uploaded_by = $1", f"agency:{code}"
                )
                == 1
            )

        sent = await http.post(
            f"/portal/requests/{rid}/supplement",
            data={"csrf_token": csrf_of(form), "once": once_of(form), "note": "Tờ trình số 2"},
            files=letter,
        )
        assert sent.status_code == 303, text_of(sent.text)
        seen = text_of((await http.get(f"/portal/requests/{rid}")).text)
        assert "Bước sơ loại hồ sơ" in seen
        assert "Tờ trình bổ sung.pdf bổ sung lần 1" in seen
        assert "Hồ sơ bổ sung đã được gửi" in seen

        # An answer on adoption before the conclusion: refused, in words, the input kept.
        form = (await http.get(f"/portal/requests/{rid}/adoption")).text
        assert 'value="Lê Thị Thư"' in form and "Tiếp thu một phần" in form
        early = await http.post(
            f"/portal/requests/{rid}/adoption",
            data={
                "csrf_token": csrf_of(form),
                "once": once_of(form),
                "answer.status": "adopted",
                "answer.explanation": "Tiếp thu toàn bộ ý kiến",
                "answer.answered_by.name": "Lê Thị Thư",
                "answer.answered_by.email": email,
            },
        )
        assert early.status_code == 422
        assert "Chưa thể thực hiện lúc này" in text_of(early.text)
        assert "Tiếp thu toàn bộ ý kiến" in early.text

        # Withdrawing needs a reason: refused beside the field, nothing changed.
        form = (await http.get(f"/portal/requests/{rid}/withdraw")).text
        assert "không thể hoàn tác" in text_of(form)
        refused = await http.post(
            f"/portal/requests/{rid}/withdraw",
            data={"csrf_token": csrf_of(form), "once": once_of(form), "reason": ""},
        )
        assert refused.status_code == 422
        assert "Vui lòng" in error_beside(refused.text, "reason")
        async with pool.acquire() as conn:
            assert (await q.get_request(conn, rid))["stage"] == "screening"
        withdrawn = await http.post(
            f"/portal/requests/{rid}/withdraw",
            data={"csrf_token": csrf_of(form), "once": once_of(form), "reason": "Đã điều chỉnh"},
        )
        assert withdrawn.status_code == 303
        seen = text_of((await http.get(f"/portal/requests/{rid}")).text)
        assert "Bước đã rút hồ sơ" in seen and "Hồ sơ đã được rút" in seen
        assert "Rút hồ sơ" not in seen
        document = re.search(
            rf"/portal/requests/{rid}/documents/D-\w+",
            (await http.get(f"/portal/requests/{rid}")).text,
        ).group(0)

    # Another agency: the request, its document and its forms are a missing page.
    async with portal(env, pool, settings, task_queue=worker.task_queue) as http:
        await signed_in_as(http, mail, other_email)
        missing = await http.get("/portal/requests/R-0000000000")
        theirs = await http.get(f"/portal/requests/{rid}")
        assert theirs.status_code == missing.status_code == 404
        assert text_of(theirs.text) == text_of(missing.text)
        assert "Không tìm thấy" in text_of(theirs.text)
        assert (await http.get(document)).status_code == 404
        form = (await http.get("/portal/requests/new")).text
        poked = await http.post(
            f"/portal/requests/{rid}/withdraw",
            data={"csrf_token": csrf_of(form), "once": "x", "reason": "Không phải của tôi"},
        )
        assert poked.status_code == 404
        assert "Không phải của tôi" not in (await http.get("/portal/requests")).text


async def test_the_signed_conclusion_and_the_answer_on_adoption(env, worker, pool, mail, registry):
    await registry.add(3)
    code, email = await new_agency(pool)
    async with portal(env, pool, portal_settings(mail), task_queue=worker.task_queue) as http:
        await signed_in_as(http, mail, email)
        # An advisory request: a council of 3 (the policy's), the registry slice's 3 experts.
        rid, _ = await submitted(http, registry.field, kind="advisory")
        handle = service.request_handle(env.client, rid)
        state = await review_to_synthesis(env, rid, handle)
        chair = next(a.expert_code for a in state.assignments if a.role == "chair")
        for a in state.assignments:
            await accept_and_submit(env, rid, a.expert_code)
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

        page = await http.get(f"/portal/requests/{rid}")
        seen = text_of(page.text)
        async with pool.acquire() as conn:
            number = await q.conclusion_number(conn, rid)
        assert f"Số {number['number']}" in seen
        assert "Hội đồng tán thành dự thảo, đề nghị chỉnh sửa, bổ sung." in seen
        assert "Trả lời tiếp thu" in seen and "Rút hồ sơ" not in seen
        pdf_link = f"/portal/requests/{rid}/documents/{number['document_id']}"
        assert pdf_link in page.text
        signed = await http.get(pdf_link)
        assert signed.status_code == 200 and signed.content.startswith(b"%PDF")

        form = (await http.get(f"/portal/requests/{rid}/adoption")).text
        answered = await http.post(
            f"/portal/requests/{rid}/adoption",
            data={
                "csrf_token": csrf_of(form),
                "once": once_of(form),
                "answer.status": "partially_adopted",
                "answer.explanation": "Tiếp thu ý kiến về vốn; giữ nguyên tiêu chí tuyến.",
                "answer.answered_by.name": "Lê Thị Thư",
                "answer.answered_by.email": email,
            },
        )
        assert answered.status_code == 303, text_of(answered.text)
        seen = text_of((await http.get(f"/portal/requests/{rid}")).text)
        assert "Bước đã kết thúc" in seen and "Tiếp thu một phần" in seen
        assert "Trả lời tiếp thu" not in seen
