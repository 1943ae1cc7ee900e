"""Notifications: the catalogue of events, the channels a row is delivered on, the inputs of the
delivery workflow and activities, and the two pure pieces of the webhook channel — Standard
Webhooks signatures and the rule for which endpoints may be called (SSRF)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field

from domain.models import Model

REMINDER_DEADLINES = (
    "screening",
    "supplement",
    "respond",
    "review",
    "synthesis",
    "approval",
    "adoption",
)

# Every event a workflow (or the delivery itself) notifies about. Each has a template in every
# language; a test holds the workflows, this list and the templates together.
EVENTS: frozenset[str] = frozenset(
    {
        "request_received",
        "request_submitted",
        "supplement_received",
        "request_accepted",
        "request_declined",
        "supplement_requested",
        "experts_needed",
        "council_awaiting_confirmation",
        "council_proposed",
        "council_shortfall",
        "quorum_reached",
        "expert_replaced",
        "draft_conclusion_requested",
        "conclusion_ready",
        "conclusion_delivered",
        "review_completed",
        "conclusion_returned",
        "adoption_answer_requested",
        "adoption_answered",
        "withdrawal_confirmed",
        "request_withdrawn",
        "request_lapsed",
        "stage_overdue",
        "deadline_extended",
        "invitation",
        "assignment_cancelled",
        "invitation_expired",
        "expert_silent",
        "expert_overdue",
        "review_due",
        "expert_accepted",
        "expert_declined",
        "opinion_received",
        "opinion_submitted",
        "delivery_failed",
        *(f"{d}_reminder" for d in REMINDER_DEADLINES),
    }
)
LANGUAGES = ("vi", "en")

# The portal pages an e-mail's links open, by event and recipient: each link signs its
# recipient in for that one task (starter/portal). The first of a pair is the label's name in
# the e-mail's language (activities/render.py LABELS, "link_<name>").
_ANSWER = (
    ("accept", "/portal/tasks/{request_id}/accept"),
    ("decline", "/portal/tasks/{request_id}/decline"),
)
_OPINION = (("opinion", "/portal/tasks/{request_id}/opinion"),)
_CONCLUSION = (("conclusion", "/portal/tasks/{request_id}/conclusion"),)
_SUPPLEMENT = (("supplement", "/portal/requests/{request_id}/supplement"),)
_ADOPTION = (("adoption", "/portal/requests/{request_id}/adoption"),)
_REQUEST = (("request", "/portal/requests/{request_id}"),)
TASK_LINKS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("invitation", "expert"): _ANSWER,
    ("respond_reminder", "expert"): _ANSWER,
    ("review_reminder", "expert"): _OPINION,
    ("review_due", "expert"): _OPINION,
    ("deadline_extended", "expert"): _OPINION,
    ("draft_conclusion_requested", "expert"): _CONCLUSION,
    ("synthesis_reminder", "expert"): _CONCLUSION,
    ("conclusion_returned", "expert"): _CONCLUSION,
    ("supplement_requested", "agency"): _SUPPLEMENT,
    ("supplement_reminder", "agency"): _SUPPLEMENT,
    ("conclusion_delivered", "agency"): _ADOPTION,
    ("adoption_answer_requested", "agency"): _ADOPTION,
    ("adoption_reminder", "agency"): _ADOPTION,
    ("request_received", "agency"): _REQUEST,
    ("request_accepted", "agency"): _REQUEST,
    ("request_declined", "agency"): _REQUEST,
    ("supplement_received", "agency"): _REQUEST,
    ("review_completed", "agency"): _REQUEST,
    ("withdrawal_confirmed", "agency"): _REQUEST,
    ("request_lapsed", "agency"): _REQUEST,
}


# The Union's office reads its e-mails in a shared mailbox: they link to the request's page
# in the portal, which asks whoever opens it to sign in (a plain link, signing nobody in).
OFFICE_LINK = ("case", "/portal/cases/{request_id}")


def office_links(recipient_kind: str, request_id: str | None) -> list[tuple[str, str]]:
    if recipient_kind != "coordinator" or not request_id:
        return []
    name, path = OFFICE_LINK
    return [(name, path.format(request_id=request_id))]


def task_links(event: str, recipient_kind: str, request_id: str) -> list[tuple[str, str]]:
    """The (label name, portal path) pairs an e-mail about `event` to this recipient carries."""
    pairs = TASK_LINKS.get((event, recipient_kind), ())
    return [(name, path.format(request_id=request_id)) for name, path in pairs]


class Channel(StrEnum):
    inbox = "inbox"
    email = "email"
    webhook = "webhook"


class DeliveryRetry(Model):
    """Backoff of one channel's delivery: Temporal retries the activity on this schedule, and
    when the attempts run out the row is marked failed and the operator told."""

    initial_seconds: Annotated[float, Field(gt=0)] = 10
    maximum_seconds: Annotated[float, Field(gt=0)] = 1800
    attempts: Annotated[int, Field(ge=1)] = 20


class Delivery(Model):
    """How the rows a transition writes are delivered: whether e-mail is sent at all (without
    an SMTP host the channel is written skipped, saying so) and each channel's backoff."""

    email: bool = True
    retry: DeliveryRetry = DeliveryRetry()


class DeliverInput(Model):
    """One send: one row's one channel (e-mail or webhook)."""

    outbox_id: int
    channel: Channel


class Sends(Model):
    sends: list[DeliverInput] = []


class NotificationsInput(Model):
    """The delivery workflow of one request. `idle_seconds`: how long a run waits with nothing
    to send before it ends (an hour: long enough that a transition's rows and the answers it
    sets off share a run, short enough that a request waiting weeks holds none open).
    `carry`: sends queued and not started when the previous run continued as new.
    `history_limit`: continue as new past this many events (tests; otherwise when the server
    suggests it)."""

    request_id: str
    retry: DeliveryRetry = DeliveryRetry()
    idle_seconds: Annotated[float, Field(gt=0)] = 3600
    carry: list[DeliverInput] = []
    history_limit: int | None = None


class DeliveryFailedInput(Model):
    outbox_id: int
    channel: Channel
    error: str


# --- Standard Webhooks (https://www.standardwebhooks.com) ---------------------------------

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A signing secret in the spec's format: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over `id.timestamp.body`, as the spec defines it."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature per live secret, space separated: during a rotation a receiver that
    still holds the previous secret verifies as well as one that has the new one."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


# --- Which endpoints may be called --------------------------------------------------------


def url_refusal(url: str, *, allow_private: bool) -> str | None:
    """Why `url` cannot be a webhook endpoint, or None. Only https, except in development
    (allow_private), where a local receiver over http is the point."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        return f"url: not a valid URL ({e})"
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        return f"url: must use {' or '.join(allowed)}, not {parts.scheme or 'no scheme'!r}"
    if not parts.hostname:
        return "url: must name a host"
    if parts.username or parts.password:
        return "url: must not carry credentials"
    if port == 0:
        return "url: port 0 is not a port"
    return None


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def address_refusal(address: str, *, allow_private: bool) -> str | None:
    """Why a resolved address may not be called, or None: loopback, private, link-local and
    other non-public ranges reach the engine's own network, not an agency (SSRF)."""
    if allow_private:
        return None
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address reach that address: judge it instead.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
        elif (
            ip.teredo is not None
            or ip.is_site_local
            or (ip in IPV4_COMPATIBLE and not (ip.is_loopback or ip.is_unspecified))
        ):
            return (
                f"url: resolves to {address}, a tunnelled or deprecated address;"
                " endpoints must be public"
            )
    if ip.is_global:
        return None
    what = (
        "loopback"
        if ip.is_loopback
        else "link-local"
        if ip.is_link_local
        else "private"
        if ip.is_private
        else "non-public"
    )
    return f"url: resolves to {address}, a {what} address; endpoints must be public"
