"""The end-to-end benchmark's synthetic world and its report, without any process or server."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

from benchmarks.end_to_end import (
    LevelResult,
    Measured,
    Step,
    generate_world,
    growth_table,
    level_table,
)

DAY = date(2026, 11, 30)


def test_the_world_is_deterministic_and_has_the_day_owed_and_four_bad_rows(
    tmp_path: Path,
) -> None:
    first = generate_world(tmp_path / "a", 40, DAY, seed=7)
    second = generate_world(tmp_path / "b", 40, DAY, seed=7)

    assert first.library_csv.read_bytes() == second.library_csv.read_bytes()
    assert first.owed == second.owed and 0 < len(first.owed) < 40
    assert first.owed_drops >= len(first.owed)
    with first.library_csv.open(encoding="utf-8") as library:
        rows = list(csv.DictReader(library))
    assert len(rows) == first.library_rows
    assert sum(1 for row in rows if row["email"] == "not-an-address") == 1
    assert sum(1 for row in rows if row["artist_mbid"] == "not-a-uuid") == 1
    assert first.bad_library_rows == 4
    pages = sorted((first.musicbrainz / DAY.isoformat()).glob("offset-*.json"))
    records = [
        record for page in pages for record in json.loads(page.read_text())["release-groups"]
    ]
    assert len(records) == first.release_records == 1550
    assert sum(1 for record in records if record["first-release-date"] == "2026-11-30") == 500


def _level(subscribers: int, run_seconds: float) -> LevelResult:
    def measured(seconds: float) -> Measured:
        return Measured(seconds, seconds / 2, 100.0, 0, "", "")

    result = LevelResult(subscribers, DAY, 60 * subscribers, 4, 1550, 10, 12, 10, 1, 0, 12, 0.1)
    result.steps = [
        Step("run", measured(run_seconds), 10, "emails", "bare smtplib", run_seconds / 10, 10),
        Step("db upgrade", measured(1.0), 0, ""),
    ]
    return result


def test_the_report_sets_each_rate_beside_its_floor_and_the_exponent_of_n() -> None:
    small, large = _level(1_000, 10.0), _level(10_000, 100.0)

    assert "| 10.0 s | 5.00 s | 1/s | 100 MiB | bare smtplib (10) | 1.00 s | 10/s | 10.0% " in (
        "\n".join(level_table(small))
    )
    growth = "\n".join(growth_table([small, large]))
    assert "| run | 1.00 |" in growth
    assert "| floor: bare smtplib | 1.00 |" in growth
    assert "db upgrade" not in growth  # it does not scale with N
