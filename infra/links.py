"""Signed, expiring, single-use links that sign a person in and open one page: the sign-in
link, and later every e-mail's task link ("Nhận lời", "Từ chối", "Bổ sung hồ sơ"...).

A link carries who it signs in (role, code, the registered address it was sent to), the page
it opens and when it expires, signed with HMAC-SHA256 under the portal secret: it cannot be
altered, and it needs no row until it is used. Single use is a row of its digest in
`portal_used_links`, written in the same step that signs the person in, so two processes
cannot both honour it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from urllib.parse import urlsplit

from infra.settings import Settings

PREFIX = "/portal"
HOME = f"{PREFIX}/"
SIGN_IN_VALID_FOR = timedelta(minutes=15)


class PortalNotConfigured(RuntimeError):
    """No portal secret: nothing can be signed (ADVISORY_PORTAL_SECRET)."""


def secret_of(settings: Settings) -> bytes:
    secret = settings.resolve_portal_secret()
    if not secret:
        raise PortalNotConfigured(
            "ADVISORY_PORTAL_SECRET: not set and no secret file in the data directory; "
            "the portal cannot sign links or forms without one"
        )
    return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mac(secret: bytes, purpose: str, message: str) -> str:
    """HMAC-SHA256 of a message for one purpose: a value signed for one use (a link) is
    never accepted for another (a form's token)."""
    return _b64(hmac.new(secret, f"{purpose}\n{message}".encode(), hashlib.sha256).digest())


def sign(secret: bytes, purpose: str, payload: dict) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{body}.{mac(secret, purpose, body)}"


def unsign(secret: bytes, purpose: str, token: str) -> dict | None:
    """The payload, if the signature is ours for this purpose; None for anything else."""
    body, _, signature = token.partition(".")
    if not hmac.compare_digest(signature.encode(), mac(secret, purpose, body).encode()):
        return None
    try:
        payload = json.loads(_unb64(body))
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def safe_next(value: str | None) -> str:
    """A page of the portal to go to next, or the portal's home: only a local path under
    /portal is followed, never another site (an open redirect would lend our name to
    phishing)."""
    if not value or "\\" in value or any(ord(c) < 32 for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return HOME
    if parts.path != PREFIX and not parts.path.startswith(HOME):
        return HOME
    return value


@dataclass(frozen=True)
class Link:
    role: str
    code: str
    email: str
    next_path: str
    expires_at: datetime
    token: str

    @property
    def digest(self) -> str:
        """What `portal_used_links` keeps: enough to recognise the link, not to use it."""
        return hashlib.sha256(self.token.encode()).hexdigest()


class LinkState(Enum):
    valid = "valid"
    tampered = "tampered"  # not ours, altered, or cut short
    expired = "expired"
    used = "used"  # set by the caller, which knows the used links
    # The address no longer signs in as that person (changed in the registry, or the person
    # deactivated) since the link was sent.
    withdrawn = "withdrawn"


LINK = "portal-link"


def link_token(
    secret: bytes,
    role: str,
    code: str,
    email: str,
    next_path: str,
    valid_for: timedelta,
    *,
    now: datetime | None = None,
) -> str:
    expires = (now or datetime.now(UTC)) + valid_for
    payload = {
        "r": role,
        "c": code,
        "e": email.lower(),
        "n": safe_next(next_path),
        "x": int(expires.timestamp()),
        # Two links with the same content are still two links, each used once.
        "j": secrets.token_urlsafe(9),
    }
    return sign(secret, LINK, payload)


def read_link(
    secret: bytes, token: str, *, now: datetime | None = None
) -> tuple[LinkState, Link | None]:
    """The link a token is, and whether its signature and time still hold (not whether it
    was used: that is PostgreSQL's to say). An expired link is still read, so the page can
    offer a fresh one to the same address."""
    payload = unsign(secret, LINK, token)
    try:
        link = Link(
            role=str(payload["r"]),
            code=str(payload["c"]),
            email=str(payload["e"]),
            next_path=safe_next(str(payload["n"])),
            expires_at=datetime.fromtimestamp(int(payload["x"]), UTC),
            token=token,
        )
    except (TypeError, KeyError, ValueError):
        return LinkState.tampered, None
    if link.expires_at <= (now or datetime.now(UTC)):
        return LinkState.expired, link
    return LinkState.valid, link


def link_path(token: str) -> str:
    return f"{PREFIX}/link/{token}"


def case_url(settings: Settings, request_id: str) -> str:
    """The coordinator's page of a request in the portal, as an absolute URL (the Temporal
    UI's request pages link to it)."""
    return f"{settings.portal_url.rstrip('/')}{PREFIX}/cases/{request_id}"


def task_link(
    settings: Settings,
    role: str,
    code: str,
    email: str,
    next_path: str,
    valid_for: timedelta,
    *,
    now: datetime | None = None,
) -> str:
    """An absolute URL for an e-mail: opening it (and pressing its one button) signs `role`
    `code` in, as the registered address `email`, and lands on `next_path` (a portal page).
    Usable once, until `valid_for` has passed. E.g. an invitation's "Nhận lời":
    task_link(settings, "expert", "E-017", "an@…", "/portal/tasks/R-…/accept", timedelta(days=7))
    """
    token = link_token(secret_of(settings), role, code, email, next_path, valid_for, now=now)
    return settings.portal_url.rstrip("/") + link_path(token)
