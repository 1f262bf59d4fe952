#!/usr/bin/env python3
"""The preferences page of ``musicbutler web``, screenshotted by headless Chromium
(``make screenshots``).

    .venv/bin/python scripts/screenshot_preferences.py [--out docs/preferences.png] [--width 680]

Builds a sample SQLite warehouse in a temporary directory (migrated like ``musicbutler db
upgrade``, filled through ``subscribers import``, ``library import`` and the preferences API):
a subscriber who chose albums, EPs and singles, appearances off, a weekly digest on Friday, and
two blocked artists (one with markup in its name, to show it escaped). It serves the real app
with uvicorn on a free loopback port in a thread, opens the subscriber's signed preferences link
with Playwright driving Debian's ``chromium`` (requests off loopback are refused), saves a
full-page PNG and stops the server.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import uuid
from pathlib import Path

from playwright.sync_api import Route, sync_playwright
from screenshot_digest import find_browser

from musicbutler_pipeline.domain.preferences import Frequency, ReleaseType
from musicbutler_pipeline.domain.rules import email_key
from musicbutler_pipeline.mail.tokens import MailIdentity
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.imports import import_library, import_subscribers
from musicbutler_pipeline.warehouse.migrate import upgrade
from musicbutler_pipeline.warehouse.preferences import change_preferences
from musicbutler_pipeline.warehouse.subscribers import find_subscribers
from musicbutler_pipeline.web.app import create_app
from musicbutler_pipeline.web.server import make_server

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "zoe+music@example.org"
KEY = b"screenshot-sample-key-not-a-secret"
# (name, blocked): a fictional library with non-ASCII names; two of its artists are blocked.
ARTISTS = (
    ("Sigur Rós", False),
    ("宇多田ヒカル", False),
    ("The <Tag> & Friends", True),
    ("DJ Repetitive", True),
)

logger = logging.getLogger("screenshot_preferences")


def _mbid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"musicbutler-screenshot:{name}"))


def sample_warehouse(directory: Path) -> tuple[str, int]:
    """A migrated SQLite warehouse with the sample subscriber; (its URL, their id)."""
    url = f"sqlite:///{directory / 'warehouse.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        subscribers_csv = directory / "subscribers.csv"
        subscribers_csv.write_text(
            f"email,name,listenbrainz_user\n{EMAIL},Zoë,\n", encoding="utf-8"
        )
        library_csv = directory / "library.csv"
        library_csv.write_text(
            "email,artist_mbid,artist_name\n"
            + "".join(f'{EMAIL},{_mbid(name)},"{name}"\n' for name, _blocked in ARTISTS),
            encoding="utf-8",
        )
        import_subscribers(engine, subscribers_csv)
        import_library(engine, library_csv)
        change_preferences(
            engine,
            EMAIL,
            release_types=frozenset({ReleaseType.ALBUM, ReleaseType.EP, ReleaseType.SINGLE}),
            appearances=False,
            frequency=Frequency.WEEKLY,
            weekday="friday",
            block=frozenset(_mbid(name) for name, blocked in ARTISTS if blocked),
        )
        subscriber = find_subscribers(engine, [EMAIL])[email_key(EMAIL)]
    finally:
        engine.dispose()
    return url, subscriber.id


def _loopback_only(route: Route) -> None:
    if route.request.url.startswith(("http://127.0.0.1:", "data:")):
        route.continue_()
    else:
        route.abort()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "preferences.png")
    parser.add_argument("--width", type=int, default=680, help="viewport width in CSS pixels")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    browser_path = find_browser()
    with tempfile.TemporaryDirectory(prefix="musicbutler-prefs-shot-") as temporary:
        url, subscriber_id = sample_warehouse(Path(temporary))
        engine = make_engine(url)
        server = make_server(create_app(engine, KEY), "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            if not server.wait_until_serving():
                raise SystemExit("the web app did not start")
            host, port = server.server_address[:2]
            identity = MailIdentity(
                mail_from="MusicButler <butler@musicbutler.example.org>",
                base_url=f"http://{host}:{port}",
                secret_key=KEY,
            )
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=browser_path, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": args.width, "height": 800})
                page.route("**/*", _loopback_only)
                response = page.goto(identity.preferences_url(subscriber_id))
                if response is None or response.status != 200:
                    status = response.status if response else "no response"
                    raise SystemExit(f"the preferences page answered {status}")
                page.get_by_text("Blocked artists").wait_for()
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=args.out, full_page=True)
                browser.close()
        finally:
            server.shutdown()
            thread.join(timeout=30)
            engine.dispose()
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
