"""The in-memory backend, the test outbox: what it keeps, and the failures it plays."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from musicbutler_pipeline.mail.backends.base import MailError, MailOutcomeUnknown
from musicbutler_pipeline.mail.backends.memory import MemoryMailer


def _message(to: str) -> EmailMessage:
    message = EmailMessage()
    message["To"] = to
    message["Message-ID"] = f"<{to}>"
    return message


def test_keeps_every_message_and_calls_before_body_first() -> None:
    calls: list[str] = []
    with MemoryMailer() as outbox:
        outbox.send(_message("ana@example.org"), before_body=lambda: calls.append("ana"))
        outbox.send(_message("zoe@example.org"))
    assert [str(m["To"]) for m in outbox.messages] == ["ana@example.org", "zoe@example.org"]
    assert calls == ["ana"]


def test_fail_for_refuses_that_address_and_an_unknown_outcome_keeps_the_copy() -> None:
    calls: list[str] = []
    outbox = MemoryMailer(
        fail_for={
            "gone@example.org": MailError("RCPT TO refused: 550", permanent=True, code=550),
            "lost@example.org": MailOutcomeUnknown("no reply to the end of DATA"),
        }
    )
    with pytest.raises(MailError, match="550") as refused:
        outbox.send(_message("gone@example.org"), before_body=lambda: calls.append("gone"))
    assert refused.value.permanent
    with pytest.raises(MailOutcomeUnknown):
        outbox.send(_message("lost@example.org"), before_body=lambda: calls.append("lost"))
    assert [str(m["To"]) for m in outbox.messages] == ["lost@example.org"]
    assert calls == ["lost"]
