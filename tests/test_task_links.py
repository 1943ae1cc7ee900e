"""Acting from the e-mail: an invitation delivered over real SMTP carries "Nhận lời" and
"Từ chối" links that sign its expert in, once each, on the page of that one task."""

from __future__ import annotations

import re

import httpx

from db import queries as q
from domain.messages import ScreeningInput
from domain.models import Stage
from starter import service
from tests import factories as f
from tests.test_lifecycle import until
from tests.test_notifications import (
    agency_code,
    mails_for,
    notify_settings,
    notifying_worker,
    settled,
    submit,
)
from tests.test_portal_auth import PORTAL, csrf_of, portal, text_of
from workflows.review import ReviewRequestWorkflow

SECRET = "test-portal-secret-" + "y" * 32


def labelled(message, label: str) -> str | None:
    found = re.search(rf"^{label}: (\S+)$", message.get_body(("plain",)).get_content(), re.M)
    return found.group(1) if found else None


async def test_the_invitation_links_sign_the_expert_in_for_that_task(
    dev_env, pool, policy, registry, mail, smtp_port
):
    settings = notify_settings(smtp_port, portal_secret=SECRET, portal_url=PORTAL)
    async with notifying_worker(dev_env, pool, settings) as w:
        rid, handle = await submit(dev_env, w, policy, registry, agency_code())
        await service.request_update(
            dev_env.client,
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="accept"),
        )
        await until(lambda s: s.stage == Stage.review and len(s.assignments) == 3, handle)
        rows = await settled(pool, rid, count=6)

    invitations = [r for r in rows if r["event"] == "invitation"]
    assert len(invitations) == 3
    invitation = invitations[0]
    (message,) = mails_for(mail, rid)[f"<notification-{invitation['id']}@lienhiephoi.example.vn>"]
    accept, decline = labelled(message, "Nhận lời"), labelled(message, "Từ chối")
    assert accept and decline and accept != decline
    html = message.get_body(("html",)).get_content()
    assert ">Nhận lời</a>" in html and ">Từ chối</a>" in html
    # The agency's acknowledgement goes to the address the submission gave, which is not a
    # registered contact of the agency: it carries no link that would sign anyone in.
    received = next(r for r in rows if r["event"] == "request_received")
    (ack,) = mails_for(mail, rid)[f"<notification-{received['id']}@lienhiephoi.example.vn>"]
    assert "/portal/link/" not in ack.get_body(("plain",)).get_content()
    # The office's shared mailbox gets the request's page, which asks whoever opens it to
    # sign in: a plain link, signing nobody in.
    office = next(r for r in rows if r["recipient_kind"] == "coordinator")
    (note,) = mails_for(mail, rid)[f"<notification-{office['id']}@lienhiephoi.example.vn>"]
    assert labelled(note, "Mở hồ sơ") == f"{PORTAL}/portal/cases/{rid}"
    assert "đăng nhập bằng địa chỉ thư" in note.get_body(("plain",)).get_content()

    expert = invitation["recipient_code"]
    async with portal(dev_env, pool, settings) as http:
        path = httpx.URL(accept).path
        page = await http.get(path)
        # Opening it (as a mail scanner would) spends nothing: one button signs in.
        assert page.status_code == 200 and "advisory_session" not in page.headers.get(
            "set-cookie", ""
        )
        used = await http.post(path, data={"csrf_token": csrf_of(page.text)})
        assert used.status_code == 303
        assert used.headers["location"] == f"/portal/tasks/{rid}/accept"
        assert "advisory_session=" in used.headers["set-cookie"]
        home = await http.get("/portal/")
        assert expert in text_of(home.text) or "chuyên gia" in text_of(home.text).lower()

    async with portal(dev_env, pool, settings) as stranger:
        # Used once: a second use is refused, with the way to a fresh sign-in link.
        page = await stranger.get(path)
        assert page.status_code == 410
        # The other link of the same e-mail still works, once.
        other = httpx.URL(decline).path
        page = await stranger.get(other)
        used = await stranger.post(other, data={"csrf_token": csrf_of(page.text)})
        assert used.headers["location"] == f"/portal/tasks/{rid}/decline"

    async with pool.acquire() as conn:
        sessions = await conn.fetchval(
            "SELECT count(*) FROM portal_sessions WHERE role = 'expert' AND code = $1", expert
        )
        assert await q.get_request(conn, rid) is not None
    assert sessions == 2
