"""An in-memory backend, the test outbox (Django's ``locmem``): no URL scheme selects it."""

from __future__ import annotations

from email.message import EmailMessage

from musicbutler_pipeline.mail.backends.base import BeforeBody, Mailer, MailError, Message, as_email


class MemoryMailer(Mailer):
    """Keeps messages in memory, in ``messages``. ``fail_for`` maps addresses to MailErrors to
    raise instead of accepting."""

    def __init__(self, fail_for: dict[str, MailError] | None = None) -> None:
        self.messages: list[EmailMessage] = []
        self.fail_for = fail_for or {}

    def send(self, message: Message, *, before_body: BeforeBody | None = None) -> None:
        # Tests look inside what was sent: keep it as an EmailMessage.
        message = as_email(message)
        for address, error in self.fail_for.items():
            if address in str(message["To"]):
                if error.outcome_unknown:
                    # Like a server that stored the message and never answered.
                    if before_body is not None:
                        before_body()
                    self.messages.append(message)
                raise error
        if before_body is not None:
            before_body()
        self.messages.append(message)
