"""Passwords in configuration never reach output: doctor, run and db upgrade as a user runs them,
with well-formed and malformed URLs that hold a password (issue 10, finding 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from musicbutler_pipeline.demo import SAMPLE_DIR
from tests.integration.test_cli import listenbrainz_without_stats, musicbutler

__all__ = ["listenbrainz_without_stats"]  # a fixture used below

PASSWORD = "S3cretPass"
COMMANDS = [["doctor"], ["run", "--date", "2026-11-23", "--allow-old"], ["db", "upgrade"]]

MALFORMED = [
    ("MUSICBUTLER_MAIL_URL", f"smtp:/mailer:{PASSWORD}@h:587", "not a URL"),
    ("MUSICBUTLER_MAIL_URL", f"smtp://mailer:{PASSWORD}@h:abc", "port"),
    ("MUSICBUTLER_MAIL_URL", f"smtp://mailer:{PASSWORD}@h:587?bogus=1", "unknown mail URL option"),
    ("MUSICBUTLER_WAREHOUSE_URL", f"postgresql:/u:{PASSWORD}@h/db", "not a URL"),
    ("MUSICBUTLER_WAREHOUSE_URL", f"postgresql://u:{PASSWORD}@h:abc/db", "port"),
    ("MUSICBUTLER_WAREHOUSE_URL", f"postgresql://u:{PASSWORD}@h:99999/db", "port"),
    ("MUSICBUTLER_WAREHOUSE_URL", f"mysql://u:{PASSWORD}@h/db", "not supported"),
    ("MUSICBUTLER_WAREHOUSE_URL", f"postgresql+nodriver://u:{PASSWORD}@h/db", "not a database"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(("variable", "value", "problem"), MALFORMED)
def test_a_malformed_url_is_refused_in_one_line_without_its_password(
    tmp_path: Path, command: list[str], variable: str, value: str, problem: str
) -> None:
    result = musicbutler(*command, cwd=tmp_path, env={variable: value})
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"musicbutler: configuration error: {variable}: ")
    assert problem in line
    assert PASSWORD not in result.stdout + result.stderr


def test_a_bad_warehouse_port_names_the_variable(tmp_path: Path) -> None:
    for port in ("99999", "abc", "0"):
        result = musicbutler(
            "db",
            "upgrade",
            cwd=tmp_path,
            env={"MUSICBUTLER_WAREHOUSE_URL": f"postgresql://h:{port}/db"},
        )
        assert result.returncode == 2
        assert result.stderr.strip() == (
            "musicbutler: configuration error: MUSICBUTLER_WAREHOUSE_URL: "
            "the port is not a number between 1 and 65535"
        )


def test_doctor_shows_urls_with_the_password_hidden(tmp_path: Path) -> None:
    mail_url = f"smtp://mailer:{PASSWORD}@127.0.0.1:1?retries=0"
    result = musicbutler("doctor", cwd=tmp_path, env={"MUSICBUTLER_MAIL_URL": mail_url})
    assert "mail smtp://mailer:***@127.0.0.1:1?retries=0" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


def test_unreachable_warehouse_with_a_password_is_one_line(tmp_path: Path) -> None:
    # Port 1 on loopback refuses at once: nothing listens there.
    url = f"postgresql://u:{PASSWORD}@127.0.0.1:1/db"
    for command in COMMANDS:
        result = musicbutler(*command, cwd=tmp_path, env={"MUSICBUTLER_WAREHOUSE_URL": url})
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert PASSWORD not in result.stdout + result.stderr
    doctor = musicbutler("doctor", cwd=tmp_path, env={"MUSICBUTLER_WAREHOUSE_URL": url})
    assert "warehouse postgresql://u:***@127.0.0.1:1/db" in doctor.stdout


def test_a_run_that_cannot_reach_smtp_keeps_the_password_out_of_everything(
    tmp_path: Path, listenbrainz_without_stats: str
) -> None:
    """Output, the send ledger, and every file the run leaves (Dagster's event logs included)."""
    env = {
        "MUSICBUTLER_MAIL_URL": f"smtp://mailer:{PASSWORD}@127.0.0.1:1?retries=0",
        "MUSICBUTLER_MUSICBRAINZ_URL": (SAMPLE_DIR / "musicbrainz").as_uri(),
        "MUSICBUTLER_LISTENBRAINZ_URL": listenbrainz_without_stats,
    }
    outputs = []
    for command in (
        ["db", "upgrade"],
        ["subscribers", "import", str(SAMPLE_DIR / "subscribers.csv")],
        ["library", "import", str(SAMPLE_DIR / "library.csv")],
        ["run", "--date", "2026-11-23", "--allow-old"],
        ["sends", "--date", "2026-11-23"],
        ["doctor"],
    ):
        result = musicbutler(*command, cwd=tmp_path, env=env)
        outputs.append(result.stdout + result.stderr)
    assert "38 send(s) for 2026-11-23" in outputs[4]  # the run got as far as trying to send
    assert not any(PASSWORD in output for output in outputs)
    leaked = [
        path
        for path in tmp_path.rglob("*")
        if path.is_file() and PASSWORD.encode() in path.read_bytes()
    ]
    assert leaked == []


def test_doctor_reports_an_empty_key_file_and_never_makes_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"MUSICBUTLER_HOME": str(home)}
    fresh = musicbutler("doctor", cwd=tmp_path, env=env)
    assert "note     no signing key yet" in fresh.stdout
    assert not (home / "secret_key").exists()
    (home / "secret_key").write_text("")
    empty = musicbutler("doctor", cwd=tmp_path, env=env)
    assert empty.returncode == 1
    assert (
        f"PROBLEM  signing key for unsubscribe links: {home / 'secret_key'}: holds a key of 0"
        in (empty.stdout)
    )
    short = musicbutler("doctor", cwd=tmp_path, env={"MUSICBUTLER_SECRET_KEY": "too-short"})
    assert "MUSICBUTLER_SECRET_KEY: must be at least 16 characters long" in short.stdout
    assert "too-short" not in short.stdout + short.stderr
