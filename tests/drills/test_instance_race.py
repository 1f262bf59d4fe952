"""Drill: concurrent first runs on a fresh Dagster home (issue 10: "table runs already exists").

Opening a new SQLite-backed Dagster instance creates and stamps its tables; processes doing it at
once used to crash. Two parts: many real processes open the instance through the public
``dagster_instance`` on a fresh home, trial after trial (workers stay alive across trials so the
drill is about the race, not Python's start-up); and concurrent `musicbutler run` on a fresh home.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from musicbutler_pipeline.demo import SAMPLE_DIR
from tests.drills.environment import DAY, REPO
from tests.fixtures.loopback import LoopbackServer, Reply

# In `make drills` (CI runs it after `make test`): about two minutes of real processes.
pytestmark = pytest.mark.drills_matrix

WORKERS = 6
TRIALS = 8
RUNS = 3
EMAILS_OWED = 38

_WORKER = """
import os, sys
from pathlib import Path
from musicbutler_pipeline.runner import dagster_instance
from musicbutler_pipeline.settings import Settings
print("ready", flush=True)
for line in sys.stdin:
    home = Path(line.strip())
    os.environ["DAGSTER_HOME"] = str(home / "dagster")  # a fresh instance folder each trial
    try:
        instance = dagster_instance(Settings.from_env({"MUSICBUTLER_HOME": str(home)}))
        instance.get_runs(limit=1)
        instance.event_log_storage.get_concurrency_keys()
        instance.dispose()
        print("ok", flush=True)
    except Exception as exc:
        print("crash", type(exc).__name__, str(exc).splitlines()[0][:120], flush=True)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))}
    env.update(PYTHONPATH=str(REPO), **extra)
    return env


def test_processes_opening_a_fresh_instance_at_once_all_succeed(tmp_path: Path) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # Dagster's "no dagster.yaml" notice, once per instance
            text=True,
            env=_clean_env(),
        )
        for _ in range(WORKERS)
    ]
    outcomes: Counter[str] = Counter()
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        for trial in range(TRIALS):
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write(f"{tmp_path / f'home-{trial}'}\n")
                worker.stdin.flush()
            for worker in workers:
                assert worker.stdout is not None
                outcomes[" ".join(worker.stdout.readline().split()[:2])] += 1
    finally:
        for worker in workers:
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in workers:
            worker.wait(timeout=60)
    assert outcomes == Counter({"ok": WORKERS * TRIALS}), dict(outcomes)


def test_concurrent_first_runs_on_a_fresh_home(tmp_path: Path) -> None:
    listenbrainz = LoopbackServer()
    listenbrainz.handler = lambda _request: Reply(204, b"")  # no stats yet: libraries stay
    listenbrainz.start()
    try:
        _concurrent_first_runs(tmp_path, f"{listenbrainz.url}/1")
    finally:
        listenbrainz.stop()


def _concurrent_first_runs(tmp_path: Path, listenbrainz_url: str) -> None:
    env = _clean_env(
        MUSICBUTLER_HOME=str(tmp_path / "home"),
        MUSICBUTLER_SECRET_KEY="drill-secret-key-0123456789",
        MUSICBUTLER_MUSICBRAINZ_URL=(SAMPLE_DIR / "musicbrainz").as_uri(),
        MUSICBUTLER_LISTENBRAINZ_URL=listenbrainz_url,
        MUSICBUTLER_MAX_SEND_AGE_DAYS="3650",  # the sample day is fixed in the past
    )

    def musicbutler(*args: str) -> list[str]:
        return [sys.executable, "-m", "musicbutler_pipeline.cli", *args]

    for setup in (
        ["db", "upgrade"],
        ["subscribers", "import", str(SAMPLE_DIR / "subscribers.csv")],
        ["library", "import", str(SAMPLE_DIR / "library.csv")],
    ):
        done = subprocess.run(musicbutler(*setup), env=env, cwd=tmp_path, capture_output=True)
        assert done.returncode == 0, done.stderr
    assert not (tmp_path / "home" / "dagster").exists()  # the instance is made by the runs
    logs = [tmp_path / f"run-{number}.log" for number in range(RUNS)]
    runs = []
    for log in logs:
        with log.open("w") as output:
            runs.append(
                subprocess.Popen(
                    musicbutler("run", "--date", DAY),
                    env=env,
                    cwd=tmp_path,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
    codes = [run.wait(timeout=300) for run in runs]
    for code, log in zip(codes, logs, strict=True):
        text = log.read_text()
        assert code == 0 and "Traceback" not in text, text
    assert len(list((tmp_path / "home" / "outbox").glob("*.eml"))) == EMAILS_OWED
