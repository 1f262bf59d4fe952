"""The `musicbutler` command as a user runs it: real processes, real files."""

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from musicbutler_pipeline.demo import SAMPLE_DIR
from tests.fixtures.loopback import LoopbackServer, Reply

EXPECTED = json.loads((SAMPLE_DIR / "expected.json").read_text())


def musicbutler(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))
    }
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "musicbutler_pipeline.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_twice_in_a_fresh_folder(tmp_path: Path) -> None:
    first = musicbutler("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "38 email(s) sent" in first.stdout
    outbox = tmp_path / ".musicbutler" / "outbox"
    assert f"Outbox: {outbox}" in first.stdout
    assert "musicbutler ui" in first.stdout
    # The default instance got the project's settings: no "no dagster.yaml" notice, no
    # telemetry banner.
    instance_settings = tmp_path / ".musicbutler" / "dagster" / "dagster.yaml"
    assert "enabled: false" in instance_settings.read_text()
    for stream in (first.stdout, first.stderr):
        assert "No dagster instance configuration file" not in stream
        assert "telemetry" not in stream.lower()
    files = sorted(outbox.glob("*.eml"))
    messages = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in files]
    assert len(messages) == EXPECTED["emails_expected"] == 38
    recipients = {m["To"].addresses[0].addr_spec for m in messages}
    assert recipients == set(EXPECTED["recipients"])
    for message in messages:
        assert message["Subject"] == "New Music for November 23, 2026"
        assert message.get_content_type() == "multipart/alternative"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "/unsubscribe/" in message["List-Unsubscribe"]
        assert message.get_body(("plain",)).get_content().strip()
        assert "<html" in message.get_body(("html",)).get_content()
    # Listen links come from the bundled url-rels pages: offline, in all but one digest (that
    # subscriber's releases have none known), as text and as buttons.
    parts = [(m.get_body(("plain",)), m.get_body(("html",))) for m in messages]
    texts = [(text.get_content(), html.get_content()) for text, html in parts if text and html]
    assert sum("  Listen: " in text for text, _html in texts) == 37
    assert sum('class="listen-button"' in html for _text, html in texts) == 37

    second = musicbutler("demo", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 email(s) sent, 38 already sent earlier" in second.stdout
    assert "nothing was sent twice" in second.stdout
    assert sorted(outbox.glob("*.eml")) == files
    # The runs are on the instance the UI reads.
    assert list((tmp_path / ".musicbutler" / "dagster").iterdir())


def test_bad_dates_are_refused_in_one_line(tmp_path: Path) -> None:
    # Two days on: tomorrow is today for a command started after midnight UTC.
    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    for value, problem in (
        ("23-11-2026", "YYYY-MM-DD"),
        ("2026-02-30", "not a calendar date"),
        (future, "in the future"),
    ):
        result = musicbutler("run", "--date", value, cwd=tmp_path)
        assert result.returncode == 2
        assert problem in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_malformed_setting_stops_at_start_without_traceback(tmp_path: Path) -> None:
    result = musicbutler("db", "upgrade", cwd=tmp_path, env={"MUSICBUTLER_MUSICBRAINZ_RATE": "0"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "musicbutler: configuration error: MUSICBUTLER_MUSICBRAINZ_RATE: "
        "must be greater than 0, got '0'"
    )


@pytest.fixture
def listenbrainz_without_stats() -> Iterator[str]:
    """ListenBrainz on loopback answering 204 (stats not computed yet) for every user."""
    server = LoopbackServer()
    server.handler = lambda _request: Reply(204, b"")
    server.start()
    yield f"{server.url}/1"
    server.stop()


def test_import_unsubscribe_run_and_ledger(tmp_path: Path, listenbrainz_without_stats: str) -> None:
    env = {
        "MUSICBUTLER_MUSICBRAINZ_URL": (SAMPLE_DIR / "musicbrainz").as_uri(),
        "MUSICBUTLER_LISTENBRAINZ_URL": listenbrainz_without_stats,
    }
    assert musicbutler("db", "upgrade", cwd=tmp_path).returncode == 0
    again = musicbutler("db", "upgrade", cwd=tmp_path)
    assert again.returncode == 0 and "(unchanged)" in again.stdout

    subscribers = tmp_path / "subscribers.csv"
    subscribers.write_text((SAMPLE_DIR / "subscribers.csv").read_text() + "broken-address,X,\n")
    imported = musicbutler("subscribers", "import", str(subscribers), cwd=tmp_path)
    assert imported.returncode == 1
    assert f"{subscribers}: line 42: email: 'broken-address' is not a valid e-mail address" in (
        imported.stderr
    )
    assert "40 subscribers added" in imported.stdout
    library = musicbutler("library", "import", str(SAMPLE_DIR / "library.csv"), cwd=tmp_path)
    assert library.returncode == 0, library.stderr
    repeat = musicbutler("library", "import", str(SAMPLE_DIR / "library.csv"), cwd=tmp_path)
    assert repeat.returncode == 0 and "0 follows added" in repeat.stdout

    leaver = sorted(EXPECTED["recipients"])[0]
    local, domain = leaver.split("@")
    out = musicbutler("unsubscribe", f"{local}@{domain.upper()}", cwd=tmp_path)
    assert out.returncode == 0 and "unsubscribed" in out.stdout

    run = musicbutler("run", "--date", "2026-11-23", "--allow-old", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert "37 email(s) sent" in run.stdout
    ledger = musicbutler("sends", "--date", "2026-11-23", cwd=tmp_path)
    assert ledger.returncode == 0
    assert "37 send(s) for 2026-11-23" in ledger.stdout
    assert leaver not in ledger.stdout
    assert ledger.stdout.count(" sent ") == 37

    rerun = musicbutler("run", "--date", "2026-11-23", "--allow-old", cwd=tmp_path, env=env)
    assert rerun.returncode == 0
    assert "0 email(s) sent, 37 already sent earlier" in rerun.stdout


@pytest.mark.parametrize(
    "command", [["run", "--date", "2026-11-23"], ["sends", "--date", "2026-11-23"]]
)
def test_commands_need_the_schema(tmp_path: Path, command: list[str]) -> None:
    result = musicbutler(*command, cwd=tmp_path)
    assert result.returncode == 1
    assert "run `musicbutler db upgrade`" in result.stderr


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path: Path) -> None:
    """`musicbutler sends --date D | head -1`: the pipe closes before the ledger is printed."""
    assert musicbutler("demo", cwd=tmp_path).returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the child starts: its first write meets a broken pipe
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "musicbutler_pipeline.cli", "sends", "--date", "2026-11-23"],
            cwd=tmp_path,
            env=environment,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert result.returncode == 1


@pytest.fixture(scope="module")
def after_the_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where `musicbutler demo` ran, as a newcomer's clone is after `make demo`."""
    folder = tmp_path_factory.mktemp("after-demo")
    demo = musicbutler("demo", cwd=folder)
    assert demo.returncode == 0, demo.stderr
    return folder


def _runs_in_instance(folder: Path) -> int:
    from dagster import DagsterInstance

    instance = DagsterInstance.from_config(str(folder / ".musicbutler" / "dagster"))
    try:
        return len(instance.get_run_records())
    finally:
        instance.dispose()


def test_a_configuration_that_cannot_work_is_refused_before_any_run(after_the_demo: Path) -> None:
    runs_before = _runs_in_instance(after_the_demo)
    refused = musicbutler(
        "run", "--date", "2026-11-23", "--allow-old", cwd=after_the_demo, timeout=60
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "musicbutler: configuration error: MUSICBUTLER_CONTACT: required to call MusicBrainz"
    )
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stdout == ""
    assert _runs_in_instance(after_the_demo) == runs_before

    doctor = musicbutler("doctor", cwd=after_the_demo)
    assert doctor.returncode == 1
    assert "PROBLEM  MUSICBUTLER_CONTACT: required to call MusicBrainz" in doctor.stdout
    assert doctor.stdout.strip().endswith("1 problem(s)")


def test_a_scheduler_whose_runs_cannot_work_is_refused_at_start(after_the_demo: Path) -> None:
    refused = musicbutler("daemon", cwd=after_the_demo, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "musicbutler: configuration error: MUSICBUTLER_CONTACT: required to call MusicBrainz"
    )
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    # Refused before the instance lock: no dagster-daemon was started, no lock file was left.
    assert "instance lock taken" not in refused.stderr
    assert refused.stdout == ""


def test_the_offline_run_the_demo_prints_works(after_the_demo: Path) -> None:
    offline = {
        "MUSICBUTLER_MUSICBRAINZ_URL": (SAMPLE_DIR / "musicbrainz").as_uri(),
        "MUSICBUTLER_LISTENBRAINZ_URL": "off",
    }
    doctor = musicbutler("doctor", cwd=after_the_demo, env=offline)
    assert doctor.returncode == 0, doctor.stdout
    assert "ListenBrainz off" in doctor.stdout
    run = musicbutler("run", "--date", "2026-11-23", "--allow-old", cwd=after_the_demo, env=offline)
    assert run.returncode == 0, run.stderr
    assert "nothing was sent twice" in run.stdout

    missing = {**offline, "MUSICBUTLER_MUSICBRAINZ_URL": (after_the_demo / "nowhere").as_uri()}
    refused = musicbutler(
        "run", "--date", "2026-11-23", "--allow-old", cwd=after_the_demo, env=missing
    )
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "musicbutler: configuration error: MUSICBUTLER_MUSICBRAINZ_URL: "
        "file:// names no folder of recorded pages"
    )


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield (*path, name), subparser
                yield from _subcommands(subparser, (*path, name))


def test_every_command_says_what_it_does_and_its_defaults() -> None:
    from musicbutler_pipeline.cli import build_parser

    commands = dict(_subcommands(build_parser()))
    assert {("run",), ("doctor",), ("web",), ("demo",), ("sends", "reconcile")} <= set(commands)
    for path, parser in commands.items():
        assert parser.description, f"`musicbutler {' '.join(path)} --help` has no description"
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):  # its choices say it
                assert action.help, f"musicbutler {' '.join(path)}: {action.dest} has no help"
    web = musicbutler("web", "--help", cwd=Path.cwd())
    assert web.returncode == 0
    text = " ".join(web.stdout.split())
    assert "serve the one-click unsubscribe endpoint" in text.lower()
    for default in ("(default: 127.0.0.1)", "(default: 8000)", "(default: 100)", "(default: 10)"):
        assert default in text, default
    assert "(default: None)" not in text


def test_sends_takes_the_date_before_or_after_reconcile(after_the_demo: Path) -> None:
    for args in (
        ("sends", "--date", "2026-11-23", "reconcile", "--resend"),
        ("sends", "reconcile", "--date", "2026-11-23", "--resend"),
    ):
        result = musicbutler(*args, cwd=after_the_demo)
        assert result.returncode == 0, (args, result.stderr)
        assert "2026-11-23: 0 claim(s) released for resend" in result.stdout
    missing = musicbutler("sends", "reconcile", "--mark-sent", cwd=after_the_demo)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "musicbutler: --date YYYY-MM-DD is required"


def test_a_future_date_is_refused_only_where_it_would_run_or_send(after_the_demo: Path) -> None:
    # Two days on: tomorrow is today for a command started after midnight UTC.
    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    ledger = musicbutler("sends", "--date", future, cwd=after_the_demo)
    assert ledger.returncode == 0, ledger.stderr
    assert f"0 send(s) for {future}" in ledger.stdout
    for args in (
        ("run", "--date", future),
        ("sends", "reconcile", "--date", future, "--resend"),
    ):
        refused = musicbutler(*args, cwd=after_the_demo)
        assert refused.returncode == 2
        assert "in the future: the latest day that can be run" in refused.stderr


def test_a_day_older_than_the_max_send_age_is_refused_before_any_run(tmp_path: Path) -> None:
    assert musicbutler("db", "upgrade", cwd=tmp_path).returncode == 0
    result = musicbutler("run", "--date", "2026-11-23", cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "refused: 2026-11-23 is " in line
    assert "older than MUSICBUTLER_MAX_SEND_AGE_DAYS=2" in line and "--allow-old" in line
    assert not (tmp_path / ".musicbutler" / "dagster").exists()  # no run was started


def test_a_sharded_day_runs_and_sums_and_a_bad_shard_count_is_one_line(tmp_path: Path) -> None:
    env = {
        "MUSICBUTLER_MUSICBRAINZ_URL": (SAMPLE_DIR / "musicbrainz").as_uri(),
        "MUSICBUTLER_LISTENBRAINZ_URL": "off",
        "MUSICBUTLER_SEND_SHARDS": "3",
    }
    assert musicbutler("db", "upgrade", cwd=tmp_path).returncode == 0
    for kind in ("subscribers", "library"):
        path = str(SAMPLE_DIR / f"{kind}.csv")
        assert musicbutler(kind, "import", path, cwd=tmp_path).returncode == 0
    run = musicbutler("run", "--date", "2026-11-23", "--allow-old", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert "38 email(s) sent, 0 already sent earlier" in run.stdout  # the three shards summed
    assert len(list((tmp_path / ".musicbutler" / "outbox").glob("*.eml"))) == 38

    bad = musicbutler(
        "run", "--date", "2026-11-23", cwd=tmp_path, env={**env, "MUSICBUTLER_SEND_SHARDS": "0"}
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "musicbutler: configuration error: MUSICBUTLER_SEND_SHARDS: must be between 1 and 64, "
        "got '0'"
    )
