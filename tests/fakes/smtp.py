"""A fake SMTP server (aiosmtpd, in a thread) recording every message it accepts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.platform import free_port


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    received_at: float

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def html(self) -> str:
        part = self.message.get_body(("html", "plain"))
        return part.get_content() if part else ""


@dataclass
class FakeSMTP:
    messages: list[Mail] = field(default_factory=list)
    port: int = 0
    _controller: Controller | None = None

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.messages if address in m.rcpt_tos]

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd hook)
        msg = message_from_bytes(envelope.original_content or envelope.content,
                                 policy=policy.default)
        self.messages.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), msg, time.time()))
        return "250 Message accepted for delivery"

    def start(self) -> FakeSMTP:
        self.port = self.port or free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()
