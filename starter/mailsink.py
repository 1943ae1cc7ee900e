"""A local SMTP server that keeps every message it receives as an `.eml` file, so a person can
read what the engine sent (any mail client opens them). `make up` runs it; tests use it as the
real SMTP server the worker delivers to."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller


class _Keeper:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._count = 0
        # Tests: refuse every recipient, as a relay does for an unknown mailbox.
        self.refusing = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:  # noqa: N802
        if self.refusing:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        raw: bytes = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self._lock:
            self._count += 1
            self.messages.append(message)
            n = self._count
        if self.directory is not None:
            mid = re.sub(r"[^A-Za-z0-9.@-]+", "", str(message.get("Message-ID", "")))[:80]
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            (self.directory / f"{stamp}-{n:05d}-{mid or 'message'}.eml").write_bytes(raw)
        return "250 Message accepted for delivery"


class MailSink:
    """Listens on host:port until stopped; `messages` holds what arrived, in order."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1025, directory: Path | None = None):
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self.host, self.port, self.directory = host, port, directory
        self._keeper = _Keeper(directory)
        self._controller: Controller | None = None

    @property
    def refusing(self) -> bool:
        return self._keeper.refusing

    @refusing.setter
    def refusing(self, value: bool) -> None:
        self._keeper.refusing = value

    @property
    def messages(self) -> list[EmailMessage]:
        with self._keeper._lock:
            return list(self._keeper.messages)

    def start(self) -> MailSink:
        # SMTPUTF8 so Vietnamese addresses and headers pass as they are.
        self._controller = Controller(
            self._keeper,
            hostname=self.host,
            port=self.port,
            enable_SMTPUTF8=True,
            ready_timeout=10,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
