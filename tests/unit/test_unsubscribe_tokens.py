"""Unsubscribe tokens: genuine ones read back, anything else is refused."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from musicbutler_pipeline.mail.tokens import (
    InvalidToken,
    make_token,
    read_token,
    unsubscribe_links,
)

KEY = b"test-secret-key-0123456789"


def test_token_round_trips() -> None:
    for subscriber_id in (1, 42, 10**18):
        assert read_token(make_token(subscriber_id, KEY), KEY) == subscriber_id


def test_tokens_are_stable_across_releases() -> None:
    # Links in emails already sent must keep working: the format may never change silently.
    assert make_token(42, KEY) == "42.wAmp090S5UsgB42H9wDr2w"


def test_token_from_another_key_is_refused() -> None:
    with pytest.raises(InvalidToken, match="signature"):
        read_token(make_token(42, b"another-key-0123456789"), KEY)


def test_signature_of_one_subscriber_does_not_unsubscribe_another() -> None:
    signature = make_token(42, KEY).partition(".")[2]
    with pytest.raises(InvalidToken):
        read_token(f"43.{signature}", KEY)


def test_tampered_signature_is_refused() -> None:
    token = make_token(42, KEY)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(InvalidToken):
        read_token(flipped, KEY)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "42",
        "42.",
        ".wAmp090S5UsgB42H9wDr2w",
        "abc.wAmp090S5UsgB42H9wDr2w",
        "042.wAmp090S5UsgB42H9wDr2w",  # same number, different spelling
        "-42.wAmp090S5UsgB42H9wDr2w",
        "0.wAmp090S5UsgB42H9wDr2w",
        "4².wAmp090S5UsgB42H9wDr2w",  # str.isdigit() says yes, int() says no
        "42.wAmp090S5UsgB42H9wDr2w=",
        "42.wAmp090S5UsgB42H9wDr2w.extra",
        "42.wAmp090S5UsgB42H9wDr2",
        "42 .wAmp090S5UsgB42H9wDr2w",
        "1" * 25 + ".wAmp090S5UsgB42H9wDr2w",
        "42.wAmp090S5UsgB42H9wDr2w\n",
        "42.wÄmp090S5UsgB42H9wDr2w",
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        read_token(token, KEY)


def test_make_token_refuses_ids_no_subscriber_has() -> None:
    with pytest.raises(ValueError):
        make_token(0, KEY)


def test_links_carry_the_token_over_https_and_mailto() -> None:
    links = unsubscribe_links(
        42,
        base_url="https://mb.example.org/",
        mail_from="Müsik Bütler <butler@mb.example.org>",
        key=KEY,
    )
    token = make_token(42, KEY)
    assert links.url == f"https://mb.example.org/unsubscribe/{token}"
    mailto = urlsplit(links.mailto)
    assert (mailto.scheme, unquote(mailto.path)) == ("mailto", "butler@mb.example.org")
    assert parse_qs(mailto.query) == {"subject": [f"unsubscribe {token}"]}
    assert links.mailto.isascii() and " " not in links.mailto
