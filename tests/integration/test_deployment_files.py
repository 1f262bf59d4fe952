"""The deployment files agree with the code and the docs: every setting reaches the containers,
secrets only from the environment, one scheduler with time to stop, and the webserver's code
location named as the daemon's (a schedule's on/off state is keyed by location and name).
`docker-compose config` in .ci/run checks that compose.yaml parses and interpolates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from musicbutler_pipeline.daemon import STOP_GRACE_SECONDS, daemon_command

REPO = Path(__file__).resolve().parents[2]
# Set by the image (Dockerfile; the code version is a build argument) or built from
# POSTGRES_PASSWORD by compose.yaml itself.
SET_BY_THE_DEPLOYMENT = {
    "MUSICBUTLER_HOME",
    "DAGSTER_HOME",
    "MUSICBUTLER_CODE_VERSION",
    "MUSICBUTLER_WAREHOUSE_URL",
    "MUSICBUTLER_DAGSTER_POSTGRES_URL",
}
SECRETS = {"MUSICBUTLER_SECRET_KEY", "MUSICBUTLER_SMTP_PASSWORD"}
MUSICBUTLER_SERVICES = ("migrate", "codeserver", "webserver", "daemon", "web")


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def documented_variables() -> set[str]:
    readme = (REPO / "README.md").read_text()
    return set(re.findall(r"^\| `((?:MUSICBUTLER|DAGSTER)_[A-Z_]+)` \|", readme, re.MULTILINE))


def seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(
        float(amount) * units[unit] for amount, unit in re.findall(r"(\d+)([smh])", duration)
    )


def test_every_documented_setting_reaches_every_musicbutler_container() -> None:
    services = compose()["services"]
    wanted = documented_variables() - SET_BY_THE_DEPLOYMENT
    assert "MUSICBUTLER_MAIL_URL" in wanted  # the README table was found
    for name in MUSICBUTLER_SERVICES:
        environment = services[name]["environment"]
        missing = wanted - set(environment)
        assert not missing, f"compose.yaml service {name} does not pass {sorted(missing)}"
        assert {"MUSICBUTLER_WAREHOUSE_URL", "MUSICBUTLER_DAGSTER_POSTGRES_URL"} <= set(environment)


def test_values_come_from_the_environment_and_env_example_names_each() -> None:
    services = compose()["services"]
    example = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    for name, value in services["daemon"]["environment"].items():
        assert "${" in value, f"{name} is written in compose.yaml instead of read from .env"
    interpolated = set(re.findall(r"\$\{([A-Z_]+)", (REPO / "compose.yaml").read_text()))
    assert interpolated - listed == set(), "variables compose.yaml reads but .env.example omits"
    for secret in SECRETS | {"POSTGRES_PASSWORD"}:
        assert re.search(rf"^{secret}=$", example, re.MULTILINE), f"{secret} has a value"


def test_one_scheduler_that_has_time_to_stop() -> None:
    services = compose()["services"]
    daemon = services["daemon"]
    assert daemon["command"][:2] == ["musicbutler", "daemon"]
    assert daemon["deploy"]["replicas"] == 1
    assert seconds(daemon["stop_grace_period"]) > STOP_GRACE_SECONDS
    others = [name for name in services if name != "daemon"]
    for name in others:
        command = " ".join(services[name].get("command") or [])
        assert "dagster-daemon" not in command and "musicbutler daemon" not in command, name
    unit = (REPO / "deploy" / "musicbutler-daemon.service").read_text()
    [timeout] = re.findall(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert int(timeout) > STOP_GRACE_SECONDS


def test_the_webserver_location_is_named_as_the_daemon_names_its_own() -> None:
    module = daemon_command("musicbutler_pipeline.definitions")[-1]
    for workspace in ("workspace.yaml", "workspace-systemd.yaml"):
        [entry] = yaml.safe_load((REPO / "deploy" / workspace).read_text())["load_from"]
        assert entry["grpc_server"]["location_name"] == module, workspace
        assert entry["grpc_server"]["port"] == 4000, workspace
    codeserver = compose()["services"]["codeserver"]["command"]
    assert codeserver[codeserver.index("--location-name") + 1] == module
    assert codeserver[codeserver.index("--module-name") + 1] == module


def test_the_image_runs_as_a_user_and_installs_the_tested_versions() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "--constraint constraints.txt" in dockerfile
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
