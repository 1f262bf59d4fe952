"""The `musicbutler` command. Thin: parses arguments, calls the domain or runs the job."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from musicbutler_pipeline import __version__
from musicbutler_pipeline.domain.rules import InvalidInput, normalize_email, parse_partition_date
from musicbutler_pipeline.settings import Settings, SettingsError, display_url

if TYPE_CHECKING:
    from musicbutler_pipeline.runner import RunSummary
    from musicbutler_pipeline.warehouse.imports import ImportReport

logger = logging.getLogger("musicbutler")

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """Ends a command with one line on stderr and the given exit code."""

    def __init__(self, message: str, code: int = EXIT_PROBLEM) -> None:
        super().__init__(message)
        self.code = code


def _engine(settings: Settings, *, require_schema: bool = True) -> Engine:
    from musicbutler_pipeline.warehouse.engine import make_engine
    from musicbutler_pipeline.warehouse.migrate import is_current

    settings.ensure_home()
    engine = make_engine(settings.warehouse_url)
    if require_schema and not is_current(engine):
        raise CommandError("the warehouse schema is missing or old: run `musicbutler db upgrade`")
    return engine


def _day(value: str) -> date:
    from musicbutler_pipeline.partitions import latest_partition_day

    try:
        return parse_partition_date(value, latest=latest_partition_day())
    except InvalidInput as exc:
        raise CommandError(f"--date: {exc}", EXIT_USAGE) from None


def cmd_db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    from musicbutler_pipeline.warehouse.migrate import current_revision, upgrade

    engine = _engine(settings, require_schema=False)
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    where = display_url(settings.warehouse_url)
    print(f"warehouse {where}: schema at {after}" + ("" if before != after else " (unchanged)"))
    return EXIT_OK


def _report_import(report: ImportReport, what: str) -> int:
    for error in report.errors:
        print(f"{report.path}: {error}", file=sys.stderr)
    for note in report.notes:
        print(f"{report.path}: line {note.line}: note: {note.message}", file=sys.stderr)
    merged = f", {report.merged} merged into an earlier row" if report.merged else ""
    print(
        f"{report.path}: {report.rows} rows: {report.inserted} {what} added, "
        f"{report.updated} updated, {report.unchanged} unchanged{merged}, "
        f"{len(report.errors)} bad"
    )
    return EXIT_OK if report.ok else EXIT_PROBLEM


def cmd_subscribers_import(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.warehouse.imports import CsvFormatError, import_subscribers

    try:
        return _report_import(import_subscribers(_engine(settings), Path(args.file)), "subscribers")
    except CsvFormatError as exc:
        raise CommandError(str(exc)) from None


def cmd_library_import(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.warehouse.imports import CsvFormatError, import_library

    try:
        return _report_import(import_library(_engine(settings), Path(args.file)), "follows")
    except CsvFormatError as exc:
        raise CommandError(str(exc)) from None


def cmd_unsubscribe(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.warehouse.subscribers import unsubscribe_address

    try:
        email = normalize_email(args.email)
    except InvalidInput as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    outcome = unsubscribe_address(_engine(settings), email)
    if outcome is None:
        raise CommandError(f"no subscriber {email}")
    subscriber, changed = outcome
    print(f"{subscriber.email}: unsubscribed" + ("" if changed else " already"))
    return EXIT_OK


def _print_run(summary: RunSummary, settings: Settings) -> int:
    if not summary.success:
        print(f"{summary.day}: run {summary.run_id} failed: {summary.error}", file=sys.stderr)
        return EXIT_PROBLEM
    if summary.locked_by:
        print(
            f"{summary.day} is being sent right now by {summary.locked_by}: "
            "this process sent nothing."
        )
        return EXIT_OK
    n = summary.notifications
    sent, already = n.get("sent", 0), n.get("skipped_already_sent", 0)
    print(
        f"{summary.day}: {sent} email(s) sent, {already} already sent earlier, "
        f"{n.get('skipped_in_progress_elsewhere', 0)} being sent by another process, "
        f"{summary.stale_claims} stale claim(s), "
        f"{n.get('failed', 0)} failed, {summary.unknown} outcome unknown "
        f"(via {n.get('transport', '?')})"
    )
    if sent == 0 and already and summary.all_sent:
        print(f"{summary.day} had already been sent: nothing was sent twice.")
    _print_unsent(summary)
    print(f"Dagster run {summary.run_id} on the instance in {settings.dagster_home}")
    return EXIT_OK if summary.all_sent else EXIT_PROBLEM


def _print_unsent(summary: RunSummary) -> None:
    """What the operator must do about the day's email that did not go out."""
    n, day = summary.notifications, summary.day
    if summary.stale_claims:
        print(
            f"{summary.stale_claims} claim(s) belong to a sender that is gone (stale, nobody is "
            f"sending them): `musicbutler sends --date {day}` shows the phase each reached; "
            f"resolve with `musicbutler sends reconcile --date {day} --resend|--mark-sent`."
        )
    unknown = int(n.get("owed_not_sent_unknown", 0))
    if unknown:
        print(
            f"NOT SENT: {unknown} email(s) with an unknown outcome (the message went out, the "
            "server's final reply never came). Never retried automatically: check the mail "
            f"server's log, then `musicbutler sends reconcile --date {day} --mark-sent` or "
            "`--resend`.",
            file=sys.stderr,
        )
    retryable = int(n.get("owed_not_sent_retryable", 0))
    if retryable:
        from musicbutler_pipeline.sensors import retry_failed_sends_sensor

        print(
            f"NOT SENT: {retryable} email(s) failed temporarily; retried automatically by "
            f"`{retry_failed_sends_sensor.name}`, or now with `musicbutler run --date {day}`.",
            file=sys.stderr,
        )
    permanent = int(n.get("failed_permanently", 0))
    if permanent:
        print(
            f"NOT SENT: {permanent} email(s) rejected permanently by the server (see "
            f"`musicbutler sends --date {day}`); never retried.",
            file=sys.stderr,
        )


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.definitions import defs
    from musicbutler_pipeline.domain.sends import stale_send_refusal
    from musicbutler_pipeline.locks import send_lock
    from musicbutler_pipeline.partitions import latest_partition_day
    from musicbutler_pipeline.runner import dagster_instance, run_day

    day = _day(args.date)
    _engine(settings).dispose()  # refuse early, with one line, when the schema is missing
    # Refused before any run starts; the asset refuses the same way a run launched elsewhere.
    refusal = stale_send_refusal(day, latest_partition_day(), settings.max_send_age_days)
    if refusal and not args.allow_old:
        raise CommandError(f"--date: {refusal}", EXIT_USAGE)
    # A quick look before starting a run at all; the asset takes the same lock for real.
    probe = send_lock(settings.warehouse_url, day)
    if not probe.try_acquire():
        print(f"{day} is being sent right now by {probe.holder()}: this process sends nothing.")
        return EXIT_OK
    probe.release()
    summary = run_day(
        day, definitions=defs, instance=dagster_instance(settings), allow_old=args.allow_old
    )
    return _print_run(summary, settings)


def cmd_sends(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.domain.sends import SendState
    from musicbutler_pipeline.warehouse.ledger import SendLedger

    if not args.date:
        raise CommandError("sends: --date YYYY-MM-DD is required", EXIT_USAGE)
    day = _day(args.date)
    rows = SendLedger(_engine(settings)).day(day)
    print(
        f"{'recipient':<36} {'state':<8} {'phase':<8} {'run':<10} {'host':<16} {'pid':>7} "
        f"{'code version':<24} {'claimed at (UTC)':<20} error"
    )
    for row in rows:
        print(
            f"{row.recipient:<36} {row.state:<8} {row.phase:<8} {row.run_id[:8]:<10} "
            f"{row.host[:16]:<16} {row.pid:>7} {row.code_version[:24]:<24} "
            f"{row.claimed_at:%Y-%m-%d %H:%M:%S}  {row.error or ''}"
        )
    print(f"{len(rows)} send(s) for {day}")
    undecided = [row for row in rows if row.state in (SendState.CLAIMED, SendState.UNKNOWN)]
    if undecided:
        delivered = sum(row.may_have_been_delivered for row in undecided)
        print(
            f"{len(undecided)} undecided: {len(undecided) - delivered} never reached the message "
            f"body (--resend is safe), {delivered} went out or may have (phase body/reply: check "
            "the mail server's log before --resend or --mark-sent)"
        )
    return EXIT_OK


def cmd_sends_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.domain.rules import email_key
    from musicbutler_pipeline.domain.sends import ReconcileAction
    from musicbutler_pipeline.processes import sender_gone
    from musicbutler_pipeline.warehouse.ledger import SendLedger
    from musicbutler_pipeline.warehouse.subscribers import find_subscribers

    day = _day(args.date)
    engine = _engine(settings)
    subscriber_ids = None
    if args.subscriber:
        try:
            emails = {normalize_email(email) for email in args.subscriber}
        except InvalidInput as exc:
            raise CommandError(f"--subscriber: {exc}", EXIT_USAGE) from None
        found = find_subscribers(engine, emails)
        if missing := sorted(email for email in emails if email_key(email) not in found):
            raise CommandError(f"no subscriber {', '.join(missing)}")
        subscriber_ids = {subscriber.id for subscriber in found.values()}
    action = ReconcileAction.RESEND if args.resend else ReconcileAction.MARK_SENT
    result = SendLedger(engine, sender_gone=sender_gone).reconcile(
        day,
        action,
        subscriber_ids=subscriber_ids,
        include_live=args.force,
        operator=f"`musicbutler sends reconcile` by {getpass.getuser()}",
    )
    for row in result.left_alone:
        print(
            f"left alone: {row.recipient}: pid {row.pid} on {row.host} may still be sending "
            "(--force to include it)",
            file=sys.stderr,
        )
    if action is ReconcileAction.RESEND:
        print(
            f"{day}: {result.changed} claim(s) released for resend; "
            f"run `musicbutler run --date {day}` to send them (same Message-ID)."
        )
    else:
        print(f"{day}: {result.changed} claim(s) marked sent.")
    return EXIT_PROBLEM if result.left_alone else EXIT_OK


def cmd_doctor(settings: Settings, _args: argparse.Namespace) -> int:
    from musicbutler_pipeline.doctor import diagnose

    findings = diagnose(settings)
    for finding in findings:
        print(f"{finding.level:<8} {finding.message}")
    problems = sum(finding.level == "PROBLEM" for finding in findings)
    print(f"{problems} problem(s)" if problems else "no problems")
    return EXIT_PROBLEM if problems else EXIT_OK


def cmd_daemon(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.daemon import run_daemon
    from musicbutler_pipeline.runner import dagster_instance

    _engine(settings).dispose()
    code = run_daemon(dagster_instance(settings), wait=args.wait)
    if code and not args.wait:
        print(
            "musicbutler daemon: another scheduler holds this instance's lock; not starting "
            "(`--wait` to take over when it stops)",
            file=sys.stderr,
        )
    return code


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.web.server import CannotListen, ServerLimits, serve

    logging.getLogger().setLevel(logging.INFO)  # the access log is the point of a server's output
    _engine(settings).dispose()  # refuse early, with one line, when the schema is missing
    limits = ServerLimits(connection_limit=args.connection_limit, idle_timeout=args.idle_timeout)
    try:
        serve(settings, args.host, args.port, limits)
    except CannotListen as exc:
        raise CommandError(f"web: {exc}") from None
    return EXIT_OK


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value!r}")
    return number


def cmd_demo(settings: Settings, _args: argparse.Namespace) -> int:
    from musicbutler_pipeline.demo import SAMPLE_DAY, run_demo, ui_command

    print(f"MusicButler demo: the sample day {SAMPLE_DAY} on {display_url(settings.warehouse_url)}")
    result = run_demo(settings)
    for report, what in ((result.subscribers, "subscribers"), (result.library, "follows")):
        print(f"  imported {report.inserted} {what} ({report.unchanged} already there)")
    code = _print_run(result.run, settings)
    if code != EXIT_OK:
        return code
    if settings.mail_url.startswith("file://"):
        print(f"Outbox: {settings.mail_url.removeprefix('file://')}")
    print(f"Open the Dagster UI:\n  {ui_command(settings)}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicbutler", description="Daily digests of new music from the artists you follow."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="warehouse schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser("upgrade", help="create or migrate the schema").set_defaults(func=cmd_db_upgrade)

    for noun, func, columns in (
        ("subscribers", cmd_subscribers_import, "email,name,listenbrainz_user"),
        ("library", cmd_library_import, "email,artist_mbid,artist_name"),
    ):
        actions = commands.add_parser(noun, help=f"import {noun}").add_subparsers(
            dest=f"{noun}_command", required=True, metavar="ACTION"
        )
        importer = actions.add_parser("import", help=f"import a CSV with columns {columns}")
        importer.add_argument("file")
        importer.set_defaults(func=func)

    unsub = commands.add_parser("unsubscribe", help="opt a subscriber out")
    unsub.add_argument("email")
    unsub.set_defaults(func=cmd_unsubscribe)

    run = commands.add_parser("run", help="materialize the day's assets in-process")
    run.add_argument("--date", required=True, help="the partition, YYYY-MM-DD (UTC)")
    run.add_argument(
        "--allow-old",
        action="store_true",
        help="send even if the day is older than MUSICBUTLER_MAX_SEND_AGE_DAYS (refused otherwise)",
    )
    run.set_defaults(func=cmd_run)

    sends = commands.add_parser("sends", help="print the send ledger for a day")
    sends.add_argument("--date", help="the day, YYYY-MM-DD")
    sends.set_defaults(func=cmd_sends)
    sends_actions = sends.add_subparsers(dest="sends_command", metavar="ACTION")
    reconcile = sends_actions.add_parser(
        "reconcile",
        help="resolve claims whose sender died and unknown outcomes (never resent automatically)",
    )
    reconcile.add_argument("--date", required=True, dest="date")
    choice = reconcile.add_mutually_exclusive_group(required=True)
    choice.add_argument(
        "--resend", action="store_true", help="let the next run send them again (same Message-ID)"
    )
    choice.add_argument(
        "--mark-sent",
        action="store_true",
        help="record them as sent (the mail server's log shows delivery)",
    )
    reconcile.add_argument(
        "--subscriber", action="append", metavar="EMAIL", help="only this subscriber (repeatable)"
    )
    reconcile.add_argument(
        "--force", action="store_true", help="also take claims whose sender may still be alive"
    )
    reconcile.set_defaults(func=cmd_sends_reconcile)

    commands.add_parser(
        "doctor", help="check configuration, schema, schedulers and the send ledger"
    ).set_defaults(func=cmd_doctor)

    daemon = commands.add_parser(
        "daemon", help="the production scheduler: dagster-daemon under an instance lock"
    )
    daemon.add_argument(
        "--wait",
        action="store_true",
        help="wait for the lock instead of exiting when another daemon holds it",
    )
    daemon.set_defaults(func=cmd_daemon)

    web = commands.add_parser("web", help="serve the unsubscribe endpoint")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8000)
    web.add_argument(
        "--connection-limit",
        type=_positive_int,
        default=100,
        help="most client connections open at once; more wait to be accepted (default 100)",
    )
    web.add_argument(
        "--idle-timeout",
        type=_positive_int,
        default=10,
        metavar="SECONDS",
        help="close a connection idle this long (default 10)",
    )
    web.set_defaults(func=cmd_web)

    commands.add_parser("demo", help="the bundled sample day, end to end").set_defaults(
        func=cmd_demo
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        code = args.func(settings, args)
        sys.stdout.flush()  # inside the try: a reader that went away is handled below
        return code
    except SettingsError as exc:
        print(f"musicbutler: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"musicbutler: {exc}", file=sys.stderr)
        return exc.code
    except OperationalError as exc:
        # The database is unreachable or refuses us: say so in one line. The driver's message
        # names host, port and user, never the password; the traceback is there with -v.
        logger.info("database error", exc_info=True)
        reason = str(exc.orig or exc).strip().splitlines()[0]
        print(f"musicbutler: cannot use the database: {reason}", file=sys.stderr)
        return EXIT_PROBLEM
    except BrokenPipeError:
        # The reader went away (`musicbutler sends ... | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(main())
