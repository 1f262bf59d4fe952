#!/usr/bin/env python3
"""Render a sample digest and take a PNG of it with headless Chromium (``make screenshots``).

    .venv/bin/python scripts/screenshot_digest.py [--out docs/digest.png] [--width 680]

Needs Debian's ``chromium`` (``apt-get install -y chromium``). The sample is built in code: a
subscriber and artists with non-ASCII names, a multi-artist credit, titles with characters that
HTML must escape, releases out that day and two that reached MusicBrainz late (so both sections
show), listen links on four releases (two have none), and a sender with a postal address,
rendered by the same ``render_digest`` the pipeline uses. The browser gets no network at all, so
the Cover Art Archive images fail as they do when a mail client blocks images: the picture shows
that fallback (a coloured tile with the title as alt text).
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import date, timedelta
from pathlib import Path

from musicbutler_pipeline.domain.digest import render_digest
from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    Digest,
    DigestArtist,
    ListenLink,
    ReleaseGroup,
    Subscriber,
)
from musicbutler_pipeline.mail.tokens import MailIdentity

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2026, 11, 23)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # Every host name fails to resolve: nothing leaves the machine, and images fail at once.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--run-all-compositor-stages-before-draw",
    "--virtual-time-budget=5000",
)

logger = logging.getLogger("screenshot_digest")


def _mbid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"musicbutler-screenshot:{name}"))


def _artist(name: str) -> CreditedArtist:
    return CreditedArtist(_mbid(name), name)


def _release(
    title: str,
    primary: str,
    credits: list[tuple[str, str]],
    secondary: tuple[str, ...] = (),
    released: date = DAY,
) -> ReleaseGroup:
    return ReleaseGroup(
        mbid=_mbid(title),
        title=title,
        primary_type=primary,
        secondary_types=secondary,
        first_release_date=released.isoformat(),
        release_date=released,
        artists=tuple(CreditedArtist(_mbid(name), name, join) for name, join in credits),
    )


def _listen(*services: str) -> tuple[ListenLink, ...]:
    """Example listen links (fictional URLs) in the order the digest shows them."""
    urls = {
        "Spotify": "https://open.spotify.com/album/0sample",
        "Apple Music": "https://music.apple.com/album/1000000000",
        "Bandcamp": "https://sample.bandcamp.com/album/sample",
        "Deezer": "https://www.deezer.com/album/100000000",
        "Tidal": "https://tidal.com/browse/album/100000000",
        "YouTube Music": "https://music.youtube.com/playlist?list=OLAK5uy_sample",
        "SoundCloud": "https://soundcloud.com/sample/sets/sample",
    }
    return tuple(ListenLink(service, urls[service]) for service in services)


# Listen links by release title; the Sigur Rós and Utada releases have none (MusicBrainz only).
LISTEN = {
    "Noches de Cristal": _listen("Spotify", "Apple Music", "Tidal"),
    "Lantern Dub": _listen("Spotify", "Bandcamp", "SoundCloud"),
    "The Archer's Almanac": _listen("Spotify", "Apple Music", "Deezer", "YouTube Music"),
    "Love & <Hate>": _listen("Spotify", "YouTube Music"),
}


def sample_digest() -> Digest:
    """A fictional but typical digest: five artists, six releases (two added to MusicBrainz
    late), several scripts."""

    def followed(name: str, *releases: ReleaseGroup) -> DigestArtist:
        return DigestArtist(_mbid(name), name, releases)

    subscriber = Subscriber(42, "zoe+music@example.org", "Zoë")
    identity = MailIdentity(
        mail_from="MusicButler <butler@musicbutler.example.org>",
        base_url="https://musicbutler.example.org",
        secret_key=b"screenshot-sample-key-not-a-secret",
        postal_address="12 Example Street, 10115 Berlin, Germany",
    )
    unsubscribe_url, unsubscribe_mailto = identity.unsubscribe_links(subscriber.id)
    return Digest(
        subscriber=subscriber,
        partition_date=DAY,
        artists=(
            followed(
                "Bad Bunny",
                _release(
                    "Noches de Cristal",
                    "Album",
                    [("Bad Bunny", ", "), ("ROSALÍA", " & "), ("Ulises Brava", "")],
                ),
            ),
            followed("Four Tet", _release("Lantern Dub", "Single", [("Four Tet", "")])),
            followed(
                "Sigur Rós",
                _release(
                    "Ljósið í myrkrinu",
                    "EP",
                    [("Sigur Rós", "")],
                    ("Live",),
                    released=DAY - timedelta(days=6),
                ),
            ),
            followed(
                "Taylor Swift",
                _release(
                    "The Archer's Almanac",
                    "Album",
                    [("Taylor Swift", "")],
                    released=DAY - timedelta(days=2),
                ),
                _release(
                    "Love & <Hate>",
                    "Single",
                    [("Taylor Swift", " feat. "), ("Kendrick Lamar", "")],
                ),
            ),
            followed(
                "宇多田ヒカル",
                _release("夜明けのメロディ", "Single", [("宇多田ヒカル", "")], ("Remix",)),
            ),
        ),
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
        preferences_url=identity.preferences_url(subscriber.id),
        sender=identity.sender,
        listen_links={_mbid(title): links for title, links in LISTEN.items()},
    )


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("no Chromium found: install it with `apt-get install -y chromium`")


def _run_browser(browser: str, profile: Path, *arguments: str) -> str:
    command = [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{browser} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


def page_height(browser: str, profile: Path, html: str, workdir: Path, width: int) -> int:
    """The rendered height of ``html`` at ``width``: a copy with a script that writes the height
    into the DOM, read back with --dump-dom. The email itself never carries a script."""
    probe = workdir / "probe.html"
    script = (
        "<script>window.addEventListener('load',()=>{const p=document.createElement('pre');"
        "p.id='height';p.textContent='HEIGHT='+document.documentElement.scrollHeight;"
        "document.body.appendChild(p);});</script>"
    )
    probe.write_text(html.replace("</body>", script + "</body>"), encoding="utf-8")
    dom = _run_browser(browser, profile, f"--window-size={width},800", "--dump-dom", probe.as_uri())
    match = re.search(r"HEIGHT=(\d+)", dom)
    if match is None:
        raise SystemExit("could not measure the rendered page height")
    return int(match.group(1))


def screenshot(html: str, out: Path, width: int) -> tuple[int, int]:
    browser = find_browser()
    with tempfile.TemporaryDirectory(prefix="musicbutler-shot-") as temporary:
        workdir = Path(temporary)
        profile = workdir / "profile"
        height = page_height(browser, profile, html, workdir, width)
        page = workdir / "digest.html"
        page.write_text(html, encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        _run_browser(
            browser,
            profile,
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            page.as_uri(),
        )
    if not out.is_file():
        raise SystemExit(f"{browser} wrote no screenshot to {out}")
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "digest.png")
    parser.add_argument("--width", type=int, default=680, help="viewport width in CSS pixels")
    parser.add_argument("--html", type=Path, help="also write the rendered HTML here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rendered = render_digest(sample_digest())
    if args.html:
        args.html.write_text(rendered.html, encoding="utf-8")
    width, height = screenshot(rendered.html, args.out, args.width)
    logger.info("wrote %s (%dx%d)", args.out, width, height)
    return 0


if __name__ == "__main__":
    sys.exit(main())
