"""``file:///dir``: one ``.eml`` file per message in a folder (the local outbox)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from musicbutler_pipeline.mail.backends.base import (
    BeforeBody,
    Mailer,
    MailError,
    Message,
    OutgoingMessage,
)


class FileMailer(Mailer):
    """One ``.eml`` file per message in a folder (the local outbox)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def description(self) -> str:
        return f"outbox {self.directory}"

    def path_for(self, message: Message) -> Path:
        identifier = (
            message.message_id if isinstance(message, OutgoingMessage) else message["Message-ID"]
        )
        message_id = str(identifier or "").strip("<> ")
        if not message_id:
            raise MailError("message has no Message-ID", permanent=True)
        return self.directory / (re.sub(r"[^A-Za-z0-9._-]", "_", message_id) + ".eml")

    def send(self, message: Message, *, before_body: BeforeBody | None = None) -> None:
        target = self.path_for(message)
        self.directory.mkdir(parents=True, exist_ok=True)
        if before_body is not None:
            before_body()
        # Write then rename, so a crash never leaves half a message in the outbox.
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(
                    message.data if isinstance(message, OutgoingMessage) else message.as_bytes()
                )
            os.replace(temporary, target)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise MailError(f"cannot write {target}: {exc}", permanent=False) from exc
