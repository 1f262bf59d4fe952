"""Preferences tokens: same key as unsubscribe tokens, another purpose, so neither passes for
the other."""

from __future__ import annotations

import pytest

from musicbutler_pipeline.mail.tokens import (
    InvalidToken,
    MailIdentity,
    make_preferences_token,
    make_token,
    read_preferences_token,
    read_token,
)

KEY = b"test-secret-key-0123456789"


def test_preferences_token_round_trips() -> None:
    for subscriber_id in (1, 42, 10**18):
        assert read_preferences_token(make_preferences_token(subscriber_id, KEY), KEY) == (
            subscriber_id
        )


def test_an_unsubscribe_token_is_not_a_preferences_token() -> None:
    with pytest.raises(InvalidToken, match="preferences token signature does not match"):
        read_preferences_token(make_token(42, KEY), KEY)


def test_a_preferences_token_is_not_an_unsubscribe_token() -> None:
    with pytest.raises(InvalidToken, match="unsubscribe token signature does not match"):
        read_token(make_preferences_token(42, KEY), KEY)


def test_preferences_token_from_another_key_or_id_is_refused() -> None:
    token = make_preferences_token(42, KEY)
    with pytest.raises(InvalidToken, match="signature"):
        read_preferences_token(token, b"another-key-0123456789")
    with pytest.raises(InvalidToken, match="signature"):
        read_preferences_token("43." + token.split(".")[1], KEY)
    with pytest.raises(InvalidToken, match="malformed preferences token"):
        read_preferences_token(token + "x", KEY)


def test_mail_identity_gives_the_preferences_url() -> None:
    identity = MailIdentity(
        mail_from="MusicButler <butler@musicbutler.example>",
        base_url="https://musicbutler.example/",
        secret_key=KEY,
    )
    assert identity.preferences_url(42) == (
        f"https://musicbutler.example/preferences/{make_preferences_token(42, KEY)}"
    )
