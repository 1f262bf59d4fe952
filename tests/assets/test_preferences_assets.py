"""Preferences change who gets what: the sample day materialized with dagster.materialize, on
SQLite and PostgreSQL, with three subscribers' preferences changed."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

from dagster import DagsterInstance, materialize
from sqlalchemy import Engine, and_, select

from musicbutler_pipeline.assets import daily_assets
from musicbutler_pipeline.assets.notifications import ALLOW_OLD_SEND_TAG
from musicbutler_pipeline.checks import daily_checks
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.domain.preferences import Frequency, Preferences, parse_release_types
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    MailerResource,
    SnapshotReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.preferences import change_preferences
from musicbutler_pipeline.warehouse.schema import (
    drop_exclusions,
    library_artists,
    release_group_artists,
    release_groups,
    subscribers,
)

EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())
DIGESTS: dict[str, list[str]] = EXPECTED["digest_release_groups"]
ALBUMS_ONLY = "night.owl@example.org"
NO_APPEARANCES = "kwame.mensah@example.com"
WEEKLY_ON_FRIDAY = "mateus.conceicao@example.org"  # the sample day is a Monday


def _materialize(engine: Engine, outbox: Path):
    with DagsterInstance.ephemeral() as instance:
        return materialize(
            [*daily_assets, *daily_checks],
            partition_key=SAMPLE_DAY.isoformat(),
            instance=instance,
            tags={ALLOW_OLD_SEND_TAG: "true"},
            resources={
                "warehouse": WarehouseResource(
                    url=engine.url.render_as_string(hide_password=False)
                ),
                "release_source": SnapshotReleaseSource(),
                "mailer": MailerResource(url=outbox.as_uri(), mail_from="Butler <b@example.org>"),
                "library_source": CsvOnlyLibrarySource(),
            },
        )


def _albums(engine: Engine, mbids: list[str]) -> set[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(release_groups.c.mbid).where(
                release_groups.c.mbid.in_(mbids),
                release_groups.c.primary_type == "Album",
                release_groups.c.secondary_types == "",
            )
        )
        return set(rows.scalars())


def _credited_first(engine: Engine, email: str, mbids: list[str]) -> set[str]:
    """The release groups whose first-credited artist the subscriber follows."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(release_group_artists.c.release_group_mbid)
            .join(
                library_artists,
                library_artists.c.artist_mbid == release_group_artists.c.artist_mbid,
            )
            .join(subscribers, subscribers.c.id == library_artists.c.subscriber_id)
            .where(
                and_(
                    subscribers.c.email == email,
                    release_group_artists.c.position == 0,
                    release_group_artists.c.release_group_mbid.in_(mbids),
                )
            )
        )
        return set(rows.scalars())


def test_preferences_change_who_gets_what(engine: Engine, tmp_path: Path) -> None:
    assert import_subscribers(engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(engine, SAMPLE_DIR / "library.csv").ok
    change_preferences(engine, ALBUMS_ONLY, release_types=parse_release_types("album"))
    change_preferences(engine, NO_APPEARANCES, appearances=False)
    change_preferences(engine, WEEKLY_ON_FRIDAY, frequency=Frequency.WEEKLY, weekday="friday")

    outbox = tmp_path / "outbox"
    result = _materialize(engine, outbox)
    assert result.success
    # The weekly subscriber's drops wait for Friday: not owed today, so every check passes.
    assert all(check.passed for check in result.get_asset_check_evaluations())

    messages = [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in outbox.glob("*.eml")
    ]
    linked = {}
    for message in messages:
        body = message.get_body(("html",))
        assert body is not None
        html = body.get_content()
        recipient = message["To"].addresses[0].addr_spec
        linked[recipient] = {rg for rg in EXPECTED["pool_release_groups_on_day"] if rg in html}
    assert set(linked) == set(DIGESTS) - {WEEKLY_ON_FRIDAY}

    albums = _albums(engine, DIGESTS[ALBUMS_ONLY])
    assert albums and albums < set(DIGESTS[ALBUMS_ONLY])  # the preference made a difference
    assert linked[ALBUMS_ONLY] == albums
    credited_first = _credited_first(engine, NO_APPEARANCES, DIGESTS[NO_APPEARANCES])
    assert credited_first and credited_first < set(DIGESTS[NO_APPEARANCES])
    assert linked[NO_APPEARANCES] == credited_first
    for recipient in set(linked) - {ALBUMS_ONLY, NO_APPEARANCES}:
        assert linked[recipient] == set(DIGESTS[recipient]), recipient

    with engine.connect() as connection:
        reasons = connection.execute(
            select(
                subscribers.c.email, drop_exclusions.c.reason, drop_exclusions.c.release_group_mbid
            ).join(subscribers, subscribers.c.id == drop_exclusions.c.subscriber_id)
        ).all()
    assert {(email, reason) for email, reason, _ in reasons} == {
        (ALBUMS_ONLY, "type_filtered"),
        (NO_APPEARANCES, "appearance"),
        (WEEKLY_ON_FRIDAY, "weekly_pending"),
    }
    [event] = result.asset_materializations_for_node("user_drops")
    left_out = event.metadata["left_out"].value
    assert left_out == {reason: sum(r == reason for _, r, _ in reasons) for _, reason, _ in reasons}
    pending = {rg for email, _, rg in reasons if email == WEEKLY_ON_FRIDAY}
    assert pending == set(DIGESTS[WEEKLY_ON_FRIDAY])


def test_default_preferences_send_the_sample_day_unchanged(engine: Engine, tmp_path: Path) -> None:
    """Stored defaults are the same as no preferences at all: what was announced before."""
    assert import_subscribers(engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(engine, SAMPLE_DIR / "library.csv").ok
    for email in DIGESTS:
        change_preferences(engine, email, release_types=Preferences().release_types)
    outbox = tmp_path / "outbox"
    assert _materialize(engine, outbox).success
    assert len(list(outbox.glob("*.eml"))) == len(DIGESTS)
