"""Sending one e-mail over SMTP with the engine's settings (ADVISORY_SMTP_*, ADVISORY_MAIL_FROM):
notifications (activities/notify.py) and the portal's sign-in links (starter/portal) go out
the same way, from the same sender."""

from __future__ import annotations

import asyncio
import email.utils
from email.header import Header
from email.message import Message

import aiosmtplib

from infra.settings import Settings


def sender(settings: Settings, union_name: str) -> str:
    """The From header: ADVISORY_MAIL_FROM, named as the Union unless it names itself."""
    name, address = email.utils.parseaddr(settings.mail_from)
    return email.utils.formataddr((str(Header(name or union_name, "utf-8")), address))


def mail_domain(settings: Settings) -> str:
    """The sender's domain, which names our Message-IDs."""
    address = email.utils.parseaddr(settings.mail_from)[1]
    return address.rpartition("@")[2] or "advisory.invalid"


async def send(settings: Settings, message: Message) -> None:
    """Hands the message to the relay; raises aiosmtplib.SMTPException, OSError or
    TimeoutError when it is not accepted."""
    s = settings
    # An overall bound: the client's own timeout is per command, and an attempt must end well
    # inside an activity's timeout so two attempts never overlap.
    async with asyncio.timeout(s.smtp_timeout * 2):
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            use_tls=s.smtp_tls,
            # Required when configured (a relay that does not offer it is an error, not a
            # reason to send credentials in clear); implicit TLS excludes it.
            start_tls=s.smtp_starttls and not s.smtp_tls,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=s.smtp_timeout,
        )
