"""The retention settings: defaults, and one-line refusals of windows that would prune drops a
day may still need."""

from datetime import date

import pytest

from musicbutler_pipeline.settings import Settings, SettingsError
from musicbutler_pipeline.warehouse.retention import retention_start


def test_defaults_keep_90_days_of_drops_and_30_of_source_pages() -> None:
    settings = Settings.from_env({})
    assert (settings.keep_drops_days, settings.keep_source_pages_days) == (90, 30)


def test_a_send_age_past_90_days_moves_the_default_drops_window_past_it() -> None:
    settings = Settings.from_env({"MUSICBUTLER_MAX_SEND_AGE_DAYS": "120"})
    assert settings.keep_drops_days == 121


@pytest.mark.parametrize(
    ("environment", "variable", "problem"),
    [
        ({"MUSICBUTLER_KEEP_DROPS_DAYS": "ninety"}, "KEEP_DROPS_DAYS", "'ninety' is not a whole"),
        ({"MUSICBUTLER_KEEP_DROPS_DAYS": "-1"}, "KEEP_DROPS_DAYS", "must be between 0 and"),
        # doctor looks back a week for owed email not sent.
        ({"MUSICBUTLER_KEEP_DROPS_DAYS": "7"}, "KEEP_DROPS_DAYS", "more than 7 days"),
        (
            {"MUSICBUTLER_MAX_SEND_AGE_DAYS": "30", "MUSICBUTLER_KEEP_DROPS_DAYS": "30"},
            "KEEP_DROPS_DAYS",
            "more than 30 days (drops are read while a day may still be sent: "
            "MUSICBUTLER_MAX_SEND_AGE_DAYS=30",
        ),
        ({"MUSICBUTLER_KEEP_SOURCE_PAGES_DAYS": "1.5"}, "KEEP_SOURCE_PAGES_DAYS", "not a whole"),
        ({"MUSICBUTLER_KEEP_SOURCE_PAGES_DAYS": "-3"}, "KEEP_SOURCE_PAGES_DAYS", "between 0"),
    ],
)
def test_bad_retention_is_refused_in_one_line(
    environment: dict[str, str], variable: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(environment)
    assert refused.value.variable == f"MUSICBUTLER_{variable}"
    assert problem in str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_smallest_windows_allowed() -> None:
    settings = Settings.from_env(
        {"MUSICBUTLER_KEEP_DROPS_DAYS": "8", "MUSICBUTLER_KEEP_SOURCE_PAGES_DAYS": "0"}
    )
    assert (settings.keep_drops_days, settings.keep_source_pages_days) == (8, 0)


def test_keeping_n_days_keeps_today_and_the_n_days_before() -> None:
    assert retention_start(date(2026, 12, 1), 90) == date(2026, 9, 2)
    assert retention_start(date(2026, 12, 1), 0) == date(2026, 12, 1)
