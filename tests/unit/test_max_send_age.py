import pytest

from musicbutler_pipeline.settings import Settings, SettingsError


def test_max_send_age_defaults_to_two_days() -> None:
    assert Settings.from_env({}).max_send_age_days == 2
    assert Settings.from_env({"MUSICBUTLER_MAX_SEND_AGE_DAYS": " 5 "}).max_send_age_days == 5


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("two", "'two' is not a whole number of days"),
        ("1.5", "'1.5' is not a whole number of days"),
        ("-1", "must be between 0 and 3650 days, got '-1'"),
        ("99999", "must be between 0 and 3650 days, got '99999'"),
    ],
)
def test_bad_max_send_age_is_one_line_naming_the_variable(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"MUSICBUTLER_MAX_SEND_AGE_DAYS": value})
    assert str(raised.value) == f"MUSICBUTLER_MAX_SEND_AGE_DAYS: {problem}"
    assert "\n" not in str(raised.value)
