"""MusicBrainz release-group search, by date, within MusicBrainz's rules.

Why by date and not per artist: one search ``firstreleasedate:[D-lookback TO D]`` returns every
release group of the window, 100 per page, whatever the number of subscribers or followed
artists: a handful of requests a day for a quiet window, a few hundred for a busy one. Polling
each followed artist instead (``/release-group?artist=<mbid>``) costs at least one request per
distinct followed artist per day; at one request per second, 100,000 followed artists would take
28 hours, so that design cannot finish a day within the day. See ``benchmarks/`` for the figures.

Why a lookback window: MusicBrainz is edited by volunteers and many release groups are entered
days after their release date. Searching the last ``lookback_days`` days as well as D lets the
first partition that sees a late entry announce it (the warehouse gives each release group to
exactly one partition; see ``warehouse.releases.claim_release_groups``).

MusicBrainz's rules, all enforced here: at most ``rate`` requests per second, serial, shared by
the whole process (``sources.http.shared_rate_limiter``); a User-Agent naming the application,
its version and a contact (we refuse to call without a contact); ``limit`` between 1 and 100;
503 and 429 mean "slow down": we honour ``Retry-After`` or back off exponentially with jitter.
Every request has a timeout, and one connection is reused for all pages of a fetch.

Records are validated at the edge: a malformed one is logged with its id and skipped, and the
count of skipped records is reported, so one bad record never costs the day. The raw bytes of
every page are kept (``domain.models.SourcePage``) so the day can be stored, audited and
re-derived.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from musicbutler_pipeline import __version__
from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    FetchReport,
    ReleaseGroup,
    SourcePage,
)
from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.domain.rules import (
    InvalidInput,
    exact_release_date,
    lone_surrogate,
    normalize_mbid,
    one_line,
    shorten,
)
from musicbutler_pipeline.sources.http import (
    HTTP_RETRY,
    SYSTEM_CLOCK,
    Clock,
    RateLimiter,
    SourceError,
    SourceUnavailable,
    request_with_retries,
    retry_after_hint,
    shared_rate_limiter,
)
from musicbutler_pipeline.sources.http import user_agent as _user_agent

logger = logging.getLogger(__name__)

SOURCE_NAME = "musicbrainz"
PAGE_SIZE = 100  # the most MusicBrainz returns per search page
PRIMARY_TYPES = ("album", "ep", "single")
# Asked for as well only when some subscriber selects the release type broadcast
# (domain.preferences.ReleaseType.BROADCAST): radio shows, podcasts, interviews, audiobooks.
BROADCAST_PRIMARY_TYPES = ("broadcast", "other")
WIDENED_PRIMARY_TYPES = (*PRIMARY_TYPES, *BROADCAST_PRIMARY_TYPES)
DEFAULT_LOOKBACK_DAYS = 14
# A window with more pages than this means a broken query or an unexpected flood; we stop and
# say so rather than spend hours at one request per second (and never store a partial window).
DEFAULT_MAX_PAGES = 1000


class MalformedRecord(InvalidInput):
    """A search result record that does not have the shape of a release group."""


class MusicBrainzError(SourceError):
    """MusicBrainz could not be read; the message names the URL and what happened."""


class MusicBrainzUnavailable(MusicBrainzError, SourceUnavailable):
    """A page kept failing (or we were asked to wait too long): the URL and last status say
    which and why."""


class ContactRequired(MusicBrainzError, ValueError):
    """MusicBrainz asks every client to identify itself with a contact; we have none."""


# Bounds on what one record may hold, far above anything MusicBrainz has (the longest album title
# on record, Chumbawamba's, is about 860 characters; primary and secondary types are short names
# from a fixed list) and within what the warehouse columns take (release_groups.primary_type is
# VARCHAR(32), which PostgreSQL enforces). A record over a bound is malformed, not cut: a cut title
# would be stored as if MusicBrainz had said it. The digest shows less (see domain/digest.py).
MAX_TITLE = 2000
MAX_NAME = 1000
MAX_JOIN_PHRASE = 200
MAX_TYPE = 32
MAX_SECONDARY_TYPES = 16
MAX_CREDITS = 500


def _text(value: object, field: str, limit: int, group: str) -> str:
    """A string field the warehouse can store on both dialects, as one line.

    NUL (PostgreSQL refuses it in text) and lone surrogates (``json.loads`` accepts ``\\ud800``;
    no UTF-8 encoder, so neither SQLite nor psycopg, can write it) make the record malformed:
    there is no telling what the text was meant to be. Other control characters are layout, not
    text: each run of them becomes one space (``domain.rules.one_line``), so a title with a
    stray line break is still announced, on one line.
    """
    if not isinstance(value, str):
        raise MalformedRecord(f"{group}: {field} is a {type(value).__name__}, not a string")
    if "\x00" in value:
        raise MalformedRecord(f"{group}: {field} contains a NUL character")
    surrogate = lone_surrogate(value)
    if surrogate is not None:
        raise MalformedRecord(
            f"{group}: {field} contains a lone surrogate (U+{ord(surrogate):04X})"
        )
    if len(value) > limit:
        raise MalformedRecord(
            f"{group}: {field} is {len(value)} characters long, more than {limit}"
        )
    return one_line(value)


def _items(value: object, field: str, limit: int, group: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedRecord(f"{group}: {field} is a {type(value).__name__}, not a list")
    if len(value) > limit:
        raise MalformedRecord(f"{group}: {field} has {len(value)} items, more than {limit}")
    return value


def parse_release_group(record: Mapping[str, Any]) -> ReleaseGroup:
    """A release group from one search-result record, or MalformedRecord saying what is wrong.

    Every field is checked for its type and for what the warehouse can store, so that a record
    that parses is one that a partition write can never fail on.
    """
    if not isinstance(record, Mapping):
        raise MalformedRecord(f"record is a {type(record).__name__}, not an object")
    record_id = record.get("id")
    try:
        if not isinstance(record_id, str):
            raise InvalidInput("not a string")
        mbid = normalize_mbid(record_id)
    except InvalidInput:
        raise MalformedRecord(
            f"id {_safe_repr(record_id)} is not a MusicBrainz identifier"
        ) from None
    group = f"release group {mbid}"
    title = record.get("title")
    if title is not None:
        title = _text(title, "title", MAX_TITLE, group).strip()
    if not title:
        raise MalformedRecord(f"{group}: missing title")
    credits = record.get("artist-credit")
    if credits is None or credits == []:
        raise MalformedRecord(f"{group}: missing artist-credit")
    artists = []
    for position, credit in enumerate(_items(credits, "artist-credit", MAX_CREDITS, group)):
        field = f"artist-credit[{position}]"
        artist = credit.get("artist") if isinstance(credit, Mapping) else None
        if not isinstance(credit, Mapping) or not isinstance(artist, Mapping):
            raise MalformedRecord(f"{group}: {field} has no artist")
        try:
            artist_id = artist.get("id")
            if not isinstance(artist_id, str):
                raise InvalidInput("not a string")
            artist_mbid = normalize_mbid(artist_id)
        except InvalidInput:
            raise MalformedRecord(f"{group}: {field} has no valid artist id") from None
        # The name as credited on this release group, else the artist's own name.
        name = credit.get("name")
        if name is None or name == "":
            name = artist.get("name")
        if name is None:
            raise MalformedRecord(f"{group}: {field} has no name")
        name = _text(name, f"{field} name", MAX_NAME, group).strip()
        if not name:
            raise MalformedRecord(f"{group}: {field} has no name")
        join_phrase = credit.get("joinphrase")
        # Spaces around a join phrase (" feat. ") are part of it: not stripped.
        join_phrase = (
            ""
            if join_phrase is None
            else _text(join_phrase, f"{field} joinphrase", MAX_JOIN_PHRASE, group)
        )
        artists.append(CreditedArtist(artist_mbid, name, join_phrase))
    first_release_date = record.get("first-release-date")
    if first_release_date is None:
        first_release_date = ""
    if not isinstance(first_release_date, str):
        raise MalformedRecord(
            f"{group}: first-release-date is a {type(first_release_date).__name__}, not a string"
        )
    secondary: list[str] = []
    raw_secondary = record.get("secondary-types")
    if raw_secondary is not None:
        items = _items(raw_secondary, "secondary-types", MAX_SECONDARY_TYPES, group)
        for position, item in enumerate(items):
            name = _text(item, f"secondary-types[{position}]", MAX_TYPE, group).strip()
            if "," in name:
                # Stored comma-separated in release_groups.secondary_types.
                raise MalformedRecord(f"{group}: secondary-types[{position}] contains a comma")
            if name:
                secondary.append(name)
    primary_type = record.get("primary-type")
    if primary_type is not None:
        primary_type = _text(primary_type, "primary-type", MAX_TYPE, group).strip() or None
    return ReleaseGroup(
        mbid=mbid,
        title=title,
        primary_type=primary_type,
        secondary_types=tuple(secondary),
        first_release_date=first_release_date,
        release_date=exact_release_date(first_release_date),
        artists=tuple(artists),
    )


def _safe_repr(value: object, limit: int = 80) -> str:
    """``repr(value)``, printable, storable and short: for messages and metadata."""
    return shorten(_printable(repr(value)), limit)


def _printable(text: str) -> str:
    """``text`` with each character that is not printable (controls, lone surrogates) written as
    its Python escape, ``\\x00`` or ``\\ud800``."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def record_label(record: object, limit: int = 80) -> str:
    """How a skipped record is named in logs and metadata: its id as given, made printable
    (``bad\\x00id``) and short, or ``(no id)``."""
    value = record.get("id") if isinstance(record, Mapping) else None
    if value is None or value == "":
        return "(no id)"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return shorten(_printable(text), limit)


@dataclass(frozen=True, slots=True)
class SearchPage:
    count: int
    offset: int
    records: list[Any]


def parse_search_page(payload: Any, url: str) -> SearchPage:
    """The shape the web service promises for a search page, or MusicBrainzError naming the URL
    and what is wrong: a JSON object with a ``count`` (a whole number, not ``true``) and a
    ``release-groups`` list."""
    if not isinstance(payload, Mapping):
        raise MusicBrainzError(f"{url}: response is not a JSON object")
    records = payload.get("release-groups")
    count = payload.get("count")
    if not isinstance(records, list):
        raise MusicBrainzError(f"{url}: response has no release-groups list")
    if count is None:
        raise MusicBrainzError(f"{url}: response has no count")
    # bool is an int in Python: `"count": true` would read as a window of one record.
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise MusicBrainzError(f"{url}: count is {json.dumps(count)[:40]}, not a number of results")
    offset = payload.get("offset", 0)
    return SearchPage(count=count, offset=offset if isinstance(offset, int) else 0, records=records)


def read_search_page(body: bytes, url: str, *, offset: int) -> SearchPage:
    """The search page requested at ``offset``, or MusicBrainzError saying why this response is
    not one. An empty page before ``count`` is not the end of the window: the index answered
    with less than it promised, and taking it as the end would silently drop the rest."""
    page = parse_search_page(_json(body, url), url)
    if not page.records and offset < page.count:
        raise MusicBrainzError(
            f"{url}: empty page: no release groups at offset {offset} of {page.count}"
        )
    return page


@dataclass(frozen=True, slots=True)
class ReleaseFetch(FetchReport):
    """A window's fetch: the exact-dated release groups of ``[window_start, window_end]``, the
    raw pages they came from, and the ids of the records that were skipped as malformed.

    ``release_groups`` holds every well-formed release group whose first release date is exactly
    a day of the window; which of them the partition keeps is the warehouse's decision.
    """

    window_start: date | None = None
    window_end: date | None = None
    pages: tuple[SourcePage, ...] = ()
    skipped_ids: tuple[str, ...] = ()
    # Whether the search asked for the broadcast primary types too (``search_query``).
    widened: bool = False


def search_query(start: date, end: date, *, widened: bool = False) -> str:
    """The window's search; ``widened`` adds the primary types Broadcast and Other."""
    types = " OR ".join(WIDENED_PRIMARY_TYPES if widened else PRIMARY_TYPES)
    return f"firstreleasedate:[{start.isoformat()} TO {end.isoformat()}] AND primarytype:({types})"


def is_widened(query: str) -> bool:
    """Whether a search query (``search_query``) asks for the broadcast primary types."""
    types = query.rpartition("primarytype:(")[2].partition(")")[0]
    return any(name in BROADCAST_PRIMARY_TYPES for name in types.split(" OR "))


def user_agent(contact: str | None) -> str:
    return _user_agent(contact, __version__)


def window(day: date, lookback_days: int) -> tuple[date, date]:
    if lookback_days < 0:
        raise ValueError("lookback_days must be 0 or more")
    return day - timedelta(days=lookback_days), day


def collect(
    pages: Iterable[SourcePage], *, start: date, end: date, source: str, widened: bool = False
) -> ReleaseFetch:
    """Validate and filter the records of ``pages``: every well-formed release group dated
    exactly within ``[start, end]``. Used for live fetches, recorded pages and stored pages alike,
    so a day re-derived from the warehouse goes through the very same rules."""
    groups: dict[str, ReleaseGroup] = {}
    kept_pages: list[SourcePage] = []
    skipped_ids: list[str] = []
    seen = not_exact = 0
    for raw in pages:
        kept_pages.append(raw)
        for record in parse_search_page(_json(raw.body, raw.url), raw.url).records:
            seen += 1
            try:
                group = parse_release_group(record)
            except MalformedRecord as exc:
                label = record_label(record)
                skipped_ids.append(label)
                logger.warning(
                    "skipping malformed MusicBrainz record %s on %s: %s", label, raw.url, exc
                )
                continue
            if group.release_date is None:
                # Partial ("2026-11") and missing dates never count as a release on a day.
                not_exact += 1
            elif start <= group.release_date <= end:
                # Search results can shift between pages while MusicBrainz indexes edits, so a
                # release group may come twice; the last copy is the freshest.
                groups[group.mbid] = group
    return ReleaseFetch(
        release_groups=tuple(groups.values()),
        records_seen=seen,
        records_skipped=len(skipped_ids),
        not_exact_date=not_exact,
        requests=len(kept_pages),
        source=source,
        window_start=start,
        window_end=end,
        pages=tuple(kept_pages),
        skipped_ids=tuple(skipped_ids),
        widened=widened,
    )


class MusicBrainzClient:
    """Pages through the release-group search for a date window, politely.

    ``transport`` lets the same code read recorded pages (see ``ReplayTransport``); ``clock``,
    ``rng``, ``limiter`` and ``retry`` make time and retries injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        *,
        contact: str | None,
        rate: float = 1.0,
        lookback_days: int = DEFAULT_LOOKBACK_DAYS,
        timeout: float = 30.0,
        page_size: int = PAGE_SIZE,
        max_pages: int = DEFAULT_MAX_PAGES,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not contact or not contact.strip():
            raise ContactRequired(
                "MusicBrainz requires a contact (URL or e-mail) in the User-Agent of every "
                "client; set MUSICBUTLER_CONTACT"
            )
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {PAGE_SIZE}, not {page_size}")
        if lookback_days < 0:
            raise ValueError("lookback_days must be 0 or more")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self.contact = contact.strip()
        self.lookback_days = lookback_days
        self.timeout = timeout
        self.page_size = page_size
        self.max_pages = max_pages
        self.retry = retry or HTTP_RETRY
        self.transport = transport
        self.clock = clock
        self.rng = rng or random.Random()
        self.limiter = limiter or shared_rate_limiter(urlsplit(self.base_url).netloc, rate, clock)

    def _client(self) -> httpx.Client:
        # One client per fetch: its connection pool carries every page over one keep-alive
        # connection, and closing it afterwards leaves no sockets behind between daily runs.
        return httpx.Client(
            headers={"User-Agent": user_agent(self.contact), "Accept": "application/json"},
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            transport=self.transport,
            follow_redirects=True,
        )

    def http_client(self) -> httpx.Client:
        """A client with this one's User-Agent, timeouts and transport, for other lookups of the
        same service (``sources.musicbrainz_links``); the rate limiter is ``self.limiter``."""
        return self._client()

    def iter_pages(self, start: date, end: date, *, widened: bool = False) -> Iterator[SourcePage]:
        """Every page of the window's search (``search_query``), in offset order, until
        ``offset >= count``. Each page records the query it answers."""
        query = search_query(start, end, widened=widened)
        url = f"{self.base_url}/release-group"
        offset = 0
        with self._client() as client:
            for _ in range(self.max_pages):
                params: dict[str, str | int] = {
                    "query": query,
                    "fmt": "json",
                    "limit": self.page_size,
                    "offset": offset,
                }
                response = request_with_retries(
                    client,
                    url,
                    params=params,
                    limiter=self.limiter,
                    policy=self.retry,
                    rng=self.rng,
                    wait_hint=lambda response: retry_after_hint(response, self.clock),
                    unusable=lambda response, offset=offset: _page_problem(response, offset),
                    error=MusicBrainzUnavailable,
                )
                shown = str(response.request.url)
                if response.status_code != 200:
                    raise MusicBrainzError(
                        f"{shown}: HTTP {response.status_code} {_excerpt(response.content)}"
                    )
                page = read_search_page(response.content, shown, offset=offset)
                yield SourcePage(
                    url=shown,
                    query=query,
                    offset=offset,
                    body=response.content,
                    record_count=len(page.records),
                    total_count=page.count,
                    fetched_at=self.clock.now(),
                )
                offset += len(page.records)
                if offset >= page.count:
                    return
        raise MusicBrainzError(
            f"{url}?query={query}: more than {self.max_pages} pages of {self.page_size}; "
            "refusing to store a partial window"
        )

    def fetch_window(self, start: date, end: date, *, widened: bool = False) -> ReleaseFetch:
        return collect(
            self.iter_pages(start, end, widened=widened),
            start=start,
            end=end,
            source=self.base_url,
            widened=widened,
        )

    def fetch(self, day: date, *, widened: bool = False) -> ReleaseFetch:
        """The exact-dated release groups of ``[day - lookback_days, day]``; ``widened`` asks
        for the broadcast primary types as well."""
        start, end = window(day, self.lookback_days)
        return self.fetch_window(start, end, widened=widened)


def _json(body: bytes, url: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reading
        raise MusicBrainzError(f"{url}: response is not JSON {_excerpt(body)}") from None


def _page_problem(response: httpx.Response, offset: int) -> str | None:
    """Why a 200 response is not the search page asked for (so it is retried like a 503), or
    None. Other statuses are the caller's to report."""
    if response.status_code != 200:
        return None
    url = str(response.request.url)
    try:
        read_search_page(response.content, url, offset=offset)
    except MusicBrainzError as exc:
        return str(exc).removeprefix(f"{url}: ")
    return None


def _excerpt(body: bytes, limit: int = 120) -> str:
    text = body[:limit].decode("utf-8", "replace").strip()
    return f"({text!r})" if text else "(empty body)"


class ReplayTransport(httpx.BaseTransport):
    """Answers release-group searches from recorded pages on disk.

    Layout: ``<root>/<end date>/offset-<NNNN>.json``, the pages of the search whose window ends on
    that date; ``<root>/widened/<end date>/offset-<NNNN>.json``, those of the widened search
    (``search_query(widened=True)``). A window with no recording of either answers as MusicBrainz
    does for a quiet day: no results. A widened search of a window recorded only narrow answers
    404: those pages cannot say what the widened search would have found (see
    ``fetch_recorded``, which falls back to the narrow search instead).
    Release browses (``/release?release-group=<mbid>&inc=url-rels``, for listen links) are
    answered from ``<root>/releases/<mbid>/offset-<NNNN>.json``; a release group with no
    recording answers as one with no releases.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        query = parse_qs(urlsplit(str(request.url)).query)
        if request.url.path.endswith("/release"):
            return replay_release_browse(self.root, query)
        search = query.get("query", [""])[0]
        end = _window_end(search)
        if end is None:
            return httpx.Response(400, content=b'{"error": "expected a firstreleasedate range"}')
        offset = int(query.get("offset", ["0"])[0])
        directory = recorded_window(self.root, end, widened=is_widened(search))
        if is_widened(search) and not directory.is_dir() and (self.root / end).is_dir():
            return httpx.Response(404, content=b'{"error": "no recording of the widened search"}')
        if not directory.is_dir():
            body = {"created": "", "count": 0, "offset": offset, "release-groups": []}
            return httpx.Response(200, content=json.dumps(body).encode())
        page = directory / f"offset-{offset:04d}.json"
        if not page.is_file():
            return httpx.Response(404, content=b'{"error": "no recording for this page"}')
        return httpx.Response(
            200, content=page.read_bytes(), headers={"Content-Type": "application/json"}
        )


def recorded_window(root: Path, end: str, *, widened: bool) -> Path:
    """Where the recorded pages of the search whose window ends on ``end`` are (see
    ``ReplayTransport``)."""
    return root / "widened" / end if widened else root / end


def fetch_recorded(
    root: Path, day: date, *, lookback_days: int, widened: bool = False
) -> ReleaseFetch:
    """``day``'s fetch from the recorded pages in ``root``. Asked for the widened search of a
    window that was recorded only narrow (the bundled sample is), it logs a warning and
    replays the narrow search: the day's mail goes out, without broadcasts, and the fetch says
    ``widened=False``. A recording holds what was asked when it was made, nothing more."""
    client = replay_client(root, lookback_days=lookback_days)
    end = window(day, lookback_days)[1].isoformat()
    if (
        widened
        and not recorded_window(root, end, widened=True).is_dir()
        and recorded_window(root, end, widened=False).is_dir()
    ):
        logger.warning(
            "recorded MusicBrainz pages in %s hold only the narrow search for %s: broadcasts "
            "are not fetched although a subscriber selects them",
            root,
            end,
        )
        widened = False
    return client.fetch(day, widened=widened)


def replay_release_browse(root: Path, query: Mapping[str, list[str]]) -> httpx.Response:
    """A recorded ``/release?release-group=<mbid>`` browse page (see ``ReplayTransport``)."""
    try:
        mbid = normalize_mbid(query.get("release-group", [""])[0])
    except InvalidInput:
        return httpx.Response(400, content=b'{"error": "expected a release-group id"}')
    offset = int(query.get("offset", ["0"])[0])
    directory = root / "releases" / mbid
    if not directory.is_dir():
        body = {"release-count": 0, "release-offset": offset, "releases": []}
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


def replay_client(root: Path, *, lookback_days: int = DEFAULT_LOOKBACK_DAYS) -> MusicBrainzClient:
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
