"""Telling the operator: owed email that did not go out (at most once an hour per kind), a failed
run (once per run), a day not all sent by its deadline (once per day), and a second scheduler.

Two kinds for unsent email, so a day of temporary failures (which the retry sensor works on) never
hides the one message whose outcome is unknown (which only an operator can resolve).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import Engine

from musicbutler_pipeline.domain.schedulers import ALERT_PERIOD
from musicbutler_pipeline.domain.sends import UnsentDay
from musicbutler_pipeline.mail.backends.base import Mailer, MailError
from musicbutler_pipeline.warehouse.monitoring import claim_alert

logger = logging.getLogger(__name__)

UNKNOWN_OUTCOME = "unknown_outcome"
UNSENT_DAY = "unsent_day"
RUN_FAILED = "run_failed"
SEND_DEADLINE = "send_deadline"
DAY_NOT_RUN = "day_not_run"
SUBJECTS = {
    UNKNOWN_OUTCOME: "email outcome unknown, decide with sends reconcile",
    UNSENT_DAY: "owed emails not sent",
    RUN_FAILED: "the daily run failed",
    SEND_DEADLINE: "owed emails not all sent by the deadline",
    DAY_NOT_RUN: "the day was never sent by the deadline",
}
# Claims keyed per run or per day are never repeated: one period longer than any retention.
ONCE = timedelta(days=3660)


def unknown_outcome_text(day: date, count: int) -> str:
    return (
        f"{day}: {count} email(s) went out but the mail server's final reply never came, so "
        "nobody knows whether they were delivered. They are NOT retried. Look for their "
        "Message-ID in the mail server's log (`musicbutler sends --date "
        f"{day}` lists them), then run `musicbutler sends reconcile --date {day} --mark-sent` "
        "(delivered) or `--resend` (not delivered)."
    )


def unsent_day_text(day: date, failed: int, max_send_age_days: int) -> str:
    return (
        f"{day}: {failed} owed email(s) failed temporarily (mail server down, refusing our login, "
        "4xx). `retry_failed_sends_sensor` retries the day with backoff for up to "
        f"{max_send_age_days} day(s) after it; `musicbutler sends --date {day}` shows the errors "
        f"and `musicbutler run --date {day}` retries now."
    )


def run_failed_text(partition: str, job_name: str, run_id: str, failures: list[str]) -> str:
    why = "; ".join(failures) or "no step failed (the run itself did: see its logs)"
    return (
        f"{partition}: {job_name} run {run_id} failed: {why}. Its logs are in the Dagster UI "
        f"(Runs); `musicbutler sends --date {partition}` shows what was sent."
    )


def missed_deadline_text(day: UnsentDay, deadline: datetime) -> str:
    return (
        f"{day.partition_date}: by {deadline:%Y-%m-%d %H:%M} UTC (MUSICBUTLER_SEND_DEADLINE_HOURS "
        f"after the day) {day.needs_attention} owed email(s) were still not sent: "
        f"{day.describe()}. `musicbutler sends --date {day.partition_date}` lists them."
    )


def day_not_run_text(day: date, deadline: datetime) -> str:
    return (
        f"{day}: by {deadline:%Y-%m-%d %H:%M} UTC (MUSICBUTLER_SEND_DEADLINE_HOURS after the day) "
        "no run had sent the day: drop_notifications has no materialization for it, so nobody "
        "owed an email that day got one. Is the scheduler running and the day's run failing? "
        f"`musicbutler doctor` tells; `musicbutler run --date {day}` sends it."
    )


def alert_operator(
    engine: Engine,
    kind: str,
    text: str,
    *,
    operator_email: str | None,
    mail_from: str,
    mailer: Mailer,
    now: datetime,
    claim: str | None = None,
    period: timedelta = ALERT_PERIOD,
) -> bool:
    """Log ``text`` at ERROR and e-mail it to the operator if nobody did for ``claim`` (by
    default ``kind``) within ``period``, on any host. Returns whether an e-mail went out. A mail
    server that is the problem cannot carry the news: that failure is logged, never raised."""
    logger.error("%s", text)
    if not claim_alert(engine, claim or kind, text, now=now, period=period):
        return False
    if not operator_email:
        logger.warning("MUSICBUTLER_OPERATOR_EMAIL is not set: the operator gets no e-mail")
        return False
    day = text.split(":", 1)[0]
    message = alert_email(
        mail_from=mail_from,
        to=operator_email,
        subject=f"{day}: {SUBJECTS.get(kind, kind)}",
        body=text + "\n\n`musicbutler doctor` shows the current state.\n",
        now=now,
    )
    try:
        with mailer:
            mailer.send(message)
    except MailError as exc:
        logger.error("could not e-mail the operator about %s: %s", kind, exc)
        return False
    return True


def alert_email(*, mail_from: str, to: str, subject: str, body: str, now: datetime) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[MusicButler] {subject}"
    message["From"] = mail_from
    message["To"] = to
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=mail_from.rpartition("@")[2].strip("> ") or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


def duplicate_scheduler_email(
    problem: str, *, mail_from: str, to: str, now: datetime
) -> EmailMessage:
    """The operator's e-mail about a second scheduler daemon (``problem`` says what was seen)."""
    return alert_email(
        mail_from=mail_from,
        to=to,
        subject="two schedulers are running",
        body=(
            f"{problem}\n\nEvery schedule tick is launched once per scheduler. The send ledger "
            "keeps subscribers from getting two emails, but stop the extra daemon: only "
            "`musicbutler daemon` (which takes the instance lock) should run the scheduler.\n"
            "`musicbutler doctor` shows the current state.\n"
        ),
        now=now,
    )
