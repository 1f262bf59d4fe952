"""The production deployment on loopback: a PostgreSQL-backed `dagster-webserver` and `musicbutler
daemon` as real processes, the REAL `daily_drops_schedule` firing at its shipped time, 21:35 UTC,
for the bundled sample day, and everything checked through the webserver's GraphQL API.

The clock: the schedule ticks at 21:35 UTC for that day's partition, and the sample day is
2026-11-23. Rather than a test-only schedule, the deployment's processes run on a wall clock set
before 2026-11-23 21:35 UTC by libfaketime (the build that PyPI's `libfaketime` ships), as an
operator can do to rehearse a day: `FAKETIME=-Ns` shifts a process's wall clock, and its
children's (the daemon's code servers and run workers inherit it), by N seconds; the monotonic
clock is left alone. The webserver's clock starts 10 minutes before the tick, so the schedule is
switched on through it before 21:35 however slowly it starts (Dagster fires no tick from before a
schedule was on, and that moment is all the webserver's clock decides); the daemon's starts 5 s
before the tick, so the test waits for the daemon to start and the run, not for a clock. (Debian's
libfaketime 0.9.10 will not do: with the monotonic clock left alone Python's `time.sleep` fails
with EINVAL, and with it shifted timed waits never return.) PostgreSQL's own clock is not
shifted: neither Dagster's scheduler nor the send ledger reads it.
"""

from __future__ import annotations

import contextlib
import email
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import libfaketime
import pytest

from musicbutler_pipeline.demo import SAMPLE_DIR
from musicbutler_pipeline.sources.musicbrainz import bundled_snapshot_root
from tests.fixtures.loopback import LoopbackServer, Reply

# 64 s on a quiet machine, 98-111 s on two busy cores; 35-50 s of it the run itself (eight step
# processes of the shipped multiprocess executor), 15 the daemon's start: `make drills`.
pytestmark = [pytest.mark.postgres, pytest.mark.drills_matrix]

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-11-23"
ASSETS = ("user_libraries", "artist_releases", "user_drops", "listen_links", "drop_notifications")
SCHEDULE = "daily_drops_schedule"
LOCATION = "musicbutler_pipeline.definitions"  # what `-m` names the location, daemon and webserver
# The shipped tick for the sample day, and how far before it the webserver's and the daemon's
# clocks start.
TICK = datetime(2026, 11, 23, 21, 35, tzinfo=UTC)
SWITCH_ON_LEAD = timedelta(minutes=10)
DAEMON_LEAD = timedelta(seconds=5)

logger = logging.getLogger(__name__)


def shifted_clock(offset_seconds: int) -> dict[str, str]:
    """The environment that runs a process (and its children) on the wall clock shifted by
    ``offset_seconds``."""
    _needs_reexec, preload = libfaketime.get_reload_information()
    return {**preload, "FAKETIME": f"{offset_seconds:+d}s"}


def _seconds_until(moment: datetime) -> int:
    return round((moment - datetime.now(UTC)).total_seconds())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Deployment:
    """Real processes in their own process groups, logs in files, stopped at the end."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def run(self, *command: str) -> None:
        done = subprocess.run(
            _executable(command),
            env=self.env,
            cwd=self.root,
            capture_output=True,
            timeout=180,
        )
        assert done.returncode == 0, f"{' '.join(command)}: {done.stdout!r} {done.stderr!r}"

    def start(self, name: str, *command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                _executable(command),
                env=env,
                cwd=self.root,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append((process, log))
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}"
            for _, log in self.processes
        )

    def stop(self) -> None:
        """SIGTERM to each process group (the daemon's code servers and run workers included),
        SIGKILL to what is left after a minute."""
        for process, _ in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _executable(command: tuple[str, ...]) -> list[str]:
    program, *arguments = command
    return [str(Path(sys.executable).with_name(program)), *arguments]


def wait_for(
    condition: Callable[[], Any], *, timeout: float, what: str, logs: Callable[[], str]
) -> Any:
    """Poll ``condition`` until it is truthy; fail naming ``what``, with the logs, after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs()}")
        time.sleep(0.5)


@pytest.fixture
def deployment(tmp_path: Path, postgres_database: Callable[[], str]) -> Iterator[Deployment]:
    # ListenBrainz on loopback answers 204 (no stats yet): the libraries stay as imported.
    listenbrainz = LoopbackServer()
    listenbrainz.handler = lambda _request: Reply(204, b"")
    listenbrainz.start()
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))}
    env.update(
        MUSICBUTLER_HOME=str(tmp_path / "home"),
        MUSICBUTLER_WAREHOUSE_URL=postgres_database(),
        MUSICBUTLER_DAGSTER_POSTGRES_URL=postgres_database(),
        MUSICBUTLER_MAIL_URL=(tmp_path / "outbox").as_uri(),
        MUSICBUTLER_MUSICBRAINZ_URL=bundled_snapshot_root().as_uri(),
        MUSICBUTLER_LISTENBRAINZ_URL=f"{listenbrainz.url}/1",
        MUSICBUTLER_SECRET_KEY="deployment-secret-key-0123456789",
        DAGSTER_HOME=str(dagster_home),
        PYTHONUNBUFFERED="1",
    )
    deployment = Deployment(tmp_path, env)
    try:
        yield deployment
    finally:
        deployment.stop()
        listenbrainz.stop()


def graphql(url: str, query: str, **variables: object) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


START_SCHEDULE = """
mutation ($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}"""

RUNS = """
query ($partition: String!) {
  runsOrError(filter: {tags: [{key: "dagster/partition", value: $partition}]}) {
    ... on Runs { results { runId status jobName tags { key value } } }
  }
}"""

MATERIALIZATIONS = """
query ($path: [String!]!, $partition: String!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(partitions: [$partition]) {
        partition runId
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
          ... on MarkdownMetadataEntry { mdStr }
        }
      }
    }
  }
}"""

CHECKS = """
{
  assetNodes {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}"""

CHECK_EXECUTIONS = """
query ($path: [String!]!, $check: String!, $partition: String!) {
  assetCheckExecutions(
    assetKey: {path: $path}, checkName: $check, partition: $partition, limit: 5
  ) {
    runId status partition
    evaluation { success partition }
  }
}"""


def test_the_shipped_schedule_fires_for_the_sample_day_on_a_postgres_deployment(
    deployment: Deployment,
) -> None:
    started = time.monotonic()
    env = deployment.env
    # The production setup steps of docs/operations.md, as commands (the instance's schema and the
    # warehouse's at once: they are separate databases).
    instance_migrate = deployment.start(
        "instance-migrate", "dagster", "instance", "migrate", env=env
    )
    deployment.run("musicbutler", "db", "upgrade")
    deployment.run("musicbutler", "subscribers", "import", str(SAMPLE_DIR / "subscribers.csv"))
    deployment.run("musicbutler", "library", "import", str(SAMPLE_DIR / "library.csv"))
    assert instance_migrate.wait(timeout=180) == 0

    setup_done = time.monotonic()

    # The webserver's clock: well before the tick, so the schedule is on before 21:35 however
    # long the webserver takes to start (Dagster fires no tick from before a schedule was on).
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    deployment.start(
        "webserver",
        *("dagster-webserver", "-m", LOCATION, "-h", "127.0.0.1", "-p", str(port)),
        env=env | shifted_clock(_seconds_until(TICK - SWITCH_ON_LEAD)),
    )

    def location_loaded() -> bool:
        try:
            data = graphql(url, CHECKS)
        except httpx.HTTPError:
            return False
        return len(data["assetNodes"]) == len(ASSETS)

    wait_for(location_loaded, timeout=120, what="the webserver", logs=deployment.logs)
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "scheduleName": SCHEDULE,
    }
    result = graphql(url, START_SCHEDULE, selector=selector)["startSchedule"]
    assert result["__typename"] == "ScheduleStateResult", result
    assert result["scheduleState"]["status"] == "RUNNING"
    switched_on = time.monotonic()

    # THE scheduler, on a clock a few seconds before the tick: the tick it fires is Dagster's own
    # evaluation of the shipped cron, late by however long the daemon took to start.
    daemon = deployment.start(
        "daemon",
        *("musicbutler", "daemon"),
        env=env | shifted_clock(_seconds_until(TICK - DAEMON_LEAD)),
    )

    def the_run_finished() -> dict[str, Any] | None:
        runs = graphql(url, RUNS, partition=DAY)["runsOrError"]["results"]
        done = [run for run in runs if run["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
        return done[0] if done else None

    assert daemon.poll() is None, deployment.logs()
    run = wait_for(
        the_run_finished,
        timeout=240,
        what=f"the {SCHEDULE} run for {DAY}",
        logs=deployment.logs,
    )
    finished = time.monotonic()
    logger.info(
        "deployment test: setup %.1f s, webserver up and schedule on %.1f s, daemon start to the "
        "run's end %.1f s",
        setup_done - started,
        switched_on - setup_done,
        finished - switched_on,
    )

    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert run["status"] == "SUCCESS", deployment.logs()
    assert run["jobName"] == "daily_drops_job"
    assert tags["dagster/schedule_name"] == SCHEDULE  # fired by the schedule, not launched by us
    assert tags["dagster/partition"] == DAY
    assert len(graphql(url, RUNS, partition=DAY)["runsOrError"]["results"]) == 1

    metadata: dict[str, dict[str, Any]] = {}
    for asset in ASSETS:
        found = graphql(url, MATERIALIZATIONS, path=[asset], partition=DAY)["assetOrError"]
        [materialization] = found["assetMaterializations"]
        assert materialization["partition"] == DAY
        assert materialization["runId"] == run["runId"]
        metadata[asset] = {
            entry["label"]: entry.get("intValue", entry.get("text", entry.get("mdStr")))
            for entry in materialization["metadataEntries"]
        }
    sent = metadata["drop_notifications"]["sent"]
    outbox = sorted((deployment.root / "outbox").glob("*.eml"))
    assert metadata["user_libraries"]["follows"] > 0
    assert metadata["artist_releases"]["release_groups"] > 0
    assert metadata["user_drops"]["drops"] > 0
    assert sent == metadata["user_drops"]["subscribers_with_drops"] == len(outbox) > 0
    assert metadata["drop_notifications"]["failed"] == 0
    messages = [email.message_from_bytes(path.read_bytes()) for path in outbox]
    assert {message["Subject"] for message in messages} == {"New Music for November 23, 2026"}
    assert len({message["To"] for message in messages}) == len(messages)  # one each

    checks = [
        (node["assetKey"]["path"], check["name"])
        for node in graphql(url, CHECKS)["assetNodes"]
        for check in node["assetChecksOrError"].get("checks", [])
    ]
    assert checks, "no asset checks in the definitions"
    for path, name in checks:
        executions = graphql(url, CHECK_EXECUTIONS, path=path, check=name, partition=DAY)[
            "assetCheckExecutions"
        ]
        assert executions, f"{name}: no execution recorded for partition {DAY}"
        latest = executions[0]
        assert latest["runId"] == run["runId"], (name, latest)
        assert latest["status"] == "SUCCEEDED", (name, latest)
        assert latest["evaluation"]["success"] is True, (name, latest)
    logger.info("deployment test: GraphQL checks %.1f s", time.monotonic() - finished)
