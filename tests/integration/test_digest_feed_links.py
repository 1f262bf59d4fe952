"""Every digest's footer links that subscriber's own feeds, in both parts, over real SMTP."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from musicbutler_pipeline.domain.feeds import feed_links
from musicbutler_pipeline.warehouse.feeds import feed_secret
from musicbutler_pipeline.warehouse.schema import feed_tokens
from tests.integration.test_notifier_smtp import IDENTITY, _day_with_four_recipients, _send

pytest_plugins = ["tests.fixtures.smtp"]


def test_each_digest_links_its_subscribers_feeds(sqlite_engine: Engine, smtp_server) -> None:
    ids = _day_with_four_recipients(sqlite_engine)
    with sqlite_engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(feed_tokens)).scalar() == 0
    server = smtp_server()
    report, _ledger = _send(sqlite_engine, server, "run-1", [])
    assert report.sent == 4
    seen: set[str] = set()
    for message in server.handler.received:
        recipient = message.rcpt_tos[0]
        links = feed_links(IDENTITY.base_url, feed_secret(sqlite_engine, ids[recipient]))
        parsed = message.parsed()
        html = parsed.get_body(("html",)).get_content()
        text = parsed.get_body(("plain",)).get_content()
        for url in (links.atom, links.icalendar):
            assert f'href="{url}"' in html
            assert url in text
        seen.add(links.atom)
    assert len(seen) == 4  # each their own, made by the day's send
