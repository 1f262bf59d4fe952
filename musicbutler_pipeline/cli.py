"""The `musicbutler` command. Thin: parses arguments, calls the domain or runs the job."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from musicbutler_pipeline import __version__
from musicbutler_pipeline.domain.rules import InvalidInput, normalize_email, parse_partition_date
from musicbutler_pipeline.settings import NotConfigured, Settings, SettingsError, display_url

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


def _day(value: str | None, *, runnable: bool = True) -> date:
    """The ``--date`` argument. ``runnable``: a day that may be run or sent, so not after today
    (UTC); the read-only commands take any calendar day."""
    from musicbutler_pipeline.partitions import latest_partition_day

    if not value:
        raise CommandError("--date YYYY-MM-DD is required", EXIT_USAGE)
    try:
        return parse_partition_date(value, latest=latest_partition_day() if runnable else None)
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
    preferences = (
        f", preferences of {report.preferences_changed} changed"
        if report.preferences_changed
        else ""
    )
    print(
        f"{report.path}: {report.rows} rows: {report.inserted} {what} added, "
        f"{report.updated} updated, {report.unchanged} unchanged{merged}, "
        f"{len(report.errors)} bad{preferences}"
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


def cmd_feeds(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.domain.feeds import feed_links
    from musicbutler_pipeline.domain.rules import email_key
    from musicbutler_pipeline.warehouse.feeds import feed_secret
    from musicbutler_pipeline.warehouse.subscribers import find_subscribers

    try:
        email = normalize_email(args.email)
    except InvalidInput as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    engine = _engine(settings)
    subscriber = find_subscribers(engine, [email]).get(email_key(email))
    if subscriber is None:
        raise CommandError(f"no subscriber {email}")
    if subscriber.unsubscribed_at is not None:
        raise CommandError(f"{subscriber.email} is unsubscribed: their feeds answer 404")
    links = feed_links(settings.base_url, feed_secret(engine, subscriber.id, rotate=args.rotate))
    if args.rotate:
        print(f"{subscriber.email}: new feed URLs (the old ones now answer 404)")
    print(f"Atom:       {links.atom}")
    print(f"iCalendar:  {links.icalendar}")
    return EXIT_OK


def cmd_prefs(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.domain import preferences as prefs
    from musicbutler_pipeline.warehouse.preferences import change_preferences

    try:
        email = normalize_email(args.email)
        changes = {
            "release_types": None if args.types is None else prefs.parse_release_types(args.types),
            "appearances": None
            if args.appearances is None
            else prefs.parse_on_off(args.appearances, "--appearances"),
            "frequency": None if args.frequency is None else prefs.parse_frequency(args.frequency),
            "weekday": None if args.weekday is None else prefs.parse_weekday(args.weekday),
            "block": frozenset(prefs.parse_artist_mbid(value) for value in args.block),
            "unblock": frozenset(prefs.parse_artist_mbid(value) for value in args.unblock),
        }
        # No options: nothing changes, the preferences are shown as they are.
        chosen = change_preferences(_engine(settings), email, **changes)
    except (InvalidInput, prefs.PreferenceError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    print(email)
    for line in chosen.describe():
        print(f"  {line}")
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


def cmd_ui(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.runner import prepare_dagster_home

    home = prepare_dagster_home(settings)
    # dagster dev's notice that `dg dev` supersedes it is not for this command's users.
    quiet = ["-W", "ignore:Function `dev_command` is superseded"]
    command = [sys.executable, *quiet, "-m", "dagster", "dev"]
    command += ["-m", "musicbutler_pipeline.definitions"]
    command += ["--host", args.host, "--port", str(args.port)]
    print(f"Dagster UI on the instance in {home}: http://{args.host}:{args.port}", flush=True)
    # Replaced, not wrapped: Ctrl-C and the exit status are dagster dev's own.
    os.execv(sys.executable, command)
    return EXIT_OK  # pragma: no cover - execv does not return


def cmd_sends(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.domain.sends import SendState
    from musicbutler_pipeline.warehouse.ledger import SendLedger

    day = _day(args.date, runnable=False)
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

    day = _day(getattr(args, "date", None))
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


def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.partitions import latest_partition_day
    from musicbutler_pipeline.warehouse.retention import prune_warehouse

    pruned = prune_warehouse(
        _engine(settings),
        latest_partition_day(),
        keep_drops_days=settings.keep_drops_days,
        keep_source_pages_days=settings.keep_source_pages_days,
        dry_run=args.dry_run,
    )
    verb = "would delete" if args.dry_run else "deleted"
    for table in pruned:
        print(f"{table.table}: {verb} {table.rows} rows of days before {table.before}")
    return EXIT_OK


def cmd_doctor(settings: Settings, _args: argparse.Namespace) -> int:
    from musicbutler_pipeline.definitions import defs
    from musicbutler_pipeline.doctor import diagnose

    findings = diagnose(settings, resources=defs.resources)
    for finding in findings:
        print(f"{finding.level:<8} {finding.message}")
    problems = sum(finding.level == "PROBLEM" for finding in findings)
    print(f"{problems} problem(s)" if problems else "no problems")
    return EXIT_PROBLEM if problems else EXIT_OK


def cmd_daemon(settings: Settings, args: argparse.Namespace) -> int:
    from musicbutler_pipeline.daemon import run_daemon
    from musicbutler_pipeline.definitions import defs
    from musicbutler_pipeline.runner import dagster_instance, ensure_configured

    _engine(settings).dispose()
    # Every run this scheduler launches would fail the same way: refuse to start instead.
    ensure_configured(defs)
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
    from musicbutler_pipeline.demo import SAMPLE_DAY, run_command, run_demo, ui_command

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
    print(f"Run the day again offline (it sends nothing twice):\n  {run_command(settings)}")
    print("The live services need MUSICBUTLER_CONTACT (for MusicBrainz): README, Using it.")
    return EXIT_OK


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, except where there is none to show (unset, or a flag that is
    off unless given), and keeps the descriptions' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or action.required:
            return action.help
        return super()._get_help_string(action)


def _command(
    commands: argparse._SubParsersAction, name: str, summary: str, details: str = ""
) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does (``summary``, then ``details``)."""
    return commands.add_parser(
        name,
        help=summary,
        # Paragraphs filled here: the raw formatter keeps the break between summary and details.
        description="\n\n".join(
            textwrap.fill(paragraph, width=HELP_WIDTH)
            for paragraph in (f"{summary[0].upper()}{summary[1:]}.", details)
            if paragraph
        ),
        formatter_class=_HelpFormatter,
    )


HELP_WIDTH = 78
DATE_HELP = "the day (the partition), YYYY-MM-DD in UTC"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicbutler",
        description="Daily digests of new music from the artists you follow.",
        epilog="Configuration comes from MUSICBUTLER_* environment variables (README.md).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = _command(commands, "db", "the warehouse schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    _command(
        db,
        "upgrade",
        "create or migrate the warehouse schema",
        "Safe to repeat: an up-to-date schema is left as it is.",
    ).set_defaults(func=cmd_db_upgrade)

    for noun, what, func, columns in (
        ("subscribers", "subscribers", cmd_subscribers_import, "email,name,listenbrainz_user"),
        ("library", "followed artists", cmd_library_import, "email,artist_mbid,artist_name"),
    ):
        actions = _command(commands, noun, f"import {what} from a CSV file").add_subparsers(
            dest=f"{noun}_command", required=True, metavar="ACTION"
        )
        importer = _command(
            actions,
            "import",
            f"import a CSV with columns {columns}",
            "Bad rows are reported with their line number (the header is line 1); good rows "
            "still land; exit 1 if any row was bad. Importing the same file again changes nothing.",
        )
        importer.add_argument("file", help="the CSV file (UTF-8)")
        importer.set_defaults(func=func)

    unsub = _command(commands, "unsubscribe", "opt a subscriber out: no email is sent to them")
    unsub.add_argument("email", help="the subscriber's address (any case)")
    unsub.set_defaults(func=cmd_unsubscribe)

    feeds = _command(
        commands,
        "feeds",
        "print a subscriber's Atom and iCalendar feed URLs",
        "What was announced to them in the last 90 days, served by `musicbutler web` at a secret "
        "URL under MUSICBUTLER_BASE_URL (made on first use). --rotate replaces the secret: the "
        "old URLs then answer 404.",
    )
    feeds.add_argument("email", help="the subscriber's address (any case)")
    feeds.add_argument("--rotate", action="store_true", help="replace the secret in the URLs")
    feeds.set_defaults(func=cmd_feeds)
    prefs = _command(
        commands,
        "prefs",
        "show, or set then show, a subscriber's preferences",
        "Release types are album, single, ep, compilation, live, remix, other, broadcast "
        "(or all; default is all but broadcast, and selecting broadcast widens the daily "
        "MusicBrainz search for everyone); a "
        "release group is announced only when each of its types is chosen, so without live no "
        "live album is. Appearances off: only releases a followed artist is credited first on. "
        "A blocked artist is never the reason for an announcement, whatever the library says. "
        "Weekly: one digest on the weekday, covering it and the six days before. A bad value "
        "or an unknown address: one line, exit 2.",
    )
    prefs.add_argument("email", help="the subscriber's address (any case)")
    prefs.add_argument("--types", metavar="TYPE,...", help="the release types to announce")
    prefs.add_argument("--appearances", metavar="on|off", help="announce appearances")
    prefs.add_argument(
        "--block", nargs="+", action="extend", default=[], metavar="MBID", help="block artists"
    )
    prefs.add_argument(
        "--unblock", nargs="+", action="extend", default=[], metavar="MBID", help="unblock artists"
    )
    prefs.add_argument("--frequency", metavar="daily|weekly", help="how often digests come")
    prefs.add_argument("--weekday", metavar="monday..sunday", help="the weekly digest's day")
    prefs.set_defaults(func=cmd_prefs)

    run = _command(
        commands,
        "run",
        "materialize the day's five assets in-process and send its digests",
        "Runs daily_drops_job on the DAGSTER_HOME instance (its runs show in the UI). Nothing is "
        "sent twice: exit 0 when the day had already been sent, 1 when owed email did not go "
        "out. A configuration that cannot work, or a day older than "
        "MUSICBUTLER_MAX_SEND_AGE_DAYS without --allow-old, is refused before any run starts "
        "(exit 2).",
    )
    run.add_argument("--date", required=True, help=f"{DATE_HELP}; today at the latest")
    run.add_argument(
        "--allow-old",
        action="store_true",
        help="send even if the day is older than MUSICBUTLER_MAX_SEND_AGE_DAYS (refused otherwise)",
    )
    run.set_defaults(func=cmd_run)

    sends = _command(
        commands,
        "sends",
        "print the send ledger for a day",
        "Who, state, phase, run, host, pid, code version and claim time of every send of the "
        "day. Read-only.",
    )
    sends.add_argument("--date", help=DATE_HELP + " (required)")
    sends.set_defaults(func=cmd_sends)
    sends_actions = sends.add_subparsers(dest="sends_command", metavar="ACTION")
    reconcile = _command(
        sends_actions,
        "reconcile",
        "resolve claims whose sender died and unknown outcomes (never resent automatically)",
        "--date may come before or after `reconcile`.",
    )
    # SUPPRESS: `sends --date D reconcile` keeps the date given before the action.
    reconcile.add_argument("--date", default=argparse.SUPPRESS, help=DATE_HELP + " (required)")
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

    prune = _command(
        commands,
        "prune",
        "delete drops and source pages older than their retention",
        "Drops of days before MUSICBUTLER_KEEP_DROPS_DAYS and source pages of days before "
        "MUSICBUTLER_KEEP_SOURCE_PAGES_DAYS (each source's first day stays). Sends and "
        "announcements are never deleted. Safe to repeat; prune_warehouse_schedule runs it daily.",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="count the rows that would go, delete nothing"
    )
    prune.set_defaults(func=cmd_prune)

    _command(
        commands,
        "doctor",
        "check configuration, schema, schedulers and the send ledger",
        "Prints one finding a line (ok, note, PROBLEM); exit 1 on any problem, such as a "
        "setting a run needs and lacks, or a second scheduler.",
    ).set_defaults(func=cmd_doctor)

    daemon = _command(
        commands,
        "daemon",
        "the production scheduler: dagster-daemon under an instance lock",
        "A second `musicbutler daemon` on the same instance never schedules beside the first.",
    )
    daemon.add_argument(
        "--wait",
        action="store_true",
        help="wait for the lock instead of exiting when another daemon holds it",
    )
    daemon.set_defaults(func=cmd_daemon)

    web = _command(
        commands,
        "web",
        "serve the one-click unsubscribe endpoint and the feeds",
        "The List-Unsubscribe links (MUSICBUTLER_BASE_URL + path): RFC 8058 one-click POST, and "
        "a confirmation page on GET; each subscriber's Atom and iCalendar feeds (`musicbutler "
        "feeds EMAIL`). Stops gracefully on SIGTERM.",
    )
    web.add_argument("--host", default="127.0.0.1", help="address to listen on")
    web.add_argument("--port", type=int, default=8000, help="port to listen on")
    web.add_argument(
        "--connection-limit",
        type=_positive_int,
        default=100,
        help="most client connections open at once; more wait to be accepted",
    )
    web.add_argument(
        "--idle-timeout",
        type=_positive_int,
        default=10,
        metavar="SECONDS",
        help="close a connection idle this long",
    )
    web.set_defaults(func=cmd_web)

    ui = _command(
        commands,
        "ui",
        "the Dagster UI (dagster dev) on this installation's instance",
        "Uses DAGSTER_HOME ($MUSICBUTLER_HOME/dagster by default, with the project's instance "
        "settings); `make ui` runs it on the demo's instance with the bundled MusicBrainz pages.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ui.add_argument("--port", type=int, default=3000, help="port to listen on")
    ui.set_defaults(func=cmd_ui)

    _command(
        commands,
        "demo",
        "the bundled sample day, end to end",
        "SQLite warehouse, recorded MusicBrainz pages, emails to $MUSICBUTLER_HOME/outbox; no "
        "network and no configuration. A second demo sends nothing and says so.",
    ).set_defaults(func=cmd_demo)
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
    except NotConfigured as exc:
        for problem in exc.problems:
            print(f"musicbutler: configuration error: {problem}", file=sys.stderr)
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
