from pathlib import Path

import pytest

from musicbutler_pipeline.settings import Settings, SettingsError


def test_defaults_live_under_musicbutler_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"MUSICBUTLER_HOME": str(tmp_path / "home")})
    assert settings.warehouse_url == f"sqlite:///{tmp_path / 'home' / 'warehouse.db'}"
    assert settings.mail_url == (tmp_path / "home" / "outbox").as_uri()
    assert settings.dagster_home == tmp_path / "home" / "dagster"
    assert settings.musicbrainz_rate == 1.0
    assert settings.musicbrainz_url == "https://musicbrainz.org/ws/2"
    assert settings.contact is None


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("MUSICBUTLER_MAIL_URL", "localhost:25", "no scheme"),
        ("MUSICBUTLER_MAIL_URL", "ftp://host/x", "scheme 'ftp' is not supported"),
        ("MUSICBUTLER_WAREHOUSE_URL", "warehouse.db", "no scheme"),
        ("MUSICBUTLER_WAREHOUSE_URL", "mysql://u@h/db", "'mysql' is not supported"),
        ("MUSICBUTLER_MUSICBRAINZ_RATE", "0", "greater than 0"),
        ("MUSICBUTLER_MUSICBRAINZ_RATE", "fast", "not a number"),
        ("MUSICBUTLER_MUSICBRAINZ_RATE", "nan", "greater than 0"),
        ("MUSICBUTLER_MUSICBRAINZ_URL", "musicbrainz.org/ws/2", "no scheme"),
        ("MUSICBUTLER_BASE_URL", "example.org", "no scheme"),
        ("MUSICBUTLER_MAIL_FROM", "MusicButler", "no e-mail address"),
        ("MUSICBUTLER_MAIL_URL", "smtp://u:hunter2@mail.example.org:587?rate=0", "rate"),
    ],
)
def test_malformed_setting_names_the_variable(variable: str, value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable
    assert problem in str(raised.value)
    assert str(raised.value).startswith(f"{variable}: ")


def test_mail_url_password_stays_out_of_reprs_and_errors() -> None:
    settings = Settings.from_env({"MUSICBUTLER_MAIL_URL": "smtp://u:hunter2@mail.example.org:587"})
    assert "hunter2" not in repr(settings)
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"MUSICBUTLER_MAIL_URL": "smtp://u:hunter2@mail.example.org?rate=0"})
    assert "hunter2" not in str(raised.value)


def test_plain_postgresql_url_is_accepted() -> None:
    settings = Settings.from_env({"MUSICBUTLER_WAREHOUSE_URL": "postgresql://u:p@db:5432/mb"})
    assert settings.warehouse_url == "postgresql://u:p@db:5432/mb"
