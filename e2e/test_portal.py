"""`make e2e`, the portal: a whole request played in Chromium through the portal's pages only,
each person signed in from the e-mail the mail sink received — the agency submits with two
PDFs, the coordinator screens (the CLI, until the coordinator's pages), every expert follows
"Nhận lời" from their invitation and writes an opinion, the chair drafts the conclusion from
"Dự thảo kết luận", the coordinator approves, and the agency downloads the signed PDF and
answers on adoption. Every page is checked with axe-core (no serious or critical violation)
and kept as a screenshot under .data/e2e/; at the end the coordinator reads the year's report
(charts and tables). Then the portal's security, as a browser meets it:
a form without its CSRF token, a sign-in link used twice, another expert's task, the session
cookie's flags."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import re
import shutil
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect, sync_playwright

from e2e.stack import ROOT, SERVER_DEADLINE, UI_DEADLINE, advisory, get, wait_until

SHOTS = ROOT / ".data" / "e2e"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
AGENCY_EMAIL = "hong.nt@stnmt.example.gov.vn"  # config/agencies.sample.csv, STNMT
COORDINATOR_EMAIL = "lan.nt@lienhiephoi.example.vn"  # config/coordinators.sample.csv, VP01
TITLE = "Dự thảo Kế hoạch phát triển khoa học và công nghệ"
AXE = Axe()


class Pages:
    """Every page the test looks at: kept as a screenshot, numbered in the order seen, and
    checked with axe-core; the violations are gathered and asserted once at the end."""

    def __init__(self) -> None:
        shutil.rmtree(SHOTS, ignore_errors=True)
        SHOTS.mkdir(parents=True)
        self.count = 0
        self.violations: list[str] = []

    def seen(self, page: Page, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(SHOTS / f"{self.count:02d}-{name}.png"), full_page=True)
        for v in AXE.run(page).response["violations"]:
            if v["impact"] in ("serious", "critical"):
                where = [n["target"] for n in v["nodes"]][:3]
                self.violations.append(f"{name}: {v['id']} ({v['impact']}) {v['help']} {where}")


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


def person(browser: Browser, viewport=DESKTOP) -> Page:
    """A browser of its own (cookies, session) for one person."""
    page = browser.new_context(viewport=viewport, accept_downloads=True).new_page()
    page.set_default_timeout(UI_DEADLINE * 1000)
    return page


def mails(data: Path) -> list[EmailMessage]:
    out = []
    for path in sorted((data / "mail").glob("*.eml")):
        out.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    return out


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def mail_to(stack, address: str, event: str | None, after: int = 0) -> EmailMessage:
    """The first message to `address` (about `event`, by its X-Advisory-Event; or any) past
    the first `after` of theirs, once the sink has it."""

    def found():
        theirs = [m for m in mails(stack["data"]) if address in m["To"]]
        # A sign-in e-mail is no notification: it has no X-Advisory-Event.
        theirs = [m for m in theirs[after:] if m["X-Advisory-Event"] == event]
        return theirs[0] if theirs else None

    return wait_until(f"a {event or 'sign-in'} e-mail to {address}", found, deadline())


def link_in(message: EmailMessage, label: str) -> str:
    found = re.search(rf"^{label}: (\S+)$", text_of(message), re.M) or re.search(
        r"(https?://\S+/portal/link/\S+)", text_of(message)
    )
    assert found, f"no {label!r} link in:\n{text_of(message)}"
    return found.group(1)


def deadline() -> float:
    return time.monotonic() + SERVER_DEADLINE


def follow(page: Page, url: str, pages: Pages, name: str) -> None:
    """Opens an e-mail's link and presses its one button, as the person does."""
    page.goto(url)
    pages.seen(page, f"{name}-link")
    page.locator("main form button[type=submit]").first.click()


def state_of(stack, rid: str) -> dict:
    return json.loads(advisory(stack, "--json", "show", rid).stdout)["state"]


def stage_of(stack, rid: str) -> str:
    return state_of(stack, rid)["stage"]


def sign_in(page: Page, base: str, stack, address: str, pages: Pages, name: str) -> None:
    """Signs in at the portal's sign-in page with the link the mail sink receives."""
    before = len([m for m in mails(stack["data"]) if address in m["To"]])
    page.goto(f"{base}/portal/sign-in")
    page.fill("input[name=email]", address)
    page.locator("main form button[type=submit]").first.click()
    expect(page.locator("main")).to_contain_text("kiểm tra hộp thư")
    follow(page, link_in(mail_to(stack, address, None, after=before), "Đăng nhập"), pages, name)
    expect(page.locator("header")).to_contain_text("Đang đăng nhập")


def pdf(text: str) -> bytes:
    """A small, valid one-page PDF."""
    content = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_a_request_through_the_portal_alone(stack, tmp_path):
    base = f"http://127.0.0.1:{stack['ports']['api']}"
    wait_until("the portal answers", lambda: "ok" in get(f"{base}/health"), deadline())
    pages = Pages()
    plan, annex = tmp_path / "Dự thảo kế hoạch.pdf", tmp_path / "Tờ trình.pdf"
    plan.write_bytes(pdf("Du thao ke hoach"))
    annex.write_bytes(pdf("To trinh"))
    with chromium() as browser:
        agency = person(browser, PHONE)
        # --- the agency signs in with its registered address, and submits ---------------
        agency.goto(f"{base}/portal/")
        pages.seen(agency, "sign-in")
        agency.fill("input[name=email]", AGENCY_EMAIL)
        agency.locator("main form button[type=submit]").click()
        expect(agency.locator("main")).to_contain_text("kiểm tra hộp thư")
        pages.seen(agency, "sign-in-sent")
        follow(agency, link_in(mail_to(stack, AGENCY_EMAIL, None), "Đăng nhập"), pages, "agency")
        agency.goto(f"{base}/portal/requests/new")
        pages.seen(agency, "agency-new-request")
        reference = f"E2E-PORTAL-{int(time.time())}"
        agency.select_option("select[name=kind]", "advisory")
        agency.fill("input[name=title]", TITLE)
        agency.fill("input[name=agency_reference]", reference)
        agency.fill("textarea[name=summary]", "Đề nghị tư vấn về mục tiêu và giải pháp.")
        for field in ("moi-truong", "quy-hoach"):  # fields of the sample experts
            agency.check(f"input[name=expertise_fields][value={field}]")
        agency.locator("input[type=file]").set_input_files([plan, annex])
        agency.locator("main form button[type=submit]").click()
        expect(agency).to_have_url(re.compile(r"/portal/requests/R-[0-9A-F]{10}$"))
        rid = agency.url.rsplit("/", 1)[1]
        expect(agency.locator("main")).to_contain_text("Dự thảo kế hoạch.pdf")
        expect(agency.locator("main")).to_contain_text("Tờ trình.pdf")
        pages.seen(agency, "agency-request")

        # --- the coordinator: the board, the case, screening --------------------------------
        office = person(browser)
        sign_in(office, base, stack, COORDINATOR_EMAIL, pages, "coordinator")
        office.goto(f"{base}/portal/board")
        expect(office.locator("main")).to_contain_text(TITLE)
        pages.seen(office, "coordinator-board")
        office.goto(f"{base}/portal/cases/{rid}")
        expect(office.locator("main")).to_contain_text("Tờ trình.pdf")
        pages.seen(office, "coordinator-case")
        office.goto(f"{base}/portal/cases/{rid}/screening")
        pages.seen(office, "coordinator-screening")
        office.get_by_role("button", name="Tiếp nhận hồ sơ").click()
        proposed = wait_until(
            "a council proposed, waiting for the coordinator (this stack's policy)",
            lambda: (s := state_of(stack, rid))["stage"] == "council" and s.get("council") and s,
            deadline(),
        )

        # --- the council, edited: the first alternate sits instead of the last member -----
        council = proposed["council"]
        leaving = council["members"][-1]["expert_code"]
        joining = council["alternates"][0]["expert_code"]
        office.goto(f"{base}/portal/cases/{rid}/council")
        expect(office.locator("main")).to_contain_text(joining)
        pages.seen(office, "coordinator-council")
        office.get_by_role("link", name="Chỉnh sửa hội đồng").click()
        office.uncheck(f"#f-member-{leaving}")
        office.check(f"#f-member-{joining}")
        pages.seen(office, "coordinator-council-edit")
        office.get_by_role("button", name="Xác nhận hội đồng này").click()
        wait_until("the council is invited", lambda: stage_of(stack, rid) == "review", deadline())
        seated = {a["expert_code"] for a in state_of(stack, rid)["assignments"]}
        assert joining in seated and leaving not in seated

        # --- every expert, from the invitation e-mail ------------------------------------
        invitations = wait_until(
            "three invitations",
            lambda: (
                found
                if len(
                    found := [
                        m
                        for m in mails(stack["data"])
                        if m["X-Advisory-Request"] == rid and m["X-Advisory-Event"] == "invitation"
                    ]
                )
                == 3
                else None
            ),
            deadline(),
        )
        # The chair first: the conclusion is theirs to draft once the quorum is in.
        invitations.sort(key=lambda m: "chủ trì" not in text_of(m))
        experts: list[tuple[str, Page]] = []
        for n, invitation in enumerate(invitations):
            expert = person(browser, PHONE if n else DESKTOP)
            follow(expert, link_in(invitation, "Nhận lời"), pages, f"expert{n}")
            expect(expert).to_have_url(re.compile(rf"/portal/tasks/{rid}/accept$"))
            pages.seen(expert, f"expert{n}-accept")
            expert.get_by_role("button", name="Nhận lời").click()
            expect(expert).to_have_url(re.compile(rf"/portal/tasks/{rid}/opinion$"))
            experts.append((invitation["To"], expert))

        # --- review follow-up: one expert's date extended ---------------------------------
        extended = next(a for a in state_of(stack, rid)["assignments"] if a["role"] == "member")
        office.goto(f"{base}/portal/cases/{rid}/review")
        pages.seen(office, "coordinator-review")
        office.goto(f"{base}/portal/cases/{rid}/review/{extended['expert_code']}/extend")
        office.fill("input[name=days]", "2")
        office.fill("textarea[name=reason]", "Chuyên gia đề nghị thêm thời gian khảo sát.")
        pages.seen(office, "coordinator-extend")
        office.get_by_role("button", name="Gia hạn").click()
        expect(office).to_have_url(re.compile(rf"/portal/cases/{rid}/review$"))
        moved = next(
            a
            for a in state_of(stack, rid)["assignments"]
            if a["expert_code"] == extended["expert_code"]
        )
        assert moved["extensions"] == extended["extensions"] + 1
        assert moved["due_at"] != extended["due_at"]
        for n, (_, expert) in enumerate(experts):
            if stage_of(stack, rid) != "review":
                break  # the quorum is in: the rest are released
            pages.seen(expert, f"expert{n}-opinion")
            expert.select_option("select[name=recommendation]", "endorse_with_changes")
            expert.fill("textarea[name=summary]", f"Ý kiến tóm tắt của chuyên gia {n + 1}.")
            expert.fill("textarea[name=comments_for_agency]", "Đề nghị bổ sung chỉ tiêu đo lường.")
            expert.get_by_role("button", name="Gửi ý kiến").click()
            expect(expert).to_have_url(re.compile(rf"/portal/tasks/{rid}$"))
            pages.seen(expert, f"expert{n}-sent")
        wait_until("synthesis", lambda: stage_of(stack, rid) == "synthesis", deadline())

        # --- the chair drafts the conclusion, from the e-mail asking for it ---------------
        chair_address, chair = experts[0]
        asked = mail_to(stack, chair_address, "draft_conclusion_requested")
        chair.goto(link_in(asked, "Dự thảo kết luận"))
        chair.goto(f"{base}/portal/tasks/{rid}/conclusion")
        pages.seen(chair, "chair-conclusion")
        chair.select_option("select[name=recommendation]", "endorse_with_changes")
        chair.fill("textarea[name=text]", "Hội đồng thống nhất đề nghị bổ sung chỉ tiêu đo lường.")
        chair.get_by_role("button", name="Gửi dự thảo").click()
        wait_until("approval", lambda: stage_of(stack, rid) == "approval", deadline())

        # --- the coordinator returns the draft once, then approves the next --------------
        office.goto(f"{base}/portal/cases/{rid}/approval")
        pages.seen(office, "coordinator-approval")
        office.fill("textarea[name=comments]", "Đề nghị nêu rõ lộ trình thực hiện.")
        office.get_by_role("button", name="Trả lại chủ trì hội đồng").click()
        wait_until("back to synthesis", lambda: stage_of(stack, rid) == "synthesis", deadline())
        chair.goto(f"{base}/portal/tasks/{rid}/conclusion")
        expect(chair.locator("main")).to_contain_text("Đề nghị nêu rõ lộ trình thực hiện.")
        pages.seen(chair, "chair-returned")
        chair.fill("textarea[name=text]", "Đề nghị bổ sung chỉ tiêu và lộ trình.")
        chair.get_by_role("button", name="Gửi dự thảo").click()
        wait_until("approval again", lambda: stage_of(stack, rid) == "approval", deadline())
        office.goto(f"{base}/portal/cases/{rid}/approval")
        office.get_by_role("button", name="Phê duyệt và ký").click()
        wait_until(
            "the conclusion delivered",
            lambda: stage_of(stack, rid) in ("delivered", "adoption"),
            deadline(),
        )

        # --- the agency downloads the signed conclusion and answers on adoption ----------
        agency.goto(f"{base}/portal/requests/{rid}")
        pages.seen(agency, "agency-conclusion")
        with agency.expect_download() as download:
            agency.locator("a[href*='/documents/']").last.click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.read_bytes().startswith(b"%PDF")
        agency.goto(f"{base}/portal/requests/{rid}/adoption")
        pages.seen(agency, "agency-adoption")
        agency.select_option("select[name='answer.status']", "partially_adopted")
        agency.fill("textarea[name='answer.explanation']", "Tiếp thu phần lớn; giải trình mục 3.")
        agency.locator("main form button[type=submit]").click()
        wait_until("closed", lambda: stage_of(stack, rid) == "closed", deadline())
        agency.goto(f"{base}/portal/requests/{rid}")
        pages.seen(agency, "agency-closed")

        # --- the office reads this year's report: the request is in its charts and tables ---
        office.goto(f"{base}/portal/reports")
        main = office.locator("main")
        expect(main.locator("h1")).to_contain_text("Báo cáo: năm")
        for chart in ("months", "stages", "on-time", "adoption"):
            expect(main.locator(f"svg#chart-{chart}[role=img]")).to_be_visible()
        for table in ("volumes", "months", "stages", "parties", "deadlines", "adoption", "experts"):
            expect(main.locator(f"table:has(caption#cap-{table})")).to_be_visible()
        # Answered "partially adopted": a part of the adoption chart's bar, and its table's.
        expect(main.locator("svg#chart-adoption rect[data-series='1']").first).to_be_visible()
        pages.seen(office, "coordinator-reports")

        # --- security, as a browser meets it ---------------------------------------------
        cookie = next(c for c in agency.context.cookies() if c["name"] == "advisory_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        forged = agency.request.post(
            f"{base}/portal/requests/{rid}/withdraw", form={"reason": "Không còn nhu cầu"}
        )
        assert forged.status == 403
        other = experts[1][1]
        reused = person(browser)
        reused.goto(link_in(invitations[0], "Nhận lời"))
        expect(reused.locator("main")).to_contain_text("đã được sử dụng")
        pages.seen(reused, "link-used")
        stranger = other.request.get(f"{base}/portal/tasks/R-0000000000")
        assert stranger.status == 404
    assert pages.count >= 12
    assert not pages.violations, "\n".join(pages.violations)


@pytest.fixture(autouse=True)
def _shots_dir():
    SHOTS.mkdir(parents=True, exist_ok=True)
