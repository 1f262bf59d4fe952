from pathlib import Path

import pytest

from musicbutler_pipeline.settings import (
    MIN_SECRET_KEY_LENGTH,
    Settings,
    SettingsError,
    display_url,
    secret_key,
)


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


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("smtp://mailer:hunter2@h:587?starttls=1", "smtp://mailer:***@h:587?starttls=1"),
        ("postgresql://u:hunter2@[::1]:5432/mb", "postgresql://u:***@[::1]:5432/mb"),
        (
            "postgresql://u@db/mb?password=hunter2&sslmode=require",
            "postgresql://u@db/mb?password=***&sslmode=require",
        ),
        ("sqlite:////var/lib/mb/warehouse.db", "sqlite:////var/lib/mb/warehouse.db"),
        ("console://", "console://"),
        ("https://musicbrainz.org/ws/2", "https://musicbrainz.org/ws/2"),
    ],
)
def test_display_url_hides_the_password(url: str, shown: str) -> None:
    assert display_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "smtp:/mailer:hunter2@h:587",  # no authority: where the password ends is unknown
        "smtp://mailer:hun/ter2@h:587",  # a "/" in the password splits the URL
        "smtp://mailer:12/hunter2@h",
        "smtp://mailer:hunter2@h:abc",
        "postgresql://u:hunter2@h:99999/db",
        "mailer:hunter2@h",
    ],
)
def test_display_url_never_echoes_a_malformed_url(url: str) -> None:
    assert "hunter2" not in display_url(url)
    assert "not shown" in display_url(url)


def test_secret_key_is_created_once_and_kept(tmp_path: Path) -> None:
    key = secret_key(tmp_path / "home", {})
    assert len(key) >= MIN_SECRET_KEY_LENGTH
    assert secret_key(tmp_path / "home", {}) == key
    assert (tmp_path / "home" / "secret_key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in (tmp_path / "home").iterdir()] == ["secret_key"]


@pytest.mark.parametrize("content", ["", "\n", "short-key"])
def test_a_short_key_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "secret_key").write_text(content)
    with pytest.raises(SettingsError) as raised:
        secret_key(tmp_path, {})
    assert raised.value.variable == str(tmp_path / "secret_key")
    assert f"at least {MIN_SECRET_KEY_LENGTH}" in str(raised.value)


def test_a_short_configured_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        secret_key(tmp_path, {"MUSICBUTLER_SECRET_KEY": "short-key"})
    assert raised.value.variable == "MUSICBUTLER_SECRET_KEY"
    assert "short-key" not in str(raised.value)
    assert not (tmp_path / "secret_key").exists()
