"""Asking for a sign-in link: the rate limits, who an address signs in as, and the e-mail with
one link per identity, in the person's language."""

from __future__ import annotations

import email.utils
from datetime import timedelta
from email.header import Header
from email.mime.text import MIMEText

import aiosmtplib
import asyncpg
import structlog

from db import portal as db
from infra import mail
from infra.links import SIGN_IN_VALID_FOR, link_path, link_token
from starter.portal.i18n import DEFAULT_LANGUAGE, language, translations
from starter.portal.pages import ROLE_NAMES, Portal

log = structlog.get_logger("portal")

# Sign-in requests handled per address, and per client address, within WINDOW. Past either,
# the same answer page is given and nothing is sent: a mailbox cannot be flooded, nor the
# registry probed at speed. Counted in PostgreSQL, so every API process shares the count.
PER_ADDRESS = 3
PER_CLIENT = 20
WINDOW = timedelta(minutes=15)


async def identities_to_mail(pool: asyncpg.Pool, address: str, client: str) -> list[asyncpg.Record]:
    """Who `address` signs in as, if this request is within both limits (counted, then);
    nothing past a limit. An unregistered address counts like any other."""
    async with pool.acquire() as conn, conn.transaction():
        await db.purge_portal(conn, WINDOW)
        await db.lock_sign_in_counts(conn, address, client)
        by_email, by_client = await db.sign_in_requests_since(conn, address, client, WINDOW)
        if by_email >= PER_ADDRESS or by_client >= PER_CLIENT:
            log.info("sign-in request over the limit", by_address=by_email >= PER_ADDRESS)
            return []
        await db.insert_sign_in_request(conn, address, client)
        return await db.identities_by_email(conn, address)


def sign_in_message(
    portal: Portal, address: str, identities: list[asyncpg.Record], next_path: str
) -> MIMEText:
    """The e-mail: one link per identity the address signs in as, in the first identity's
    language (coordinators, then experts, then agencies)."""
    lang = language(identities[0]["language"]) or DEFAULT_LANGUAGE
    t = translations(lang)
    assert portal.secret is not None
    base = portal.settings.portal_url.rstrip("/")
    role_names = {role: t.gettext(message) for role, message in ROLE_NAMES.items()}
    links = [
        {
            "role": role_names[i["role"]],
            "name": i["name"],
            "url": base
            + link_path(
                link_token(
                    portal.secret, i["role"], i["code"], address, next_path, SIGN_IN_VALID_FOR
                )
            ),
        }
        for i in identities
    ]
    text = (
        portal.templates[lang]
        .get_template("mail/sign_in.txt")
        .render(
            links=links,
            minutes=int(SIGN_IN_VALID_FOR.total_seconds() // 60),
            union_name=portal.union_name(lang),
        )
    )
    # The classic MIME classes and Header, as for notifications: the modern policy's folding
    # loses spaces between encoded words of a long Vietnamese subject.
    message = MIMEText(text, "plain", "utf-8")
    message["From"] = mail.sender(portal.settings, portal.union_name(lang))
    message["To"] = address
    message["Subject"] = Header(t.gettext("Your sign-in link"), "utf-8")
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = email.utils.make_msgid("sign-in", mail.mail_domain(portal.settings))
    message["Content-Language"] = lang
    message["Auto-Submitted"] = "auto-generated"
    return message


async def send_sign_in_mail(
    portal: Portal, address: str, identities: list[asyncpg.Record], next_path: str
) -> None:
    """Sent after the answer page has gone out (the answer takes as long whether or not the
    address is registered). A failure is logged, without the address."""
    if not portal.settings.smtp_host:
        log.warning("sign-in e-mail not sent: e-mail is not configured (ADVISORY_SMTP_HOST)")
        return
    message = sign_in_message(portal, address, identities, next_path)
    try:
        await mail.send(portal.settings, message)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
        log.warning("sign-in e-mail not accepted", error=type(e).__name__)
        return
    log.info("sign-in e-mail sent", identities=[f"{i['role']}:{i['code']}" for i in identities])
