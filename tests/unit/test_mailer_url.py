"""MUSICBUTLER_MAIL_URL -> transport: options, validation, and no password in any text."""

from __future__ import annotations

from pathlib import Path

import pytest

from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.mail.backends.console import ConsoleMailer
from musicbutler_pipeline.mail.backends.file import FileMailer
from musicbutler_pipeline.mail.backends.smtp import SmtpMailer
from musicbutler_pipeline.mail.url import mailer_from_url


def test_smtp_url_options() -> None:
    mailer = mailer_from_url(
        "smtp://me%40corp:p%40ss@mail.example.org:587"
        "?starttls=1&timeout=5&rate=20&retries=2&backoff=0.5&helo=sender.example.org"
    )
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.host, mailer.port, mailer.starttls, mailer.implicit_tls) == (
        "mail.example.org",
        587,
        True,
        False,
    )
    assert mailer.username == "me@corp"
    assert mailer._password == "p@ss"
    assert (mailer.timeout, mailer.rate) == (5.0, 20.0)
    assert mailer.retry == RetryPolicy(attempts=3, backoff=0.5)
    assert mailer.local_hostname == "sender.example.org"
    assert mailer.description == "smtp://me@corp@mail.example.org:587?starttls=1"


def test_defaults_and_smtps() -> None:
    plain = mailer_from_url("smtp://relay")
    secure = mailer_from_url("smtps://relay")
    assert isinstance(plain, SmtpMailer) and isinstance(secure, SmtpMailer)
    assert (plain.port, plain.rate, plain.timeout, plain.retry.attempts) == (25, None, 30.0, 4)
    assert (secure.port, secure.implicit_tls) == (465, True)


def test_password_argument_overrides_the_url_and_never_shows() -> None:
    mailer = mailer_from_url("smtp://me:in-url-secret@relay:25", password="env-secret")
    assert isinstance(mailer, SmtpMailer)
    assert mailer._password == "env-secret"
    for text in (mailer.description, repr(mailer)):
        assert "secret" not in text


def test_retry_policy_backs_off_exponentially_with_a_cap() -> None:
    policy = RetryPolicy(attempts=10, backoff=1.0, max_backoff=5.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("smtp://relay?rate=0", "rate"),
        ("smtp://relay?rate=fast", "rate"),
        ("smtp://relay?timeout=-1", "timeout"),
        ("smtp://relay?timeout=nan", "timeout"),
        ("smtp://relay?retries=-1", "retries"),
        ("smtp://relay?starttls=maybe", "starttls"),
        ("smtp://relay?startls=1", "unknown"),
        ("smtps://relay?starttls=1", "already TLS"),
        ("smtp://relay:99999", "port"),
        ("smtp://:only-a-password@relay", "names no user"),
        ("smtp://relay?cafile=/nonexistent/ca.pem", "cafile"),
        ("gopher://relay", "scheme"),
    ],
)
def test_bad_urls_are_refused_with_a_reason_but_without_the_url(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        mailer_from_url(url)
    assert "only-a-password" not in str(raised.value)


def test_cafile_must_be_a_ca_bundle(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(ValueError, match="no CA bundle"):
        mailer_from_url(f"smtp://relay?starttls=1&cafile={bogus}")


def test_other_schemes(tmp_path: Path) -> None:
    outbox = mailer_from_url((tmp_path / "outbox").as_uri())
    assert isinstance(outbox, FileMailer) and outbox.directory == tmp_path / "outbox"
    assert isinstance(mailer_from_url("console://"), ConsoleMailer)
