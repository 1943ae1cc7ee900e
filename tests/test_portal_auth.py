"""The portal's foundation, through the real app over HTTP (httpx's ASGI transport), a real
PostgreSQL and a real SMTP server: signing in by e-mailed link, what a refused link explains,
the rate limits, CSRF, session cookies, sign-out, deactivation, the language switch, a page
built on the foundation re-rendering its form with errors, the deadline helper and the
catalogues. Assertions are on what a person sees: status, page text, e-mails, rows."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi import APIRouter, Depends

from db import queries as q
from domain.calendar import VN_TZ, WorkingCalendar
from domain.models import Coordinator, Expert, Operator
from infra.settings import Settings
from starter.api import create_app
from starter.mailsink import MailSink
from starter.portal import Form, SignedIn, only, render, revoke_all_sessions, task_link
from starter.portal.i18n import deadline_text, format_date

PORTAL = "http://127.0.0.1:8000"
LINK = re.compile(r"https?://[^\s]+/portal/link/[A-Za-z0-9_.-]+")


def portal_settings(mail: MailSink, **changes) -> Settings:
    values = dict(
        deliver_notifications=False,
        smtp_host="127.0.0.1",
        smtp_port=mail.port,
        smtp_starttls=False,
        portal_secret="test-portal-secret-" + "x" * 32,
        portal_url=PORTAL,
    )
    values.update(changes)
    return Settings(**values)


# A page built the way page authors build theirs: coordinators only, a form with a required
# field that is re-rendered with its error and the value typed.
probe = APIRouter()
coordinators_only = only("coordinator")


@probe.get("/probe")
async def probe_form(me: SignedIn = Depends(coordinators_only)):
    return render(me, "sign_in.html")


@probe.post("/probe")
async def probe_submit(me: SignedIn = Depends(coordinators_only)):
    form = await Form.read(me.request)
    form.error("email", me.gettext("Enter your e-mail address, like name@example.vn."))
    return render(me, "sign_in.html", form=form, status=422)


@asynccontextmanager
async def portal(
    env, pool, settings: Settings, base_url: str = PORTAL, task_queue: str | None = None
) -> AsyncIterator:
    """The app over HTTP; `task_queue`: a test's worker's, for pages that start requests."""
    app = create_app(settings, client=env.client, pool=pool, task_queue=task_queue)
    app.include_router(probe, prefix="/portal", include_in_schema=False)
    async with app.router.lifespan_context(app):
        # A client address of its own per test: the per-client limit is not shared.
        n = uuid.uuid4().int
        client = (f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}", 40000)
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


async def new_expert(pool: asyncpg.Pool, languages=("vi",)) -> Expert:
    tag = uuid.uuid4().hex[:8]
    e = Expert(
        code=f"P{tag}",
        name=f"Chuyên gia Cổng {tag}",
        email=f"expert.{tag}@portal.example.vn",
        organisation="Viện Nghiên cứu",
        member_association="Hội Khoa học",
        fields=["portal"],
        languages=list(languages),
    )
    async with pool.acquire() as conn:
        await q.upsert_expert(conn, e)
    return e


async def new_coordinator(pool: asyncpg.Pool, email: str | None = None) -> Coordinator:
    tag = uuid.uuid4().hex[:8]
    c = Coordinator(
        code=f"C{tag}",
        name=f"Cán bộ {tag}",
        title="Chuyên viên",
        email=email or f"coordinator.{tag}@portal.example.vn",
    )
    async with pool.acquire() as conn:
        await q.upsert_coordinator(conn, c)
    return c


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def text_of(page: str) -> str:
    """What a person reads: the page without its tags, entities decoded, spaces folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


async def ask_link(http: httpx.AsyncClient, email: str, next_path: str = "") -> httpx.Response:
    page = await http.get("/portal/sign-in", params={"next": next_path} if next_path else None)
    return await http.post(
        "/portal/sign-in",
        data={"email": email, "next": next_path, "csrf_token": csrf_of(page.text)},
    )


def mails_to(mail: MailSink, address: str) -> list:
    return [m for m in mail.messages if m["To"] == address]


async def wait_for_mail(mail: MailSink, address: str, count: int = 1) -> list:
    async with asyncio.timeout(10):
        # The sink is another thread's server: there is no event here to wait on.
        while len(mails_to(mail, address)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return mails_to(mail, address)


def links_in(message) -> list[str]:
    return LINK.findall(message.get_content())


async def open_link(http: httpx.AsyncClient, url: str) -> httpx.Response:
    """Opens a link and presses its button, as a person does."""
    path = httpx.URL(url).path
    page = await http.get(path)
    assert page.status_code == 200, page.text
    return await http.post(path, data={"csrf_token": csrf_of(page.text)})


async def signed_in_as(http: httpx.AsyncClient, mail: MailSink, email: str) -> httpx.Response:
    before = len(mails_to(mail, email))
    await ask_link(http, email)
    message = (await wait_for_mail(mail, email, before + 1))[-1]
    used = await open_link(http, links_in(message)[0])
    assert used.status_code == 303, used.text
    return used


async def test_a_registered_address_gets_a_link_that_signs_in(env, pool, mail):
    expert = await new_expert(pool)
    async with portal(env, pool, portal_settings(mail)) as http:
        asked = await ask_link(http, expert.email.upper(), "/portal/?tab=tasks")
        assert asked.status_code == 200
        assert "Hãy kiểm tra hộp thư" in text_of(asked.text)

        (message,) = await wait_for_mail(mail, expert.email)
        assert str(message["Subject"]) == "Đường dẫn đăng nhập của bạn"
        assert "Mỗi đường dẫn chỉ dùng được một lần, trong vòng 15 phút." in message.get_content()
        (url,) = links_in(message)
        assert url.startswith(f"{PORTAL}/portal/link/")

        # Opening the link changes nothing: a mail scanner may have fetched it first.
        page = await http.get(httpx.URL(url).path)
        assert "Đăng nhập" in text_of(page.text)
        assert (await http.get("/portal/")).status_code == 303

        used = await http.post(httpx.URL(url).path, data={"csrf_token": csrf_of(page.text)})
        assert used.status_code == 303
        assert used.headers["location"] == "/portal/?tab=tasks"
        home = await http.get("/portal/")
        assert home.status_code == 200
        seen = text_of(home.text)
        assert f"Xin chào, {expert.name}" in seen
        assert "Bạn đã đăng nhập với vai trò chuyên gia." in seen
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT role, code, email FROM portal_sessions WHERE code = $1 AND revoked_at IS NULL",
            expert.code,
        )
    assert dict(row) == {"role": "expert", "code": expert.code, "email": expert.email}


async def test_an_unregistered_address_gets_the_same_page_and_no_mail(env, pool, mail):
    expert = await new_expert(pool)
    unknown = f"nobody.{uuid.uuid4().hex[:8]}@portal.example.vn"
    async with portal(env, pool, portal_settings(mail)) as http:
        registered = await ask_link(http, expert.email)
        unregistered = await ask_link(http, unknown)
    assert registered.status_code == unregistered.status_code == 200
    assert text_of(registered.text).replace(expert.email, "X") == text_of(
        unregistered.text
    ).replace(unknown, "X")
    await wait_for_mail(mail, expert.email)
    await asyncio.sleep(0.3)
    assert mails_to(mail, unknown) == []


async def test_one_address_of_several_people_gets_a_link_for_each(env, pool, mail):
    expert = await new_expert(pool)
    coordinator = await new_coordinator(pool, email=expert.email)
    async with portal(env, pool, portal_settings(mail)) as http:
        await ask_link(http, expert.email)
        (message,) = await wait_for_mail(mail, expert.email)
        body = message.get_content()
        assert f"cán bộ điều phối – {coordinator.name}" in body
        assert f"chuyên gia – {expert.name}" in body
        as_coordinator, as_expert = links_in(message)
        assert (await open_link(http, as_expert)).status_code == 303
        assert f"Xin chào, {expert.name}" in text_of((await http.get("/portal/")).text)


async def test_a_link_is_used_once(env, pool, mail):
    expert = await new_expert(pool)
    async with portal(env, pool, portal_settings(mail)) as http:
        await ask_link(http, expert.email)
        (message,) = await wait_for_mail(mail, expert.email)
        (url,) = links_in(message)
        path = httpx.URL(url).path
        page = await http.get(path)
        token = csrf_of(page.text)
        assert (await http.post(path, data={"csrf_token": token})).status_code == 303

    async with portal(env, pool, portal_settings(mail)) as other:
        again = await other.get(path)
        assert again.status_code == 410
        assert "Đường dẫn đã được sử dụng" in text_of(again.text)
        # It offers a fresh link to the same address.
        assert f"Gửi đường dẫn đăng nhập mới đến {expert.email}" in text_of(again.text)
        pressed = await other.post(path, data={"csrf_token": csrf_of(again.text)})
        assert pressed.status_code == 410
        assert (await other.get("/portal/")).status_code == 303


async def test_an_expired_or_altered_link_is_refused_and_explained(env, pool, mail):
    expert = await new_expert(pool)
    settings = portal_settings(mail)
    sent = datetime.now(UTC) - timedelta(minutes=20)
    expired = task_link(
        settings, "expert", expert.code, expert.email, "/portal/", timedelta(minutes=15), now=sent
    )
    fresh = task_link(settings, "expert", expert.code, expert.email, "/portal/", timedelta(days=7))
    async with portal(env, pool, settings) as http:
        page = await http.get(httpx.URL(expired).path)
        assert page.status_code == 410
        seen = text_of(page.text)
        assert "Đường dẫn đã hết hạn" in seen
        assert f"Gửi đường dẫn đăng nhập mới đến {expert.email}" in seen
        pressed = await http.post(httpx.URL(expired).path, data={"csrf_token": csrf_of(page.text)})
        assert pressed.status_code == 410
        assert (await http.get("/portal/")).status_code == 303

        # The offered button sends a fresh link to that address.
        renewed = await http.post(
            "/portal/sign-in",
            data={"email": expert.email, "next": "/portal/", "csrf_token": csrf_of(page.text)},
        )
        assert renewed.status_code == 200
        await wait_for_mail(mail, expert.email)

        altered = httpx.URL(fresh).path[:-3] + "abc"
        page = await http.get(altered)
        assert page.status_code == 400
        assert "Đường dẫn không hợp lệ" in text_of(page.text)


async def test_a_link_for_someone_else_while_signed_in_is_explained(env, pool, mail):
    coordinator = await new_coordinator(pool)
    expert = await new_expert(pool)
    settings = portal_settings(mail)
    link = task_link(settings, "expert", expert.code, expert.email, "/portal/", timedelta(days=1))
    async with portal(env, pool, settings) as http:
        await signed_in_as(http, mail, coordinator.email)
        page = await http.get(httpx.URL(link).path)
        assert page.status_code == 200
        seen = text_of(page.text)
        assert f"Bạn đang đăng nhập với tên {coordinator.name}" in seen
        assert "Đăng xuất và dùng đường dẫn này" in seen

        # Signing out from there comes back to the link, which then signs the expert in.
        out = await http.post(
            "/portal/sign-out",
            data={"csrf_token": csrf_of(page.text), "next": httpx.URL(link).path},
        )
        assert out.headers["location"] == httpx.URL(link).path
        assert (await open_link(http, link)).status_code == 303
        assert f"Xin chào, {expert.name}" in text_of((await http.get("/portal/")).text)


async def test_sign_in_requests_are_limited_per_address_and_per_client(env, pool, mail):
    expert = await new_expert(pool)
    async with portal(env, pool, portal_settings(mail)) as http:
        for _ in range(3):
            await ask_link(http, expert.email)
        await wait_for_mail(mail, expert.email, 3)
        over = await ask_link(http, expert.email)
        assert over.status_code == 200
        assert "Hãy kiểm tra hộp thư" in text_of(over.text)
        await asyncio.sleep(0.3)
        assert len(mails_to(mail, expert.email)) == 3

    other = await new_expert(pool)
    async with portal(env, pool, portal_settings(mail)) as http:
        for i in range(20):
            await ask_link(http, f"probe{i}.{uuid.uuid4().hex[:6]}@portal.example.vn")
        over = await ask_link(http, other.email)
        assert "Hãy kiểm tra hộp thư" in text_of(over.text)
        await asyncio.sleep(0.3)
        assert mails_to(mail, other.email) == []


async def test_a_post_without_the_right_csrf_token_is_refused_and_changes_nothing(env, pool, mail):
    expert = await new_expert(pool)
    async with portal(env, pool, portal_settings(mail)) as http:
        await http.get("/portal/sign-in")
        missing = await http.post("/portal/sign-in", data={"email": expert.email})
        wrong = await http.post(
            "/portal/sign-in", data={"email": expert.email, "csrf_token": "x" * 43}
        )
        for refused in (missing, wrong):
            assert refused.status_code == 403
            assert "Không thể tiếp nhận biểu mẫu" in text_of(refused.text)
        await asyncio.sleep(0.3)
        assert mails_to(mail, expert.email) == []

        await signed_in_as(http, mail, expert.email)
        home = await http.get("/portal/")
        out = await http.post("/portal/sign-out", data={})
        assert out.status_code == 403
        # A token from before sign-in is no good after it.
        stale = await http.post("/portal/sign-out", data={"csrf_token": csrf_of(home.text) + "x"})
        assert stale.status_code == 403
        assert (await http.get("/portal/")).status_code == 200
    async with pool.acquire() as conn:
        live = await conn.fetchval(
            "SELECT count(*) FROM portal_sessions WHERE code = $1 AND revoked_at IS NULL",
            expert.code,
        )
    assert live == 1


async def test_session_cookie_flags(env, pool, mail):
    expert = await new_expert(pool)
    async with portal(env, pool, portal_settings(mail)) as http:
        used = await signed_in_as(http, mail, expert.email)
        cookie = next(
            c for c in used.headers.get_list("set-cookie") if c.startswith("advisory_session=")
        )
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/portal" in cookie
        assert "Secure" not in cookie  # http://127.0.0.1: a developer's own machine

    secure = portal_settings(mail, portal_url="https://portal.example.vn")
    async with portal(env, pool, secure, base_url="https://portal.example.vn") as http:
        used = await signed_in_as(http, mail, expert.email)
        cookies = used.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("advisory_session="))
        assert "Secure" in session and "HttpOnly" in session and "SameSite=lax" in session
        assert all("Secure" in c for c in cookies)


async def test_sign_out_revokes_the_session(env, pool, mail):
    expert = await new_expert(pool)
    async with portal(env, pool, portal_settings(mail)) as http:
        await signed_in_as(http, mail, expert.email)
        old = http.cookies.get("advisory_session")
        home = await http.get("/portal/")
        out = await http.post("/portal/sign-out", data={"csrf_token": csrf_of(home.text)})
        assert out.status_code == 303
        assert out.headers["location"] == "/portal/sign-in"
        assert (await http.get("/portal/")).status_code == 303

        # The old cookie, kept by someone, no longer works.
        http.cookies.set("advisory_session", old, domain="127.0.0.1", path="/portal")
        again = await http.get("/portal/")
        assert again.status_code == 303
        assert again.headers["location"] == "/portal/sign-in?next=/portal/"


async def test_a_deactivated_person_is_signed_out(env, pool, mail):
    coordinator = await new_coordinator(pool)
    async with portal(env, pool, portal_settings(mail)) as http:
        await signed_in_as(http, mail, coordinator.email)
        assert (await http.get("/portal/")).status_code == 200
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE coordinators SET active = false WHERE code = $1", coordinator.code
            )
        assert (await http.get("/portal/")).status_code == 303
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE coordinators SET active = true WHERE code = $1", coordinator.code
            )
        # The session was ended, not paused.
        assert (await http.get("/portal/")).status_code == 303

        await signed_in_as(http, mail, coordinator.email)
        assert await revoke_all_sessions(pool, "coordinator", coordinator.code) == 1
        assert (await http.get("/portal/")).status_code == 303


async def test_an_operator_of_the_registry_signs_in_and_is_signed_out_when_deactivated(
    env, pool, mail
):
    tag = uuid.uuid4().hex[:8]
    operator = Operator(code=f"O{tag}", name=f"Vận hành {tag}", email=f"op.{tag}@portal.example.vn")
    async with pool.acquire() as conn:
        await q.upsert_operator(conn, operator)
    async with portal(env, pool, portal_settings(mail)) as http:
        await signed_in_as(http, mail, operator.email)
        seen = text_of((await http.get("/portal/")).text)
        assert f"Xin chào, {operator.name}" in seen
        assert "Bạn đã đăng nhập với vai trò cán bộ vận hành." in seen
        async with pool.acquire() as conn:
            await q.set_active(conn, "operators", operator.code, False)
        assert (await http.get("/portal/")).status_code == 303


async def test_the_language_follows_the_person_and_the_switch(env, pool, mail):
    expert = await new_expert(pool, languages=("en", "vi"))
    async with portal(env, pool, portal_settings(mail)) as http:
        page = await http.get("/portal/sign-in")
        assert '<html lang="vi">' in page.text
        assert "Đăng nhập" in text_of(page.text)

        switched = await http.get("/portal/language/en", params={"next": "/portal/sign-in"})
        assert switched.status_code == 303 and switched.headers["location"] == "/portal/sign-in"
        page = await http.get("/portal/sign-in")
        assert '<html lang="en">' in page.text
        assert "Send me a sign-in link" in text_of(page.text)
        assert "Tiếng Việt" in text_of(page.text)  # the way back

        # Another site is never where the switch leads.
        away = await http.get("/portal/language/vi", params={"next": "https://evil.example/"})
        assert away.headers["location"] == "/portal/"

    async with portal(env, pool, portal_settings(mail)) as http:
        # A person who reads English gets English mail and pages without touching the switch.
        await ask_link(http, expert.email, "https://evil.example/")
        (message,) = await wait_for_mail(mail, expert.email)
        assert str(message["Subject"]) == "Your sign-in link"
        used = await open_link(http, links_in(message)[0])
        assert used.headers["location"] == "/portal/"  # not another site
        home = await http.get("/portal/")
        assert '<html lang="en">' in home.text
        assert f"Welcome, {expert.name}" in text_of(home.text)
        assert "You are signed in as expert." in text_of(home.text)


async def test_a_page_for_one_role_and_a_form_refused_field_by_field(env, pool, mail):
    coordinator = await new_coordinator(pool)
    expert = await new_expert(pool)
    async with portal(env, pool, portal_settings(mail)) as http:
        signed_out = await http.get("/portal/probe")
        assert signed_out.status_code == 303
        assert signed_out.headers["location"] == "/portal/sign-in?next=/portal/probe"

        await signed_in_as(http, mail, expert.email)
        forbidden = await http.get("/portal/probe")
        assert forbidden.status_code == 403
        assert "Bạn không có quyền truy cập trang này" in text_of(forbidden.text)

    async with portal(env, pool, portal_settings(mail)) as http:
        await signed_in_as(http, mail, coordinator.email)
        page = await http.get("/portal/probe")
        refused = await http.post(
            "/portal/probe", data={"email": "typed <here>", "csrf_token": csrf_of(page.text)}
        )
        assert refused.status_code == 422
        body = refused.text
        # The value kept (escaped), the message beside the field and in the summary above.
        assert 'value="typed &lt;here&gt;"' in body
        assert 'aria-describedby="f-email-error"' in body and 'aria-invalid="true"' in body
        assert re.search(r'<p class="error-message" id="f-email-error">.*Nhập địa chỉ', body)
        assert '<a href="#f-email">Nhập địa chỉ thư điện tử của bạn' in body


def test_deadline_shows_its_date_and_the_working_days_left():
    calendar = WorkingCalendar()
    # Monday 27/04/2026 is the day off for the Hùng Kings (observed), Thursday 30/04 and
    # Friday 01/05 are holidays: from Monday to Monday 04/05, 3 working days remain.
    now = datetime(2026, 4, 27, 10, 0, tzinfo=VN_TZ)
    due = datetime(2026, 5, 4, 23, 59, 59, tzinfo=VN_TZ)
    assert deadline_text(due, now, calendar, "vi") == "04/05/2026 (còn 3 ngày làm việc)"
    assert deadline_text(due, now, calendar, "en") == "04/05/2026 (3 working days left)"
    one_left = datetime(2026, 4, 28, 23, 59, 59, tzinfo=VN_TZ)
    assert deadline_text(one_left, now, calendar, "en") == "28/04/2026 (1 working day left)"
    today = datetime(2026, 4, 27, 23, 59, 59, tzinfo=VN_TZ)
    assert deadline_text(today, now, calendar, "vi") == "27/04/2026 (hết hạn hôm nay)"
    later = datetime(2026, 5, 5, 9, 0, tzinfo=VN_TZ)
    assert deadline_text(due, later, calendar, "vi") == "04/05/2026 (quá hạn 1 ngày làm việc)"
    assert deadline_text(due, later, calendar, "en") == "04/05/2026 (overdue by 1 working day)"
    # An instant late in the evening UTC is the next day in Vietnam.
    assert format_date(datetime(2026, 12, 31, 18, 0, tzinfo=UTC)) == "01/01/2027"


PORTAL_DIR = Path(__file__).resolve().parent.parent / "starter" / "portal"


def test_every_message_is_in_both_catalogues():
    """Every id the templates and code use is in both catalogues, translated in Vietnamese:
    a message missing from one would show in English to a Vietnamese reader."""
    templates = {"extensions": "jinja2.ext.i18n"}
    used = {
        m
        for _, _, m, _, _ in extract_from_dir(
            str(PORTAL_DIR),
            [
                ("**/templates/**.html", "jinja2"),
                ("**/templates/**.txt", "jinja2"),
                ("**.py", "python"),
            ],
            options_map={"**/templates/**.html": templates, "**/templates/**.txt": templates},
            keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
        )
    }
    for lang in ("vi", "en"):
        with (PORTAL_DIR / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
            catalog = read_po(f)
        ids = {m.id for m in catalog if m.id}
        missing = [m for m in used if m not in ids]
        assert not missing, f"{lang}: missing {missing}"
        untranslated = [
            m.id
            for m in catalog
            if m.id and not all(m.string if isinstance(m.string, tuple) else [m.string])
        ]
        assert not untranslated, f"{lang}: untranslated {untranslated}"


async def test_the_portal_is_no_part_of_the_api_document(env, pool, mail):
    async with portal(env, pool, portal_settings(mail)) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/portal")]
