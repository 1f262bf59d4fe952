"""The default DAGSTER_HOME gets the project's instance settings once, atomically, never over an
operator's own file; an operator's DAGSTER_HOME is left alone."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from musicbutler_pipeline.runner import INSTANCE_SETTINGS, dagster_instance, prepare_dagster_home
from musicbutler_pipeline.settings import Settings


def test_the_default_home_gets_the_project_settings(
    isolated_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    instance = dagster_instance(Settings.from_env())
    try:
        assert not instance.telemetry_enabled
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    finally:
        instance.dispose()
    written = isolated_environment / "dagster" / "dagster.yaml"
    assert written.read_bytes() == INSTANCE_SETTINGS.read_bytes()
    assert written.stat().st_mode & 0o777 == 0o644
    assert not [p for p in written.parent.iterdir() if p.name.startswith(".dagster.yaml.")]


def test_an_operators_file_is_never_replaced(
    isolated_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    own = isolated_environment / "dagster" / "dagster.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("telemetry:\n  enabled: true\n")
    prepare_dagster_home(Settings.from_env())
    assert own.read_text() == "telemetry:\n  enabled: true\n"


def test_an_operators_dagster_home_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "operator-dagster-home"
    monkeypatch.setenv("DAGSTER_HOME", str(elsewhere))
    assert prepare_dagster_home(Settings.from_env()) == elsewhere
    assert elsewhere.is_dir()
    assert not (elsewhere / "dagster.yaml").exists()


def test_first_uses_racing_write_one_whole_file(isolated_environment: Path) -> None:
    """Processes released together each try to write it: one does, all see the whole file."""
    home = isolated_environment / "dagster"
    home.mkdir(parents=True)
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from musicbutler_pipeline.runner import ensure_instance_settings
        print("ready", flush=True)
        sys.stdin.readline()  # the start line, given to all at once
        print(ensure_instance_settings(Path({str(home)!r})), flush=True)
        """
    )
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for racer in racers:
        assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write("go\n")
        racer.stdin.flush()
    outputs = [racer.communicate(timeout=120)[0].strip() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    assert sorted(outputs) == ["False", "False", "False", "True"]
    assert (home / "dagster.yaml").read_bytes() == INSTANCE_SETTINGS.read_bytes()
    assert [p.name for p in home.iterdir()] == ["dagster.yaml"]
