"""``console://``: each message written to a stream (standard output by default)."""

from __future__ import annotations

import sys
from typing import TextIO

from musicbutler_pipeline.mail.backends.base import BeforeBody, Mailer, Message, as_email


class ConsoleMailer(Mailer):
    """Writes each message to a stream (standard output by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    @property
    def description(self) -> str:
        return "console"

    def send(self, message: Message, *, before_body: BeforeBody | None = None) -> None:
        if before_body is not None:
            before_body()
        stream = self.stream or sys.stdout
        stream.write(as_email(message).as_string())
        stream.write("\n" + "-" * 79 + "\n")
        stream.flush()
