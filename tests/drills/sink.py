"""An SMTP sink on loopback (aiosmtpd) that counts what it receives and can hold a message."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class SinkHandler:
    """Accepts everything. ``hold_at`` = n keeps the n-th message's DATA unanswered until
    ``release`` is set, after recording it (a real server may deliver a message whose client
    died before reading the 250)."""

    delay_seconds: float = 0.0
    hold_at: int | None = None
    messages: list[EmailMessage] = field(default_factory=list)
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        with self._lock:
            self.messages.append(message)
            number = len(self.messages)
        if number == self.hold_at:
            self.reached.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 120)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        return "250 OK"

    def snapshot(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)

    def per_recipient(self, subject_prefix: str = "New Music for") -> Counter[str]:
        return Counter(
            address.addr_spec
            for message in self.snapshot()
            if str(message["Subject"]).startswith(subject_prefix)
            for address in message["To"].addresses
        )


class Sink:
    def __init__(self, handler: SinkHandler) -> None:
        self.handler = handler
        # aiosmtpd's Controller connects to its own port to see that it is up: pick a free one.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.controller = Controller(handler, hostname="127.0.0.1", port=port)

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.handler.release.set()
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}"
