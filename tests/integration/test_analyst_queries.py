"""Every ```sql block of docs/warehouse.md, and its pandas example, run on SQLite and PostgreSQL
against the sample day, with their results checked: the doc cannot rot.

The sample day is materialized with dagster.materialize through a real SMTP server on loopback
that refuses one recipient for good, so the failure queries have a failure to find.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from alembic import command
from dagster import DagsterInstance, materialize
from sqlalchemy import Engine, inspect, text

from musicbutler_pipeline.assets import daily_assets
from musicbutler_pipeline.assets.notifications import ALLOW_OLD_SEND_TAG
from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.resources import (
    CsvOnlyLibrarySource,
    MailerResource,
    SnapshotReleaseSource,
    WarehouseResource,
)
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.migrate import alembic_config, current_revision, upgrade

pytest_plugins = ["tests.fixtures.smtp"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "warehouse.md"
EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())
REFUSED = "zoe+music@example.org"
TOLD = "jose.muller-odegaard@example.com"
REFUSAL = "550 5.1.1 mailbox unavailable"
DAY = SAMPLE_DAY.isoformat()
DIGESTS: dict[str, list[str]] = EXPECTED["digest_release_groups"]
RELEASE_GROUPS = len(EXPECTED["exact_date_release_groups"])
FOLLOWED_RELEASE_GROUPS = len(EXPECTED["pool_release_groups_on_day"])
DROPS = sum(len(groups) for groups in DIGESTS.values())
ANNOUNCED = DROPS - len(DIGESTS[REFUSED])


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)


def doc_queries() -> dict[str, str]:
    """Each sql block by its first line, a ``-- title`` comment."""
    queries: dict[str, str] = {}
    for block in doc_blocks("sql"):
        first = block.splitlines()[0]
        assert first.startswith("-- "), f"docs/warehouse.md: sql block without a title: {first!r}"
        queries[first.removeprefix("-- ")] = block
    return queries


def plain(value: object) -> object:
    """One spelling for both databases: dates as ISO text, numbers as int, flags as 0/1."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return int(value)
    return value


Rows = list[tuple[object, ...]]


def _failures(rows: Rows) -> None:
    [(day, recipient, state, phase, failure, attempts, error)] = rows
    assert (day, recipient, state, phase, failure, attempts) == (
        DAY,
        REFUSED,
        "failed",
        "rcpt",
        "permanent",
        1,
    )
    assert "5.1.1 mailbox unavailable" in str(error)


def _owed_not_sent(rows: Rows) -> None:
    assert rows == [(DAY, REFUSED, len(DIGESTS[REFUSED]), "failed")]


def _digest_sizes(rows: Rows) -> None:
    sizes = [len(groups) for email, groups in DIGESTS.items() if email != REFUSED]
    assert rows == sorted((size, sizes.count(size)) for size in set(sizes))


def _sent_per_day(rows: Rows) -> None:
    [(day, code_version, emails)] = rows
    assert (day, emails) == (DAY, len(DIGESTS) - 1)
    assert code_version


def _one_subscribers_digest(rows: Rows) -> None:
    assert {row[3] for row in rows} == set(DIGESTS[TOLD])
    assert rows == sorted(rows, key=lambda row: (row[0], row[1], row[2]))
    assert {row[0] for row in rows} == {DAY}


def _by_type(rows: Rows) -> None:
    counts = [count for _type, count, _groups in rows]
    assert sum(counts) == ANNOUNCED
    assert counts == sorted(counts, reverse=True)
    assert {row[0] for row in rows} <= {"Album", "Single", "EP"}


NO_DROPS = [("hannah.goldberg@example.com", 7), ("oliver.bennett@example.com", 5)]

# Per query title: the exact rows, or a function that checks them.
EXPECTATIONS: dict[str, Rows | Callable[[Rows], None]] = {
    "Who was merged into whom": [],
    "The days at a glance": [
        (DAY, RELEASE_GROUPS, 38, DROPS, 37, 1, 0, FOLLOWED_RELEASE_GROUPS),
    ],
    "Drops per day": [(DAY, 38, DROPS, FOLLOWED_RELEASE_GROUPS)],
    "Most-announced artists: the followed artists digests listed releases under": [
        ("Beyoncé", 26, 13),
        ("Coldplay", 16, 8),
        ("Dua Lipa", 14, 14),
        ("Radiohead", 14, 7),
        ("Kendrick Lamar", 12, 6),
    ],
    "Send failures, newest day first, with the server's reply": _failures,
    "Subscribers with no drops in the 30 days up to 2026-11-23 (still subscribed)": NO_DROPS,
    "The same from subscriber_activity: never had a drop, or not since 2026-10-25": [
        (email, follows, None) for email, follows in NO_DROPS
    ],
    "Owed but not sent: who a day still owes, and why": _owed_not_sent,
    "The most-owed release groups of a day": [
        ("Love & <Hate>", "Beyoncé & Jay-Z", 18),
        ("Tout va bien ✨", "Dua Lipa x Stromae", 18),
        ("Gold Leaf", "Kendrick Lamar feat. SZA", 15),
        ("Silver Horses (Club Renditions)", "Beyoncé", 13),
        ("Iron Tide (Live in Helsinki)", "Metallica", 12),
    ],
    "Announcements by release type": _by_type,
    "Release groups of a day that nobody follows": [(RELEASE_GROUPS - FOLLOWED_RELEASE_GROUPS,)],
    "Most-followed artists": [
        ("Adele", 14),
        ("Dua Lipa", 14),
        ("Queen", 14),
        ("Beyoncé", 13),
        ("Massive Attack", 13),
    ],
    "Digest sizes: how many subscribers got how many release groups": _digest_sizes,
    "Emails sent per day, and by which code": _sent_per_day,
    "What one subscriber was told, in digest order": _one_subscribers_digest,
    # Nobody in the sample chose preferences; tests/integration/test_preferences_drops.py runs
    # this query where they did.
    "Why followed artists' release groups were not announced on a day": [],
}


@pytest.fixture
def sample_day(engine: Engine, smtp_server, tmp_path: Path) -> Engine:
    """The bundled sample day on each dialect, one recipient refused by the mail server."""
    assert import_subscribers(engine, SAMPLE_DIR / "subscribers.csv").ok
    assert import_library(engine, SAMPLE_DIR / "library.csv").ok
    server = smtp_server(refuse={REFUSED: [REFUSAL]})
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            daily_assets,
            partition_key=DAY,
            instance=instance,
            tags={ALLOW_OLD_SEND_TAG: "true"},  # the sample day is in the past
            resources={
                "warehouse": WarehouseResource(
                    url=engine.url.render_as_string(hide_password=False)
                ),
                "release_source": SnapshotReleaseSource(),
                "mailer": MailerResource(url=server.url(), mail_from="Butler <butler@example.org>"),
                "library_source": CsvOnlyLibrarySource(),
            },
        )
    assert result.success
    assert len(server.handler.received) == len(DIGESTS) - 1
    return engine


def test_every_documented_query_has_an_expected_result() -> None:
    assert set(doc_queries()) == set(EXPECTATIONS)


def test_documented_queries_return_the_sample_days_figures(sample_day: Engine) -> None:
    with sample_day.connect() as connection:
        for title, sql in doc_queries().items():
            rows = [tuple(plain(v) for v in row) for row in connection.execute(text(sql))]
            expected = EXPECTATIONS[title]
            if callable(expected):
                expected(rows)
            else:
                assert rows == expected, title
        announced = connection.execute(
            text("SELECT count(*) FROM announcements WHERE partition_date = :day"), {"day": DAY}
        ).scalar_one()
    assert announced == ANNOUNCED


def test_views_are_the_documented_ones_and_go_with_the_migration(sample_day: Engine) -> None:
    documented = re.findall(r"^### `(\w+)`\n", DOC.read_text().split("\n## Views\n")[1], re.M)
    views = inspect(sample_day)
    assert sorted(views.get_view_names()) == sorted(documented)
    section = DOC.read_text().split("\n## Views\n")[1].split("\n## ")[0]
    for view in documented:
        part = section.split(f"### `{view}`\n")[1].split("\n### ")[0]
        columns = [column["name"] for column in views.get_columns(view)]
        assert [c for c in columns if f"`{c}`" not in part] == [], view


def test_pandas_example_reads_the_views(
    sample_day: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    [example] = doc_blocks("python")
    monkeypatch.setenv(
        "MUSICBUTLER_WAREHOUSE_URL", sample_day.url.render_as_string(hide_password=False)
    )
    namespace: dict[str, object] = {}
    exec(compile(example, str(DOC), "exec"), namespace)  # the doc's own example, as written

    summary = namespace["summary"]
    assert isinstance(summary, pd.DataFrame)
    assert list(summary.index) == [pd.Timestamp(DAY)]
    assert summary.loc[pd.Timestamp(DAY), ["emails_sent", "emails_failed"]].tolist() == [37, 1]
    announced = namespace["announced"]
    assert isinstance(announced, pd.DataFrame)
    assert len(announced) == ANNOUNCED
    assert REFUSED not in set(announced["email"])
    per_artist = namespace["per_artist"]
    assert isinstance(per_artist, pd.Series)
    assert per_artist["Beyoncé"] == 13


def _indexes(engine: Engine, table: str) -> set[str]:
    return {str(index["name"]) for index in inspect(engine).get_indexes(table)}


def test_migration_0007_drops_views_and_index_on_downgrade_and_creates_them_again(
    engine: Engine,
) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    assert current_revision(engine) == "0006"
    assert inspect(engine).get_view_names() == []
    assert "ix_announcements_partition_date" not in _indexes(engine, "announcements")
    upgrade(engine)
    assert "ix_announcements_partition_date" in _indexes(engine, "announcements")
    assert sorted(inspect(engine).get_view_names()) == [
        "announced_releases",
        "daily_summary",
        "subscriber_activity",
    ]
    with engine.connect() as connection:  # the views read empty tables without error
        assert connection.execute(text("SELECT count(*) FROM daily_summary")).scalar_one() == 0
