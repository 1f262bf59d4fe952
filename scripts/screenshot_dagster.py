#!/usr/bin/env python3
"""Dagster UI screenshots of the demo's instance, by headless Chromium (``make screenshots``).

    .venv/bin/python scripts/screenshot_dagster.py [--out-dir docs] [--home .musicbutler]

Run ``make demo`` first: this reads the instance it wrote (``$HOME/dagster``) and changes
nothing in it. It starts ``dagster-webserver`` alone (no daemon, so no schedule or sensor can
run) on a free loopback port, waits for it by polling ``/server_info``, opens the pages with
Playwright driving Debian's ``chromium`` (every request off loopback is refused), saves

* ``dagster-lineage.png``: the four assets and their kinds, checks and partitions;
* ``dagster-partitions.png``: ``drop_notifications``'s daily partitions, 2026-11-23 filled;
* ``dagster-materialization.png``: that partition's materialization and its metadata;
* ``dagster-checks.png``: the asset checks of ``drop_notifications`` for the partition;

and stops the webserver.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Route, ViewportSize, expect, sync_playwright
from screenshot_digest import find_browser

from musicbutler_pipeline.demo import SAMPLE_DAY
from musicbutler_pipeline.sources.musicbrainz import bundled_snapshot_root

ROOT = Path(__file__).resolve().parent.parent
ASSET = "drop_notifications"
PARTITION = SAMPLE_DAY.isoformat()
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
STARTUP_DEADLINE_S = 180.0
PAGE_TIMEOUT_MS = 60_000

logger = logging.getLogger("screenshot_dagster")


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def webserver(home: Path, log: Path) -> Iterator[str]:
    """``dagster-webserver`` on the demo's instance; yields its base URL once it answers."""
    dagster_home = home / "dagster"
    if not (dagster_home / "storage").is_dir():
        raise SystemExit(f"no Dagster instance in {dagster_home}: run `make demo` first")
    port = free_loopback_port()
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "MUSICBUTLER_HOME": str(home),
        "MUSICBUTLER_MUSICBRAINZ_URL": bundled_snapshot_root().as_uri(),
    }
    command = [
        str(Path(sys.executable).with_name("dagster-webserver")),
        *("-m", "musicbutler_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port)),
    ]
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while True:
            if process.poll() is not None:
                raise SystemExit(
                    f"dagster-webserver exited ({process.returncode}):\n"
                    + log.read_text(errors="replace")[-2000:]
                )
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"dagster-webserver did not answer on {base} in {STARTUP_DEADLINE_S:.0f} s"
                    ) from None
                time.sleep(0.5)
        logger.info("dagster-webserver up on %s", base)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _loopback_only(route: Route) -> None:
    if route.request.url.startswith(("http://127.0.0.1:", "data:", "blob:")):
        route.continue_()
    else:
        route.abort()


def lineage(page: Page, base: str, out: Path) -> None:
    # user_drops's own lineage tab: its neighbours are the other three assets, and without the
    # catalogue's asset list beside it the graph is fitted large enough to read.
    page.set_viewport_size({"width": 1440, "height": 640})
    page.goto(f"{base}/assets/user_drops?view=lineage")
    for name in ("user_libraries", "artist_releases", "user_drops", ASSET):
        page.get_by_text(name, exact=True).last.wait_for()
    # Each node loads its own status; the picture is taken when none is still loading.
    expect(page.get_by_text("Loading")).to_have_count(0, timeout=PAGE_TIMEOUT_MS)
    page.get_by_text("Passed").first.wait_for()
    page.screenshot(path=out)


def partitions(page: Page, base: str, out: Path) -> None:
    page.set_viewport_size(VIEWPORT)
    page.goto(f"{base}/assets/{ASSET}?view=partitions&partition={PARTITION}")
    page.get_by_text("release_groups_announced").first.wait_for()
    page.screenshot(path=out)


def materialization(page: Page, base: str, out: Path) -> None:
    # Tall enough for every metadata entry, the senders and failures tables included.
    page.set_viewport_size({"width": 1440, "height": 1180})
    page.goto(f"{base}/assets/{ASSET}?view=events&partition={PARTITION}")
    page.get_by_text("release_groups_announced").first.wait_for()
    expect(page.get_by_text("Loading")).to_have_count(0, timeout=PAGE_TIMEOUT_MS)
    page.screenshot(path=out)


def checks(page: Page, base: str, out: Path) -> None:
    page.set_viewport_size({"width": 1440, "height": 760})
    page.goto(f"{base}/assets/{ASSET}?view=checks")
    page.get_by_text("every_owed_email_sent").first.wait_for()
    page.screenshot(path=out)


SHOTS = {
    "dagster-lineage.png": lineage,
    "dagster-partitions.png": partitions,
    "dagster-materialization.png": materialization,
    "dagster-checks.png": checks,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    parser.add_argument(
        "--home", type=Path, default=ROOT / ".musicbutler", help="MUSICBUTLER_HOME of `make demo`"
    )
    parser.add_argument("--only", choices=sorted(SHOTS), action="append", help="just these")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    browser_path = find_browser()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="musicbutler-ui-") as temporary,
        webserver(args.home.resolve(), Path(temporary) / "webserver.log") as base,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        context.route("**/*", _loopback_only)
        # The community sign-up dialog, answered "Skip" once, would cover every picture.
        context.add_init_script("localStorage.setItem('communityNux', JSON.stringify('1'))")
        page = context.new_page()
        for name in args.only or SHOTS:
            out = args.out_dir / name
            try:
                SHOTS[name](page, base, out)
            except PlaywrightError as error:
                reason = error.message.splitlines()[0]
                raise SystemExit(
                    f"{name}: the page never showed what it should ({reason}); "
                    "has `make demo` run on this instance?"
                ) from None
            logger.info("wrote %s", out)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
