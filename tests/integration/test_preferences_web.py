"""The preferences page over real HTTP (uvicorn on loopback), on a temporary SQLite warehouse,
and the digest's "Manage preferences" link followed to it."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine

from musicbutler_pipeline.domain.preferences import Frequency, Preferences, ReleaseType
from musicbutler_pipeline.domain.sends import Sender
from musicbutler_pipeline.mail.backends.memory import MemoryMailer
from musicbutler_pipeline.mail.tokens import make_preferences_token, make_token
from musicbutler_pipeline.services.notifier import send_digests
from musicbutler_pipeline.warehouse.ledger import SendLedger
from musicbutler_pipeline.warehouse.preferences import read_preferences, save_preferences
from musicbutler_pipeline.warehouse.subscribers import unsubscribe_by_id
from musicbutler_pipeline.web.app import create_app
from tests.builders import add_subscriber, follow, mbid
from tests.integration.test_notifier_smtp import DAY, IDENTITY, _day_with_four_recipients
from tests.integration.test_unsubscribe_web import serving

KEY = b"web-test-key-0123456789"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# A name as MusicBrainz could have it: markup in it must come out as text.
ODD_NAME = 'Sigur Rós <script>alert("x")</script> & Co'


@pytest.fixture
def web(sqlite_engine: Engine) -> Iterator[httpx.Client]:
    with serving(create_app(sqlite_engine, KEY)) as client:
        yield client


def _url(subscriber_id: int) -> str:
    return f"/preferences/{make_preferences_token(subscriber_id, KEY)}"


def _blocking(engine: Engine, subscriber_id: int, chosen: Preferences) -> None:
    with engine.begin() as connection:
        save_preferences(connection, {subscriber_id: chosen})


def _form(**fields: str | list[str]) -> dict[str, str | list[str]]:
    """The page's form as a browser sends it: every field, overridden by ``fields``."""
    sent: dict[str, str | list[str]] = {
        "types": ["album", "single", "ep"],
        "appearances": "on",
        "frequency": "daily",
        "weekday": "monday",
        "block": "",
    }
    sent.update(fields)
    return sent


def test_get_shows_the_current_preferences(web: httpx.Client, sqlite_engine: Engine) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org", "Zoë")
    follow(sqlite_engine, zoe, ODD_NAME)
    blocked = mbid(f"artist:{ODD_NAME}")
    _blocking(
        sqlite_engine,
        zoe,
        Preferences(
            release_types=frozenset({ReleaseType.ALBUM, ReleaseType.EP}),
            appearances=False,
            frequency=Frequency.WEEKLY,
            weekday="friday",
            blocked_artists=frozenset({blocked}),
        ),
    )
    response = web.get(_url(zoe))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    page = response.text
    assert '<form method="post">' in page
    assert "z***@example.org" in page and "zoe@example.org" not in page
    checked = set(re.findall(r'name="types" value="(\w+)" checked', page))
    assert checked == {"album", "ep"}
    assert 'name="appearances" value="off" checked' in page
    assert 'name="frequency" value="weekly" checked' in page
    assert '<option value="friday" selected>' in page
    assert f'name="unblock" value="{blocked}"' in page
    assert "Sigur Rós &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in page
    assert "<script>" not in page
    assert "Saved" not in page


def test_post_changes_the_preferences(web: httpx.Client, sqlite_engine: Engine) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    ben = add_subscriber(sqlite_engine, "ben@example.org")
    kept, dropped, added = mbid("artist:kept"), mbid("artist:dropped"), mbid("artist:added")
    _blocking(sqlite_engine, zoe, Preferences(blocked_artists=frozenset({kept, dropped})))
    response = web.post(
        _url(zoe),
        data=_form(
            types=["album", "live"],
            appearances="off",
            frequency="weekly",
            weekday="sunday",
            block=added.upper(),
            unblock=dropped,
        ),
    )
    assert response.status_code == 200
    assert "Saved" in response.text
    assert read_preferences(sqlite_engine, zoe) == Preferences(
        release_types=frozenset({ReleaseType.ALBUM, ReleaseType.LIVE}),
        appearances=False,
        frequency=Frequency.WEEKLY,
        weekday="sunday",
        blocked_artists=frozenset({kept, added}),
    )
    # The page shows what was saved; nobody else changed.
    assert '<option value="sunday" selected>' in response.text
    assert read_preferences(sqlite_engine, ben) == Preferences()

    back = web.post(_url(zoe), data=_form(frequency="daily", weekday="sunday"))
    assert back.status_code == 200
    after = read_preferences(sqlite_engine, zoe)
    assert (after.frequency, after.weekday) == (Frequency.DAILY, None)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"types": []}, "types"),
        ({"types": ["album", "mixtape"]}, "types"),
        ({"appearances": "sometimes"}, "appearances"),
        ({"frequency": "hourly"}, "frequency"),
        ({"frequency": "weekly", "weekday": "someday"}, "weekday"),
        ({"block": "not-an-mbid"}, "artist MBID"),
        ({"unblock": "42"}, "artist MBID"),
        ({"frequency": ["daily", "weekly"]}, "frequency"),
    ],
)
def test_bad_values_get_400_naming_the_field_and_save_nothing(
    web: httpx.Client, sqlite_engine: Engine, fields: dict[str, str | list[str]], named: str
) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    before = Preferences(release_types=frozenset({ReleaseType.SINGLE}))
    _blocking(sqlite_engine, zoe, before)
    response = web.post(_url(zoe), data=_form(**fields))
    assert response.status_code == 400
    errors = re.findall(r'<p class="notice error" role="alert">([^<]*)</p>', response.text)
    assert len(errors) == 1 and errors[0].startswith(named), errors
    assert "\n" not in errors[0] and errors[0].endswith(". Nothing was saved.")
    assert "Saved" not in response.text
    assert read_preferences(sqlite_engine, zoe) == before
    # The form is shown again as it was sent; types the form does not offer show what is stored.
    sent = fields.get("types", _form()["types"])
    shown = set(re.findall(r'name="types" value="(\w+)" checked', response.text))
    assert shown == ({"single"} if "mixtape" in sent else set(sent))


def test_a_refused_form_keeps_what_was_sent(web: httpx.Client, sqlite_engine: Engine) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    follow(sqlite_engine, zoe, "Björk")
    björk = mbid("artist:Björk")
    stored = Preferences(
        release_types=frozenset({ReleaseType.SINGLE}),
        frequency=Frequency.WEEKLY,
        weekday="friday",
        blocked_artists=frozenset({björk}),
    )
    _blocking(sqlite_engine, zoe, stored)
    typo = "5b11f4ce-a62d-471e-81fc-a69a8278c7d"  # one digit short
    response = web.post(
        _url(zoe),
        data=_form(
            types=["album", "live", "broadcast"],
            appearances="off",
            frequency="weekly",
            weekday="sunday",
            block=typo,
            unblock=björk,
        ),
    )
    assert response.status_code == 400
    page = response.text
    errors = re.findall(r'<p class="notice error" role="alert">([^<]*)</p>', page)
    assert errors == [
        f"artist MBID &#39;{typo}&#39;: not a MusicBrainz identifier (a UUID). Nothing was saved."
    ]
    assert set(re.findall(r'name="types" value="(\w+)" checked', page)) == {
        "album",
        "live",
        "broadcast",
    }
    assert 'name="appearances" value="off" checked' in page
    assert 'name="frequency" value="weekly" checked' in page
    assert '<option value="sunday" selected>' in page and 'friday" selected' not in page
    assert f'name="block" value="{typo}"' in page  # to correct, not to type again
    assert f'name="unblock" value="{björk}" checked' in page
    assert read_preferences(sqlite_engine, zoe) == stored

    # Nothing ticked: said in words; a value the form never offers shows what is stored.
    response = web.post(_url(zoe), data=_form(types=[], appearances="maybe"))
    assert response.status_code == 400
    assert re.findall(r'role="alert">([^<]*)</p>', response.text) == [
        "types: tick at least one release type. Nothing was saved."
    ]
    assert not re.findall(r'name="types" value="(\w+)" checked', response.text)
    assert 'name="appearances" value="on" checked' in response.text  # stored: on
    assert f'name="unblock" value="{björk}">' in response.text  # not ticked this time
    assert read_preferences(sqlite_engine, zoe) == stored


def test_forged_tokens_and_unsubscribe_tokens_get_400(
    web: httpx.Client, sqlite_engine: Engine
) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    genuine = make_preferences_token(zoe, KEY)
    forged = [
        f"/preferences/{zoe}.{'A' * 22}",
        f"/preferences/{make_preferences_token(zoe, b'another-key-0123456789')}",
        f"/preferences/{genuine}x",
        "/preferences/",
        f"/preferences/{make_token(zoe, KEY)}",  # an unsubscribe link's token
    ]
    for url in forged:
        assert web.get(url).status_code == 400, url
        posted = web.post(url, data=_form(types=["album"]))
        assert posted.status_code == 400, url
        assert "This link is not valid" in posted.text
    assert read_preferences(sqlite_engine, zoe) == Preferences()
    # And the other way round: a preferences token does not unsubscribe.
    assert web.post(f"/unsubscribe/{genuine}", data={}).status_code == 400


def test_an_unsubscribed_person_gets_404_and_nothing_is_saved(
    web: httpx.Client, sqlite_engine: Engine
) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    unsubscribe_by_id(sqlite_engine, zoe)
    response = web.get(_url(zoe))
    assert response.status_code == 404
    assert "You are unsubscribed" in response.text
    assert web.post(_url(zoe), data=_form(types=["album"])).status_code == 404
    assert read_preferences(sqlite_engine, zoe) == Preferences()
    assert web.get(_url(10**9)).status_code == 404  # a genuine token for nobody


def test_other_bodies_are_refused(web: httpx.Client, sqlite_engine: Engine) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    assert web.post(_url(zoe), json={"types": "album"}).status_code == 415
    too_many = "&".join(["types=album"] * 500)
    response = web.post(_url(zoe), content=too_many.encode(), headers=FORM)
    assert response.status_code == 400
    assert "too many fields" in response.text
    # The app's body-size limit holds here too.
    huge = web.post(_url(zoe), content=b"block=" + b"a" * (65 * 1024), headers=FORM)
    assert huge.status_code == 413
    assert read_preferences(sqlite_engine, zoe) == Preferences()


def test_the_digest_links_a_preferences_page_that_works(sqlite_engine: Engine) -> None:
    ids = _day_with_four_recipients(sqlite_engine)
    mailer = MemoryMailer()
    ledger = SendLedger(sqlite_engine, Sender(run_id="run-1", host="test", pid=1, code_version="t"))
    report = send_digests(
        sqlite_engine,
        DAY,
        mailer=mailer,
        ledger=ledger,
        identity=IDENTITY,
        clock=lambda: datetime(2026, 11, 23, 21, 35, tzinfo=UTC),
    )
    assert report.sent == 4
    message = next(m for m in mailer.messages if "zoe@example.org" in str(m["To"]))
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    links = re.findall(r"^Manage preferences: (\S+)\s*$", text, re.M)
    assert links == [IDENTITY.preferences_url(ids["zoe@example.org"])]
    # css-inline adds style attributes after the href.
    assert re.search(f'href="{re.escape(links[0])}"[^>]*>Manage preferences</a>', html)
    path = links[0].removeprefix(IDENTITY.base_url)
    with serving(create_app(sqlite_engine, IDENTITY.secret_key)) as web:
        page = web.get(path)
        assert page.status_code == 200
        assert "z***@example.org" in page.text
        saved = web.post(path, data=_form(types=["album"]))
        assert saved.status_code == 200
    chosen = read_preferences(sqlite_engine, ids["zoe@example.org"])
    assert chosen.release_types == frozenset({ReleaseType.ALBUM})


def test_access_log_leaves_the_token_out(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    token = make_preferences_token(zoe, KEY)
    with serving(create_app(sqlite_engine, KEY)) as web:
        web.get(f"/preferences/{token}")
        web.post(f"/preferences/{token}", data=_form(types=["album"]))
        web.post(f"/preferences/{token}", data=_form(types=["nope"]))
    # Only the server's own records count: the HTTP client logs the URLs it requests.
    messages = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("musicbutler_pipeline")
    ]
    assert any("GET /preferences/… HTTP/1.1" in message for message in messages)
    assert any("POST /preferences/… HTTP/1.1" in message for message in messages)
    signature = token.partition(".")[2]
    assert not any(signature in message for message in messages)


def test_the_page_round_trips_on_each_dialect(engine: Engine) -> None:
    zoe = add_subscriber(engine, "zoe@example.org")
    follow(engine, zoe, "Björk")
    björk = mbid("artist:Björk")
    with serving(create_app(engine, KEY)) as web:
        saved = web.post(
            _url(zoe),
            data=_form(types=["album", "remix"], frequency="weekly", weekday="friday", block=björk),
        )
        assert saved.status_code == 200
        assert "Saved" in saved.text
        page = web.get(_url(zoe)).text
    assert f'name="unblock" value="{björk}"> Unblock <span dir="auto">Björk</span>' in page
    assert read_preferences(engine, zoe) == Preferences(
        release_types=frozenset({ReleaseType.ALBUM, ReleaseType.REMIX}),
        frequency=Frequency.WEEKLY,
        weekday="friday",
        blocked_artists=frozenset({björk}),
    )
