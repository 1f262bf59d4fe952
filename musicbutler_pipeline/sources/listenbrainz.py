"""ListenBrainz: a subscriber's most listened artists, as a library to follow.

``GET {root}/stats/user/{user}/artists?range=all_time&count=N&offset=K`` pages through the
user's all-time top artists. What the answers mean to us:

* 200: the artists. Newer servers give each one ``artist_mbid`` (one string, or null when the
  listens were never matched to MusicBrainz); older ones ``artist_mbids`` (a list: every artist
  of the credit). We take either; an entry with no valid MBID cannot be followed and is counted
  as skipped.
* 204: the user exists but ListenBrainz has not computed their statistics yet (new accounts
  wait for the next batch). Not an error: the previous library is kept.
* 404: no such user (renamed, deleted, or a typo in the subscriber import). Reported; the other
  users go on.
* 429: rate limited. ListenBrainz says for how long in ``X-RateLimit-Reset-In``; we wait that
  long and retry. We also pause proactively when ``X-RateLimit-Remaining`` reaches 0.

Requests share one keep-alive connection and one rate limiter per host (``sources.http``).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx

from musicbutler_pipeline import __version__
from musicbutler_pipeline.domain.retry import RetryPolicy
from musicbutler_pipeline.domain.rules import InvalidInput, normalize_mbid
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
    user_agent,
)

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000  # ListenBrainz's MAX_ITEMS_PER_GET
DEFAULT_PAGE_SIZE = 100
DEFAULT_MAX_ARTISTS = 100


class ListenBrainzError(SourceError):
    """ListenBrainz answered something we cannot use; the message names the URL."""


class ListenBrainzUnavailable(ListenBrainzError, SourceUnavailable):
    """A request kept failing after every allowed attempt."""


class LibraryStatus(StrEnum):
    OK = "ok"
    STATS_NOT_COMPUTED = "stats_not_computed"  # HTTP 204
    UNKNOWN_USER = "unknown_user"  # HTTP 404
    FAILED = "failed"  # kept failing, or an answer we could not read


@dataclass(frozen=True, slots=True)
class TopArtist:
    mbid: str
    name: str
    listen_count: int | None = None


@dataclass(frozen=True, slots=True)
class UserLibrary:
    """One user's top artists, or why there are none this time."""

    user: str
    status: LibraryStatus
    artists: tuple[TopArtist, ...] = ()
    entries_without_mbid: int = 0
    requests: int = 0
    error: str | None = None

    def follows(self) -> dict[str, str]:
        """``{artist_mbid: artist_name}``, the library to follow."""
        return {artist.mbid: artist.name for artist in self.artists}


def reset_in_hint(response: httpx.Response, clock: Clock) -> float | None:
    """Seconds until the rate limit window resets: ListenBrainz's own header, else
    ``Retry-After``."""
    value = response.headers.get("X-RateLimit-Reset-In")
    if value is not None:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if seconds >= 0:
            return seconds
    return retry_after_hint(response, clock)


def parse_top_artists(entries: Any, url: str) -> tuple[list[TopArtist], int]:
    """The followable artists of one page, and how many entries had no usable MBID."""
    if not isinstance(entries, list):
        raise ListenBrainzError(f"{url}: payload.artists is not a list")
    artists: list[TopArtist] = []
    without_mbid = 0
    for entry in entries:
        if not isinstance(entry, Mapping):
            without_mbid += 1
            continue
        name = entry.get("artist_name")
        count = entry.get("listen_count")
        listen_count = count if isinstance(count, int) else None
        candidates: list[Any] = []
        if entry.get("artist_mbid"):
            candidates.append(entry["artist_mbid"])
        elif isinstance(entry.get("artist_mbids"), list):
            # Older statistics: every artist of the credit; each one is an artist listened to.
            candidates.extend(entry["artist_mbids"])
        mbids: list[str] = []
        for candidate in candidates:
            try:
                mbids.append(normalize_mbid(str(candidate)))
            except InvalidInput:
                continue
        if not mbids or not isinstance(name, str) or not name.strip():
            without_mbid += 1
            continue
        artists.extend(TopArtist(mbid, name.strip(), listen_count) for mbid in mbids)
    return artists, without_mbid


class ListenBrainzClient:
    """Reads users' top artists from the ListenBrainz API. Use as a context manager, so that
    every user's requests share one connection."""

    def __init__(
        self,
        base_url: str,
        *,
        contact: str | None = None,
        rate: float = 2.0,
        max_artists: int = DEFAULT_MAX_ARTISTS,
        page_size: int = DEFAULT_PAGE_SIZE,
        stats_range: str = "all_time",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
        if max_artists < 1:
            raise ValueError("max_artists must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.max_artists = max_artists
        self.page_size = page_size
        self.stats_range = stats_range
        self.retry = retry or HTTP_RETRY
        self.clock = clock
        self.rng = rng or random.Random()
        self.limiter = limiter or shared_rate_limiter(urlsplit(self.base_url).netloc, rate, clock)
        self._client = httpx.Client(
            headers={"User-Agent": user_agent(contact, __version__), "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=True,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _pace(self, response: httpx.Response) -> None:
        # Spend the allowance evenly rather than run into 429s: when ListenBrainz says none is
        # left in this window, nobody in this process calls it again until the window resets.
        if response.headers.get("X-RateLimit-Remaining") == "0":
            wait = reset_in_hint(response, self.clock)
            if wait is not None and response.status_code != 429:
                self.limiter.hold_off(min(wait, self.retry.max_backoff))

    def top_artists(self, user: str) -> UserLibrary:
        """The user's top artists (up to ``max_artists``); never raises for one user's problem."""
        url = f"{self.base_url}/stats/user/{quote(user, safe='')}/artists"
        artists: dict[str, TopArtist] = {}
        without_mbid = requests = 0
        offset = 0
        try:
            while offset < self.max_artists:
                count = min(self.page_size, self.max_artists - offset)
                response = request_with_retries(
                    self._client,
                    url,
                    params={"range": self.stats_range, "count": count, "offset": offset},
                    limiter=self.limiter,
                    policy=self.retry,
                    rng=self.rng,
                    wait_hint=lambda response: reset_in_hint(response, self.clock),
                    after_response=self._pace,
                    error=ListenBrainzUnavailable,
                )
                requests += 1
                shown = str(response.request.url)
                if response.status_code == 204:
                    if artists:  # computed while we paged: keep the previous library anyway
                        logger.warning("%s: statistics vanished while paging", shown)
                    return UserLibrary(user, LibraryStatus.STATS_NOT_COMPUTED, requests=requests)
                if response.status_code == 404:
                    return UserLibrary(
                        user,
                        LibraryStatus.UNKNOWN_USER,
                        requests=requests,
                        error=f"{shown}: HTTP 404, no such ListenBrainz user",
                    )
                if response.status_code != 200:
                    raise ListenBrainzError(f"{shown}: HTTP {response.status_code}")
                entries, total = _payload(response, shown)
                page, skipped = parse_top_artists(entries, shown)
                without_mbid += skipped
                for artist in page:
                    # The first (most listened) entry of an artist names it.
                    artists.setdefault(artist.mbid, artist)
                offset += len(entries)
                if len(entries) < count or (total is not None and offset >= total):
                    break
        except SourceError as exc:
            logger.warning("ListenBrainz user %s: %s", user, exc)
            return UserLibrary(user, LibraryStatus.FAILED, requests=requests, error=str(exc))
        return UserLibrary(
            user,
            LibraryStatus.OK,
            artists=tuple(artists.values()),
            entries_without_mbid=without_mbid,
            requests=requests,
        )


def _payload(response: httpx.Response, url: str) -> tuple[list[Any], int | None]:
    try:
        document = json.loads(response.content)
    except ValueError:
        raise ListenBrainzError(f"{url}: response is not JSON") from None
    payload = document.get("payload") if isinstance(document, Mapping) else None
    if not isinstance(payload, Mapping):
        raise ListenBrainzError(f"{url}: response has no payload object")
    entries = payload.get("artists")
    if not isinstance(entries, list):
        raise ListenBrainzError(f"{url}: payload has no artists list")
    total = payload.get("total_artist_count")
    return entries, total if isinstance(total, int) else None


@dataclass(slots=True)
class LibraryFetchSummary:
    """What a batch of users' fetches came to, for materialization metadata."""

    libraries: list[UserLibrary] = field(default_factory=list)
    not_attempted: list[str] = field(default_factory=list)

    def with_status(self, status: LibraryStatus) -> list[UserLibrary]:
        return [library for library in self.libraries if library.status is status]

    @property
    def requests(self) -> int:
        return sum(library.requests for library in self.libraries)


def fetch_libraries(
    client: ListenBrainzClient, users: Iterable[str], *, give_up_after: int = 3
) -> LibraryFetchSummary:
    """Every user's top artists, one after the other.

    When ``give_up_after`` users in a row fail (ListenBrainz down or unreachable), the remaining
    users are not attempted: each would cost a full round of retries for nothing, delaying the
    day's emails. Their previous libraries stay as they are.
    """
    summary = LibraryFetchSummary()
    failures_in_a_row = 0
    for user in users:
        if failures_in_a_row >= give_up_after:
            summary.not_attempted.append(user)
            continue
        library = client.top_artists(user)
        summary.libraries.append(library)
        failures_in_a_row = failures_in_a_row + 1 if library.status is LibraryStatus.FAILED else 0
    if summary.not_attempted:
        logger.warning(
            "ListenBrainz failed for %d users in a row; %d users not attempted this run",
            give_up_after,
            len(summary.not_attempted),
        )
    return summary
