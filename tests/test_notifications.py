"""Notifications delivered for real: an SMTP server (aiosmtpd) and an HTTP receiver started by
the test, the Temporal dev server, and the rows in PostgreSQL. Signatures are checked with the
Standard Webhooks reference library, not with our own code."""

from __future__ import annotations

import asyncio
import email.header
import email.utils
import ipaddress
import ssl
import threading
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook
from temporalio.api.enums.v1 import EventType
from temporalio.testing import ActivityEnvironment

from activities.notify import (
    DELIVER_SIGNAL,
    NotificationActivities,
    dispatch,
    plan_channels,
    sends_of,
    webhook_client,
)
from activities.render import render
from db import queries as q
from domain.ids import notification_task_queue, notifications_workflow_id
from domain.messages import AcceptInput, ApproveInput, ScreeningInput
from domain.models import Stage
from domain.notifications import DeliverInput, NotificationsInput, Sends, office_links
from infra.settings import CONFIG, Settings
from starter import service
from starter.mailsink import MailSink
from starter.notifications import NotificationError, register_webhook
from tests import factories as f
from tests.conftest import advisory, register_agency
from tests.test_lifecycle import start, until
from worker import activities_for, build_worker
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.notification import RequestNotificationsWorkflow
from workflows.review import ReviewRequestWorkflow

OPERATOR = "ops@test.example"


class Receiver:
    """An agency's webhook endpoint: records every connection and request and answers with
    `answer(id, n)`, n being how many times this webhook-id has been seen (1 for the first)."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answer: Callable[[str, int], int] = lambda _id, _n: 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                receiver.connections += 1
                super().setup()

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append((headers, body))
                seen = sum(
                    1 for h, _ in receiver.requests if h["webhook-id"] == headers["webhook-id"]
                )
                self.send_response(receiver.answer(headers["webhook-id"], seen))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/advisory"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        return [h["webhook-id"] for h, _ in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def notify_settings(smtp_port: int, **changes) -> Settings:
    values = dict(
        coordinator_email="coordinator@test.example",
        operator_email=OPERATOR,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_starttls=False,
        webhook_allow_private=True,
        delivery_initial_retry=0.2,
        delivery_max_retry=1,
        delivery_attempts=60,
    )
    values.update(changes)
    return Settings(**values)


@asynccontextmanager
async def notifying_worker(
    dev_env, pool: asyncpg.Pool, settings: Settings, notify: NotificationActivities | None = None
):
    """A worker on a fresh task queue; `notify` when a test chooses the webhook client."""
    w = build_worker(
        dev_env.client,
        pool,
        settings,
        task_queue=f"tq-{uuid.uuid4().hex}",
        activities=activities_for(pool, settings, notify) if notify else None,
    )
    try:
        async with w:
            yield w
    finally:
        if notify is not None:
            await notify.close()


def agency_code() -> str:
    return f"AG{uuid.uuid4().hex[:6].upper()}"


async def submit(dev_env, worker, policy, registry, agency: str, **changes):
    await register_agency(registry.pool, agency, "Sở Khoa học và Công nghệ")
    return await start(
        dev_env,
        worker,
        policy,
        registry,
        agency={"code": agency, "name": "Sở Khoa học và Công nghệ"},
        **changes,
    )


async def rows_of(pool: asyncpg.Pool, rid: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT * FROM outbox WHERE request_id = $1 ORDER BY id", rid)


async def settled(pool: asyncpg.Pool, rid: str, timeout: float = 60, count: int = 1):
    """Waits until the request has at least `count` rows and none is pending."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                rows = await rows_of(pool, rid)
                if len(rows) >= count and all(r["status"] != "pending" for r in rows):
                    return rows
                await asyncio.sleep(0.1)
    except TimeoutError:
        async with pool.acquire() as conn:
            left = await q.notifications(conn, status="pending", request_id=rid)
        raise AssertionError(
            f"{len(rows)} rows (wanted {count}); still pending: "
            + "; ".join(f"{r['id']} {r['event']} {r['channels']}" for r in left)
        ) from None


async def channel(pool: asyncpg.Pool, outbox_id: int, name: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        return await q.delivery(conn, outbox_id, name)


def mails_for(sink: MailSink, rid: str) -> dict[str, list]:
    by_id: dict[str, list] = {}
    for m in sink.messages:
        if m["X-Advisory-Request"] == rid:
            by_id.setdefault(m["Message-ID"], []).append(m)
    return by_id


async def close_request(dev_env, rid: str, handle) -> None:
    """Screening to closed, every expert accepting and giving an opinion."""
    c = dev_env.client
    await service.request_update(
        c, rid, ReviewRequestWorkflow.screen, ScreeningInput(actor=f.COORDINATOR, decision="accept")
    )
    state = await until(
        lambda s: (
            s.stage == Stage.review
            and len(s.assignments) == 3
            and all(a.respond_by for a in s.assignments)
        ),
        handle,
    )
    chair = next(a.expert_code for a in state.assignments if a.role == "chair")
    for a in state.assignments:
        await service.assignment_update(
            c,
            rid,
            a.expert_code,
            ExpertAssignmentWorkflow.accept,
            AcceptInput(expert_code=a.expert_code),
        )
        await service.assignment_update(
            c, rid, a.expert_code, ExpertAssignmentWorkflow.submit_opinion, f.opinion(a.expert_code)
        )
    await until(lambda s: s.stage == Stage.synthesis, handle)
    await service.request_update(c, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair))
    await service.request_update(
        c, rid, ReviewRequestWorkflow.approve_conclusion, ApproveInput(actor=f.COORDINATOR)
    )
    await until(lambda s: s.stage == Stage.adoption, handle)
    await service.request_update(c, rid, ReviewRequestWorkflow.answer_adoption, f.adoption())
    assert (await handle.result()).stage == Stage.closed


async def test_each_event_reaches_its_parties_once_per_channel(
    dev_env, pool, policy, registry, mail, smtp_port, receiver
):
    settings = notify_settings(smtp_port)
    agency = agency_code()
    secret = await register_webhook(pool, agency, receiver.url, settings)
    async with notifying_worker(dev_env, pool, settings) as w:
        # The agency reads English, the experts Vietnamese.
        rid, handle = await submit(
            dev_env,
            w,
            policy,
            registry,
            agency,
            requested_by={
                "name": "Lê Thị Hoa",
                "email": "hoa@skhcn.example.gov.vn",
                "language": "en",
            },
        )
        await close_request(dev_env, rid, handle)
        rows = await settled(pool, rid, count=20)

    assert {r["status"] for r in rows} == {"delivered"}
    experts = {r["recipient_code"] for r in rows if r["recipient_kind"] == "expert"}
    assert len(experts) == 3
    told = {(r["recipient_kind"], r["recipient_code"], r["event"]) for r in rows}
    for event in (
        "request_received",
        "request_accepted",
        "conclusion_delivered",
        "adoption_answer_requested",
    ):
        assert ("agency", agency, event) in told
    for code in experts:
        for event in ("invitation", "opinion_received", "review_completed"):
            assert ("expert", code, event) in told
    for event in (
        "request_submitted",
        "expert_accepted",
        "opinion_submitted",
        "conclusion_ready",
        "adoption_answered",
    ):
        assert ("coordinator", None, event) in told

    # E-mail: exactly one message per row, to the row's address, in the recipient's language.
    by_id = mails_for(mail, rid)
    assert len(by_id) == len(rows)
    for r in rows:
        (m,) = by_id[f"<notification-{r['id']}@lienhiephoi.example.vn>"]
        assert m["To"] == r["address"]
        # The office's copy links to the request's page in the portal; no one else here
        # signs in, so no one else gets links.
        office = office_links(r["recipient_kind"], r["request_id"])
        expected = render(
            r["event"],
            r["language"],
            {**r["payload"], "recipient_kind": r["recipient_kind"]},
            union=policy.union,
            links=[(name, settings.portal_url + path) for name, path in office],
            heading="links_office",
        )
        assert m["Subject"] == expected.subject
        text = m.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert text.strip() == expected.text.strip()
        assert "<p>" in m.get_body(("html",)).get_content()
    invitation = next(r for r in rows if r["event"] == "invitation")
    assert invitation["language"] == "vi"
    # Diacritics survive the trip through SMTP (RFC 2047 headers, UTF-8 bodies).
    subject = by_id[f"<notification-{invitation['id']}@lienhiephoi.example.vn>"][0]["Subject"]
    assert any(ch in subject for ch in "ờớợểệđĐảạầấ"), subject
    received = next(r for r in rows if r["event"] == "request_received")
    assert received["language"] == "en"

    # Webhooks: exactly one call per agency row, signed so the reference library verifies it.
    agency_rows = [r for r in rows if r["recipient_kind"] == "agency"]
    assert sorted(receiver.ids()) == sorted(str(r["id"]) for r in agency_rows)
    verifier = Webhook(secret)
    for headers, body in receiver.requests:
        payload = verifier.verify(body, headers)
        row = next(r for r in agency_rows if str(r["id"]) == headers["webhook-id"])
        assert payload["type"] == f"advisory.{row['event']}"
        assert payload["data"]["request_id"] == rid

    # Every send was one recorded, successful attempt; every row is in its recipient's inbox.
    async with pool.acquire() as conn:
        attempts = await conn.fetch(
            "SELECT outbox_id, channel, outcome FROM delivery_attempts a"
            " JOIN outbox o ON o.id = a.outbox_id WHERE o.request_id = $1",
            rid,
        )
        inbox = await q.inbox(conn, "agency", agency, f"agency:{agency}", limit=100)
    assert len(attempts) == len(rows) + len(agency_rows)
    assert {a["outcome"] for a in attempts} == {"delivered"}
    assert sorted(i["id"] for i in inbox) == sorted(r["id"] for r in agency_rows)


async def test_mail_signs_as_the_union_the_policy_file_names(
    dev_env, pool, policy, registry, mail, smtp_port, tmp_path
):
    # A provincial Union's policy file: its mail must carry its own name, in either language.
    own = tmp_path / "policy.toml"
    own.write_text(
        (CONFIG / "policy.toml")
        .read_text(encoding="utf-8")
        .replace("tỉnh Bắc Giang", "tỉnh Ninh Bình")
        .replace("Bac Giang", "Ninh Binh"),
        encoding="utf-8",
    )
    settings = notify_settings(smtp_port, policy_file=own)
    agency = agency_code()
    async with notifying_worker(dev_env, pool, settings) as w:
        rid, _ = await submit(
            dev_env,
            w,
            policy,
            registry,
            agency,
            requested_by={"name": "Lê Thị Hoa", "email": "hoa@sokhcn.example.vn", "language": "en"},
        )
        rows = await settled(pool, rid, count=2)
    by_id = mails_for(mail, rid)
    texts = {
        r["event"]: by_id[f"<notification-{r['id']}@lienhiephoi.example.vn>"][0]
        .get_body(("plain",))
        .get_content()
        for r in rows
    }
    received, submitted = texts["request_received"], texts["request_submitted"]
    assert "The Ninh Binh Union of Science and Technology Associations confirms" in received
    assert "— Liên hiệp các Hội Khoa học và Kỹ thuật tỉnh Ninh Bình" in submitted
    assert not any("Kỹ thuật tỉnh Bắc Giang" in t or "Bac Giang Union" in t for t in texts.values())
    # Sent in its name too.
    sender = next(iter(by_id.values()))[0]["From"]
    name, address = email.utils.parseaddr(
        str(email.header.make_header(email.header.decode_header(sender)))
    )
    assert (name, address) == (
        "Liên hiệp các Hội Khoa học và Kỹ thuật tỉnh Ninh Bình",
        "tuvan-phanbien@lienhiephoi.example.vn",
    )


@pytest.mark.parametrize(
    "answers, calls, status, enabled",
    [
        ([500, 200], 2, "delivered", True),
        ([429, 200], 2, "delivered", True),
        ([408, 200], 2, "delivered", True),
        ([400], 1, "failed", True),
        ([410], 1, "failed", False),
    ],
)
async def test_webhook_answers(
    dev_env, pool, policy, registry, mail, smtp_port, receiver, answers, calls, status, enabled
):
    """5xx, 408 and 429 are retried with the same webhook-id; other 4xx are not; 410 Gone
    disables the endpoint. The agency still gets its e-mail either way."""
    receiver.answer = lambda _id, n: answers[min(n, len(answers)) - 1]
    settings = notify_settings(smtp_port)
    agency = agency_code()
    secret = await register_webhook(pool, agency, receiver.url, settings)
    async with notifying_worker(dev_env, pool, settings) as w:
        rid, _ = await submit(dev_env, w, policy, registry, agency)
        rows = await settled(pool, rid, count=2)
        row = next(r for r in rows if r["event"] == "request_received")
        assert row["status"] == status
        assert receiver.ids() == [str(row["id"])] * calls
        for headers, body in receiver.requests:
            Webhook(secret).verify(body, headers)
        hook = await channel(pool, row["id"], "webhook")
        assert hook["status"] == status and hook["attempts"] == calls
        assert (await channel(pool, row["id"], "email"))["status"] == "delivered"
        async with pool.acquire() as conn:
            endpoint = await q.webhook_endpoint(conn, agency)
            attempts = await q.delivery_attempts(conn, row["id"])
            operator = await conn.fetch(
                "SELECT * FROM outbox WHERE request_id = $1 AND recipient_kind = 'operator'", rid
            )
        assert [a["status_code"] for a in attempts if a["channel"] == "webhook"] == answers[:calls]
        assert endpoint["enabled"] is enabled
        if status == "failed":
            # The operator hears of it, by inbox and e-mail.
            (report,) = operator
            assert report["event"] == "delivery_failed"
            assert report["payload"]["outbox_id"] == row["id"]
            await settled(pool, rid, count=len(rows) + (0 if rows[-1]["id"] >= report["id"] else 1))
            assert any(
                m["To"] == OPERATOR
                for m in mails_for(mail, rid)[
                    f"<notification-{report['id']}@lienhiephoi.example.vn>"
                ]
            )
        else:
            assert operator == []
        if not enabled:
            assert "410" in endpoint["disabled_reason"]
            # Later events skip the disabled endpoint and still reach the agency by e-mail.
            await service.request_update(
                dev_env.client,
                rid,
                ReviewRequestWorkflow.screen,
                ScreeningInput(actor=f.COORDINATOR, decision="accept"),
            )
            rows = await settled(pool, rid, count=len(rows) + 2)
            accepted = next(r for r in rows if r["event"] == "request_accepted")
            assert accepted["status"] == "delivered"
            assert (await channel(pool, accepted["id"], "webhook"))["status"] == "skipped"
            assert (await channel(pool, accepted["id"], "email"))["status"] == "delivered"
            assert len(receiver.requests) == 1


async def test_rotation_signs_with_both_secrets(
    dev_env, pool, policy, registry, mail, smtp_port, receiver
):
    from starter.notifications import rotate_webhook

    settings = notify_settings(smtp_port)
    agency = agency_code()
    old = await register_webhook(pool, agency, receiver.url, settings)
    new, _ = await rotate_webhook(pool, agency, settings, overlap_hours=1)
    # A second rotation during the overlap would drop the secret the agency may still use;
    # registering the same endpoint again keeps the secret in force.
    with pytest.raises(NotificationError, match="is rotating until"):
        await rotate_webhook(pool, agency, settings)
    assert await register_webhook(pool, agency, receiver.url, settings) == new
    async with notifying_worker(dev_env, pool, settings) as w:
        rid, _ = await submit(dev_env, w, policy, registry, agency)
        await settled(pool, rid, count=2)
    ((headers, body),) = receiver.requests
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


async def test_webhook_to_a_loopback_address_is_refused_outside_development(
    dev_env, pool, policy, registry, mail, smtp_port, receiver
):
    agency = agency_code()
    # Registered while development allowed it; the worker of a production setting refuses.
    await register_webhook(pool, agency, receiver.url, notify_settings(smtp_port))
    settings = notify_settings(smtp_port, webhook_allow_private=False)
    async with notifying_worker(dev_env, pool, settings) as w:
        rid, _ = await submit(dev_env, w, policy, registry, agency)
        rows = await settled(pool, rid, count=2)
    row = next(r for r in rows if r["event"] == "request_received")
    hook = await channel(pool, row["id"], "webhook")
    assert hook["status"] == "failed" and hook["attempts"] == 1
    assert "url: must use https" in hook["last_error"]
    assert receiver.requests == []


PUBLIC = "93.184.215.14"


class OnlyThisMachine(httpcore.AsyncNetworkBackend):
    """The test's network: it reaches this machine's loopback and nothing beyond (no packet
    leaves the test; elsewhere fails as an unreachable host does), and it remembers every
    address it was asked to dial."""

    def __init__(self) -> None:
        self.dialled: list[str] = []
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, **options) -> httpcore.AsyncNetworkStream:
        self.dialled.append(host)
        if not ipaddress.ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"no route to {host}")
        return await self._network.connect_tcp(host, port, **options)


async def test_a_host_that_rebinds_to_a_private_address_is_never_dialled_there(
    dev_env, pool, policy, registry, mail, smtp_port, receiver
):
    """DNS rebinding: the endpoint's name answers a public address when first asked and the
    receiver's loopback address after that. Each attempt resolves the name once and dials only
    what it checked: the first attempt goes to the public address (unreachable here) and is
    retried; the second is refused before any connection. The receiver never hears a thing."""
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return [PUBLIC] if len(asked) == 1 else ["127.0.0.1"]

    agency = agency_code()
    url = f"https://hooks.example.test:{receiver.port}/hooks/advisory"
    await register_webhook(pool, agency, url, notify_settings(smtp_port))
    settings = notify_settings(smtp_port, webhook_allow_private=False)
    network = OnlyThisMachine()
    http = webhook_client(settings, resolve=rebinding, network=network)
    notify = NotificationActivities(pool, settings, http)
    async with notifying_worker(dev_env, pool, settings, notify) as w:
        rid, _ = await submit(dev_env, w, policy, registry, agency)
        rows = await settled(pool, rid, count=2)
    # Not even a TLS handshake reached the private address.
    assert receiver.connections == 0 and receiver.requests == []
    assert network.dialled == [PUBLIC]
    assert asked == ["hooks.example.test"] * 2
    row = next(r for r in rows if r["event"] == "request_received")
    assert row["status"] == "failed"
    hook = await channel(pool, row["id"], "webhook")
    assert hook["status"] == "failed" and hook["attempts"] == 2
    assert "resolves to 127.0.0.1, a loopback address" in hook["last_error"]


async def test_a_pinned_connection_keeps_the_host_name_of_the_url(
    dev_env, pool, policy, registry, mail, smtp_port, receiver
):
    """The webhook is dialled at the address resolved for its host, yet the request is still
    addressed to the host: a receiver serving several names on one address sees its own."""
    asked: list[tuple[str, int]] = []

    async def to_receiver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"]

    agency = agency_code()
    # Development settings: the receiver is on loopback, allowed but still pinned.
    settings = notify_settings(smtp_port)
    await register_webhook(
        pool, agency, f"http://hooks.example.test:{receiver.port}/hooks/advisory", settings
    )
    notify = NotificationActivities(pool, settings, webhook_client(settings, resolve=to_receiver))
    async with notifying_worker(dev_env, pool, settings, notify) as w:
        rid, _ = await submit(dev_env, w, policy, registry, agency)
        rows = await settled(pool, rid, count=2)
    row = next(r for r in rows if r["event"] == "request_received")
    assert (await channel(pool, row["id"], "webhook"))["status"] == "delivered"
    ((headers, _),) = receiver.requests
    assert headers["host"] == f"hooks.example.test:{receiver.port}"
    assert asked == [("hooks.example.test", receiver.port)]


def self_signed(name: str, directory) -> tuple[str, str]:
    """A certificate for `name` that no authority signed, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


async def test_a_pinned_tls_connection_names_the_host_and_checks_its_certificate(tmp_path):
    """Over https the handshake, too, names the URL's host (SNI) although the address was
    dialled, and the receiver's certificate is checked: a self-signed one is refused."""
    names: list[str | None] = []
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*self_signed("hooks.example.test", tmp_path))
    tls.sni_callback = lambda _sock, name, _ctx: names.append(name)
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]

    async def to_server(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    http = webhook_client(Settings(webhook_allow_private=True), resolve=to_server)
    try:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.post(f"https://hooks.example.test:{port}/hooks/advisory", content=b"{}")
    finally:
        await http.aclose()
        server.close()
        await server.wait_closed()
    assert names == ["hooks.example.test"]


async def test_smtp_outage_delays_mail_loses_none_and_the_lifecycle_finishes(
    dev_env, pool, policy, registry, smtp_port, receiver
):
    receiver.answer = lambda _id, _n: 503
    settings = notify_settings(smtp_port)
    agency = agency_code()
    await register_webhook(pool, agency, receiver.url, settings)
    async with notifying_worker(dev_env, pool, settings) as w:
        # Nothing listens on the SMTP port and the endpoint answers 503: the request still
        # goes from intake to closed.
        rid, handle = await submit(dev_env, w, policy, registry, agency)
        await close_request(dev_env, rid, handle)
        rows = await rows_of(pool, rid)
        assert len(rows) >= 20
        assert {r["status"] for r in rows} == {"pending"}
        async with pool.acquire() as conn:
            errors = await conn.fetchval(
                "SELECT count(*) FROM delivery_attempts a JOIN outbox o ON o.id = a.outbox_id"
                " WHERE o.request_id = $1 AND a.outcome = 'error' AND a.channel = 'email'",
                rid,
            )
        assert errors >= 1
        # The servers come back: every row is delivered, once per channel.
        receiver.answer = lambda _id, _n: 200
        sink = MailSink(port=smtp_port).start()
        try:
            rows = await settled(pool, rid, count=len(rows))
        finally:
            sink.stop()
    assert {r["status"] for r in rows} == {"delivered"}
    by_id = mails_for(sink, rid)
    assert sorted(by_id) == sorted(f"<notification-{r['id']}@lienhiephoi.example.vn>" for r in rows)
    assert all(len(ms) == 1 for ms in by_id.values())
    agency_ids = {str(r["id"]) for r in rows if r["recipient_kind"] == "agency"}
    assert set(receiver.ids()) == agency_ids


async def test_failed_rows_are_listed_retried_and_read_from_the_cli(
    dev_env, pool, policy, registry, database_url, smtp_port
):
    settings = notify_settings(smtp_port, delivery_attempts=2, delivery_max_retry=0.2)
    async with notifying_worker(dev_env, pool, settings) as w:
        rid, _ = await submit(dev_env, w, policy, registry, agency_code())
        # SMTP is down and gives up after two attempts: the rows fail, and so do the reports
        # to the operator (which are not reported again).
        rows = await settled(pool, rid, count=4)
        assert {r["status"] for r in rows} == {"failed"}
        reports = [r for r in rows if r["recipient_kind"] == "operator"]
        assert len(reports) == len(rows) / 2

        env = {
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "ADVISORY_TASK_QUEUE": w.task_queue,
        }
        listed = await asyncio.to_thread(
            advisory, "notifications", "--failed", "--limit", "10000", env_vars=env
        )
        assert listed.returncode == 0, listed.stderr
        for r in rows:
            assert f"{r['id']:>6}  {rid}" in listed.stdout
        as_operator = {**env, "ADVISORY_CLI_AS": "operator:truc-ban"}
        inbox = await asyncio.to_thread(
            advisory, "inbox", "--operator", "--unread", env_vars=as_operator
        )
        assert inbox.returncode == 0, inbox.stderr
        for r in reports:
            assert f"* {r['id']:>6}" in inbox.stdout

        sink = MailSink(port=smtp_port).start()
        try:
            ids = [str(r["id"]) for r in rows]
            retried = await asyncio.to_thread(
                advisory, "notifications", "retry", *ids, env_vars=env
            )
            assert retried.returncode == 0, retried.stderr
            rows = await settled(pool, rid, count=len(rows))
        finally:
            sink.stop()
    assert {r["status"] for r in rows} == {"delivered"}
    by_id = mails_for(sink, rid)
    assert sorted(by_id) == sorted(f"<notification-{r['id']}@lienhiephoi.example.vn>" for r in rows)
    assert all(r["retries"] == 1 for r in rows)

    # Read/unread belongs to the recipient: another's id is refused and changes nothing.
    agency_row = next(r for r in rows if r["recipient_kind"] == "agency")
    code = agency_row["recipient_code"]
    read = await asyncio.to_thread(
        advisory, "inbox", "read", str(agency_row["id"]), "--agency", code, env_vars=env
    )
    assert read.returncode == 0, read.stderr
    other = await asyncio.to_thread(
        advisory, "inbox", "read", str(reports[0]["id"]), "--agency", code, env_vars=env
    )
    assert (
        other.returncode == 2
        and f"no notification {reports[0]['id']} for agency {code}" in other.stderr
    )
    async with pool.acquire() as conn:
        marks = await conn.fetch(
            "SELECT outbox_id, reader FROM inbox_reads WHERE outbox_id = ANY($1::bigint[])",
            [agency_row["id"], reports[0]["id"]],
        )
    assert [tuple(m) for m in marks] == [(agency_row["id"], f"agency:{code}")]
    again = await asyncio.to_thread(
        advisory, "notifications", "retry", str(agency_row["id"]), env_vars=env
    )
    assert again.returncode == 0 and "already delivered" in again.stdout


async def test_a_refused_mailbox_fails_at_once_and_a_retry_sends_it_beside_the_webhook(
    dev_env, pool, policy, registry, mail, smtp_port, receiver
):
    """The relay refuses the mailbox (550: not retried) while the webhook is still in backoff.
    The operator's retry hands the reopened e-mail to the request's delivery workflow, which
    sends it while the webhook goes on retrying there; the
    address never reaches Temporal's history."""
    from starter.notifications import retry

    mail.refusing = True
    receiver.answer = lambda _id, _n: 503
    settings = notify_settings(smtp_port)
    agency = agency_code()
    await register_webhook(pool, agency, receiver.url, settings)
    async with notifying_worker(dev_env, pool, settings) as w:
        rid, _ = await submit(dev_env, w, policy, registry, agency)
        async with asyncio.timeout(30):
            while True:
                rows = await rows_of(pool, rid)
                row = next(r for r in rows if r["event"] == "request_received")
                email = await channel(pool, row["id"], "email")
                if email is not None and email["status"] == "failed":
                    break
                await asyncio.sleep(0.1)
        assert email["attempts"] == 1 and "550" in email["last_error"]
        assert (await channel(pool, row["id"], "webhook"))["status"] == "pending"
        handle = dev_env.client.get_workflow_handle(notifications_workflow_id(rid))
        # Apart from the request, on its own queue: the operators' list of the task queue
        # holds requests and experts only.
        deliveries = notification_task_queue(w.task_queue)
        assert (await handle.describe()).task_queue == deliveries
        history = (await handle.fetch_history()).to_json()
        # The failure's kind is readable; its message (the relay's code) is encrypted.
        assert row["address"] not in history and "MailRejected" in history
        assert "e-mail not accepted" not in history

        mail.refusing = False
        receiver.answer = lambda _id, _n: 200
        assert await retry(
            pool, dev_env.client, [row["id"]], settings, task_queue=w.task_queue
        ) == [row["id"]]
        async with asyncio.timeout(30):
            while True:
                now = next(r for r in await rows_of(pool, rid) if r["id"] == row["id"])
                if now["status"] == "delivered":
                    break
                await asyncio.sleep(0.1)
        assert (await handle.describe()).task_queue == deliveries
    runs = [r async for r in dev_env.client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert len(runs) == 1  # the retry's e-mail was sent by the run still going
    mid = f"<notification-{row['id']}@lienhiephoi.example.vn>"
    assert len(mails_for(mail, rid)[mid]) == 1
    assert (await channel(pool, row["id"], "email"))["attempts"] == 2
    assert receiver.ids()[-1] == str(row["id"])


# --- one delivery workflow per request ------------------------------------------------------


async def executions(client, query: str, at_least: int = 1) -> list:
    """The executions the server lists for `query` (visibility lags a moment behind)."""
    async with asyncio.timeout(10):
        while True:
            found = [e async for e in client.list_workflows(query)]
            if len(found) >= at_least:
                return found
            await asyncio.sleep(0.2)


async def activities_done(handle) -> int:
    """How many activities the run has finished, once none is in flight."""
    async with asyncio.timeout(30):
        while True:
            if not (await handle.describe()).raw_description.pending_activities:
                break
            await asyncio.sleep(0.1)
    history = await handle.fetch_history()
    return sum(
        1
        for e in history.events
        if e.event_type
        in (EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)
    )


async def test_a_request_is_notified_by_one_execution_and_a_repeated_send_delivers_nothing(
    dev_env, pool, policy, registry, mail, smtp_port, receiver
):
    """The whole lifecycle, ~25 rows by e-mail and webhook, costs one delivery execution
    beside the request's own four (at most 6 in all). Every send handed over again (a
    signal repeated, twice at once) and every send activity run again (a retry after a lost
    result) finds its channel settled and sends nothing."""
    settings = notify_settings(smtp_port)
    agency = agency_code()
    await register_webhook(pool, agency, receiver.url, settings)
    async with notifying_worker(dev_env, pool, settings) as w:
        rid, handle = await submit(dev_env, w, policy, registry, agency)
        await close_request(dev_env, rid, handle)
        rows = await settled(pool, rid, count=20)
        assert {r["status"] for r in rows} == {"delivered"}

        client = dev_env.client
        own = await executions(client, f"TaskQueue = '{w.task_queue}'", at_least=4)
        deliveries = await executions(
            client, f"TaskQueue = '{notification_task_queue(w.task_queue)}'"
        )
        assert len(own) == 4  # the request and its three experts
        assert [e.id for e in deliveries] == [notifications_workflow_id(rid)]
        assert len(own) + len(deliveries) <= 6

        mails, calls = len(mail.messages), len(receiver.requests)
        async with pool.acquire() as conn:
            attempts = await conn.fetchval("SELECT count(*) FROM delivery_attempts")
            sent = await conn.fetch(
                "SELECT d.outbox_id, d.channel FROM deliveries d"
                " JOIN outbox o ON o.id = d.outbox_id"
                " WHERE o.request_id = $1 AND d.channel <> 'inbox'",
                rid,
            )
        sends = [DeliverInput(**s) for s in sent]
        delivery = client.get_workflow_handle(notifications_workflow_id(rid))
        done = await activities_done(delivery)
        retry = settings.delivery().retry
        queue = notification_task_queue(w.task_queue)
        await asyncio.gather(
            *(dispatch(client, rid, sends, task_queue=queue, retry=retry) for _ in range(2))
        )
        async with asyncio.timeout(30):
            while True:  # each send run again at least once, and finished
                if await activities_done(delivery) >= done + len(sends):
                    break
                await asyncio.sleep(0.1)
        notify = NotificationActivities(pool, settings)
        try:
            for s in sends[:4]:
                sender = notify.send_email if s.channel == "email" else notify.send_webhook
                await ActivityEnvironment().run(sender, s)
        finally:
            await notify.close()

    assert len(mail.messages) == mails and len(receiver.requests) == calls
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM delivery_attempts") == attempts
    assert len(await executions(dev_env.client, f"WorkflowId = '{delivery.id}'")) == 1


async def request_with_rows(pool, agency: str, n: int) -> tuple[str, list[DeliverInput]]:
    """A request with no workflow of its own and `n` rows for its agency, written with their
    channels as a transition writes them; returns the request and the rows' sends."""
    rid = f"R-{uuid.uuid4().hex[:10].upper()}"
    async with pool.acquire() as conn, conn.transaction():
        await q.insert_request(
            conn,
            {
                "id": rid,
                "workflow_id": f"review-{rid}",
                "agency_code": agency,
                "agency_reference": rid,
                "kind": "advisory",
                "title": "Hồ sơ thử",
                "summary": "",
                "expertise_fields": ["x"],
                "documents": [],
                "requested_by": {"name": "A", "email": "a@agency.example"},
                "submitted_at": datetime.now(UTC),
                "council_size": 1,
                "alternates": 0,
                "review_window_days": 10,
            },
        )
        ids = []
        for i in range(n):
            oid = await q.insert_outbox(
                conn,
                key=f"{rid}:{i}",
                request_id=rid,
                recipient_kind="agency",
                recipient_code=agency,
                address="vanthu@agency.example",
                event="request_received",
                payload={"request_id": rid, "title": "Hồ sơ thử"},
            )
            await plan_channels(conn, oid, email=True)
            ids.append(oid)
        return rid, sends_of(await q.pending_sends(conn, ids=ids))


async def test_a_run_ends_when_idle_and_the_next_signal_starts_another(
    dev_env, pool, registry, mail, smtp_port, receiver
):
    """Rows of a request that has no workflow (an operator's notice) are delivered all the
    same; a run with nothing to do ends, and the next signal starts another, which sends a
    repeated send of the first run's no more."""
    settings = notify_settings(smtp_port)
    agency = agency_code()
    await register_agency(pool, agency)
    await register_webhook(pool, agency, receiver.url, settings)
    async with notifying_worker(dev_env, pool, settings) as w:
        rid, first = await request_with_rows(pool, agency, 2)
        queue = notification_task_queue(w.task_queue)
        handle = await dev_env.client.start_workflow(
            RequestNotificationsWorkflow.run,
            NotificationsInput(request_id=rid, retry=settings.delivery().retry, idle_seconds=0.5),
            id=notifications_workflow_id(rid),
            task_queue=queue,
            start_signal=DELIVER_SIGNAL,
            start_signal_args=[Sends(sends=first)],
        )
        await handle.result()
        assert len(mail.messages) == 2 and len(receiver.requests) == 2

        async with pool.acquire() as conn, conn.transaction():
            oid = await q.insert_outbox(
                conn,
                key=f"{rid}:later",
                request_id=rid,
                recipient_kind="agency",
                recipient_code=agency,
                address="vanthu@agency.example",
                event="request_accepted",
                payload={"request_id": rid, "title": "Hồ sơ thử"},
            )
            await plan_channels(conn, oid, email=True)
            later = sends_of(await q.pending_sends(conn, ids=[oid]))
        retry = settings.delivery().retry
        await dispatch(dev_env.client, rid, first + later, task_queue=queue, retry=retry)
        rows = await settled(pool, rid, count=3)
        # The second run sent the first run's sends again as no-ops, and the new row's.
        assert await activities_done(dev_env.client.get_workflow_handle(handle.id)) == 6
    assert {r["status"] for r in rows} == {"delivered"}
    assert len(mail.messages) == 3 and sorted(receiver.ids()) == sorted(str(r["id"]) for r in rows)
    runs = await executions(dev_env.client, f"WorkflowId = '{handle.id}'", at_least=2)
    assert len(runs) == 2


async def test_a_long_history_continues_as_new_carrying_what_waits(
    dev_env, pool, registry, mail, smtp_port, receiver
):
    """Past its history limit a run stops starting sends, lets those in flight finish (a
    webhook in backoff), and continues as new with what is queued: each send once."""
    receiver.answer = lambda _id, n: 503 if n <= 3 else 200
    settings = notify_settings(smtp_port)
    agency = agency_code()
    await register_agency(pool, agency)
    await register_webhook(pool, agency, receiver.url, settings)
    async with notifying_worker(dev_env, pool, settings) as w:
        rid, sends = await request_with_rows(pool, agency, 4)
        queue = notification_task_queue(w.task_queue)
        handle = await dev_env.client.start_workflow(
            RequestNotificationsWorkflow.run,
            NotificationsInput(request_id=rid, retry=settings.delivery().retry, history_limit=8),
            id=notifications_workflow_id(rid),
            task_queue=queue,
            start_signal=DELIVER_SIGNAL,
            start_signal_args=[Sends(sends=sends[:2])],
        )
        async with asyncio.timeout(10):
            while True:  # the first webhook is in backoff
                if receiver.requests:
                    break
                await asyncio.sleep(0.05)
        await handle.signal(RequestNotificationsWorkflow.deliver, Sends(sends=sends[2:]))
        rows = await settled(pool, rid, count=4)
    assert {r["status"] for r in rows} == {"delivered"}
    assert len(mail.messages) == 4
    assert sorted(set(receiver.ids())) == sorted(str(r["id"]) for r in rows)
    runs = await executions(dev_env.client, f"WorkflowId = '{handle.id}'", at_least=2)
    assert len(runs) == 2
    first = await dev_env.client.get_workflow_handle(
        handle.id, run_id=runs[-1].run_id
    ).fetch_history()
    assert first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
