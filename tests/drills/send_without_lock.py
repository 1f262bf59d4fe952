"""One contender in the ledger-only drill: sends the day with no lock, so only the ledger stands
between four of these and duplicate emails. Waits for a start signal so all begin together."""

import sys
import time
import uuid
from datetime import date
from pathlib import Path

from musicbutler_pipeline.mail.tokens import MailIdentity
from musicbutler_pipeline.mail.url import mailer_from_url
from musicbutler_pipeline.processes import current_sender
from musicbutler_pipeline.services.notifier import send_digests
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.ledger import SendLedger


def main(warehouse_url: str, mail_url: str, day: str, gate: str) -> None:
    engine = make_engine(warehouse_url)
    ready, go = Path(gate + f".ready-{uuid.uuid4().hex}"), Path(gate + ".go")
    ready.touch()
    deadline = time.monotonic() + 120
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no start signal")
        time.sleep(0.01)
    report = send_digests(
        engine,
        date.fromisoformat(day),
        mailer=mailer_from_url(mail_url),
        ledger=SendLedger(engine, current_sender(f"contender-{uuid.uuid4().hex[:8]}")),
        identity=MailIdentity("MusicButler <butler@example.org>", "https://example.org", b"k" * 32),
        lock=None,
    )
    sys.stdout.write(
        f"sent={report.sent} in_progress={report.in_progress} already_sent={report.already_sent}\n"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
