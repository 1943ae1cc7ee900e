"""The pure rules of notifications: every event has its templates, signatures match the
Standard Webhooks reference library, and which endpoints may be called."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from activities.render import events, render
from db import queries as q
from domain.models import RegisteredAgency
from domain.notifications import (
    EVENTS,
    LANGUAGES,
    address_refusal,
    new_secret,
    office_links,
    sign,
    signature_header,
    task_links,
    url_refusal,
)
from domain.policy import UnionIdentity
from infra.settings import Settings
from starter.notifications import NotificationError, check_endpoint

ROOT = Path(__file__).resolve().parent.parent


def test_every_event_the_workflows_send_is_catalogued():
    sent = set()
    for path in (ROOT / "workflows").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        sent |= set(re.findall(r'event="([a-z_]+)"', source))
        if 'event=f"{name}_reminder"' in source:
            sent |= {e for e in EVENTS if e.endswith("_reminder")}
    assert sent, "no events found: has the Notice call changed shape?"
    assert sent - EVENTS == set()


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_event_has_a_template_in_every_language(language):
    assert events(language) == EVENTS


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", ["agency", "expert", "coordinator", "operator"])
def test_templates_render_with_and_without_optional_data(language, kind, policy):
    full = {
        "request_id": "BTP-2026-017",
        "title": "Dự thảo Luật Đất đai (sửa đổi) <bản 3> & phụ lục",
        "recipient_kind": kind,
        "reason": "Hồ sơ thiếu tờ trình",
        "due": "2027-02-18T16:59:59+00:00",
        "due_at": "2027-02-18T16:59:59+00:00",
        "respond_by": "2027-01-05T16:59:59+00:00",
        "when": "overdue",
        "days": 2,
        "role": "chair",
        "deadline": "review",
        "recommendation": "endorse_with_changes",
        "status": "partially_adopted",
        "expert_code": "E-017",
        "outbox_id": 42,
        "channel": "email",
        "error": "answered 503",
    }
    for event in EVENTS:
        for context in (full, {"request_id": "BTP-2026-017", "title": "T", "recipient_kind": kind}):
            m = render(event, language, context, union=policy.union)
            assert m.subject.startswith("[BTP-2026-017]") and "\n" not in m.subject
            assert m.text.strip() and "{{" not in m.text and "{%" not in m.text
            # The HTML carries the same words, escaped.
            assert "<bản 3>" not in m.html
    html = render("request_received", language, full, union=policy.union).html
    assert "&lt;bản 3&gt; &amp; phụ lục" in html and "<p>" in html
    text = render("invitation", language, full, union=policy.union).text
    assert "18/02/2027" in text or "19/02/2027" in text


PROVINCIAL = UnionIdentity(
    name="Liên hiệp các Hội Khoa học và Kỹ thuật tỉnh Ninh Bình",
    name_en="Ninh Binh Union of Science and Technology Associations",
    short_name="Liên hiệp hội tỉnh Ninh Bình",
    place="Ninh Bình",
    document_symbol="LHH-TVPB",
)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", ["agency", "expert", "coordinator", "operator"])
def test_every_message_signs_as_the_configured_union(language, kind):
    name = PROVINCIAL.name if language == "vi" else PROVINCIAL.name_en
    for event in EVENTS:
        context = {"request_id": "BTP-2026-017", "title": "T", "recipient_kind": kind}
        m = render(event, language, context, union=PROVINCIAL)
        assert name in m.text and name in m.html, event
        # No message speaks for the national Union in a province's name.
        assert "Việt Nam" not in m.text and "Vietnam" not in m.text, event


@pytest.mark.parametrize(
    ("language", "accept", "decline"), [("vi", "Nhận lời", "Từ chối"), ("en", "Accept", "Decline")]
)
def test_an_invitation_carries_its_task_links_above_the_signature(language, accept, decline):
    links = [
        (name, f"https://portal.example/l/{name}?t=a&b")
        for name, _ in task_links("invitation", "expert", "R-1")
    ]
    m = render(
        "invitation", language, {"request_id": "R-1", "title": "T"}, union=PROVINCIAL, links=links
    )
    paragraphs = m.text.strip().split("\n\n")
    assert f"{accept}: https://portal.example/l/accept?t=a&b" in paragraphs[-2]
    assert f"{decline}: https://portal.example/l/decline?t=a&b" in paragraphs[-2]
    assert PROVINCIAL.name in paragraphs[-1] or PROVINCIAL.name_en in paragraphs[-1]
    assert f'<a href="https://portal.example/l/accept?t=a&amp;b">{accept}</a>' in m.html
    # Only the task's own recipients get links; a coordinator's copy has none.
    assert task_links("invitation", "coordinator", "R-1") == []
    assert office_links("coordinator", "R-1") == [("case", "/portal/cases/R-1")]
    assert office_links("expert", "R-1") == office_links("coordinator", None) == []


def test_signature_is_the_reference_librarys():
    secret = new_secret()
    body = '{"type":"advisory.request_received","data":{"title":"Hội đồng"}}'.encode()
    now = int(time.time())
    ours = sign(secret, "17", now, body)
    headers = {"webhook-id": "17", "webhook-timestamp": str(now), "webhook-signature": ours}
    Webhook(secret).verify(body, headers)
    tampered = {**headers, "webhook-id": "18"}
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(secret).verify(body, tampered)


def test_rotation_header_verifies_with_either_secret_only():
    old, new, stranger = new_secret(), new_secret(), new_secret()
    now = int(time.time())
    body = b"{}"
    header = signature_header([new, old], "5", now, body)
    headers = {"webhook-id": "5", "webhook-timestamp": str(now), "webhook-signature": header}
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(stranger).verify(body, headers)


@pytest.mark.parametrize(
    "url, allow, refusal",
    [
        ("https://hooks.agency.example.gov.vn/advisory", False, None),
        ("http://hooks.agency.example.gov.vn/advisory", False, "url: must use https"),
        ("http://127.0.0.1:8080/hooks", True, None),
        ("ftp://agency.example/x", True, "url: must use https or http"),
        ("https://user:pw@agency.example/x", False, "url: must not carry credentials"),
        ("https:///path-only", False, "url: must name a host"),
        ("https://agency.example:99999/x", False, "url: not a valid URL"),
    ],
)
def test_url_rules(url, allow, refusal):
    got = url_refusal(url, allow_private=allow)
    assert (got is None) if refusal is None else got.startswith(refusal)


@pytest.mark.parametrize(
    "address, what",
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("100.64.0.1", "non-public"),
        ("0.0.0.0", "private"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::1", "loopback"),
        ("2002:a00:1::1", "private"),
        ("::127.0.0.1", "tunnelled or deprecated"),
        ("fec0::1", "tunnelled or deprecated"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "tunnelled or deprecated"),
        ("64:ff9b::808:808", None),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_only_public_addresses_are_called(address, what):
    got = address_refusal(address, allow_private=False)
    if what is None:
        assert got is None
    else:
        assert f"a {what} address" in got
        assert address_refusal(address, allow_private=True) is None


@pytest.mark.parametrize(
    "url, rule",
    [
        ("https://localhost/hooks", "loopback"),
        ("https://127.0.0.1/hooks", "loopback"),
        ("https://10.0.0.7/hooks", "private"),
        ("http://203.0.113.9/hooks", "must use https"),
        ("https://no-such-host.invalid/hooks", "does not resolve"),
    ],
)
async def test_registering_an_endpoint_refuses_what_delivery_would(url, rule):
    with pytest.raises(NotificationError, match=rule):
        await check_endpoint(url, Settings(webhook_allow_private=False))
    if rule != "does not resolve":
        await check_endpoint(url.replace("https:", "http:"), Settings(webhook_allow_private=True))


async def outbox_row(pool) -> int:
    """A request and one outbox row for it, written directly."""
    from datetime import UTC, datetime

    rid = f"RACE-{time.time_ns()}"
    async with pool.acquire() as conn:
        await q.upsert_agency(conn, RegisteredAgency(code="RACE", name="Sở Thử nghiệm"))
        await q.insert_request(
            conn,
            {
                "id": rid,
                "workflow_id": f"review-{rid}",
                "agency_code": "RACE",
                "agency_reference": rid,
                "kind": "advisory",
                "title": "Hồ sơ thử",
                "summary": "",
                "expertise_fields": ["x"],
                "documents": [],
                "requested_by": {"name": "A", "email": "a@race.example"},
                "submitted_at": datetime.now(UTC),
                "council_size": 1,
                "alternates": 0,
                "review_window_days": 10,
            },
        )
        oid = await q.insert_outbox(
            conn,
            key=f"{rid}:0",
            request_id=rid,
            recipient_kind="agency",
            recipient_code="RACE",
            address="a@race.example",
            event="request_received",
            payload={},
        )

    return oid


async def test_channels_finishing_together_settle_the_row(pool):
    """E-mail and webhook of one row succeed at the same moment: each transaction must see
    the other's outcome, or the row stays pending for ever."""
    oid = await outbox_row(pool)
    async with pool.acquire() as conn:
        for channel in ("email", "webhook"):
            await q.insert_delivery(conn, oid, channel, "t")

    async def succeed(conn, channel):
        await q.lock_outbox(conn, oid)
        await q.record_attempt(conn, oid, channel, attempt=1, delivered=True)
        return await q.settle_outbox(conn, oid)

    async with pool.acquire() as a, pool.acquire() as b:
        ta = a.transaction()
        await ta.start()
        assert await succeed(a, "email") == "pending"
        tb = b.transaction()
        await tb.start()
        second = asyncio.create_task(succeed(b, "webhook"))
        await asyncio.sleep(0.2)
        assert not second.done(), "the second channel must wait for the first"
        await ta.commit()
        assert await second == "delivered"
        await tb.commit()


async def test_a_row_withdrawn_while_waiting_for_a_retry_is_not_sent(pool, tmp_path):
    from temporalio.testing import ActivityEnvironment

    from activities.notify import NotificationActivities
    from domain.notifications import Channel, DeliverInput
    from starter.mailsink import MailSink
    from tests.conftest import free_port

    oid = await outbox_row(pool)
    async with pool.acquire() as conn:
        await q.insert_delivery(conn, oid, "email", "a@race.example")
        await conn.execute("UPDATE outbox SET status = 'cancelled' WHERE id = $1", oid)
    port = free_port()
    sink = MailSink(port=port).start()
    try:
        settings = Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
        activities = NotificationActivities(pool, settings)
        await ActivityEnvironment().run(
            activities.send_email, DeliverInput(outbox_id=oid, channel=Channel.email)
        )
    finally:
        sink.stop()
    assert sink.messages == []
    async with pool.acquire() as conn:
        d = await q.delivery(conn, oid, "email")
        assert (d["status"], d["last_error"]) == ("skipped", "withdrawn before delivery")
        assert await conn.fetchval("SELECT status FROM outbox WHERE id = $1", oid) == "cancelled"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["notifications", "retry", "abc"], "id: a notification id is a positive whole number"),
        (["notifications", "retry", "99999999999999999999"], "id: a notification id"),
        (["notifications", "show", "1", "2"], "id: show names exactly one notification id"),
        (["inbox"], "recipient: give exactly one of --agency CODE"),
        (["inbox", "--agency", "A", "--coordinator"], "recipient: give exactly one"),
        (["notifications", "--limit", "-1"], "--limit: must be a whole number above 0"),
        (["webhooks", "rotate"], "webhooks rotate: name the agency code"),
    ],
)
def test_cli_refuses_bad_notification_input_in_one_line(argv, message, capsys):
    """The last line names the field and the rule (argparse prints its usage above it)."""
    from starter.cli import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err.splitlines()[-1], err


async def test_payload_codec_encrypts_all_but_plain_text_and_rotates_keys():
    from temporalio.api.common.v1 import Payload

    from infra.codec import EncryptionCodec, KeyError_, new_key_setting, parse_keys

    old_setting, new_setting = new_key_setting("old"), new_key_setting("new")
    old = EncryptionCodec(parse_keys(old_setting))
    both = EncryptionCodec(parse_keys(f"{new_setting},{old_setting}"))
    model = Payload(
        metadata={"encoding": b"json/plain"}, data=b'{"email":"hoa@skhcn.example.gov.vn"}'
    )
    summary = Payload(metadata={"encoding": b"json/plain"}, data='"critique · STNMT"'.encode())
    [sealed, kept] = await old.encode([model, summary])
    assert b"hoa@" not in sealed.data and sealed.metadata["encryption-key-id"] == b"old"
    assert kept == summary
    # After a rotation the new key encrypts and the old one still opens what it sealed.
    assert await both.decode([sealed, kept]) == [model, summary]
    [resealed] = await both.encode([model])
    assert resealed.metadata["encryption-key-id"] == b"new"
    with pytest.raises(KeyError_, match="key 'new', which is not configured"):
        await old.decode([resealed])
    for bad, rule in [("nokey", "not id:base64key"), ("k:abc$", "not base64"), ("k:YWJj", "32")]:
        with pytest.raises(KeyError_, match=rule):
            parse_keys(bad)
