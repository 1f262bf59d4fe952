"""Drill: a week of partitions with weekly and daily subscribers, the weekday sent by four
concurrent `musicbutler run` processes and then once more. Each weekly subscriber gets exactly
one digest, on their weekday, covering the week; nothing on the other days; nothing twice."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from musicbutler_pipeline.domain.models import CreditedArtist, ReleaseGroup
from musicbutler_pipeline.domain.preferences import Frequency, Preferences
from musicbutler_pipeline.mail.tokens import MailIdentity
from musicbutler_pipeline.mail.url import mailer_from_url
from musicbutler_pipeline.processes import current_sender
from musicbutler_pipeline.services.notifier import send_digests
from musicbutler_pipeline.warehouse.drops import replace_drops
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.preferences import save_preferences
from musicbutler_pipeline.warehouse.releases import replace_release_groups
from musicbutler_pipeline.warehouse.schema import announcements, library_artists, sends, subscribers
from tests.drills.environment import DAY, Drill, output
from tests.drills.sink import Sink

MONDAY = date.fromisoformat(DAY)  # the bundled sample day
WEEK = [MONDAY - timedelta(days=offset) for offset in range(6, 0, -1)]  # Tuesday .. Sunday
BEYONCE = CreditedArtist("859d0860-d480-4efd-970c-c05d5f1776b8", "Beyoncé")
WEEKLY_SUBJECT = "New Music for the week of November 17, 2026"


def _single(day: date) -> ReleaseGroup:
    return ReleaseGroup(
        mbid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"weekly-drill:{day}")),
        title=f"Single of {day:%A}",
        primary_type="Single",
        secondary_types=(),
        first_release_date=day.isoformat(),
        release_date=day,
        artists=(BEYONCE,),
    )


# Real processes for half a minute or more: in `make drills`, which CI runs after `make test`.
@pytest.mark.drills_matrix
def test_a_week_with_a_rerun_and_four_concurrent_runs_sends_one_weekly_digest(
    drill: Drill, sink: Sink
) -> None:
    engine = drill.engine
    with engine.begin() as connection:
        everyone = sorted(connection.execute(select(subscribers.c.id)).scalars())
        fans = set(
            connection.execute(
                select(library_artists.c.subscriber_id).where(
                    library_artists.c.artist_mbid == BEYONCE.mbid
                )
            ).scalars()
        )
        weekly = set(everyone[::2])
        save_preferences(
            connection,
            {sid: Preferences(frequency=Frequency.WEEKLY, weekday="monday") for sid in weekly},
        )
    assert fans & weekly and fans - weekly  # both kinds follow the artist of the week

    identity = MailIdentity("MusicButler <butler@example.org>", "https://example.org", b"k" * 32)
    for day in WEEK:  # as user_drops and drop_notifications do on each day of the week
        with engine.begin() as connection:
            replace_release_groups(
                connection, day, [_single(day)], source="drill", fetched_at=datetime.now(UTC)
            )
            replace_drops(connection, day)
        report = send_digests(
            engine,
            day,
            mailer=mailer_from_url(drill.mail_url),
            ledger=SendLedger(engine, current_sender(f"drill-{day}")),
            identity=identity,
        )
        assert report.sent == len(fans - weekly), day
    before_monday = sink.handler.per_recipient()

    processes = [drill.start("musicbutler", "run", "--date", DAY) for _ in range(4)]
    for process in processes:
        assert process.wait(timeout=300) == 0, output(process)
    rerun = drill.musicbutler("run", "--date", DAY)
    assert rerun.returncode == 0, rerun.stderr
    assert "0 email(s) sent" in rerun.stdout, rerun.stdout

    with engine.connect() as connection:
        email_of: dict[int, str] = {
            row.id: row.email
            for row in connection.execute(select(subscribers.c.id, subscribers.c.email))
        }
        ledger = connection.execute(select(sends.c.subscriber_id, sends.c.partition_date)).all()
        announced = connection.execute(
            select(announcements.c.subscriber_id, announcements.c.release_group_mbid)
        ).all()
    weekly_emails = {email_of[sid] for sid in weekly}
    # Weekly subscribers: ledger rows on Monday only, one each; the weekly ones who follow the
    # artist were told about all six singles of the week in that one email.
    assert {day for sid, day in ledger if sid in weekly} == {MONDAY}
    assert Counter(sid for sid, _day in ledger if sid in weekly) == Counter(
        {sid: 1 for sid, _day in ledger if sid in weekly}
    )
    received = sink.handler.per_recipient()
    weekly_received = {email: n for email, n in received.items() if email in weekly_emails}
    assert weekly_received and set(weekly_received.values()) == {1}
    assert not set(before_monday) & weekly_emails
    singles = {_single(day).mbid for day in WEEK}
    for message in sink.handler.snapshot():
        recipient = message["To"].addresses[0].addr_spec
        if recipient in weekly_emails:
            assert str(message["Subject"]) == WEEKLY_SUBJECT
            body = message.get_body(("html",))
            assert body is not None
            html = body.get_content()
            listed = {mbid for mbid in singles if mbid in html}
            sid = next(s for s, e in email_of.items() if e == recipient)
            assert listed == (singles if sid in fans else set()), recipient
    # Everyone: as many emails as sent ledger rows, no release group announced twice (the
    # primary key), and daily fans got the six singles one day at a time.
    assert sum(received.values()) == len(ledger)
    assert len(announced) == len(set(announced))
    for sid in fans - weekly:
        assert received[email_of[sid]] >= len(WEEK)
