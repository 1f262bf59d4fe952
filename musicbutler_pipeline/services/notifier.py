"""Sending one partition's digests: claim in the ledger, render, send, mark. No Dagster here.

Digests stream from the warehouse one batch of subscribers at a time, and the mail transport keeps
its connections for the whole day, so memory stays flat however many subscribers there are.
Subscribers the ledger already settled are left out of that stream in SQL, so a rerun of a sent
day costs one query. With ``?connections=N`` each of N threads claims, sends and marks one email
at a time on its own connection: the exactly-once rules are per email, whichever thread sends it.

Per email the ledger commits twice: the claim (carrying the sent marks of the emails accepted
since the previous claim, in the same transaction) and the phase ``body`` just before the body.
A thread renders and encodes the next few digests while the sender waits on the database or the
mail server (a bounded queue: memory stays flat).

A message whose outcome is unknown (it went out, the final reply never came) is recorded as such
and the day goes on with the next subscriber: it is never sent again automatically.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import partial

from sqlalchemy import Engine

from musicbutler_pipeline.domain.digest import render_digest
from musicbutler_pipeline.domain.feeds import feed_links
from musicbutler_pipeline.domain.models import Digest
from musicbutler_pipeline.domain.sends import Claim, ClaimOutcome, LostClaim, SendPhase, SentMark
from musicbutler_pipeline.domain.shards import Shard
from musicbutler_pipeline.locks import ExclusiveLock
from musicbutler_pipeline.mail.backends.base import (
    Mailer,
    MailError,
    MailOutcomeUnknown,
    OutgoingMessage,
)
from musicbutler_pipeline.mail.message import encode_message, message_id
from musicbutler_pipeline.mail.tokens import MailIdentity
from musicbutler_pipeline.warehouse.digests import iter_digests
from musicbutler_pipeline.warehouse.engine import busy_engine
from musicbutler_pipeline.warehouse.feeds import feed_secrets_for_day
from musicbutler_pipeline.warehouse.ledger import SendLedger

logger = logging.getLogger(__name__)

# Digests rendered and encoded ahead of the sender, per connection: enough to keep it busy while
# the renderer waits for the GIL, few enough that memory does not grow with the day.
PREPARED_AHEAD = 8


@dataclass(slots=True)
class NotifyReport:
    partition_date: date
    sent: int = 0
    already_sent: int = 0
    in_progress: int = 0
    failed: int = 0
    failed_permanently: int = 0
    failed_before: int = 0
    unknown: int = 0  # sent, final reply lost: neither sent nor failed, for an operator
    unknown_before: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    release_groups_announced: int = 0
    locked_by: str | None = None  # another process was sending this day: nothing was attempted

    @property
    def failed_temporarily(self) -> int:
        """Failures a later run of the day may fix."""
        return self.failed - self.failed_permanently


def send_digests(
    engine: Engine,
    day: date,
    *,
    mailer: Mailer,
    ledger: SendLedger,
    identity: MailIdentity,
    lock: ExclusiveLock | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    shard: Shard | None = None,
) -> NotifyReport:
    """Send ``day``'s digests (with ``shard``, only that shard's subscribers). With ``lock``
    (the day's, or the shard's, send lock), a process that finds another one sending the same
    subscribers steps aside at once; without it, the ledger alone still guarantees that nobody
    gets two emails, contenders just race subscriber by subscriber."""
    report = NotifyReport(day)
    if lock is not None and not lock.try_acquire():
        report.locked_by = lock.holder()
        logger.warning("%s is being sent by %s: this process sends nothing", day, report.locked_by)
        return report
    try:
        _send_all(
            engine,
            day,
            mailer=mailer,
            ledger=ledger,
            identity=identity,
            clock=clock,
            report=report,
            lock=lock,
            shard=shard,
        )
    finally:
        if lock is not None:
            lock.release()
    logger.info(
        "%s: %d sent, %d already sent, %d being sent elsewhere, %d failed, %d outcome unknown",
        day,
        report.sent,
        report.already_sent,
        report.in_progress,
        report.failed,
        report.unknown,
    )
    return report


def _feed_urls(base_url: str, secret: str | None) -> dict[str, str]:
    if secret is None:
        return {}
    links = feed_links(base_url, secret)
    return {"feed_atom_url": links.atom, "feed_icalendar_url": links.icalendar}


def _send_all(
    engine: Engine,
    day: date,
    *,
    mailer: Mailer,
    ledger: SendLedger,
    identity: MailIdentity,
    clock: Callable[[], datetime],
    report: NotifyReport,
    lock: ExclusiveLock | None = None,
    shard: Shard | None = None,
) -> None:
    # Subscribers the ledger already settled (sent, failed for good, outcome unknown, or claimed
    # by another sender) are counted here and left out of the digest stream in SQL, so a rerun of
    # a sent day neither renders nor claims them one by one. This is only an optimisation: a row
    # that appears after this point still goes through the atomic claim, which stays the guarantee.
    outcomes: Counter[ClaimOutcome] = ledger.settled_counts(day, shard=shard)
    workers = max(1, mailer.connections)
    digests = iter_digests(engine, day, skip_settled=True, shard=shard)
    # Every footer links the subscriber's feeds: their secrets, made in one go for the day.
    feed_secrets = feed_secrets_for_day(engine, day)
    prepare = partial(_prepare, day=day, identity=identity, feed_secrets=feed_secrets, clock=clock)
    accepted = _AcceptedEmails()
    with (
        busy_engine(engine, connections=workers) as busy,
        mailer,
        ThreadPoolExecutor(workers, thread_name_prefix="smtp") as pool,
    ):
        sending_ledger = ledger.on_engine(busy)
        deliver = partial(
            _claim_and_deliver,
            day=day,
            mailer=mailer,
            ledger=sending_ledger,
            accepted=accepted,
            report=report,
            report_lock=threading.Lock(),
        )
        # Each connection claims, sends and marks one email at a time, so a SIGKILL leaves at most
        # one claim per connection unresolved, and one accepted email per connection whose sent
        # mark was waiting for the next claim. A few digests wait ahead of each connection.
        pending: deque[Future[ClaimOutcome]] = deque()
        try:
            for prepared in _prepared_ahead(map(prepare, digests), PREPARED_AHEAD * workers):
                if lock is not None:
                    # Before each claim: a sender whose lock died stops here (LockLost). The
                    # ledger still keeps every subscriber to one email; the lock keeps senders
                    # to one.
                    lock.ensure_held()
                if workers == 1:
                    outcomes[deliver(prepared)] += 1
                    continue
                pending.append(pool.submit(deliver, prepared))
                while len(pending) >= 2 * workers:
                    outcomes[pending.popleft().result()] += 1
            while pending:
                outcomes[pending.popleft().result()] += 1
        except BaseException:
            # A bug or a lost lock: emails not yet started are never claimed; those under way
            # finish (and are recorded) before the error goes up.
            pool.shutdown(wait=True, cancel_futures=True)
            _settle_after_error(sending_ledger, accepted)
            raise
        # The last emails' sent marks had no next claim to travel with.
        sending_ledger.settle(accepted.take())
    report.already_sent = outcomes[ClaimOutcome.ALREADY_SENT]
    report.in_progress = outcomes[ClaimOutcome.IN_PROGRESS]
    report.failed_before = outcomes[ClaimOutcome.FAILED_PERMANENT]
    report.unknown_before = outcomes[ClaimOutcome.OUTCOME_UNKNOWN]


class _AcceptedEmails:
    """Emails the server accepted whose sent marks wait for the next claim's transaction (made
    on whichever connection claims next)."""

    def __init__(self) -> None:
        self._marks: list[SentMark] = []
        self._lock = threading.Lock()

    def add(self, mark: SentMark) -> None:
        with self._lock:
            self._marks.append(mark)

    def take(self) -> list[SentMark]:
        with self._lock:
            marks, self._marks = self._marks, []
        return marks

    def put_back(self, marks: list[SentMark]) -> None:
        with self._lock:
            self._marks[:0] = marks


def _settle_after_error(ledger: SendLedger, accepted: _AcceptedEmails) -> None:
    """Write the waiting sent marks while another error goes up, each on its own (one that
    cannot be written, say a claim an operator took away, does not hold back the others); say
    which rows stay claimed (``doctor`` reports them, for ``sends reconcile --mark-sent``)."""
    for mark in accepted.take():
        try:
            ledger.settle([mark])
        except Exception:
            logger.exception(
                "subscriber %d: the email was accepted but could not be marked sent; it stays "
                "claimed at phase body (`musicbutler doctor` reports it, `musicbutler sends "
                "reconcile --mark-sent` records it)",
                mark.subscriber_id,
            )


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A digest with its links, and its message ready for the wire."""

    digest: Digest
    message: OutgoingMessage


def _prepare(
    digest: Digest,
    *,
    day: date,
    identity: MailIdentity,
    feed_secrets: Mapping[int, str],
    clock: Callable[[], datetime],
) -> _Prepared:
    unsubscribe_url, unsubscribe_mailto = identity.unsubscribe_links(digest.subscriber.id)
    digest = replace(
        digest,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
        sender=identity.sender,
        preferences_url=identity.preferences_url(digest.subscriber.id),
        **_feed_urls(identity.base_url, feed_secrets.get(digest.subscriber.id)),
    )
    message = encode_message(
        render_digest(digest),
        mail_from=identity.mail_from,
        to_name=digest.subscriber.name,
        to_address=digest.subscriber.email,
        message_id=message_id(digest.subscriber.id, day, identity.mail_from),
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
        sent_at=clock(),
    )
    return _Prepared(digest, message)


_DONE = object()


def _prepared_ahead(items: Iterable[_Prepared], ahead: int) -> Iterator[_Prepared]:
    """``items``, produced by a thread of their own at most ``ahead`` in advance: rendering and
    encoding (CPU) overlap the sender's waits on the database and the mail server (I/O). An
    error while producing comes out here, where the item would have; closing this generator
    stops the producer."""
    ready: queue.Queue[object] = queue.Queue(maxsize=ahead)
    stopped = threading.Event()

    def offer(item: object) -> bool:
        """Queue ``item`` once there is room, unless the consumer has gone."""
        while not stopped.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    producer = threading.Thread(target=produce, name="render", daemon=True)
    producer.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stopped.set()
        producer.join()


def _claim_and_deliver(
    prepared: _Prepared,
    *,
    day: date,
    mailer: Mailer,
    ledger: SendLedger,
    accepted: _AcceptedEmails,
    report: NotifyReport,
    report_lock: threading.Lock,
) -> ClaimOutcome:
    """Claim, send and mark one email, on one of the mailer's connections. The claim's
    transaction also writes the sent marks of the emails accepted before it."""
    digest, message = prepared.digest, prepared.message
    settle = accepted.take()
    try:
        claim = ledger.claim(
            day,
            digest.subscriber.id,
            recipient=digest.subscriber.email,
            message_id=message.message_id,
            release_group_count=len(digest.release_group_mbids),
            settle=settle,
        )
    except LostClaim:
        # An operator took one of them away; the others were written. The day stops.
        raise
    except BaseException:
        accepted.put_back(settle)  # not written: they go with the next transaction
        raise
    if claim.outcome is not ClaimOutcome.CLAIMED:
        return claim.outcome
    try:
        mailer.send(message, before_body=partial(ledger.mark_phase, claim, SendPhase.BODY))
    except MailOutcomeUnknown as exc:
        ledger.mark_unknown(claim, str(exc), phase=exc.phase or SendPhase.BODY)
        with report_lock:
            report.unknown += 1
            report.failures.append((digest.subscriber.email, f"outcome unknown: {exc}"))
        logger.error(
            "send to subscriber %d: outcome unknown, NOT retried (`musicbutler sends "
            "reconcile --date %s --resend|--mark-sent` decides): %s",
            digest.subscriber.id,
            day,
            exc,
        )
        return claim.outcome
    except MailError as exc:
        with report_lock:
            _record_failure(
                ledger, claim, digest, report, str(exc), permanent=exc.permanent, phase=exc.phase
            )
        return claim.outcome
    except Exception as exc:
        # A bug, not a bad address: release the claim for a retry and stop the day.
        with report_lock:
            _record_failure(ledger, claim, digest, report, repr(exc), permanent=False)
        raise
    accepted.add(SentMark(claim, day, digest.subscriber.id, tuple(digest.release_group_mbids)))
    with report_lock:
        report.sent += 1
        report.release_groups_announced += len(digest.release_group_mbids)
    return claim.outcome


def _record_failure(
    ledger: SendLedger,
    claim: Claim,
    digest: Digest,
    report: NotifyReport,
    error: str,
    *,
    permanent: bool,
    phase: str | None = None,
) -> None:
    ledger.mark_failed(claim, error, permanent=permanent, phase=phase)
    report.failed += 1
    report.failed_permanently += permanent
    report.failures.append((digest.subscriber.email, error))
    logger.warning(
        "send to subscriber %d failed (%s): %s",
        digest.subscriber.id,
        "permanent" if permanent else "will retry on a re-run",
        error,
    )
