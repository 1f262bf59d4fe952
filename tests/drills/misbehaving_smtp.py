"""A real SMTP server on loopback (aiosmtpd) that misbehaves on purpose, at a chosen phase.

Faults are keyed by 1-based counters over the server's life, so "the 3rd message" means the
third message the server stored, whichever connection brought it::

    server = MisbehavingServer(Faults(late_reply={1: 35.0}))   # store #1, answer 250 after 35 s
    server = MisbehavingServer(Faults(drop_after_store={3}))   # store #3, hang up, never answer
    server = MisbehavingServer(Faults(drop_at_rcpt={5}))       # hang up at the 5th RCPT
    server = MisbehavingServer(Faults(refuse_data={4}))        # 421 to the 4th DATA command
    server = MisbehavingServer(Faults(garbled_reply={2}))      # store #2, answer no code
    server = MisbehavingServer(Faults(), auth=True); server.refuse_logins()  # 535 to AUTH

``stored`` is what the server accepted the body of (a real server would deliver it), whether or
not the client ever saw the reply: that is what a recipient receives.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER = "butler"
PASSWORD = "drill-password"


@dataclass
class Faults:
    late_reply: dict[int, float] = field(default_factory=dict)
    drop_after_store: set[int] = field(default_factory=set)
    drop_at_rcpt: set[int] = field(default_factory=set)
    refuse_data: set[int] = field(default_factory=set)
    garbled_reply: set[int] = field(default_factory=set)


@dataclass
class MisbehavingHandler:
    faults: Faults
    stored: list[EmailMessage] = field(default_factory=list)
    rcpt_commands: int = 0
    data_commands: int = 0
    logins_refused: int = 0
    accept_logins: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self._lock:
            self.rcpt_commands += 1
            drop = self.rcpt_commands in self.faults.drop_at_rcpt
        if drop:
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 dropped at RCPT by the drill"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.stored.append(message)
            number = len(self.stored)
        if number in self.faults.drop_after_store:
            assert server.transport is not None
            server.transport.close()
            return "250 never seen by the client"
        if number in self.faults.garbled_reply:
            return "OK thanks"  # stored, but no reply code
        delay = self.faults.late_reply.get(number)
        if delay:
            await asyncio.sleep(delay)
        return "250 2.0.0 stored"

    def per_recipient(self) -> Counter[str]:
        with self._lock:
            messages = list(self.stored)
        return Counter(
            address.addr_spec
            for message in messages
            if str(message["Subject"]).startswith("New Music for")
            for address in message["To"].addresses
        )

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            self.accept_logins
            and isinstance(auth_data, LoginPassword)
            and auth_data.login == USER.encode()
            and auth_data.password == PASSWORD.encode()
        )
        if not ok:
            with self._lock:
                self.logins_refused += 1
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class _Server(SMTP):
    """aiosmtpd's server with one more fault: a 421 to the DATA command itself (before 354),
    which no handler hook can answer."""

    def __init__(self, handler: MisbehavingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.misbehaving = handler

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command method
        handler = self.misbehaving
        if self.envelope is not None and self.envelope.rcpt_tos:
            with handler._lock:
                handler.data_commands += 1
                refuse = handler.data_commands in handler.faults.refuse_data
            if refuse:
                await self.push("421 4.3.2 closing at DATA by the drill")
                assert self.transport is not None
                self.transport.close()
                return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            # AUTH without TLS is deliberate here: loopback only, the refused-login drill.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return _Server(self.handler, **self.SMTP_kwargs)


class MisbehavingServer:
    def __init__(self, faults: Faults, *, auth: bool = False) -> None:
        self.handler = MisbehavingHandler(faults)
        self.auth = auth
        # aiosmtpd's Controller connects to its own port to see that it is up: pick a free one.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        kwargs: dict[str, Any] = {}
        if auth:
            kwargs.update(
                authenticator=self.handler.authenticate,
                auth_required=True,
                auth_require_tls=False,  # loopback only
            )
        self.controller = _Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> MisbehavingServer:
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.controller.stop()

    def refuse_logins(self, refuse: bool = True) -> None:
        self.handler.accept_logins = not refuse

    def url(self, **options: str) -> str:
        credentials = f"{USER}:{PASSWORD}@" if self.auth else ""
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"smtp://{credentials}127.0.0.1:{self.port}" + (f"?{query}" if query else "")
