"""Delivery of outbox rows: plan the channels of a row (in the transaction that writes it), hand
its sends to its request's delivery workflow, send its e-mail, call its webhook, and record a
channel that kept failing. Every attempt is written to `delivery_attempts`; a channel that is
already settled is never sent again, so a send repeated (a signal twice, an activity retried
after its result was lost) changes nothing.

E-mail keeps one Message-ID per row and webhooks one `webhook-id` per row, so a message that was
sent but whose success was lost on the way back (and is therefore sent again) is recognisably
the same message to its receiver.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

import aiosmtplib
import asyncpg
import httpcore
import httpx
import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.render import render
from db import portal as portal_db
from db import queries as q
from domain.ids import notifications_workflow_id
from domain.notifications import (
    Channel,
    DeliverInput,
    DeliveryFailedInput,
    DeliveryRetry,
    NotificationsInput,
    Sends,
    address_refusal,
    office_links,
    signature_header,
    task_links,
    url_refusal,
)
from infra import mail
from infra.documents import document_store
from infra.links import task_link
from infra.settings import Settings

log = structlog.get_logger("notify")
NOTIFICATIONS_WORKFLOW = "RequestNotificationsWorkflow"
DELIVER_SIGNAL = "deliver"
USER_AGENT = "advisory-engine-webhooks/1"


async def plan_channels(
    conn: asyncpg.Connection, outbox_id: int, *, email: bool
) -> list[tuple[str, str]]:
    """Writes the channels of a row, in the transaction that wrote the row: the inbox is
    delivered by being written; e-mail (unless `email` is off: no SMTP host) and, for an agency
    with an endpoint, the webhook are pending, or skipped with the reason. Written once: a
    second plan (an operator's retry of a row from before plans were written) keeps the first.
    Returns the channels this plan settled, (channel, status), to count once committed."""
    settled: list[tuple[str, str]] = []

    async def channel(name: Channel, target: str, status: str = "pending", error=None) -> None:
        if await q.insert_delivery(conn, outbox_id, name, target, status=status, error=error):
            if status != "pending":
                settled.append((name.value, status))

    await q.lock_outbox(conn, outbox_id)
    row = await q.outbox_row(conn, outbox_id)
    if row["status"] == "cancelled":
        return []
    await channel(
        Channel.inbox, f"{row['recipient_kind']}:{row['recipient_code'] or ''}", "delivered"
    )
    if not row["address"]:
        await channel(Channel.email, "", "skipped", "no e-mail address")
    elif not email:
        await channel(
            Channel.email,
            row["address"],
            "skipped",
            "e-mail is not configured (ADVISORY_SMTP_HOST)",
        )
    else:
        await channel(Channel.email, row["address"])
    if row["recipient_kind"] == "agency":
        endpoint = await q.webhook_endpoint(conn, row["agency_code"])
        if endpoint is not None and endpoint["enabled"]:
            await channel(Channel.webhook, endpoint["url"])
        elif endpoint is not None:
            await channel(
                Channel.webhook,
                endpoint["url"],
                "skipped",
                f"endpoint disabled: {endpoint['disabled_reason']}",
            )
    await q.settle_outbox(conn, outbox_id)
    return settled


def count_settled(settled: list[tuple[str, str]]) -> None:
    for channel, status in settled:
        metrics.NOTIFICATIONS.labels(channel, status).inc()


def sends_of(rows: list[asyncpg.Record]) -> list[DeliverInput]:
    """The sends of `q.pending_sends` rows."""
    return [DeliverInput(outbox_id=r["outbox_id"], channel=r["channel"]) for r in rows]


async def dispatch(
    client: Client,
    request_id: str,
    sends: list[DeliverInput],
    *,
    task_queue: str,
    retry: DeliveryRetry,
) -> None:
    """Hands `sends` to the delivery workflow of their request on `task_queue`, a
    notifications queue (domain.ids.notification_task_queue): signal-with-start, so a run
    going is woken and, when none is, one starts. A send it already has, or has delivered,
    is not sent twice."""
    if not sends:
        return
    await client.start_workflow(
        NOTIFICATIONS_WORKFLOW,
        NotificationsInput(request_id=request_id, retry=retry),
        id=notifications_workflow_id(request_id),
        task_queue=task_queue,
        start_signal=DELIVER_SIGNAL,
        start_signal_args=[Sends(sends=sends)],
    )


# --- webhook connections --------------------------------------------------------------
#
# A webhook's host is resolved once, by us, and the addresses checked are the ones connected
# to. Checking first and letting the HTTP client resolve the name again when it connects would
# let a name whose answer changes in between (DNS rebinding) lead past the check to the
# engine's own network. The pinning is done below HTTP, in the network backend: the request
# keeps the URL's Host header, and TLS its SNI and certificate check against the host name.
# A kept-alive connection is reused without resolving again: it is still to a checked address.

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, in its order, each once."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class AddressRefused(Exception):
    """The host resolved to an address a webhook may not reach; the message says which."""


class HostUnresolved(Exception):
    """The host did not resolve (perhaps only for now)."""


async def vetted_addresses(
    resolve: Resolver, host: str, port: int, *, allow_private: bool
) -> list[str]:
    """The addresses `host` resolves to, once every one is allowed (all of them, not just
    the one that answers: which one is dialled is not ours to say)."""
    try:
        addresses = await resolve(host, port)
    except OSError as e:
        raise HostUnresolved(f"url: host {host!r} does not resolve ({e})") from e
    if not addresses:
        raise HostUnresolved(f"url: host {host!r} does not resolve (no address)")
    for address in addresses:
        refusal = address_refusal(address, allow_private=allow_private)
        if refusal is not None:
            raise AddressRefused(refusal)
    return addresses


class PinnedNetwork(httpcore.AsyncNetworkBackend):
    """Opens each webhook connection to an address it has just resolved and checked itself:
    every address must be public (unless allow_private), and only those are dialled."""

    def __init__(
        self,
        resolve: Resolver,
        *,
        allow_private: bool,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._resolve = resolve
        self._allow_private = allow_private
        self._network = network or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await vetted_addresses(
            self._resolve, host, port, allow_private=self._allow_private
        )
        error: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._network.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as e:
                error = e
        assert error is not None
        raise error

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a network backend of our choosing; no proxy, no environment."""

    def __init__(self, network: httpcore.AsyncNetworkBackend) -> None:
        super().__init__(trust_env=False)
        # httpx takes no network backend of its own, so the pool it built is replaced by the
        # same pool (httpx's default limits) on ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=network,
        )


def webhook_client(
    settings: Settings,
    *,
    resolve: Resolver = resolve_host,
    network: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """One connection pool for every webhook. Redirects are not followed (a redirect could
    lead past the address check), and nothing is taken from the environment (trust_env): a
    proxy would connect on our behalf to an address we never checked, and netrc could lend
    the receiver credentials. `resolve` and `network` are the system's unless a test says."""
    pinned = PinnedNetwork(resolve, allow_private=settings.webhook_allow_private, network=network)
    return httpx.AsyncClient(
        transport=PinnedTransport(pinned),
        timeout=settings.webhook_timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": USER_AGENT},
    )


class NotificationActivities:
    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, http: httpx.AsyncClient | None = None
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._http = http
        self._store = document_store(settings, pool)
        # Every message signs as the Union the policy file names, read once as the worker
        # starts (a policy file that does not load stops it there, not at the first e-mail).
        self._union = settings.load_policy().union

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = webhook_client(self._settings)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    # --- e-mail ------------------------------------------------------------------------

    async def _attachment(self, row: asyncpg.Record) -> tuple[str, bytes] | None:
        """The signed conclusion a delivery e-mail carries (a small PDF, read whole)."""
        document = dict(row["payload"]).get("document")
        if row["event"] != "conclusion_delivered" or not document:
            return None
        async with self._pool.acquire() as conn:
            doc = await conn.fetchrow(
                "SELECT name, sha256 FROM documents WHERE id = $1 AND stored", document
            )
        if doc is None:
            return None
        data = b"".join([chunk async for chunk in self._store.read(doc["sha256"])])
        return doc["name"], data

    async def _links(self, row: asyncpg.Record) -> tuple[str, list[tuple[str, str]]]:
        """The portal links the e-mail carries, and their heading: the office's plain link to
        the request's page, or the signed links of the recipient's task."""
        office = office_links(row["recipient_kind"], row["request_id"])
        if office:
            portal = self._settings.portal_url.rstrip("/")
            return "links_office", [(name, portal + path) for name, path in office]
        return "links", await self._task_links(row)

    async def _task_links(self, row: asyncpg.Record) -> list[tuple[str, str]]:
        """The signed portal links the e-mail carries for its task: only to an address that
        signs its recipient in (a registered, active one), and only with a portal secret."""
        kind, code, address = row["recipient_kind"], row["recipient_code"], row["address"]
        wanted = task_links(row["event"], kind, row["request_id"])
        secret = self._settings.resolve_portal_secret()
        if not wanted or not code or not address or secret is None:
            return []
        async with self._pool.acquire() as conn:
            identities = await portal_db.identities_by_email(conn, address.lower())
        if not any((i["role"], i["code"]) == (kind, code) for i in identities):
            return []
        valid_for = timedelta(days=self._settings.portal_task_link_days)
        return [
            (name, task_link(self._settings, kind, code, address, path, valid_for))
            for name, path in wanted
        ]

    def _email(
        self,
        row: asyncpg.Record,
        attachment: tuple[str, bytes] | None = None,
        links: list[tuple[str, str]] = (),
        heading: str = "links",
    ) -> MIMEMultipart:
        s = self._settings
        payload: dict[str, Any] = dict(row["payload"])
        context = {**payload, "recipient_kind": row["recipient_kind"]}
        context.setdefault("request_id", row["request_id"])
        context.setdefault("title", "")
        m = render(
            row["event"], row["language"], context, union=self._union, links=links, heading=heading
        )
        domain = mail.mail_domain(s)
        # Built with the classic MIME classes and Header: the modern policy's folder drops the
        # space between two encoded words of a long non-ASCII subject (CPython, 3.11), which
        # turns "đã được" into "đãđược". Header keeps each space inside an encoded word.
        msg = MIMEMultipart("alternative")
        msg["From"] = mail.sender(s, self._union.name)
        msg["To"] = row["address"]
        msg["Subject"] = Header(m.subject, "utf-8")
        # The same row is the same message: a resend after a lost acknowledgement carries the
        # same Message-ID, and every mail about one request threads under one reference.
        msg["Message-ID"] = f"<notification-{row['id']}@{domain}>"
        msg["References"] = f"<request-{row['request_id']}@{domain}>"
        msg["Date"] = email.utils.format_datetime(row["created_at"])
        msg["Content-Language"] = row["language"]
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Advisory-Request"] = row["request_id"]
        msg["X-Advisory-Event"] = row["event"]
        msg.attach(MIMEText(m.text, "plain", "utf-8"))
        msg.attach(MIMEText(m.html, "html", "utf-8"))
        if attachment is None:
            return msg
        # The text and the document: the alternatives inside a mixed message, the file named
        # in UTF-8 (RFC 2231) so its Vietnamese name survives.
        mixed = MIMEMultipart("mixed")
        for header, value in list(msg.items()):
            if header.lower() not in ("content-type", "mime-version"):
                mixed[header] = value
                del msg[header]
        mixed.attach(msg)
        name, data = attachment
        part = MIMEApplication(data, "pdf")
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
        mixed.attach(part)
        return mixed

    async def _unsent(self, inp: DeliverInput) -> asyncpg.Record | None:
        """The row, if this channel still has to be sent. A row withdrawn while its channel
        waited for a retry (a reminder whose deadline was met) is not sent after all."""
        async with self._pool.acquire() as conn:
            row = await q.outbox_row(conn, inp.outbox_id)
            d = await q.delivery(conn, inp.outbox_id, inp.channel)
        if row is None or d is None or d["status"] != "pending":
            return None
        if row["status"] == "cancelled":
            await self._skip(inp, "withdrawn before delivery")
            return None
        return row

    async def _skip(self, inp: DeliverInput, reason: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await q.lock_outbox(conn, inp.outbox_id)
            await q.skip_delivery(conn, inp.outbox_id, inp.channel, reason)
            await q.settle_outbox(conn, inp.outbox_id)
        metrics.NOTIFICATIONS.labels(inp.channel.value, "skipped").inc()

    @activity.defn(name="send_email")
    async def send_email(self, inp: DeliverInput) -> None:
        s = self._settings
        attempt = activity.info().attempt
        row = await self._unsent(inp)
        if row is None:
            return
        heading, links = await self._links(row)
        message = self._email(row, await self._attachment(row), links, heading)
        try:
            await mail.send(s, message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            code = _smtp_code(e)
            permanent = code is not None and 500 <= code < 600
            # The full text (it may name the address) stays in PostgreSQL; what Temporal keeps
            # in its history is the kind of failure and the reply code only.
            await self._attempt(inp, attempt, delivered=False, error=f"{type(e).__name__}: {e}")
            summary = type(e).__name__ + (f" {code}" if code else "")
            raise ApplicationError(
                f"e-mail not accepted: {summary}",
                type="MailRejected" if permanent else "MailUnavailable",
                non_retryable=permanent,
            ) from None
        await self._attempt(inp, attempt, delivered=True)

    # --- webhooks ----------------------------------------------------------------------

    @activity.defn(name="send_webhook")
    async def send_webhook(self, inp: DeliverInput) -> None:
        s = self._settings
        attempt = activity.info().attempt
        row = await self._unsent(inp)
        if row is None:
            return
        async with self._pool.acquire() as conn:
            endpoint = await q.webhook_endpoint(conn, row["agency_code"])
        if endpoint is None or not endpoint["enabled"]:
            # Disabled after this row was planned (a 410 to an earlier row).
            await self._skip(inp, "endpoint disabled")
            return
        url = endpoint["url"]
        refusal = url_refusal(url, allow_private=s.webhook_allow_private)
        if refusal is not None:
            await self._attempt(inp, attempt, delivered=False, error=refusal)
            raise ApplicationError(refusal, type="EndpointRefused", non_retryable=True)

        body = json.dumps(
            {
                "type": f"advisory.{row['event']}",
                "timestamp": row["created_at"].astimezone(UTC).isoformat(),
                "data": {
                    **dict(row["payload"]),
                    "request_id": row["request_id"],
                    "recipient": row["recipient_code"],
                },
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        msg_id = str(row["id"])
        # The timestamp is the attempt's: receivers reject stale ones, so a retry is signed anew.
        timestamp = int(time.time())
        live = [endpoint["secret"]]
        if endpoint["previous_secret"] and endpoint["previous_until"] > datetime.now(UTC):
            live.append(endpoint["previous_secret"])
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(live, msg_id, timestamp, body),
        }
        try:
            # One bound for the whole exchange, the host's resolution included (httpx's is per
            # phase); the answer's body is never read: only its status counts, and a receiver
            # cannot make us buffer it.
            async with asyncio.timeout(s.webhook_timeout):
                async with self._client().stream(
                    "POST", url, content=body, headers=headers
                ) as response:
                    code = response.status_code
                    retry_after = _retry_after(response)
        except AddressRefused as e:
            await self._attempt(inp, attempt, delivered=False, error=str(e))
            raise ApplicationError(str(e), type="EndpointRefused", non_retryable=True) from None
        except HostUnresolved as e:
            # A resolver that fails now may answer in a minute: retried, not refused.
            await self._attempt(inp, attempt, delivered=False, error=str(e))
            raise ApplicationError(str(e), type="WebhookUnavailable") from None
        except (httpx.HTTPError, TimeoutError) as e:
            error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            await self._attempt(inp, attempt, delivered=False, error=error)
            raise ApplicationError(
                f"webhook: {type(e).__name__}", type="WebhookUnavailable"
            ) from None

        if 200 <= code < 300:
            await self._attempt(inp, attempt, delivered=True, status_code=code)
            return
        error = f"answered {code}"
        await self._attempt(inp, attempt, delivered=False, status_code=code, error=error)
        if code == 410:
            async with self._pool.acquire() as conn:
                await q.set_webhook_enabled(
                    conn,
                    row["agency_code"],
                    False,
                    f"answered 410 Gone on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
                )
            log.warning("webhook endpoint disabled", agency=row["agency_code"], status=code)
            raise ApplicationError(
                "webhook: endpoint answered 410 Gone; it is disabled",
                type="EndpointGone",
                non_retryable=True,
            )
        if code in (408, 429) or code >= 500:
            raise ApplicationError(
                f"webhook: {error}", type="WebhookUnavailable", next_retry_delay=retry_after
            )
        raise ApplicationError(f"webhook: {error}", type="WebhookRejected", non_retryable=True)

    # --- outcome -----------------------------------------------------------------------

    async def _attempt(
        self,
        inp: DeliverInput,
        attempt: int,
        *,
        delivered: bool,
        status_code: int | None = None,
        error: str | None = None,
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await q.lock_outbox(conn, inp.outbox_id)
            await q.record_attempt(
                conn,
                inp.outbox_id,
                inp.channel,
                attempt=attempt,
                delivered=delivered,
                status_code=status_code,
                error=error,
            )
            if delivered:
                await q.settle_outbox(conn, inp.outbox_id)
        metrics.DELIVERY_ATTEMPTS.labels(
            inp.channel.value, "delivered" if delivered else "error"
        ).inc()
        if delivered:
            metrics.NOTIFICATIONS.labels(inp.channel.value, "delivered").inc()

    @activity.defn(name="delivery_failed")
    async def delivery_failed(self, inp: DeliveryFailedInput) -> Sends:
        """The channel gave up: the row is failed and the operator told (in the operators'
        inbox and by e-mail), unless the row was itself a report to the operator or was
        withdrawn meanwhile. Returns the report's sends, for the delivery workflow that called
        (the report is about the same request); a retried attempt finds the report written and
        returns its sends still pending."""
        s = self._settings
        settled: list[tuple[str, str]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            await q.lock_outbox(conn, inp.outbox_id)
            row = await q.outbox_row(conn, inp.outbox_id)
            if row is None:
                return Sends()
            key = f"delivery-failed:{inp.outbox_id}:{inp.channel.value}:{row['retries']}"
            d = await q.delivery(conn, inp.outbox_id, inp.channel)
            # The last attempt's own words, kept in PostgreSQL (the input carries only what
            # Temporal's history may show).
            error = (d["last_error"] if d is not None else None) or inp.error
            if row["status"] == "cancelled":
                await q.skip_delivery(conn, inp.outbox_id, inp.channel, "withdrawn before delivery")
                return Sends()
            if await q.fail_delivery(conn, inp.outbox_id, inp.channel, error):
                await q.settle_outbox(conn, inp.outbox_id)
                metrics.NOTIFICATIONS.labels(inp.channel.value, "failed").inc()
                log.warning(
                    "notification failed",
                    outbox_id=inp.outbox_id,
                    channel=inp.channel.value,
                    event_name=row["event"],
                    error=inp.error,
                )
                if row["recipient_kind"] != "operator":
                    report = await q.insert_outbox(
                        conn,
                        key=key,
                        request_id=row["request_id"],
                        recipient_kind="operator",
                        recipient_code=None,
                        address=s.operator_email or s.coordinator_email,
                        event="delivery_failed",
                        payload={
                            "request_id": row["request_id"],
                            "title": row["payload"].get("title"),
                            "outbox_id": inp.outbox_id,
                            "channel": inp.channel.value,
                            "event": row["event"],
                            "target_kind": row["recipient_kind"],
                            "error": error[:500],
                        },
                        language=s.coordinator_language,
                    )
                    if report is not None:
                        settled = await plan_channels(conn, report, email=bool(s.smtp_host))
            pending = await q.pending_sends(conn, keys=[key])
        count_settled(settled)
        return Sends(sends=sends_of(pending))


def _smtp_code(e: BaseException) -> int | None:
    """The server's reply code, if it gave one; for refused recipients, the mildest (a 4xx
    among them means a later attempt may pass)."""
    if isinstance(e, aiosmtplib.SMTPRecipientsRefused) and e.recipients:
        return min(r.code for r in e.recipients)
    if isinstance(e, aiosmtplib.SMTPResponseException):
        return e.code
    return None


def _retry_after(response: httpx.Response) -> timedelta | None:
    """Honours a Retry-After in seconds (capped at an hour) on 429 and 503."""
    value = response.headers.get("retry-after", "")
    if value.isdigit():
        return timedelta(seconds=min(int(value), 3600))
    return None
