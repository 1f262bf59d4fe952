"""The environment reaches the resources through one SettingsResource, read when a run starts."""

from __future__ import annotations

import pytest
from dagster import build_init_resource_context, build_resources

from musicbutler_pipeline.definitions import build_definitions
from musicbutler_pipeline.resources import SettingsResource, WarehouseResource
from musicbutler_pipeline.settings import SettingsError


def test_settings_are_read_when_the_run_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSICBUTLER_WAREHOUSE_URL", "sqlite:///at-start.db")
    with build_resources({"warehouse": WarehouseResource(settings=SettingsResource())}) as res:
        monkeypatch.setenv("MUSICBUTLER_WAREHOUSE_URL", "sqlite:///later.db")
        assert res.warehouse.resolved_url() == "sqlite:///at-start.db"


def test_a_malformed_variable_fails_the_step_that_needs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MUSICBUTLER_MAIL_FROM", "nobody")
    settings = SettingsResource()
    settings.setup_for_execution(build_init_resource_context())
    with pytest.raises(SettingsError, match=r"^MUSICBUTLER_MAIL_FROM: "):
        settings.get()


def test_definitions_load_whatever_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSICBUTLER_WAREHOUSE_URL", "not a url")
    resources = build_definitions().resources
    assert resources is not None
    assert all(resource.settings is not None for resource in resources.values())
