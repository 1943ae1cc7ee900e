"""The reports page, through the real app over HTTP and a real PostgreSQL: the figures of audit
trails written through the engine's own recording activity (`record_transition`), narrowed by
the period and the filters, drawn and tabled; who may read it; bad input answered 400 with the
field named in the reader's language; a period with nothing in it.

Every request here is its test's own agency's, in March and April 2026 (no public holiday in
either), and the figures are worked out by hand from a calendar under config/policy.toml
(advisory: screening 5, respond 3, review 15, synthesis 5, approval 3, adoption 30 working days;
critique: screening 5). The other tests' requests share the database: each assertion on
figures filters by this test's agency or field."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime

import httpx
import openpyxl
import pypdf

from activities.persistence import PersistenceActivities
from domain.calendar import VN_TZ
from domain.messages import IntakeRecord, TransitionInput
from infra.documents import document_store
from starter.api import create_app
from tests import factories as f
from tests.conftest import register_agency
from tests.test_portal_auth import (
    PORTAL,
    new_coordinator,
    new_expert,
    portal_settings,
    signed_in_as,
    text_of,
)
from tests.test_portal_office import agency, error_beside, operator
from tests.test_report_measures import COORDINATOR, Trail, at

Browser = Callable[..., Awaitable[httpx.AsyncClient]]


@asynccontextmanager
async def reports_portal(env, pool, mail) -> AsyncIterator[Browser]:
    """The app, and a way to open a browser of one's own signed in as the person registered
    for `email`. The reports page reads PostgreSQL only: no worker."""
    app = create_app(portal_settings(mail), client=env.client, pool=pool)
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


# --- audit trails, written the way the engine writes them ---------------------------------------


async def record(pool, settings, trail: Trail, title: str) -> None:
    """Every event of `trail` through the persistence activity, the first with the request's
    intake (its row: agency, kind, fields), each keyed by its step as a workflow keys it."""
    acts = PersistenceActivities(
        pool,
        settings.coordinator_email,
        store=document_store(settings, pool),
        policy=settings.load_policy(),
    )
    facts = trail.facts
    submission = f.submission(
        facts.expertise_fields[0],
        title=title,
        kind=facts.kind.value,
        agency={"code": facts.agency_code, "name": facts.agency_code},
        agency_reference=f"{facts.id}/KH",
        expertise_fields=facts.expertise_fields,
    )
    for n, e in enumerate(trail.events):
        intake = IntakeRecord(submission=submission, submitted_at=e.at) if n == 0 else None
        await acts.record_transition(
            TransitionInput(
                workflow_id=f"review-{facts.id}",
                request_id=facts.id,
                step=f"{n}-{e.action}",
                at=e.at,
                actor=e.actor,
                action=e.action,
                stage=e.stage,
                details=e.details,
                intake=intake,
            )
        )


def new_id() -> str:
    return f"R-{uuid.uuid4().hex[:10].upper()}"


def concluded(code: str, field: str, experts: list[str]) -> Trail:
    """Advisory, from `code`, in March: screened in 2 days, a council of one chair after a
    decline and an expired invitation, reviewed in 8, drafted in 2, approved in 2, delivered
    Friday 20 March (turnaround 14), adopted in 6 — every deadline but E2's answer met."""
    chair, declining, silent = experts
    t = Trail(new_id(), code, "advisory", [field], at(3, 2))
    t.stage(at(3, 4, 10), "screening_accepted", "council", actor=COORDINATOR, note="")
    t.stage(at(3, 4, 10, 1), "council_proposed", "council", members=[chair, declining])
    t.expert(at(3, 4, 10, 2), "expert_invited", chair, role="chair")  # respond by Mon 9
    t.expert(at(3, 4, 10, 2), "expert_invited", declining)
    t.stage(at(3, 4, 10, 3), "review_opened", "review")  # the council's: Mon 30 March
    t.expert(at(3, 5), "invitation_accepted", chair, role="chair")  # review due Thu 26
    t.expert(at(3, 6), "invitation_declined", declining, reason="travelling")
    t.expert(at(3, 6, 9, 1), "expert_invited", silent)  # respond by Wed 11
    t.expert(at(3, 11, 23, 59, 59), "invitation_expired", silent)
    t.expert(at(3, 16, 10), "opinion_submitted", chair, role="chair", recommendation="endorse")
    t.stage(at(3, 16, 10, 1), "synthesis_opened", "synthesis", chair=chair, opinions=1)
    t.stage(at(3, 18, 10), "conclusion_drafted", "approval", actor=f"expert:{chair}", version=1)
    t.stage(at(3, 20, 10), "conclusion_approved", "delivered", actor=COORDINATOR, version=1)
    t.stage(at(3, 20, 10, 0, 1), "adoption_answer_requested", "adoption")
    t.stage(at(3, 30, 10), "adoption_answered", "closed", actor=f"agency:{code}", status="adopted")
    return t


def declined(code: str, field: str) -> Trail:
    """Critique, from `code`: received Tuesday 3 March, declined Thursday 12 — 7 working
    days, two past the screening deadline (Tuesday 10)."""
    t = Trail(new_id(), code, "critique", [field], at(3, 3))
    return t.stage(at(3, 12, 10), "screening_declined", "declined", actor=COORDINATOR, reason="x")


def withdrawn(code: str, field: str) -> Trail:
    """Advisory, from `code`, in another field: received Tuesday 7 April, withdrawn the next
    day."""
    t = Trail(new_id(), code, "advisory", [field], at(4, 7))
    return t.stage(at(4, 8, 10), "withdrawn", "withdrawn", actor=f"agency:{code}", reason="x")


async def a_year(pool, settings, registry) -> dict[str, str]:
    """Two agencies' requests: A's concluded and declined ones (field F), B's withdrawn one
    (field F2). The codes and names, by what they are."""
    experts = await registry.add(3)
    a = await register_agency(pool, f"RP{uuid.uuid4().hex[:6].upper()}")
    b = await register_agency(pool, f"RP{uuid.uuid4().hex[:6].upper()}")
    f2 = f"{registry.field}-water"
    codes = [e.code for e in experts]
    await record(pool, settings, concluded(a.code, registry.field, codes), "Đề án A")
    await record(pool, settings, declined(a.code, registry.field), "Đề án B")
    await record(pool, settings, withdrawn(b.code, f2), "Đề án C")
    return {
        "a": a.code,
        "a_name": a.name,
        "b": b.code,
        "f": registry.field,
        "f2": f2,
        "chair": codes[0],
        "chair_name": experts[0].name,
        "declining": codes[1],
        "silent": codes[2],
    }


# --- reading the page ----------------------------------------------------------------------------


def table(page: str, caption_id: str) -> list[list[str]]:
    """The rows of the table captioned `caption_id`, each its cells' text (head and foot
    rows too)."""
    found = re.search(rf'<caption id="{caption_id}">.*?</table>', page, re.S)
    assert found, f"no table {caption_id}"
    return [
        [text_of(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", found.group(0), re.S)
    ]


def rows(page: str, caption_id: str) -> dict[str, list[str]]:
    """The table's rows by their first cell."""
    return {r[0]: r[1:] for r in table(page, caption_id)}


def chart(page: str, chart_id: str) -> str:
    found = re.search(rf'<svg [^>]*id="{chart_id}".*?</svg>', page, re.S)
    assert found, f"no chart {chart_id}"
    return found.group(0)


def bar_values(svg: str, key: str) -> list[float]:
    """The figures of `key`'s bars, by series."""
    return [
        float(v)
        for v in re.findall(
            rf'data-key="{re.escape(key)}" data-series="\d" data-value="([\d.]+)"', svg
        )
    ]


async def report_page(http: httpx.AsyncClient, **params) -> httpx.Response:
    return await http.get("/portal/reports", params=params)


# --- the figures ---------------------------------------------------------------------------------


async def test_the_office_reads_a_years_figures_in_charts_and_tables(
    env, pool, mail, settings, registry
):
    ours = await a_year(pool, settings, registry)
    email = (await new_coordinator(pool)).email
    async with reports_portal(env, pool, mail) as browser:
        http = await browser(email)
        home = await http.get("/portal/")
        assert 'href="/portal/reports"' in home.text and "Báo cáo" in text_of(home.text)

        page = await report_page(http, by="year", year="2026", agency=ours["a"])
        assert page.status_code == 200
        shown = page.text
        assert "Báo cáo: năm 2026" in text_of(shown)
        assert rows(shown, "cap-volumes") == {
            "Chỉ tiêu": ["Số liệu"],
            "Tiếp nhận": ["2"],
            "Hoàn thành: đã gửi kết luận": ["1"],
            "Cơ quan đề nghị rút hồ sơ": ["0"],
            "Từ chối khi sơ loại": ["1"],
            "Kết thúc do không bổ sung hồ sơ": ["0"],
            "Thời gian xử lý, trung vị (ngày làm việc)": ["14"],
            "Thời gian xử lý, phân vị 90 (ngày làm việc)": ["14"],
        }

        months = rows(shown, "cap-months")
        assert len(months) == 1 + 12
        assert months["03/2026"] == ["2", "1", "0", "1", "0"]
        assert months["04/2026"] == ["0", "0", "0", "0", "0"]
        svg = chart(shown, "chart-months")
        assert 'role="img" aria-labelledby="chart-months-title chart-months-desc"' in svg
        assert bar_values(svg, "2026-03") == [2, 1] and bar_values(svg, "2026-04") == [0, 0]

        # Stage | times left | median | p90 | ended by a withdrawal.
        stages = rows(shown, "cap-stages")
        assert stages["Sơ loại hồ sơ"] == ["2", "2", "7", "0"]
        assert stages["Thành lập hội đồng"] == ["1", "0", "0", "0"]
        assert stages["Hội đồng đang góp ý, phản biện"] == ["1", "8", "8", "0"]
        assert stages["Dự thảo kết luận"] == ["1", "2", "2", "0"]
        assert stages["Phê duyệt kết luận"] == ["1", "2", "2", "0"]
        assert stages["Chờ trả lời về việc tiếp thu"] == ["1", "6", "6", "0"]
        assert stages["Chờ bổ sung hồ sơ"] == ["0", "–", "–", "0"]
        assert bar_values(chart(shown, "chart-stages"), "screening") == [2, 7]

        # Party | on time | late | rate | extensions.
        parties = rows(shown, "cap-parties")
        assert parties["Văn phòng Liên hiệp hội"] == ["2", "1", "66,7%", "0"]
        assert parties["Chuyên gia"] == ["3", "1", "75%", "0"]
        assert parties["Cơ quan đề nghị"] == ["1", "0", "100%", "0"]
        assert parties["Hội đồng"] == ["1", "0", "100%", "0"]
        assert parties["Chủ trì hội đồng"] == ["1", "0", "100%", "0"]
        on_time = chart(shown, "chart-on-time")
        assert bar_values(on_time, "coordinator") == [0.67]
        assert "66,7%" in on_time and "75%" in on_time
        deadlines = rows(shown, "cap-deadlines")
        assert deadlines["Sơ loại hồ sơ"] == ["Văn phòng Liên hiệp hội", "1", "1", "50%", "0", "0"]
        assert deadlines["Trả lời lời mời"] == ["Chuyên gia", "2", "1", "66,7%", "0", "0"]
        assert deadlines["Gửi ý kiến"] == ["Chuyên gia", "1", "0", "100%", "0", "0"]
        assert deadlines["Gửi hồ sơ bổ sung theo yêu cầu"] == [
            "Cơ quan đề nghị", "0", "0", "–", "0", "0",
        ]  # fmt: skip

        adoption = rows(shown, "cap-adoption")
        assert adoption[ours["a_name"]] == ["1", "1", "0", "0", "0", "0", "0"]
        assert adoption["Tất cả cơ quan"] == ["1", "1", "0", "0", "0", "0", "0"]
        assert bar_values(chart(shown, "chart-adoption"), ours["a"]) == [1]
        assert ours["a_name"] in chart(shown, "chart-adoption")

        experts = rows(shown, "cap-experts")
        assert experts[f"{ours['chair_name']} {ours['chair']}"] == [
            "1", "1", "0", "0", "100%", "0%", "0%", "1", "0", "1",
        ]  # fmt: skip
        assert experts["Tất cả chuyên gia"] == [
            "3", "1", "1", "1", "33,3%", "33,3%", "33,3%", "1", "0", "–",
        ]  # fmt: skip
        # Every chart is drawn once, each beside its table.
        assert shown.count('role="img"') == 4


async def test_the_filters_and_the_period_narrow_the_figures(env, pool, mail, settings, registry):
    ours = await a_year(pool, settings, registry)
    email = (await new_coordinator(pool)).email
    async with reports_portal(env, pool, mail) as browser:
        http = await browser(email)

        critique = await report_page(
            http, by="year", year="2026", agency=ours["a"], kind="critique"
        )
        volumes = rows(critique.text, "cap-volumes")
        assert (volumes["Tiếp nhận"], volumes["Từ chối khi sơ loại"]) == (["1"], ["1"])
        assert volumes["Hoàn thành: đã gửi kết luận"] == ["0"]
        assert rows(critique.text, "cap-stages")["Sơ loại hồ sơ"] == ["1", "7", "7", "0"]
        assert "Trong kỳ này không có kết luận nào được gửi." in text_of(critique.text)

        water = await report_page(http, by="year", year="2026", field=ours["f2"])
        volumes = rows(water.text, "cap-volumes")
        assert (volumes["Tiếp nhận"], volumes["Cơ quan đề nghị rút hồ sơ"]) == (["1"], ["1"])
        stages = rows(water.text, "cap-stages")
        assert stages["Sơ loại hồ sơ"] == ["1", "1", "1", "1"]  # ended by the withdrawal

        quarter = await report_page(http, by="quarter", year="2026", quarter="1", agency=ours["a"])
        assert "Báo cáo: quý 1 năm 2026" in text_of(quarter.text)
        assert rows(quarter.text, "cap-volumes")["Tiếp nhận"] == ["2"]
        assert list(rows(quarter.text, "cap-months"))[1:] == ["01/2026", "02/2026", "03/2026"]

        # Two dates, both included: the decline on Thursday 12 March is in, the intake of
        # Monday 2 March is not.
        days = await report_page(http, by="range", **{"from": "2026-03-03", "to": "12/03/2026"})
        assert days.status_code == 200
        some = await report_page(
            http, by="range", agency=ours["a"], **{"from": "2026-03-03", "to": "2026-03-12"}
        )
        volumes = rows(some.text, "cap-volumes")
        assert (volumes["Tiếp nhận"], volumes["Từ chối khi sơ loại"]) == (["1"], ["1"])
        assert "Báo cáo: từ 03/03/2026 đến 12/03/2026" in text_of(some.text)

        # April, agency A: nothing happened. Not an error, and no empty charts.
        april = await report_page(http, by="month", year="2026", month="4", agency=ours["a"])
        assert april.status_code == 200
        seen = text_of(april.text)
        assert "Không có hoạt động nào khớp với điều kiện lọc trong tháng 04/2026." in seen
        assert "<svg" not in april.text and "<table" not in april.text

        # In English, with English numbers.
        await http.get("/portal/language/en")
        english = await report_page(http, by="year", year="2026", agency=ours["a"])
        assert "Reports: the year 2026" in text_of(english.text)
        assert rows(english.text, "cap-parties")["The Union's office"] == ["2", "1", "66.7%", "0"]


async def test_a_bare_address_is_this_years_report_and_a_quiet_year_says_so(env, pool, mail):
    email = (await new_coordinator(pool)).email
    async with reports_portal(env, pool, mail) as browser:
        http = await browser(email)
        page = await http.get("/portal/reports")
        assert page.status_code == 200
        year = datetime.now(UTC).astimezone(VN_TZ).year
        assert f"Báo cáo: năm {year}" in text_of(page.text)
        assert re.search(r'<input type="radio" name="by" value="year" checked>', page.text)
        assert re.search(rf'<input id="f-year" name="year"[^>]* value="{year}">', page.text)

        quiet = await report_page(http, by="year", year="2001")
        assert quiet.status_code == 200
        assert "Không có hoạt động nào trong năm 2001." in text_of(quiet.text)
        assert "<svg" not in quiet.text and 'class="error-summary"' not in quiet.text


# --- who may read it -----------------------------------------------------------------------------


async def test_operators_read_the_reports_and_agencies_and_experts_may_not(env, pool, mail):
    _, agency_email = await agency(pool)
    expert = await new_expert(pool)
    async with reports_portal(env, pool, mail) as browser:
        ops = await browser(await operator(pool))
        assert 'href="/portal/reports"' in (await ops.get("/portal/")).text
        assert (await report_page(ops, by="year", year="2026")).status_code == 200
        for email in (agency_email, expert.email):
            http = await browser(email)
            refused = await report_page(http, by="year", year="2026")
            assert refused.status_code == 403
            assert "Bạn không có quyền truy cập trang này" in text_of(refused.text)
            assert "<svg" not in refused.text


# --- taking the report away ----------------------------------------------------------------------


async def test_the_office_takes_the_report_it_reads_as_csv_xlsx_and_a_signed_pdf(
    env, pool, mail, settings, registry
):
    ours = await a_year(pool, settings, registry)
    coordinator = await new_coordinator(pool)
    async with reports_portal(env, pool, mail) as browser:
        http = await browser(coordinator.email)
        query = {"by": "year", "year": "2026", "agency": ours["a"]}
        page = await report_page(http, **query)
        links = re.findall(r'href="(/portal/reports/download\?[^"]+)"', page.text)
        assert [re.search(r"format=(\w+)", u)[1] for u in links] == ["csv", "xlsx", "pdf"]
        assert all(f"agency={ours['a']}" in u for u in links)
        got = {}
        for link in links:
            r = await http.get(link.replace("&amp;", "&"))
            assert r.status_code == 200
            assert "attachment" in r.headers["content-disposition"]
            got[re.search(r"format=(\w+)", link)[1]] = r
        assert 'filename="bao-cao-2026.csv"' in got["csv"].headers["content-disposition"]

        # The CSV: the same figures as the page (two received, one concluded, one declined).
        lines = list(csv.reader(io.StringIO(got["csv"].content.decode("utf-8-sig"))))
        received = [x for x in lines if x[1:5] == ["Hồ sơ", "Tất cả", "", "Tiếp nhận"]]
        declined = [x for x in lines if x[1:5] == ["Hồ sơ", "Tất cả", "", "Từ chối khi sơ loại"]]
        assert received[0][5] == "2" and declined[0][5] == "1"

        # The XLSX opens, and its overview names the filter's agency.
        book = openpyxl.load_workbook(io.BytesIO(got["xlsx"].content))
        cells = [str(c.value) for row in book.worksheets[0].iter_rows() for c in row]
        assert any(ours["a"] in c or ours["a_name"] in c for c in cells)

        # The PDF: the Union's report, signed by the coordinator who took it.
        text = "".join(
            p.extract_text() for p in pypdf.PdfReader(io.BytesIO(got["pdf"].content)).pages
        )
        assert "BÁO CÁO" in text and coordinator.name in text

        # A form the page refuses is the page with its error; a format it has not, a 404.
        bad = await http.get("/portal/reports/download", params={"by": "year", "year": "20x6"})
        assert bad.status_code == 400 and "bốn chữ số" in text_of(bad.text)
        assert (
            await http.get("/portal/reports/download", params={"format": "doc"})
        ).status_code == 404

        # An operator reads and takes the figures, but a signed PDF is a coordinator's.
        ops = await browser(await operator(pool))
        page = await report_page(ops, **query)
        assert "format=csv" in page.text and "format=pdf" not in page.text
        assert (await ops.get("/portal/reports/download", params=query)).status_code == 200
        pdf = await ops.get("/portal/reports/download", params={**query, "format": "pdf"})
        assert pdf.status_code == 403
        # An agency takes nothing.
        _, agency_email = await agency(pool)
        outsider = await browser(agency_email)
        assert (await outsider.get("/portal/reports/download", params=query)).status_code == 403


# --- bad input -----------------------------------------------------------------------------------


async def test_bad_input_is_answered_400_naming_the_field_and_the_rule(env, pool, mail):
    email = (await new_coordinator(pool)).email
    async with reports_portal(env, pool, mail) as browser:
        http = await browser(email)
        async with pool.acquire() as conn:
            events = await conn.fetchval("SELECT count(*) FROM audit_log")

        cases = [
            (
                {"by": "year", "year": "20x6"},
                "year",
                "Vui lòng nhập năm gồm bốn chữ số, ví dụ 2026.",
            ),
            ({"by": "month", "year": "2026", "month": "13"}, "month", "Vui lòng chọn một tháng"),
            ({"by": "quarter", "year": "2026", "quarter": "5"}, "quarter", "từ quý 1 đến quý 4"),
            ({"by": "week", "year": "2026"}, "by", "Vui lòng chọn một năm, một quý"),
            (
                {"by": "range", "from": "2026-06-30", "to": "2026-01-01"},
                "to",
                "Ngày cuối không được trước ngày đầu (30/06/2026).",
            ),
            ({"by": "range", "from": "2026-02-30", "to": "2026-03-01"}, "from", "một ngày có thật"),
            (
                {"by": "range", "from": "2000-01-01", "to": "2026-12-31"},
                "to",
                "Một báo cáo chỉ bao gồm tối đa 10 năm.",
            ),
            (
                {"by": "year", "year": "2026", "agency": "KHONG-CO"},
                "agency",
                "Không có cơ quan nào được đăng ký với mã “KHONG-CO”.",
            ),
            ({"by": "year", "year": "2026", "kind": "survey"}, "kind", "Không có loại đề nghị"),
            (
                {"by": "year", "year": "2026", "field": "alchemy"},
                "field",
                "Không có chuyên gia nào thuộc lĩnh vực “alchemy”.",
            ),
        ]
        for params, field, message in cases:
            page = await report_page(http, **params)
            assert page.status_code == 400, params
            assert message in error_beside(page.text, field), params
            assert f'<a href="#f-{field}">' in page.text  # in the summary, linking to it
            # What was typed kept, and no figures.
            typed = [v for k, v in params.items() if k in ("year", "from", "to")]
            assert all(f'value="{v}"' in page.text for v in typed), params
            assert "<svg" not in page.text and 'id="cap-volumes"' not in page.text

        await http.get("/portal/language/en")
        page = await report_page(http, by="year", year="twenty")
        assert page.status_code == 400
        assert error_beside(page.text, "year") == "Error: Enter a year of four digits, like 2026."
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == events


# --- the HTTP API ---------------------------------------------------------------------------------


async def test_the_api_answers_a_report_to_the_office_and_refuses_everyone_else(
    env, pool, settings, registry, worker
):
    from tests.test_api import api, token

    ours = await a_year(pool, settings, registry)
    async with api(env, pool, settings, worker) as http:
        office = await token(pool, "coordinator", "VP01")
        r = await http.get(
            "/reports", params={"period": "2026", "agency": ours["a"]}, headers=office
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["period"]["label"] == "2026" and body["filter"]["agencies"] == [ours["a"]]
        assert body["volumes"] == {
            "received": 2,
            "completed": 1,
            "withdrawn": 0,
            "declined": 1,
            "lapsed": 0,
        }
        assert body["turnaround"] == {"count": 1, "median": 14, "p90": 14}
        # Two agencies (either), and a kind as well (both).
        both = await http.get(
            "/reports",
            params=[("period", "2026"), ("agency", ours["a"]), ("agency", ours["b"])],
            headers=office,
        )
        assert both.json()["volumes"]["received"] == 3
        kind = await http.get(
            "/reports",
            params={"period": "2026", "agency": ours["a"], "kind": "social_assessment"},
            headers=office,
        )
        assert kind.json()["volumes"]["received"] == 0 and kind.json()["empty"]

        # Bad input names the parameter and the rule; an empty period is no error.
        for params, name, rule in (
            ({"period": "2026-13"}, "period", "a month is 01 to 12"),
            ({"period": "2026-06-30..2026-01-01"}, "period", "ends before it starts"),
            ({"period": "2001-01-01..2026-12-31"}, "period", "at most 10 years"),
            ({"period": "2026", "agency": "NOPE"}, "agency", "no registered agency"),
            ({"period": "2026", "field": "astrology"}, "field", "no expert is registered"),
            ({"period": "2026", "kind": "opinion"}, "kind", ""),
            ({}, "period", ""),
        ):
            bad = await http.get("/reports", params=params, headers=office)
            assert bad.status_code == 422, (params, bad.text)
            problem = bad.json()
            assert problem["errors"][0]["field"].startswith(f"query.{name}"), problem
            assert rule in problem["errors"][0]["message"], problem
        quiet = await http.get("/reports", params={"period": "2001"}, headers=office)
        assert quiet.status_code == 200 and quiet.json()["empty"]

        # Operators read it too; agencies and experts may not; nobody without a token.
        ops = await token(pool, "operator", "OPS01")
        assert (await http.get("/reports", params={"period": "2026"}, headers=ops)).is_success
        for role, code in (("agency", ours["a"]), ("expert", ours["chair"])):
            refused = await http.get(
                "/reports", params={"period": "2026"}, headers=await token(pool, role, code)
            )
            assert refused.status_code == 403, refused.text
        assert (await http.get("/reports", params={"period": "2026"})).status_code == 401
