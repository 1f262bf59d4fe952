"""Warehouse tables, identical on SQLite and PostgreSQL. Documented in docs/warehouse.md."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine.default import DefaultExecutionContext

from musicbutler_pipeline.domain.preferences import (
    DEFAULT_RELEASE_TYPES,
    WEEKDAYS,
    Frequency,
    ReleaseType,
)
from musicbutler_pipeline.domain.rules import email_key
from musicbutler_pipeline.domain.sends import SendPhase, SendState

# Stable constraint names so Alembic migrations can refer to them on both dialects.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

MBID = String(36)
# BIGINT on PostgreSQL, but INTEGER on SQLite so the column is an alias of the rowid.
ID = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)

# 'unknown': the message went out but the server's final reply never came; only an operator
# resolves it (`musicbutler sends reconcile`). Plain strings, so the CHECK constraint reads
# state IN ('claimed', 'sent', 'failed', 'unknown').
SEND_STATES = tuple(state.value for state in SendState)


def _email_key_of_row(context: DefaultExecutionContext) -> str:
    return email_key(context.get_current_parameters()["email"])


# A subscriber is a mailbox: `email` is the address as first given, `email_key` (see
# domain.rules.email_key) is what is unique and what every lookup by address matches on. Filled
# from `email` on every SQLAlchemy insert that does not set it.
subscribers = Table(
    "subscribers",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("email_key", String(320), nullable=False, default=_email_key_of_row),
    Column("name", Text),
    Column("listenbrainz_user", String(128)),
    Column("subscribed_at", Timestamp, nullable=False),
    Column("unsubscribed_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
    Index("uq_subscribers_email_key", "email_key", unique=True),
)

# Subscribers merged into another because their addresses differ only in case (migration
# 0006_email_key): links in emails sent before the merge carry the old id, and still work.
subscriber_merges = Table(
    "subscriber_merges",
    metadata,
    Column("merged_id", ID, primary_key=True, autoincrement=False),
    Column(
        "survivor_id",
        ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("merged_email", String(254), nullable=False),
    Column("merged_at", Timestamp, nullable=False),
)

# One row per follow with its validity, so any day's library can be reconstructed without a
# per-day copy. A follow counts on day D unless it was removed on or before D.
library_artists = Table(
    "library_artists",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column(
        "subscriber_id",
        ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("artist_mbid", MBID, nullable=False),
    Column("artist_name", Text, nullable=False),
    Column("source", String(32), nullable=False),
    Column("followed_at", Timestamp, nullable=False),
    Column("unfollowed_on", Date),
    # Follows by artist with their validity: the day's followers per artist are an index-only
    # scan (library_summary); lookups by artist use its leading column (migration 0014).
    Index("ix_library_artists_artist_validity", "artist_mbid", "unfollowed_on"),
    # At most one current follow per (subscriber, artist); ended follows stay as history.
    Index(
        "uq_library_artists_current",
        "subscriber_id",
        "artist_mbid",
        unique=True,
        sqlite_where=text("unfollowed_on IS NULL"),
        postgresql_where=text("unfollowed_on IS NULL"),
    ),
    # Ended follows by subscriber (few: history): with the index above, "who follows anything on
    # a day" is index probes instead of a scan of every follow (migration 0009).
    Index(
        "ix_library_artists_ended",
        "subscriber_id",
        "unfollowed_on",
        sqlite_where=text("unfollowed_on IS NOT NULL"),
        postgresql_where=text("unfollowed_on IS NOT NULL"),
    ),
)

release_groups = Table(
    "release_groups",
    metadata,
    Column("mbid", MBID, primary_key=True),
    Column("partition_date", Date, nullable=False),
    Column("title", Text, nullable=False),
    Column("primary_type", String(32)),
    Column("secondary_types", Text, nullable=False, server_default=""),
    Column("first_release_date", String(10), nullable=False),
    Column("release_date", Date),
    Column("artist_credit", Text, nullable=False),
    Column("source", String(64), nullable=False),
    Column("fetched_at", Timestamp, nullable=False),
    Index("ix_release_groups_partition_date", "partition_date"),
)

release_group_artists = Table(
    "release_group_artists",
    metadata,
    Column(
        "release_group_mbid",
        MBID,
        ForeignKey("release_groups.mbid", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("artist_mbid", MBID, nullable=False),
    Column("artist_name", Text, nullable=False),
    Column("join_phrase", Text, nullable=False, server_default=""),
    Index("ix_release_group_artists_artist_mbid", "artist_mbid"),
)

# The day's drops: each row is one release group owed to one subscriber for one partition, under
# the followed artist that comes first in its credit.
# Where each announced release group can be heard (domain/listen.py): one URL per service, from
# the url-rels of its MusicBrainz releases, looked up by the listen_links asset of partition_date
# for the release groups owed that day. No row: the digest shows only the MusicBrainz link.
release_group_links = Table(
    "release_group_links",
    metadata,
    # No foreign key: a rerun of artist_releases rewrites its partition's release groups, and the
    # links must outlive that (a rerun whose lookups fail keeps the links it had).
    Column("release_group_mbid", MBID, primary_key=True),
    Column("service", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("partition_date", Date, nullable=False),
    Column("fetched_at", Timestamp, nullable=False),
    Index("ix_release_group_links_partition_date", "partition_date"),
)

drops = Table(
    "drops",
    metadata,
    Column("partition_date", Date, primary_key=True),
    Column(
        "subscriber_id",
        ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("release_group_mbid", MBID, primary_key=True),
    Column("artist_mbid", MBID, nullable=False),
    Column("artist_name", Text, nullable=False),
    Index("ix_drops_subscriber_id", "subscriber_id"),
)

# The send ledger. UNIQUE(partition_date, subscriber_id) is the guarantee: whoever inserts the row
# (with their claim token) is the only process that may send that email.
sends = Table(
    "sends",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("partition_date", Date, nullable=False),
    Column(
        "subscriber_id",
        ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("state", String(16), nullable=False),
    Column("claim_token", String(64), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("code_version", String(64), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("recipient", String(254), nullable=False),
    Column("release_group_count", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("claimed_at", Timestamp, nullable=False),
    Column("sent_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
    Column("error", Text),
    Column("permanent_failure", Boolean, nullable=False, server_default=text("false")),
    # How far the SMTP transaction got (musicbutler_pipeline.domain.sends.SendPhase): 'claimed' and
    # everything up to 'data' mean the message cannot have been delivered; 'body' or 'reply' on
    # an unfinished row mean it may have been.
    Column("phase", String(16), nullable=False, server_default=SendPhase.CLAIMED.value),
    UniqueConstraint("partition_date", "subscriber_id"),
    CheckConstraint(f"state IN {SEND_STATES!r}", name="state"),
    # Health checks look for rows that are not 'sent' across all days.
    Index("ix_sends_state_partition_date", "state", "partition_date"),
)

# Every release group ever announced to a subscriber, written in the same transaction that marks
# the send as sent. The primary key is the "announced at most once, ever" rule.
announcements = Table(
    "announcements",
    metadata,
    Column(
        "subscriber_id",
        ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("release_group_mbid", MBID, primary_key=True),
    Column("partition_date", Date, nullable=False),
    Column("send_id", ID, ForeignKey("sends.id", ondelete="CASCADE"), nullable=False),
    Column("announced_at", Timestamp, nullable=False),
    # The analyst views (migration 0007) read a day's announcements.
    Index("ix_announcements_partition_date", "partition_date"),
)

# The raw pages behind each partition's release groups, so a day can be audited and re-derived:
# what the source said (gzip of the exact bytes received), its hash and how many records it had.
# Replaced per (partition, source) in the same transaction as that partition's release groups.
# The earliest partition recorded here is where the pipeline started watching: the lookback
# window never claims release groups dated before it (see releases.claim_release_groups).
source_pages = Table(
    "source_pages",
    metadata,
    Column("partition_date", Date, primary_key=True),
    Column("source", String(32), primary_key=True),
    Column("page_offset", Integer, primary_key=True),
    Column("url", Text, nullable=False),
    Column("query", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("total_count", Integer, nullable=False),
    Column("byte_count", Integer, nullable=False),
    Column("fetched_at", Timestamp, nullable=False),
    Column("body_gzip", LargeBinary, nullable=False),
)

# One row per scheduler daemon process seen evaluating our sensors: two rows whose lifetimes
# overlap mean two schedulers on one instance, which Dagster itself only logs.
scheduler_presence = Table(
    "scheduler_presence",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("daemon_pid", Integer, primary_key=True),
    Column("first_seen", Timestamp, nullable=False),
    Column("last_seen", Timestamp, nullable=False),
    Column("code_version", String(64), nullable=False),
    # When the daemon process started: tells a restarted daemon that got the same pid (pid 1 in a
    # container) from the one before it.
    Column("started_at", Timestamp),
)

# Evidence of a second scheduler other than overlapping presences, one row per (signal, subject),
# last_seen refreshed while it keeps being observed: the heartbeat row changing hands, Dagster's
# "Another … daemon" log line read by `musicbutler daemon`, two runs for one schedule tick.
scheduler_signals = Table(
    "scheduler_signals",
    metadata,
    Column("signal", String(32), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("detail", Text, nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("first_seen", Timestamp, nullable=False),
    Column("last_seen", Timestamp, nullable=False),
)

# Operator alerts, one row per (kind, period): inserting the row is the atomic "at most once an
# hour", however many processes notice the same problem.
operator_alerts = Table(
    "operator_alerts",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("period_start", Timestamp, primary_key=True),
    Column("message", Text, nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

# A subscriber's choices (domain.preferences.Preferences). No row means the defaults: every
# release type but broadcast, appearances on, daily. One boolean per release type, so user_drops
# filters with plain column tests on both dialects; each defaults to whether the type is in
# DEFAULT_RELEASE_TYPES (broadcast, added by migration 0012, to false).
RELEASE_TYPE_COLUMNS = tuple(kind.value for kind in ReleaseType)
FREQUENCIES = tuple(frequency.value for frequency in Frequency)
subscriber_preferences = Table(
    "subscriber_preferences",
    metadata,
    Column(
        "subscriber_id",
        ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    *(
        Column(
            name,
            Boolean,
            nullable=False,
            server_default=text("true" if name in DEFAULT_RELEASE_TYPES else "false"),
        )
        for name in RELEASE_TYPE_COLUMNS
    ),
    Column("appearances", Boolean, nullable=False, server_default=text("true")),
    Column("frequency", String(8), nullable=False, server_default=Frequency.DAILY.value),
    Column("weekday", String(9)),
    Column("updated_at", Timestamp, nullable=False),
    CheckConstraint(f"frequency IN {FREQUENCIES!r}", name="frequency"),
    CheckConstraint(
        f"(frequency = 'weekly' AND weekday IN {WEEKDAYS!r}) "
        "OR (frequency = 'daily' AND weekday IS NULL)",
        name="weekday",
    ),
)

# Artists a subscriber never wants to hear about. Kept apart from library_artists, so library
# re-imports and ListenBrainz syncs (which end and add follows) never touch it.
blocked_artists = Table(
    "blocked_artists",
    metadata,
    Column(
        "subscriber_id",
        ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("artist_mbid", MBID, primary_key=True),
    Column("blocked_at", Timestamp, nullable=False),
)

# Why a followed artist's release group was not a drop for a subscriber on a partition: one row
# per (subscriber, release group, followed artist) left out, replaced with that day's drops.
EXCLUSION_REASONS = (
    "type_filtered",
    "appearance",
    "blocked",
    "already_announced",
    "weekly_pending",
)
drop_exclusions = Table(
    "drop_exclusions",
    metadata,
    Column("partition_date", Date, primary_key=True),
    Column(
        "subscriber_id",
        ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("release_group_mbid", MBID, primary_key=True),
    Column("artist_mbid", MBID, primary_key=True),
    Column("reason", String(32), nullable=False),
    CheckConstraint(f"reason IN {EXCLUSION_REASONS!r}", name="reason"),
    Index("ix_drop_exclusions_subscriber_id", "subscriber_id"),
)

# Each subscriber's feed secret (migration 0010): the random part of their Atom and iCalendar
# URLs, made on first use and replaced by `musicbutler feeds EMAIL --rotate`.
feed_tokens = Table(
    "feed_tokens",
    metadata,
    Column(
        "subscriber_id",
        ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("token", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
)
