"""Turning a rendered digest into an RFC 5322 message with the headers mail clients expect."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

from musicbutler_pipeline.domain.digest import RenderedDigest


def message_id(subscriber_id: int, partition_date: date, mail_from: str) -> str:
    """The same (subscriber, day) always yields the same Message-ID, so that a resend after a
    crash can be recognised and deduplicated downstream."""
    digest = hashlib.sha256(f"{subscriber_id}:{partition_date.isoformat()}".encode()).hexdigest()
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<digest.{partition_date:%Y%m%d}.{digest[:24]}@{domain}>"


def build_message(
    rendered: RenderedDigest,
    *,
    mail_from: str,
    to_name: str | None,
    to_address: str,
    message_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    sent_at: datetime,
) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["Subject"] = rendered.subject
    message["From"] = mail_from
    local, _, domain = to_address.rpartition("@")
    message["To"] = Address(display_name=to_name or "", username=local, domain=domain)
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    # RFC 2369 and RFC 8058: one-click unsubscribe for mail clients that offer it.
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>, <{unsubscribe_mailto}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return message
