"""Drill: several senders of one day at once. Each subscriber gets exactly one email."""

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from musicbutler_pipeline.resources import SnapshotReleaseSource
from musicbutler_pipeline.warehouse.drops import replace_drops
from musicbutler_pipeline.warehouse.releases import replace_release_groups
from tests.drills.environment import DAY, REPO, Drill, output, wait_for
from tests.drills.sink import Sink

EMAILS_OWED = 38  # the bundled sample day (sources/data/sample/expected.json)


def test_four_concurrent_musicbutler_runs_send_each_digest_once(drill: Drill, sink: Sink) -> None:
    processes = [drill.start("musicbutler", "run", "--date", DAY) for _ in range(4)]
    for process in processes:
        assert process.wait(timeout=300) == 0, output(process)
    outputs = [output(process) for process in processes]

    received = sink.handler.per_recipient()
    print(
        f"\nfour runs: {EMAILS_OWED} owed, {sum(received.values())} received, "
        f"{len(received)} recipients, max per recipient {max(received.values())}"
    )
    assert len(received) == EMAILS_OWED
    assert set(received.values()) == {1}

    rows = drill.ledger()
    assert len(rows) == EMAILS_OWED and {row.state for row in rows} == {"sent"}
    assert len({(row.run_id, row.host, row.pid) for row in rows}) == 1  # one sender
    senders = [text for text in outputs if f"{EMAILS_OWED} email(s) sent" in text]
    assert len(senders) == 1, outputs
    for text in outputs:
        if text not in senders:
            assert (
                "is being sent right now by" in text
                or f"0 email(s) sent, {EMAILS_OWED} already sent earlier" in text
            ), text


def test_ledger_alone_stops_duplicates_between_four_processes(
    drill: Drill, sink: Sink, tmp_path: Path
) -> None:
    """No lock, no Dagster: four processes race subscriber by subscriber on the ledger claim."""
    day = date.fromisoformat(DAY)
    fetched = SnapshotReleaseSource().fetch(day)
    on_the_day = [group for group in fetched.release_groups if group.release_date == day]
    with drill.engine.begin() as connection:
        replace_release_groups(
            connection, day, on_the_day, source="drill", fetched_at=datetime.now(UTC)
        )
        replace_drops(connection, day)
    gate = str(tmp_path / "gate")
    contenders = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.drills.send_without_lock",
                drill.warehouse_url,
                drill.mail_url,
                DAY,
                gate,
            ],
            cwd=REPO,
            env=drill.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    wait_for(
        lambda: len(list(tmp_path.glob("gate.ready-*"))) == 4,
        timeout=120,
        what="four contenders ready",
    )
    Path(gate + ".go").touch()
    reports = []
    for contender in contenders:
        stdout, stderr = contender.communicate(timeout=300)
        assert contender.returncode == 0, stderr
        reports.append(dict(item.split("=") for item in stdout.split()))

    received = sink.handler.per_recipient()
    sent_by = [int(report["sent"]) for report in reports]
    print(
        f"\nledger only: {EMAILS_OWED} owed, {sum(received.values())} received, sent per "
        f"process {sent_by}"
    )
    assert len(received) == EMAILS_OWED and set(received.values()) == {1}
    assert sum(sent_by) == EMAILS_OWED
    rows = drill.ledger()
    assert {row.state for row in rows} == {"sent"} and len(rows) == EMAILS_OWED
