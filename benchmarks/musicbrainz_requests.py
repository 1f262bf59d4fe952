"""MusicBrainz requests per day: search by date (what the pipeline does) versus per-artist polling.

Counts the requests the real client makes for one partition with a 14-day lookback on the
bundled sample day (through a counting transport around the recorded pages, so it needs no
network), and compares them with what a per-artist poller would make: at least one
``/release-group?artist=<mbid>`` browse per distinct followed artist per day, for the demo's
library and for 100,000 followed artists.

Listen links add one ``/release?release-group=<mbid>&inc=url-rels`` browse per release group
owed that day (more only for a release group with over 100 releases): counted on the sample day
(its recorded url-rels pages) and at ``--owed-release-groups`` (default 500) owed release groups
answered by a synthetic transport, both through the real lookup code.

The by-date figure does not depend on the number of artists; it depends on how many release
groups the window holds (100 per page). The sample window holds 230. For the live service the
script also prints an estimate from ``--release-groups-per-day`` (an assumption: pass your own
figure, e.g. from the ``count`` of a live search), since this benchmark makes no live calls.

    .venv/bin/python benchmarks/musicbrainz_requests.py [--release-groups-per-day N]
        [--owed-release-groups N]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import uuid
from datetime import date

import httpx

from musicbutler_pipeline.demo import SAMPLE_DAY, SAMPLE_DIR
from musicbutler_pipeline.sources.musicbrainz import (
    DEFAULT_LOOKBACK_DAYS,
    PAGE_SIZE,
    MusicBrainzClient,
    ReplayTransport,
    bundled_snapshot_root,
)
from musicbutler_pipeline.sources.musicbrainz_links import lookup_listen_links

SCALE_ARTISTS = 100_000
RATE = 1.0  # MusicBrainz's limit, requests per second


class CountingTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return self.inner.handle_request(request)


def by_date_requests(day: date, lookback_days: int) -> tuple[int, int]:
    """(requests, records) the real client needs for ``day`` on the recorded sample."""
    transport = CountingTransport(ReplayTransport(bundled_snapshot_root()))
    client = MusicBrainzClient(
        "http://recorded.invalid/ws/2",
        contact="benchmark",
        rate=1000.0,
        lookback_days=lookback_days,
        transport=transport,
    )
    fetched = client.fetch(day)
    return transport.requests, fetched.records_seen


class SyntheticReleases(httpx.BaseTransport):
    """Answers every release browse with two releases, each with a Spotify and a Bandcamp link,
    as a typical release group (standard and deluxe edition) has."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        group = request.url.params["release-group"]
        releases = [
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{group}/{edition}")),
                "status": "Official",
                "date": "2026-11-23",
                "relations": [
                    {
                        "target-type": "url",
                        "url": {"resource": f"https://open.spotify.com/album/{n}"},
                    }
                    for n in (group[:8], edition)
                ],
            }
            for edition in ("standard", "deluxe")
        ]
        body = {"release-count": len(releases), "release-offset": 0, "releases": releases}
        return httpx.Response(200, content=json.dumps(body).encode())


def listen_link_requests(transport: httpx.BaseTransport, groups: list[str]) -> tuple[int, int]:
    """(HTTP requests, release groups with links) of the real lookup for ``groups``."""
    counting = CountingTransport(transport)
    client = MusicBrainzClient(
        "http://recorded.invalid/ws/2", contact="benchmark", rate=1000.0, transport=counting
    )
    fetched = lookup_listen_links(client, groups)
    return counting.requests, sum(bool(links) for links in fetched.links.values())


def followed_artists() -> int:
    with (SAMPLE_DIR / "library.csv").open(newline="", encoding="utf-8") as handle:
        return len({row["artist_mbid"] for row in csv.DictReader(handle)})


def duration(requests: float) -> str:
    seconds = requests / RATE
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--release-groups-per-day",
        type=int,
        default=1000,
        help="assumed release groups with a first release date on a given day (live estimate)",
    )
    parser.add_argument("--lookback-days", type=int, default=DEFAULT_LOOKBACK_DAYS)
    parser.add_argument(
        "--owed-release-groups",
        type=int,
        default=500,
        help="release groups someone is owed on a day, for the listen-link estimate",
    )
    options = parser.parse_args()
    # The sample's three malformed records are logged as warnings; they are not news here.
    logging.getLogger("musicbutler_pipeline").setLevel(logging.ERROR)

    requests, records = by_date_requests(SAMPLE_DAY, options.lookback_days)
    artists = followed_artists()
    window_days = options.lookback_days + 1
    live_records = options.release_groups_per_day * window_days
    live_requests = max(1, math.ceil(live_records / PAGE_SIZE))

    rows = [
        ("demo data (measured)", f"{artists:,} artists", requests, artists),
        (
            f"{SCALE_ARTISTS:,} followed artists",
            f"window of {records} records (sample)",
            requests,
            SCALE_ARTISTS,
        ),
        (
            f"{SCALE_ARTISTS:,} followed artists",
            f"window of {live_records:,} records (assumed)",
            live_requests,
            SCALE_ARTISTS,
        ),
    ]
    print(
        f"One partition ({SAMPLE_DAY}) with a {options.lookback_days}-day lookback: "
        f"{requests} search requests for {records} records in the window "
        f"({PAGE_SIZE} per page), at {RATE:g} request/s."
    )
    print()
    header = (
        f"{'case':<28} {'by-date basis':<34} {'by date':>8} {'per artist':>11} "
        f"{'ratio':>9} {'by-date time':>13} {'per-artist time':>16}"
    )
    print(header)
    print("-" * len(header))
    for case, basis, by_date, per_artist in rows:
        print(
            f"{case:<28} {basis:<34} {by_date:>8,} {per_artist:>11,} "
            f"{per_artist / by_date:>8,.0f}x {duration(by_date):>13} {duration(per_artist):>16}"
        )
    print()
    print(
        "Per-artist polling is a lower bound: one browse request per artist per day, before any "
        "paging of prolific artists. By-date requests grow with the window's release groups, "
        "never with subscribers or followed artists."
    )
    print()
    owed = json.loads((SAMPLE_DIR / "expected.json").read_text())["pool_release_groups_on_day"]
    sample_links, sample_with = listen_link_requests(ReplayTransport(bundled_snapshot_root()), owed)
    many = [
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"owed/{n}")) for n in range(options.owed_release_groups)
    ]
    many_links, many_with = listen_link_requests(SyntheticReleases(), many)
    header = (
        f"{'listen links':<38} {'owed':>6} {'url-rels requests':>18} {'with links':>11} "
        f"{'time':>9} {'day incl. search':>17}"
    )
    print(header)
    print("-" * len(header))
    for case, groups, link_requests, with_links, search in (
        ("sample day (measured, recorded)", len(owed), sample_links, sample_with, requests),
        ("synthetic (measured, 2 releases each)", len(many), many_links, many_with, live_requests),
    ):
        print(
            f"{case:<38} {groups:>6,} {link_requests:>18,} {with_links:>11,} "
            f"{duration(link_requests):>9} {duration(link_requests + search):>17}"
        )
    print()
    print(
        "One url-rels browse per owed release group (100 releases per page), at 1 request/s on "
        "MusicBrainz's shared budget; the last column adds that day's search requests (the "
        "sample's, or the assumed live window's)."
    )


if __name__ == "__main__":
    main()
