"""SmtpMailer against real aiosmtpd servers on loopback: TLS modes, AUTH, refusals, drops."""

from __future__ import annotations

import base64
import logging
import socket
from datetime import UTC, date, datetime
from html.parser import HTMLParser

import pytest

from musicbutler_pipeline.domain.digest import render_digest
from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    Digest,
    DigestArtist,
    ReleaseGroup,
    Subscriber,
)
from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.mail.backends.base import MailError
from musicbutler_pipeline.mail.backends.smtp import SmtpMailer
from musicbutler_pipeline.mail.message import build_message, message_id
from musicbutler_pipeline.mail.tokens import unsubscribe_links
from musicbutler_pipeline.mail.url import mailer_from_url
from musicbutler_pipeline.resources.mailer import MailerResource
from tests.builders import mbid

pytest_plugins = ["tests.fixtures.smtp"]

DAY = date(2026, 11, 23)
MAIL_FROM = "MusicButler <butler@musicbutler.example>"
KEY = b"test-key-0123456789abcdef"
TITLE = "Love & <Hate> \"Live\" 'Edit'"


def _parse_html(html: str) -> tuple[list[str], list[str], set[str]]:
    """Text nodes, <img alt> values (entities decoded) and tag names of an HTML document."""
    texts: list[str] = []
    alts: list[str] = []
    tags: set[str] = set()

    class Collector(HTMLParser):
        def handle_data(self, data: str) -> None:
            texts.append(data)

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.add(tag)
            if tag == "img":
                alts.append(dict(attrs)["alt"] or "")

    Collector(convert_charrefs=True).feed(html)
    return texts, alts, tags


def _digest(subscriber_id: int, email: str, name: str | None) -> Digest:
    release = ReleaseGroup(
        mbid=mbid("rg:love-hate"),
        title=TITLE,
        primary_type="Single",
        secondary_types=("Live",),
        first_release_date="2026-11-23",
        release_date=DAY,
        artists=(
            CreditedArtist(mbid("artist:rosalia"), "ROSALÍA", " feat. "),
            CreditedArtist(mbid("artist:utada"), "宇多田ヒカル", ""),
        ),
    )
    links = unsubscribe_links(
        subscriber_id, base_url="https://mb.example", mail_from=MAIL_FROM, key=KEY
    )
    return Digest(
        subscriber=Subscriber(subscriber_id, email, name),
        partition_date=DAY,
        artists=(DigestArtist(mbid("artist:rosalia"), "Rosalía", (release,)),),
        unsubscribe_url=links.url,
        unsubscribe_mailto=links.mailto,
    )


def _message(subscriber_id: int, email: str, name: str | None = "Zoë Ødegaard"):
    digest = _digest(subscriber_id, email, name)
    return build_message(
        render_digest(digest),
        mail_from=MAIL_FROM,
        to_name=name,
        to_address=email,
        message_id=message_id(subscriber_id, DAY, MAIL_FROM),
        unsubscribe_url=digest.unsubscribe_url,
        unsubscribe_mailto=digest.unsubscribe_mailto,
        sent_at=datetime(2026, 11, 23, 21, 35, tzinfo=UTC),
    )


def _mailer(server, sleeps: list[float] | None = None, **kwargs) -> SmtpMailer:
    recorded = sleeps if sleeps is not None else []
    kwargs.setdefault("retry", RetryPolicy(attempts=4, backoff=1.0))
    return SmtpMailer(
        server.host,
        server.port,
        implicit_tls=server.tls == "implicit",
        starttls=server.tls == "starttls",
        ssl_context=server.client_context,
        timeout=5,
        local_hostname="sender.test",
        sleep=recorded.append,
        **kwargs,
    )


def test_plain_smtp_delivers_headers_and_both_parts_intact(smtp_server) -> None:
    server = smtp_server()
    with _mailer(server) as mailer:
        mailer.send(_message(7, "zoe@example.org"))

    [received] = server.handler.received
    assert received.rcpt_tos == ("zoe@example.org",)
    assert received.mail_from == "butler@musicbutler.example"
    # Everything on the wire is 7-bit: non-ASCII travels encoded, so any relay accepts it.
    assert received.data.isascii()
    raw_headers = received.data.split(b"\r\n\r\n", 1)[0].decode()
    assert "=?utf-8?" in raw_headers.split("To:", 1)[1].split("\r\n", 1)[0]

    parsed = received.parsed()
    assert parsed["Subject"] == "New Music for November 23, 2026"
    assert parsed["To"].addresses[0].display_name == "Zoë Ødegaard"
    assert parsed["Message-ID"] == message_id(7, DAY, MAIL_FROM)
    assert parsed["Date"].datetime == datetime(2026, 11, 23, 21, 35, tzinfo=UTC)
    links = unsubscribe_links(7, base_url="https://mb.example", mail_from=MAIL_FROM, key=KEY)
    assert str(parsed["List-Unsubscribe"]) == f"<{links.url}>, <{links.mailto}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed.get_content_type() == "multipart/alternative"

    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    assert "Hi Zoë Ødegaard," in text
    assert "Love & <Hate> \"Live\" 'Edit'" in text
    assert "ROSALÍA feat. 宇多田ヒカル" in text
    assert links.url in text and links.url in html
    assert "Love &amp; &lt;Hate&gt;" in html
    texts, alts, tags = _parse_html(html)
    assert "hate" not in tags  # the title stayed text: no <Hate> element
    assert TITLE in texts
    assert alts == [TITLE]  # the quotes did not break out of the attribute
    assert "宇多田ヒカル" in html
    # The CSS was inlined: styles sit on the elements, not only in a <style> block.
    assert 'style="' in html and "<h1 style=" in html


def test_starttls_upgrades_before_sending(smtp_server) -> None:
    server = smtp_server(tls="starttls")
    with _mailer(server) as mailer:
        mailer.send(_message(1, "a@example.org"))
        mailer.send(_message(2, "b@example.org"))
    assert [m.rcpt_tos for m in server.handler.received] == [("a@example.org",), ("b@example.org",)]
    assert server.handler.connections == 1


def test_implicit_tls_with_a_generated_certificate(smtp_server) -> None:
    server = smtp_server(tls="implicit")
    with _mailer(server) as mailer:
        mailer.send(_message(1, "a@example.org"))
    assert len(server.handler.received) == 1


def test_untrusted_certificate_fails_fast_and_is_not_permanent(smtp_server) -> None:
    server = smtp_server(tls="implicit")
    sleeps: list[float] = []
    mailer = SmtpMailer(server.host, server.port, implicit_tls=True, timeout=5, sleep=sleeps.append)
    with mailer, pytest.raises(MailError) as raised:
        mailer.send(_message(1, "a@example.org"))
    assert not raised.value.permanent
    assert "certificate" in str(raised.value)
    assert sleeps == []  # retrying cannot make a certificate trusted
    assert server.handler.received == []


def test_starttls_required_but_not_offered_never_falls_back_to_plain_text(smtp_server) -> None:
    server = smtp_server()
    mailer = SmtpMailer(server.host, server.port, starttls=True, timeout=5, sleep=lambda _: None)
    with mailer, pytest.raises(MailError, match="STARTTLS") as raised:
        mailer.send(_message(1, "a@example.org"))
    assert not raised.value.permanent
    assert server.handler.received == []


def test_auth_over_starttls_with_password_from_the_environment_variable(
    smtp_server, smtp_ca, caplog, monkeypatch, tmp_path
) -> None:
    caplog.set_level(logging.DEBUG)
    server = smtp_server(tls="starttls", auth=True)
    ca_file = tmp_path / "ca.pem"
    smtp_ca.cert_pem.write_to_path(str(ca_file))
    # The password in the URL is wrong: MUSICBUTLER_SMTP_PASSWORD wins.
    url = server.url(user=server.user, password="wrong-password-in-url", cafile=str(ca_file))
    monkeypatch.setenv("MUSICBUTLER_MAIL_URL", url)
    monkeypatch.setenv("MUSICBUTLER_SMTP_PASSWORD", server.password)
    mailer = MailerResource().open()
    assert isinstance(mailer, SmtpMailer)
    with mailer:
        mailer.send(_message(1, "a@example.org"))
    [received] = server.handler.received
    assert received.authenticated_as == server.user
    _assert_password_nowhere(caplog, mailer, server.password)
    assert "wrong-password-in-url" not in mailer.description


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_auth_over_implicit_tls(smtp_server) -> None:
    server = smtp_server(tls="implicit", auth=True)
    with _mailer(server, username=server.user, password=server.password) as mailer:
        mailer.send(_message(1, "a@example.org"))
    assert server.handler.received[0].authenticated_as == server.user


def test_refused_login_fails_the_batch_fast_without_revealing_the_password(
    smtp_server, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    server = smtp_server(tls="starttls", auth=True)
    sleeps: list[float] = []
    secret = "not-the-password-123"
    mailer = _mailer(server, sleeps, username=server.user, password=secret)
    errors = []
    with mailer:
        for number in (1, 2, 3):
            with pytest.raises(MailError) as raised:
                mailer.send(_message(number, f"s{number}@example.org"))
            errors.append(raised.value)
    assert all(not error.permanent for error in errors)
    assert "535" in str(errors[0]) and "login as 'butler' refused" in str(errors[0])
    assert "not attempted" in str(errors[1])
    assert mailer.connections_opened == 0
    assert sleeps == []
    assert server.handler.received == []
    _assert_password_nowhere(caplog, mailer, secret, errors)


def _assert_password_nowhere(caplog, mailer, password: str, errors=()) -> None:
    forms = {password, base64.b64encode(password.encode()).decode()}
    forms.add(base64.b64encode(f"\0{mailer.username}\0{password}".encode()).decode())
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]
    texts = [mailer.description, repr(mailer), str(vars(mailer).get("description", "")), *ours]
    texts += [str(error) for error in errors]
    for text in texts:
        for form in forms:
            assert form not in text


def test_550_fails_only_that_recipient_and_451_is_retried(smtp_server) -> None:
    server = smtp_server(
        refuse={
            "gone@example.org": ["550 5.1.1 no such user"],
            "grey@example.org": ["451 4.7.1 greylisted, try again later"],
        }
    )
    handler = server.handler
    sleeps: list[float] = []
    with _mailer(server, sleeps) as mailer:
        mailer.send(_message(1, "first@example.org"))
        with pytest.raises(MailError) as refused:
            mailer.send(_message(2, "gone@example.org"))
        mailer.send(_message(3, "grey@example.org"))
        mailer.send(_message(4, "last@example.org"))

    assert refused.value.permanent
    assert refused.value.code == 550
    assert "550 5.1.1 no such user" in str(refused.value)
    assert [m.rcpt_tos[0] for m in handler.received] == [
        "first@example.org",
        "grey@example.org",
        "last@example.org",
    ]
    # One RCPT for the refused address (never retried), two for the greylisted one.
    assert [address for address, _ in handler.rcpt_log].count("gone@example.org") == 1
    assert [address for address, _ in handler.rcpt_log].count("grey@example.org") == 2
    assert sleeps == [1.0]
    assert handler.connections == 1  # refusals do not cost the connection


def test_451_until_retries_run_out_is_a_temporary_failure_with_the_reply(smtp_server) -> None:
    server = smtp_server(refuse={"full@example.org": ["452 4.2.2 mailbox full"] * 5})
    handler = server.handler
    sleeps: list[float] = []
    with _mailer(server, sleeps, retry=RetryPolicy(attempts=3, backoff=0.5)) as mailer:
        with pytest.raises(MailError) as raised:
            mailer.send(_message(1, "full@example.org"))
        mailer.send(_message(2, "fine@example.org"))  # the batch goes on
    assert not raised.value.permanent
    assert "452 4.2.2 mailbox full" in str(raised.value)
    assert "3 attempts" in str(raised.value)
    assert sleeps == [0.5, 1.0]
    assert [m.rcpt_tos[0] for m in handler.received] == ["fine@example.org"]


def test_dropped_connection_mid_batch_reconnects_and_delivers_each_message_once(
    smtp_server,
) -> None:
    server = smtp_server(tls="starttls", drop_on_mail={3})
    handler = server.handler
    sleeps: list[float] = []
    with _mailer(server, sleeps) as mailer:
        for number in range(1, 6):
            mailer.send(_message(number, f"s{number}@example.org"))
    assert [m.rcpt_tos[0] for m in handler.received] == [
        f"s{number}@example.org" for number in range(1, 6)
    ]
    assert handler.connections == 2
    assert mailer.connections_opened == 2
    assert sleeps == []  # the first reconnect after a drop is immediate


def test_repeated_drops_back_off_then_deliver(smtp_server) -> None:
    server = smtp_server(drop_on_mail={2, 3})
    handler = server.handler
    sleeps: list[float] = []
    with _mailer(server, sleeps) as mailer:
        mailer.send(_message(1, "s1@example.org"))
        mailer.send(_message(2, "s2@example.org"))
    assert [m.rcpt_tos[0] for m in handler.received] == ["s1@example.org", "s2@example.org"]
    assert sleeps == [1.0]
    assert mailer.connections_opened == 3


def test_unreachable_server_gives_up_then_fails_the_rest_of_the_batch_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on ``port`` now: every connection is refused.
    sleeps: list[float] = []
    mailer = SmtpMailer("127.0.0.1", port, timeout=2, sleep=sleeps.append)
    with mailer:
        with pytest.raises(MailError) as first:
            mailer.send(_message(1, "a@example.org"))
        with pytest.raises(MailError) as second:
            mailer.send(_message(2, "b@example.org"))
    assert not first.value.permanent and not second.value.permanent
    assert "ConnectionRefusedError" in str(first.value)
    assert "gave up after 4 attempts" in str(first.value)
    assert "not attempted" in str(second.value)
    assert sleeps == [1.0, 2.0, 4.0]


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        # The kernel completes the handshake; nobody ever sends the SMTP greeting.
        mailer = SmtpMailer(
            "127.0.0.1",
            silent.getsockname()[1],
            timeout=0.2,
            retry=RetryPolicy(attempts=1),
            sleep=lambda _: None,
        )
        with mailer, pytest.raises(MailError, match="timed out") as raised:
            mailer.send(_message(1, "a@example.org"))
    assert not raised.value.permanent


def test_rate_spaces_transactions_evenly(smtp_server) -> None:
    server = smtp_server()
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        now[0] += seconds

    mailer = SmtpMailer(
        server.host, server.port, rate=4.0, timeout=5, sleep=sleep, clock=lambda: now[0]
    )
    with mailer:
        for number in range(1, 4):
            mailer.send(_message(number, f"s{number}@example.org"))
    assert sleeps == [0.25, 0.25]
    assert len(server.handler.received) == 3


def test_connects_lazily_and_closes_with_quit(smtp_server) -> None:
    server = smtp_server()
    mailer = mailer_from_url(server.url())
    assert isinstance(mailer, SmtpMailer)
    assert mailer.connections_opened == 0  # building the transport opened nothing
    with mailer:
        mailer.send(_message(1, "a@example.org"))
        assert mailer.connections_opened == 1
    assert mailer._connection is None
