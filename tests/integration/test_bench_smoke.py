"""The end-to-end benchmark at a tiny level, so that `make bench` cannot rot unnoticed.

Real processes throughout: the `musicbutler` commands, PostgreSQL, an aiosmtpd sink in its own
process. About 20 s, nearly all of it the two `musicbutler run` processes starting Dagster.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.end_to_end import machine, render_results, run_level

pytestmark = pytest.mark.postgres


def test_tiny_level_sends_each_owed_email_once_and_the_rerun_nothing(
    tmp_path: Path, postgres_server: str, postgres_database: Callable[[], str]
) -> None:
    day = datetime.now(UTC).date() - timedelta(days=1)

    result = run_level(
        30,
        day=day,
        admin_url=postgres_server,
        workdir=tmp_path,
        database_url=postgres_database(),
        process_start=False,
    )

    assert result.owed > 0
    assert result.emails_at_sink == result.owed
    assert result.most_to_one_recipient == 1
    assert result.rerun_emails_at_sink == 0
    assert result.bad_rows_reported == 4
    assert result.drops_in_join == result.owed_drops
    assert [step.name for step in result.steps] == [
        "subscribers import",
        "library import",
        "run",
        "rerun (sends nothing)",
        "db upgrade",
    ]
    assert all(step.command.cpu_seconds > 0 < step.command.peak_rss_mib for step in result.steps)

    results = tmp_path / "RESULTS.md"
    results.write_text(render_results(machine(postgres_server), [result], "make bench"))
    text = results.read_text()
    assert "### 30 subscribers" in text
    assert f"| run ({result.owed} emails) |" in text
    assert "| PostgreSQL |" in text
