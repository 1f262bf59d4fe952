"""MusicBrainz release-group search, by date.

We query by date, not per artist: one search ``firstreleasedate:[A TO B]`` returns every release
group of the window in a handful of pages (100 per page), whatever the number of subscribers or
followed artists. Polling each followed artist instead would cost one request per artist per day,
millions at our scale, against a service that allows about one request per second.

Records are validated at the edge: a malformed one is logged with its id and skipped, and the
count of skipped records is reported, so one bad record never costs the day.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx

from musicbutler_pipeline import __version__
from musicbutler_pipeline.domain.models import CreditedArtist, FetchReport, ReleaseGroup
from musicbutler_pipeline.domain.rules import InvalidInput, exact_release_date, normalize_mbid

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
PRIMARY_TYPES = ("album", "ep", "single")


class MalformedRecord(InvalidInput):
    """A search result record that does not have the shape of a release group."""


class MusicBrainzError(RuntimeError):
    """MusicBrainz could not be read; the message names the URL and what happened."""


def parse_release_group(record: Mapping[str, Any]) -> ReleaseGroup:
    """A release group from one search-result record, or MalformedRecord saying what is wrong."""
    if not isinstance(record, Mapping):
        raise MalformedRecord(f"record is a {type(record).__name__}, not an object")
    try:
        mbid = normalize_mbid(str(record.get("id") or ""))
    except InvalidInput:
        raise MalformedRecord(f"id {record.get('id')!r} is not a MusicBrainz identifier") from None
    title = record.get("title")
    if not isinstance(title, str) or not title.strip():
        raise MalformedRecord(f"release group {mbid}: missing title")
    credits = record.get("artist-credit")
    if not isinstance(credits, list) or not credits:
        raise MalformedRecord(f"release group {mbid}: missing artist-credit")
    artists = []
    for position, credit in enumerate(credits):
        artist = credit.get("artist") if isinstance(credit, Mapping) else None
        if not isinstance(artist, Mapping):
            raise MalformedRecord(f"release group {mbid}: artist-credit[{position}] has no artist")
        try:
            artist_mbid = normalize_mbid(str(artist.get("id") or ""))
        except InvalidInput:
            raise MalformedRecord(
                f"release group {mbid}: artist-credit[{position}] has no valid artist id"
            ) from None
        name = credit.get("name") or artist.get("name")
        if not isinstance(name, str) or not name:
            raise MalformedRecord(f"release group {mbid}: artist-credit[{position}] has no name")
        artists.append(CreditedArtist(artist_mbid, name, str(credit.get("joinphrase") or "")))
    first_release_date = record.get("first-release-date") or ""
    if not isinstance(first_release_date, str):
        raise MalformedRecord(f"release group {mbid}: first-release-date is not a string")
    secondary = record.get("secondary-types") or []
    if not isinstance(secondary, list) or not all(isinstance(item, str) for item in secondary):
        raise MalformedRecord(f"release group {mbid}: secondary-types is not a list of names")
    primary_type = record.get("primary-type")
    return ReleaseGroup(
        mbid=mbid,
        title=title,
        primary_type=primary_type if isinstance(primary_type, str) else None,
        secondary_types=tuple(secondary),
        first_release_date=first_release_date,
        release_date=exact_release_date(first_release_date),
        artists=tuple(artists),
    )


@dataclass(frozen=True, slots=True)
class SearchPage:
    count: int
    offset: int
    records: list[Any]


def parse_search_page(payload: Any, url: str) -> SearchPage:
    if not isinstance(payload, Mapping):
        raise MusicBrainzError(f"{url}: response is not a JSON object")
    records = payload.get("release-groups")
    count = payload.get("count")
    if not isinstance(records, list) or not isinstance(count, int):
        raise MusicBrainzError(f"{url}: response has no release-groups list or count")
    offset = payload.get("offset", 0)
    return SearchPage(count=count, offset=offset if isinstance(offset, int) else 0, records=records)


def search_query(start: date, end: date) -> str:
    types = " OR ".join(PRIMARY_TYPES)
    return f"firstreleasedate:[{start.isoformat()} TO {end.isoformat()}] AND primarytype:({types})"


def user_agent(contact: str | None) -> str:
    return f"musicbutler-pipeline/{__version__} ( {contact or 'no contact configured'} )"


class _RateLimiter:
    """Spaces calls at least ``1/rate`` seconds apart across all threads of the process."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _next_allowed: ClassVar[dict[str, float]] = {}

    def __init__(self, key: str, rate: float) -> None:
        self.key = key
        self.interval = 1.0 / rate

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_allowed.get(self.key, now))
            self._next_allowed[self.key] = start + self.interval
        delay = start - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class MusicBrainzClient:
    """Pages through the release-group search for a date window.

    ``transport`` lets the same code read recorded pages (see ``ReplayTransport``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        contact: str | None,
        rate: float = 1.0,
        lookback_days: int = 14,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.contact = contact
        self.lookback_days = lookback_days
        self.timeout = timeout
        self.transport = transport
        self._limiter = _RateLimiter(urlsplit(self.base_url).netloc, rate)

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"User-Agent": user_agent(self.contact), "Accept": "application/json"},
            timeout=self.timeout,
            transport=self.transport,
        )

    def iter_pages(self, start: date, end: date) -> Iterator[SearchPage]:
        offset = 0
        with self._client() as client:
            while True:
                params = {
                    "query": search_query(start, end),
                    "fmt": "json",
                    "limit": PAGE_SIZE,
                    "offset": offset,
                }
                self._limiter.wait()
                try:
                    response = client.get("/release-group", params=params)
                except httpx.HTTPError as exc:
                    raise MusicBrainzError(f"{self.base_url}/release-group: {exc}") from exc
                if response.status_code != 200:
                    raise MusicBrainzError(f"{response.request.url}: HTTP {response.status_code}")
                try:
                    payload = response.json()
                except ValueError:
                    raise MusicBrainzError(
                        f"{response.request.url}: response is not JSON"
                    ) from None
                page = parse_search_page(payload, str(response.request.url))
                yield page
                offset += len(page.records)
                if not page.records or offset >= page.count:
                    return

    def fetch(self, day: date) -> FetchReport:
        """Release groups first released exactly on ``day``."""
        start = day - timedelta(days=self.lookback_days)
        groups: dict[str, ReleaseGroup] = {}
        seen = skipped = not_exact = requests = 0
        for page in self.iter_pages(start, day):
            requests += 1
            for record in page.records:
                seen += 1
                try:
                    group = parse_release_group(record)
                except MalformedRecord as exc:
                    skipped += 1
                    logger.warning("skipping malformed MusicBrainz record: %s", exc)
                    continue
                if group.release_date is None:
                    not_exact += 1
                elif group.release_date == day:
                    groups[group.mbid] = group
        return FetchReport(
            release_groups=tuple(groups.values()),
            records_seen=seen,
            records_skipped=skipped,
            not_exact_date=not_exact,
            requests=requests,
            source=self.base_url,
        )


class ReplayTransport(httpx.BaseTransport):
    """Answers release-group searches from recorded pages on disk.

    Layout: ``<root>/<end date>/offset-<NNNN>.json``, the pages of the search whose window ends on
    that date. A window with no recording answers as MusicBrainz does for a quiet day: no results.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        query = parse_qs(urlsplit(str(request.url)).query)
        end = _window_end(query.get("query", [""])[0])
        if end is None:
            return httpx.Response(400, content=b'{"error": "expected a firstreleasedate range"}')
        offset = int(query.get("offset", ["0"])[0])
        directory = self.root / end
        if not directory.is_dir():
            body = {"created": "", "count": 0, "offset": offset, "release-groups": []}
            return httpx.Response(200, content=json.dumps(body).encode())
        page = directory / f"offset-{offset:04d}.json"
        if not page.is_file():
            return httpx.Response(404, content=b'{"error": "no recording for this page"}')
        return httpx.Response(
            200, content=page.read_bytes(), headers={"Content-Type": "application/json"}
        )


def _window_end(query: str) -> str | None:
    marker = " TO "
    if marker not in query:
        return None
    return query.split(marker, 1)[1].split("]", 1)[0].strip()


def replay_client(root: Path, *, lookback_days: int = 14) -> MusicBrainzClient:
    """A client that reads recorded pages from ``root`` through the same paging and parsing."""
    return MusicBrainzClient(
        "http://recorded.invalid/ws/2",
        contact=f"recorded pages in {root}",
        rate=1000.0,
        lookback_days=lookback_days,
        transport=ReplayTransport(root),
    )


def bundled_snapshot_root() -> Path:
    return Path(__file__).with_name("data") / "sample" / "musicbrainz"
