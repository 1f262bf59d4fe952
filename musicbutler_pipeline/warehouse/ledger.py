"""The send ledger: who may send which day's email, and what was sent.

The guarantee is one row per (partition_date, subscriber) in ``sends``. A sender claims that row
with a single ``INSERT ... ON CONFLICT DO NOTHING`` carrying a fresh random token, and sends only
if the row holds its token afterwards. Any number of concurrent runs, schedulers or hosts can race
for the same day: the database lets exactly one insert win. Marking the row sent is an UPDATE
guarded by the token, in the same transaction that records every release group announced.

A claim whose sender died (still ``claimed``) is never taken over automatically: for a digest,
at most once is the safe default. Stale claims are reported and resolved by an operator. So is an
``unknown`` row: the whole message went out but the server's final reply never came.

``phase`` records how far the SMTP transaction got. It is written once just before the message
body goes out (the point of no return), and with the outcome; never once per SMTP command. A
claim still at ``claimed`` was certainly not delivered (resending is safe); one at ``body`` may
have been (look at the mail server's log before choosing ``--resend`` or ``--mark-sent``).
"""

from __future__ import annotations

import copy
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Row,
    RowMapping,
    Select,
    String,
    Subquery,
    TextualSelect,
    and_,
    bindparam,
    case,
    column,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql

from musicbutler_pipeline.domain.sends import (
    STALE_AFTER,
    Claim,
    ClaimOutcome,
    LostClaim,
    ReconcileAction,
    ReconcileResult,
    RetryableDay,
    Sender,
    SendPhase,
    SendRow,
    SendState,
    SentMark,
    UnsentDay,
)
from musicbutler_pipeline.domain.shards import Shard
from musicbutler_pipeline.warehouse.dialect import as_utc, upsert_insert
from musicbutler_pipeline.warehouse.schema import announcements, drops, sends, subscribers

logger = logging.getLogger(__name__)

# Whether the process that made a claim is known to be gone: (host, pid) -> bool.
# ``processes.sender_gone`` answers it for this host.
SenderGone = Callable[[str, int], bool]


# What a claim writes: a new row of the day for the subscriber, held by this sender's token.
_CLAIM_COLUMNS = [
    sends.c[name]
    for name in (
        "partition_date",
        "subscriber_id",
        "state",
        "claim_token",
        "message_id",
        "recipient",
        "release_group_count",
        "attempts",
        "claimed_at",
        "updated_at",
        "permanent_failure",
        "run_id",
        "host",
        "pid",
        "code_version",
    )
]


def _claim_insert() -> TextualSelect:
    """The claim: ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` (PostgreSQL, SQLite >= 3.35).

    Spelled as text with typed parameters, built from the table's columns, because SQLAlchemy
    never caches the dialects' ``insert().on_conflict_do_nothing()`` (``inherit_cache = False``):
    it compiled that statement afresh for every email, about 1 ms of CPU each.
    """
    columns = _CLAIM_COLUMNS
    names = ", ".join(column.name for column in columns)
    placeholders = ", ".join(f":{column.name}" for column in columns)
    return (
        text(
            f"INSERT INTO {sends.name} ({names}) VALUES ({placeholders}) "
            "ON CONFLICT (partition_date, subscriber_id) DO NOTHING RETURNING id"
        )
        .bindparams(*(bindparam(column.name, type_=column.type) for column in columns))
        .columns(sends.c.id)
    )


_CLAIM_INSERT = _claim_insert()

# PostgreSQL: the sent mark and the announcements in one statement, one round trip, atomic on its
# own (data-modifying CTEs); the count is 0 when the claim was lost, and then nothing is
# announced. Text for the reason given in ``_claim_insert``.
_MARK_SENT_PG = text(
    f"""
    WITH marked AS (
        UPDATE {sends.name}
        SET state = :sent, phase = :accepted, sent_at = :now, updated_at = :now, error = NULL
        WHERE id = :send_id AND claim_token = :token AND state = :claimed
        RETURNING id, subscriber_id, partition_date
    ), announced AS (
        INSERT INTO {announcements.name}
            (subscriber_id, release_group_mbid, partition_date, send_id, announced_at)
        SELECT marked.subscriber_id, mbid, marked.partition_date, marked.id, :now
        FROM marked CROSS JOIN unnest(CAST(:mbids AS varchar[])) AS announced_mbids(mbid)
        ON CONFLICT (subscriber_id, release_group_mbid) DO NOTHING
    )
    SELECT count(*) FROM marked
    """
).bindparams(
    bindparam("now", type_=sends.c.updated_at.type),
    bindparam("mbids", type_=postgresql.ARRAY(String)),
)


def _settle_and_claim_pg() -> TextualSelect:
    """PostgreSQL: the sent marks of accepted emails (with their announcements) and the next
    claim, in one statement: one round trip, one commit, atomic on its own (data-modifying CTEs).
    The claim is inserted only if every mark was still held. One row per mark written
    (``marked``, or one row with NULL when none was), each with ``id``, the claim's row when it
    won (NULL: the row exists, or a mark was lost)."""
    names = ", ".join(claimed.name for claimed in _CLAIM_COLUMNS)
    placeholders = ", ".join(f":{claimed.name}" for claimed in _CLAIM_COLUMNS)
    return (
        text(
            f"""
            WITH accepted(id, token) AS (
                SELECT * FROM unnest(CAST(:send_ids AS bigint[]), CAST(:tokens AS varchar[]))
            ), marked AS (
                UPDATE {sends.name}
                SET state = :sent, phase = :accepted, sent_at = :now, updated_at = :now,
                    error = NULL
                FROM accepted
                WHERE {sends.name}.id = accepted.id
                    AND {sends.name}.claim_token = accepted.token
                    AND {sends.name}.state = :claimed
                RETURNING {sends.name}.id, {sends.name}.subscriber_id, {sends.name}.partition_date
            ), announced AS (
                INSERT INTO {announcements.name}
                    (subscriber_id, release_group_mbid, partition_date, send_id, announced_at)
                SELECT marked.subscriber_id, release.mbid, marked.partition_date, marked.id, :now
                FROM marked JOIN unnest(
                    CAST(:announced_send_ids AS bigint[]), CAST(:announced_mbids AS varchar[])
                ) AS release(send_id, mbid) ON release.send_id = marked.id
                ON CONFLICT (subscriber_id, release_group_mbid) DO NOTHING
            ), won AS (
                INSERT INTO {sends.name} ({names})
                SELECT {placeholders}
                WHERE (SELECT count(*) FROM marked) = :expected
                ON CONFLICT (partition_date, subscriber_id) DO NOTHING
                RETURNING id
            )
            SELECT (SELECT id FROM won) AS id, marked.id AS marked
            FROM (SELECT 1) AS one LEFT JOIN marked ON true
            """
        )
        .bindparams(
            *(bindparam(claimed.name, type_=claimed.type) for claimed in _CLAIM_COLUMNS),
            bindparam("send_ids", type_=postgresql.ARRAY(BigInteger)),
            bindparam("tokens", type_=postgresql.ARRAY(String)),
            bindparam("announced_send_ids", type_=postgresql.ARRAY(BigInteger)),
            bindparam("announced_mbids", type_=postgresql.ARRAY(String)),
            bindparam("now", type_=sends.c.updated_at.type),
        )
        .columns(column("id", BigInteger), column("marked", BigInteger))
    )


_SETTLE_AND_CLAIM_PG = _settle_and_claim_pg()

# How far the transaction got, for a claim still held: text for the reason in ``_claim_insert``
# (an ``update()`` built per email cost more than the statement's round trip).
_MARK_PHASE = text(
    f"UPDATE {sends.name} SET phase = :phase, updated_at = :now "
    "WHERE id = :send_id AND claim_token = :token AND state = :claimed"
).bindparams(bindparam("now", type_=sends.c.updated_at.type))


class SendLedger:
    def __init__(
        self,
        engine: Engine,
        sender: Sender | None = None,
        *,
        sender_gone: SenderGone | None = None,
    ) -> None:
        """``sender`` is needed only to claim; reading the ledger needs none. ``sender_gone`` is
        needed only to find unresolved claims (``unresolved_claims``, ``reconcile``)."""
        self.engine = engine
        self._sender = sender
        self._sender_gone = sender_gone

    def on_engine(self, engine: Engine) -> SendLedger:
        """The same ledger (same sender) writing through another engine of the same database."""
        twin = copy.copy(self)
        twin.engine = engine
        return twin

    @property
    def sender(self) -> Sender:
        if self._sender is None:
            raise RuntimeError("this SendLedger was opened read-only (no Sender)")
        return self._sender

    @property
    def sender_gone(self) -> SenderGone:
        if self._sender_gone is None:
            raise RuntimeError("this SendLedger cannot tell whether a sender is gone (no probe)")
        return self._sender_gone

    def claim(
        self,
        partition_date: date,
        subscriber_id: int,
        *,
        recipient: str,
        message_id: str,
        release_group_count: int,
        settle: Sequence[SentMark] = (),
    ) -> Claim:
        """Try to become the one sender of this subscriber's email for this day. ``settle``: the
        sent marks of emails this sender already had accepted, written first in the same
        transaction (one commit for both; ``LostClaim`` if one of them is no longer held, and
        then nothing is written)."""
        token = secrets.token_hex(16)
        now = _now()
        who = {
            "run_id": self.sender.run_id,
            "host": self.sender.host,
            "pid": self.sender.pid,
            "code_version": self.sender.code_version,
        }
        key = and_(sends.c.partition_date == partition_date, sends.c.subscriber_id == subscriber_id)
        values = {
            "partition_date": partition_date,
            "subscriber_id": subscriber_id,
            "state": SendState.CLAIMED.value,
            "claim_token": token,
            "message_id": message_id,
            "recipient": recipient,
            "release_group_count": release_group_count,
            "attempts": 1,
            "claimed_at": now,
            "updated_at": now,
            "permanent_failure": False,
            **who,
        }
        postgresql = self.engine.dialect.name == "postgresql"
        with self._transaction(several_statements=bool(settle) and not postgresql) as connection:
            if settle and postgresql:
                lost, won_id = self._settle_and_claim(connection, settle, values)
            else:
                lost = [mark for mark in settle if not self._write_sent_mark(connection, mark)]
                won = None if lost else connection.execute(_CLAIM_INSERT, values).first()
                won_id = None if won is None else won.id
        if lost:
            # Only an operator's reconcile takes a claim away. The marks still held were written
            # (those emails were sent, whatever became of the lost one); no claim was made.
            raise LostClaim(
                f"sends {[mark.claim.send_id for mark in lost]} are no longer held by this sender"
            )
        if won_id is not None:
            # The usual case, a first send of the day: one statement.
            return Claim(ClaimOutcome.CLAIMED, won_id, token)
        with self.engine.begin() as connection:
            # A temporary failure (server down, 4xx) may be retried by a later run: re-claiming it
            # is again one atomic statement that only one contender can win.
            connection.execute(
                update(sends)
                .where(key, sends.c.state == SendState.FAILED, sends.c.permanent_failure.is_(False))
                .values(
                    state=SendState.CLAIMED,
                    phase=SendPhase.CLAIMED,
                    claim_token=token,
                    attempts=sends.c.attempts + 1,
                    claimed_at=now,
                    updated_at=now,
                    error=None,
                    recipient=recipient,
                    release_group_count=release_group_count,
                    **who,
                )
            )
            row = connection.execute(
                select(sends.c.id, sends.c.state, sends.c.claim_token).where(key)
            ).one()
        return _claim_of(row, token)

    def mark_phase(self, claim: Claim, phase: str) -> None:
        """Record how far the transaction got, for a claim still held (one short commit)."""
        with self.engine.begin() as connection:
            connection.execute(
                _MARK_PHASE,
                {
                    "phase": SendPhase(phase).value,
                    "now": _now(),
                    "send_id": claim.send_id,
                    "token": claim.token,
                    "claimed": SendState.CLAIMED.value,
                },
            )

    def mark_sent(
        self,
        claim: Claim,
        partition_date: date,
        subscriber_id: int,
        release_group_mbids: Iterable[str],
    ) -> None:
        """Record the send and every release group it announced, atomically."""
        mark = SentMark(claim, partition_date, subscriber_id, tuple(release_group_mbids))
        self.settle([mark])

    @staticmethod
    def _settle_and_claim(
        connection: Connection, settle: Sequence[SentMark], values: dict[str, Any]
    ) -> tuple[list[SentMark], int | None]:
        """``_SETTLE_AND_CLAIM_PG``: the marks no longer held (none: the claim was attempted),
        and the id of the claim won (None: the row exists, or a mark was lost)."""
        announced = [
            (mark.claim.send_id, mbid) for mark in settle for mbid in mark.release_group_mbids
        ]
        rows = connection.execute(
            _SETTLE_AND_CLAIM_PG,
            {
                **values,
                "send_ids": [mark.claim.send_id for mark in settle],
                "tokens": [mark.claim.token for mark in settle],
                "announced_send_ids": [send_id for send_id, _ in announced],
                "announced_mbids": [mbid for _, mbid in announced],
                "expected": len(settle),
                "sent": SendState.SENT.value,
                "claimed": SendState.CLAIMED.value,
                "accepted": SendPhase.ACCEPTED.value,
                "now": values["updated_at"],
            },
        ).all()
        marked = {row.marked for row in rows if row.marked is not None}
        return [mark for mark in settle if mark.claim.send_id not in marked], rows[0].id

    def settle(self, marks: Sequence[SentMark]) -> None:
        """Write the sent marks of accepted emails (``SentMark``), in one transaction;
        ``LostClaim`` after it if one of them was no longer held (the others are written)."""
        if not marks:
            return
        with self._transaction(several_statements=len(marks) > 1) as connection:
            lost = [mark for mark in marks if not self._write_sent_mark(connection, mark)]
        if lost:
            # Only an operator's reconcile can take a claim away; never overwrite it silently.
            raise LostClaim(
                f"sends {[mark.claim.send_id for mark in lost]} are no longer held by this sender"
            )

    @contextmanager
    def _transaction(self, *, several_statements: bool) -> Iterator[Connection]:
        """One transaction, one commit. The sender's engine (``busy_engine``) is in autocommit,
        where each statement commits on its own: right for one statement, so several get a
        transaction of their own (READ COMMITTED, PostgreSQL's default)."""
        with self.engine.connect() as connection:
            if several_statements and connection.dialect.name != "sqlite":
                connection.execution_options(isolation_level="READ COMMITTED")
            with connection.begin():
                yield connection

    @staticmethod
    def _write_sent_mark(connection: Connection, mark: SentMark) -> bool:
        """Whether the claim was still held (and the mark written)."""
        claim, now, mbids = mark.claim, _now(), list(mark.release_group_mbids)
        if connection.dialect.name == "postgresql":
            # One statement, one round trip: the UPDATE and the INSERT as data-modifying CTEs
            # (atomic without a transaction around them).
            held = connection.execute(
                _MARK_SENT_PG,
                {
                    "send_id": claim.send_id,
                    "token": claim.token,
                    "sent": SendState.SENT.value,
                    "claimed": SendState.CLAIMED.value,
                    "accepted": SendPhase.ACCEPTED.value,
                    "now": now,
                    "mbids": mbids,
                },
            ).scalar_one()
        else:
            held = connection.execute(
                update(sends)
                .where(
                    sends.c.id == claim.send_id,
                    sends.c.claim_token == claim.token,
                    sends.c.state == SendState.CLAIMED,
                )
                .values(
                    state=SendState.SENT,
                    phase=SendPhase.ACCEPTED,
                    sent_at=now,
                    updated_at=now,
                    error=None,
                )
            ).rowcount
            if held == 1 and mbids:
                connection.execute(
                    upsert_insert(connection, announcements).on_conflict_do_nothing(
                        index_elements=["subscriber_id", "release_group_mbid"]
                    ),
                    [
                        {
                            "subscriber_id": mark.subscriber_id,
                            "release_group_mbid": mbid,
                            "partition_date": mark.partition_date,
                            "send_id": claim.send_id,
                            "announced_at": now,
                        }
                        for mbid in mbids
                    ],
                )
        return held == 1

    def mark_failed(
        self, claim: Claim, error: str, *, permanent: bool, phase: str | None = None
    ) -> None:
        self._finish(claim, SendState.FAILED, error, permanent=permanent, phase=phase)

    def mark_unknown(self, claim: Claim, error: str, *, phase: str) -> None:
        """The message went out but no final reply came: neither sent nor failed, and never
        claimable again by a run; ``reconcile`` resolves it."""
        self._finish(claim, SendState.UNKNOWN, error, permanent=False, phase=phase)

    def _finish(
        self, claim: Claim, state: SendState, error: str, *, permanent: bool, phase: str | None
    ) -> None:
        values: dict[str, object] = {
            "state": state,
            "error": error[:2000],
            "permanent_failure": permanent,
            "updated_at": _now(),
        }
        if phase is not None:
            values["phase"] = phase
        with self.engine.begin() as connection:
            connection.execute(
                update(sends)
                .where(
                    sends.c.id == claim.send_id,
                    sends.c.claim_token == claim.token,
                    sends.c.state == SendState.CLAIMED,
                )
                .values(**values)
            )

    def settled_counts(
        self, partition_date: date, *, shard: Shard | None = None
    ) -> Counter[ClaimOutcome]:
        """How the day's rows of subscribed subscribers that no run may claim again would answer
        a claim, counted (one grouped query): what ``iter_digests(skip_settled=True)`` skips;
        with ``shard``, among its subscribers only."""
        in_shard = (
            (sends.c.subscriber_id % shard.count == shard.index,)
            if shard is not None and not shard.is_whole_day
            else ()
        )
        outcome = case(
            (sends.c.state == SendState.SENT, literal(ClaimOutcome.ALREADY_SENT.value)),
            (sends.c.state == SendState.UNKNOWN, literal(ClaimOutcome.OUTCOME_UNKNOWN.value)),
            (sends.c.state == SendState.FAILED, literal(ClaimOutcome.FAILED_PERMANENT.value)),
            else_=literal(ClaimOutcome.IN_PROGRESS.value),
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(outcome, func.count())
                .select_from(sends.join(subscribers, subscribers.c.id == sends.c.subscriber_id))
                .where(
                    sends.c.partition_date == partition_date,
                    subscribers.c.unsubscribed_at.is_(None),
                    ~and_(sends.c.state == SendState.FAILED, sends.c.permanent_failure.is_(False)),
                    *in_shard,
                )
                .group_by(outcome)
            ).all()
        return Counter({ClaimOutcome(name): count for name, count in rows})

    def day(self, partition_date: date) -> list[SendRow]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*(sends.c[name] for name in SendRow.__slots__))
                .where(sends.c.partition_date == partition_date)
                .order_by(sends.c.subscriber_id)
            ).all()
        return [_send_row(row._mapping) for row in rows]

    def state_counts(self, partition_date: date) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(sends.c.state, func.count())
                .where(sends.c.partition_date == partition_date)
                .group_by(sends.c.state)
            ).all()
        return {state: count for state, count in rows}

    def senders(self, partition_date: date) -> list[tuple[str, str, str, int]]:
        """(host, code version, run id, emails sent) for everyone who sent that day."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(sends.c.host, sends.c.code_version, sends.c.run_id, func.count())
                .where(sends.c.partition_date == partition_date, sends.c.state == SendState.SENT)
                .group_by(sends.c.host, sends.c.code_version, sends.c.run_id)
                .order_by(func.count().desc())
            ).all()
        return [(host, version, run_id, count) for host, version, run_id, count in rows]

    def unresolved_claims(
        self, older_than: timedelta, now: datetime | None = None
    ) -> list[tuple[SendRow, str]]:
        """Claims whose sender is gone, with the reason: older than ``older_than``, or (at once)
        claimed by a process that ``sender_gone`` knows no longer exists."""
        cutoff = (now or _now()) - older_than
        sender_gone = self.sender_gone
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*(sends.c[name] for name in SendRow.__slots__))
                .where(sends.c.state == SendState.CLAIMED)
                .order_by(sends.c.partition_date, sends.c.subscriber_id)
            ).all()
        found = []
        for row in (_send_row(row._mapping) for row in rows):
            if sender_gone(row.host, row.pid):
                found.append((row, f"sender pid {row.pid} on {row.host} is gone"))
            elif as_utc(row.claimed_at) < cutoff:
                found.append((row, f"claimed {row.claimed_at:%Y-%m-%d %H:%M} UTC, never finished"))
        return found

    def reconcile(
        self,
        partition_date: date,
        action: ReconcileAction,
        *,
        subscriber_ids: Iterable[int] | None = None,
        include_live: bool = False,
        operator: str = "operator",
    ) -> ReconcileResult:
        """Resolve the day's claims whose sender died (see ``unresolved_claims``) and its rows
        whose outcome is unknown (the message went out, the final reply never came).

        ``RESEND`` makes them claimable again: the next run of the day sends them with the same
        Message-ID, so a copy that did get through can be deduplicated downstream.
        ``MARK_SENT`` records them as sent and announces their drops, for when the message is
        known to have been delivered (the mail server's log shows it).
        Claims whose sender may still be alive are left alone unless ``include_live``.
        """
        wanted = None if subscriber_ids is None else set(subscriber_ids)
        unresolved = {
            row.subscriber_id
            for row, _why in self.unresolved_claims(STALE_AFTER)
            if row.partition_date == partition_date
        }
        day_rows = [
            row for row in self.day(partition_date) if wanted is None or row.subscriber_id in wanted
        ]
        claimed = [row for row in day_rows if row.state == SendState.CLAIMED]
        live = [row for row in claimed if row.subscriber_id not in unresolved]
        targets = [row.subscriber_id for row in claimed if include_live or row not in live]
        # An unknown outcome has no sender left to wait for: always the operator's to decide.
        targets += [row.subscriber_id for row in day_rows if row.state == SendState.UNKNOWN]
        if not targets:
            return ReconcileResult(0, [] if include_live else live)
        now = _now()
        chosen = and_(
            sends.c.partition_date == partition_date,
            sends.c.subscriber_id.in_(targets),
            sends.c.state.in_((SendState.CLAIMED, SendState.UNKNOWN)),
        )
        why = case(
            (sends.c.state == SendState.UNKNOWN, literal("outcome unknown")),
            else_=literal("sender died"),
        )
        with self.engine.begin() as connection:
            if action is ReconcileAction.RESEND:
                result = connection.execute(
                    update(sends)
                    .where(chosen)
                    .values(
                        state=SendState.FAILED,
                        permanent_failure=False,
                        updated_at=now,
                        error=why + literal(f"; released for resend by {operator}"),
                    )
                )
                return ReconcileResult(result.rowcount, [] if include_live else live)
            result = connection.execute(
                update(sends)
                .where(chosen)
                .values(
                    state=SendState.SENT,
                    sent_at=now,
                    updated_at=now,
                    error=why + literal(f"; marked sent by {operator}"),
                )
            )
            announced = (
                select(
                    drops.c.subscriber_id,
                    drops.c.release_group_mbid,
                    drops.c.partition_date,
                    sends.c.id,
                    literal(now, type_=announcements.c.announced_at.type),
                )
                .select_from(
                    drops.join(
                        sends,
                        and_(
                            sends.c.subscriber_id == drops.c.subscriber_id,
                            sends.c.partition_date == drops.c.partition_date,
                        ),
                    )
                )
                .where(drops.c.partition_date == partition_date, drops.c.subscriber_id.in_(targets))
            )
            connection.execute(
                upsert_insert(connection, announcements)
                .from_select(
                    [
                        "subscriber_id",
                        "release_group_mbid",
                        "partition_date",
                        "send_id",
                        "announced_at",
                    ],
                    announced,
                )
                .on_conflict_do_nothing(index_elements=["subscriber_id", "release_group_mbid"])
            )
            return ReconcileResult(result.rowcount, [] if include_live else live)

    def unknown_outcomes(self, since: date) -> list[SendRow]:
        """Rows from ``since`` on whose message went out without a final reply."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*(sends.c[name] for name in SendRow.__slots__))
                .where(sends.c.state == SendState.UNKNOWN, sends.c.partition_date >= since)
                .order_by(sends.c.partition_date, sends.c.subscriber_id)
            ).all()
        return [_send_row(row._mapping) for row in rows]

    def unsent_days(self, since: date, until: date | None = None) -> list[UnsentDay]:
        """Days from ``since`` (to ``until``) with subscribed subscribers owed an email (they have
        drops) that is not marked sent, counted by why. One grouped query."""

        def count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        owed, unsent = _owed_not_sent(since, until)
        day = owed.c.partition_date
        with self.engine.connect() as connection:
            rows = connection.execute(
                unsent.add_columns(
                    day,
                    count_where(
                        and_(
                            sends.c.state == SendState.FAILED, sends.c.permanent_failure.is_(False)
                        )
                    ),
                    count_where(sends.c.state == SendState.UNKNOWN),
                    count_where(
                        and_(sends.c.state == SendState.FAILED, sends.c.permanent_failure.is_(True))
                    ),
                    count_where(sends.c.state == SendState.CLAIMED),
                    count_where(sends.c.id.is_(None)),
                )
                .group_by(day)
                .order_by(day)
            ).all()
        return [
            UnsentDay(day, int(retryable), int(unknown), int(rejected), int(claimed), int(never))
            for day, retryable, unknown, rejected, claimed, never in rows
        ]

    def unsent_emails(
        self, since: date, until: date | None = None
    ) -> list[tuple[date, str, str, str]]:
        """(day, recipient, state, error) for each email ``unsent_days`` counts. State is the
        ledger's, 'rejected' for a permanent failure, or 'no send'."""
        owed, unsent = _owed_not_sent(since, until)
        with self.engine.connect() as connection:
            rows = connection.execute(
                unsent.add_columns(
                    owed.c.partition_date,
                    subscribers.c.email,
                    case((sends.c.permanent_failure, literal("rejected")), else_=sends.c.state),
                    sends.c.error,
                ).order_by(owed.c.partition_date, subscribers.c.email)
            ).all()
        return [(day, email, state or "no send", error or "") for day, email, state, error in rows]

    def retryable_failures(self, since: date, until: date) -> list[RetryableDay]:
        """Days in [since, until] with temporary failures: how many, the most attempts any of
        them had, and when the latest one failed (the retry sensor's backoff clock)."""
        retryable = and_(
            sends.c.state == SendState.FAILED,
            sends.c.permanent_failure.is_(False),
            sends.c.partition_date >= since,
            sends.c.partition_date <= until,
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    sends.c.partition_date,
                    func.count(),
                    func.max(sends.c.attempts),
                    func.max(sends.c.updated_at),
                )
                .where(retryable)
                .group_by(sends.c.partition_date)
                .order_by(sends.c.partition_date)
            ).all()
        return [
            RetryableDay(day, int(count), int(attempts), as_utc(last))
            for day, count, attempts, last in rows
        ]

    def duplicate_sends(self) -> list[tuple[date, int, int]]:
        """(day, subscriber, rows) where a subscriber has more than one send row for a day. The
        unique constraint forbids it: a non-empty answer means the schema was tampered with."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(sends.c.partition_date, sends.c.subscriber_id, func.count())
                .group_by(sends.c.partition_date, sends.c.subscriber_id)
                .having(func.count() > 1)
            ).all()
        return [(day, subscriber, count) for day, subscriber, count in rows]


def _claim_of(row: Row[Any], token: str) -> Claim:
    """What a send row, read back after a claim attempt with ``token``, means for the sender."""
    if row.claim_token == token:
        return Claim(ClaimOutcome.CLAIMED, row.id, token)
    if row.state == SendState.SENT:
        return Claim(ClaimOutcome.ALREADY_SENT, row.id)
    if row.state == SendState.FAILED:
        return Claim(ClaimOutcome.FAILED_PERMANENT, row.id)
    if row.state == SendState.UNKNOWN:
        return Claim(ClaimOutcome.OUTCOME_UNKNOWN, row.id)
    return Claim(ClaimOutcome.IN_PROGRESS, row.id)


def _send_row(columns: RowMapping) -> SendRow:
    return SendRow(
        **{
            **columns,
            "state": SendState(columns["state"]),
            "phase": SendPhase(columns["phase"]),
        }
    )


def _owed_not_sent(since: date, until: date | None) -> tuple[Subquery, Select[tuple[()]]]:
    """The (day, subscriber) pairs owed an email (the subscriber has drops that day) from
    ``since`` (to ``until``), and a select without columns (add them) over those of subscribed
    subscribers, each outer-joined to its send row, that are not marked sent."""
    window = [drops.c.partition_date >= since]
    if until is not None:
        window.append(drops.c.partition_date <= until)
    owed = (
        select(drops.c.partition_date, drops.c.subscriber_id)
        .where(*window)
        .group_by(drops.c.partition_date, drops.c.subscriber_id)
        .subquery("owed")
    )
    unsent = (
        select()
        .select_from(
            owed.join(subscribers, subscribers.c.id == owed.c.subscriber_id).outerjoin(
                sends,
                and_(
                    sends.c.subscriber_id == owed.c.subscriber_id,
                    sends.c.partition_date == owed.c.partition_date,
                ),
            )
        )
        .where(
            subscribers.c.unsubscribed_at.is_(None),
            or_(sends.c.id.is_(None), sends.c.state != SendState.SENT),
        )
    )
    return owed, unsent


def _now() -> datetime:
    return datetime.now(UTC)
