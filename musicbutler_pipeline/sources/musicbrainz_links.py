"""Listen links from MusicBrainz: the streaming and store URLs of the releases of a release group.

Which request: the releases of a release group, browsed with their URL relationships,
``GET /ws/2/release?release-group=<mbid>&inc=url-rels&fmt=json&limit=100&offset=N``. The
links a subscriber can use (Spotify, Bandcamp, Apple Music ...) are relationships of releases,
not of the release group (whose URL relationships are Wikidata, AllMusic, reviews), and the
release-group lookup with ``inc=releases+url-rels`` gives the releases without their
relationships. A browse returns up to 100 releases per page with ``release-count``: one request
per release group almost always (a release group with more than 100 releases pages on), so a day
costs one request per owed release group, and only the owed ones are looked up.

Same client, rules and limiter as the search (``sources.musicbrainz``): one request at a time at
the configured rate, the same User-Agent, 503/429 retried with backoff, every page kept raw. A
release group whose lookup fails is reported and skipped: listen links are a nicety, and the
digest keeps its MusicBrainz link. After ``MAX_CONSECUTIVE_FAILURES`` failed lookups in a row the
service is taken to be down and the rest are not tried, so an outage costs minutes, not hours.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx

from musicbutler_pipeline.domain.listen import ReleaseLinks, pick_links
from musicbutler_pipeline.domain.models import ListenLink, SourcePage
from musicbutler_pipeline.domain.rules import InvalidInput, normalize_mbid
from musicbutler_pipeline.sources.http import SourceError, request_with_retries, retry_after_hint
from musicbutler_pipeline.sources.musicbrainz import (
    MusicBrainzClient,
    MusicBrainzError,
    MusicBrainzUnavailable,
    record_label,
)

logger = logging.getLogger(__name__)

# source_pages.source of the pages kept; their page_offset is the page's position among the
# day's lookups (the release group and offset are in the URL).
LINKS_SOURCE_NAME = "musicbrainz-url-rels"
MAX_CONSECUTIVE_FAILURES = 3
# A release group with more releases than this is not paged further (none comes close).
MAX_PAGES_PER_RELEASE_GROUP = 10


@dataclass(frozen=True, slots=True)
class BrowsePage:
    count: int
    offset: int
    releases: list[Any]


@dataclass(frozen=True, slots=True)
class ListenLinkFetch:
    """The listen links of the release groups looked up, with the evidence for the metadata.

    ``links`` has an entry (possibly empty) for every release group whose lookup succeeded; a
    release group in ``failed`` or ``not_tried`` has none, and the warehouse keeps what it had."""

    links: Mapping[str, tuple[ListenLink, ...]]
    pages: tuple[SourcePage, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()  # (release group id, why)
    not_tried: tuple[str, ...] = ()
    releases_seen: int = 0
    records_skipped: int = 0
    skipped_ids: tuple[str, ...] = ()
    source: str = ""
    # Every response received, retried ones (503, 429, bad bodies) and failed lookups included:
    # what the day cost MusicBrainz's budget, beside ``requests`` (the pages kept).
    responses: int = 0

    @property
    def requests(self) -> int:
        return len(self.pages)


def parse_browse_page(payload: Any, url: str) -> BrowsePage:
    """The shape MusicBrainz promises for a release browse, or MusicBrainzError naming the URL:
    an object with a ``releases`` list and a whole-number ``release-count``."""
    if not isinstance(payload, Mapping):
        raise MusicBrainzError(f"{url}: response is not a JSON object")
    releases = payload.get("releases")
    count = payload.get("release-count")
    if not isinstance(releases, list):
        raise MusicBrainzError(f"{url}: response has no releases list")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise MusicBrainzError(f"{url}: release-count is {json.dumps(count)[:40]}, not a count")
    offset = payload.get("release-offset", 0)
    return BrowsePage(count, offset if isinstance(offset, int) else 0, releases)


def read_browse_page(body: bytes, url: str, *, offset: int) -> BrowsePage:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise MusicBrainzError(f"{url}: response is not JSON") from None
    page = parse_browse_page(payload, url)
    if not page.releases and offset < page.count:
        raise MusicBrainzError(f"{url}: empty page: no releases at offset {offset} of {page.count}")
    return page


def parse_release_links(record: object) -> ReleaseLinks:
    """One release's id, status, date and URL relationship targets, or InvalidInput saying what
    is wrong. A relationship that is not a URL, or has no usable target, is left out: other
    relationships of the release are still good."""
    if not isinstance(record, Mapping):
        raise InvalidInput(f"release is a {type(record).__name__}, not an object")
    release_id = record.get("id")
    try:
        if not isinstance(release_id, str):
            raise InvalidInput("not a string")
        mbid = normalize_mbid(release_id)
    except InvalidInput:
        raise InvalidInput("release has no valid id") from None
    relations = record.get("relations", [])
    if relations is None:
        relations = []
    if not isinstance(relations, list):
        raise InvalidInput(f"release {mbid}: relations is a {type(relations).__name__}, not a list")
    urls: list[str] = []
    for relation in relations:
        if not isinstance(relation, Mapping) or relation.get("target-type") != "url":
            continue
        target = relation.get("url")
        resource = target.get("resource") if isinstance(target, Mapping) else None
        if isinstance(resource, str) and resource:
            urls.append(resource)
    status = record.get("status")
    date = record.get("date")
    return ReleaseLinks(
        release_mbid=mbid,
        status=status if isinstance(status, str) else None,
        date=date if isinstance(date, str) else "",
        urls=tuple(urls),
    )


def _page_problem(response: httpx.Response, offset: int) -> str | None:
    """Why a 200 response is not the browse page asked for (retried like a 503), or None."""
    if response.status_code != 200:
        return None
    url = str(response.request.url)
    try:
        read_browse_page(response.content, url, offset=offset)
    except MusicBrainzError as exc:
        return str(exc).removeprefix(f"{url}: ")
    return None


def iter_release_pages(
    client: MusicBrainzClient,
    http: httpx.Client,
    release_group_mbid: str,
    *,
    first_seq: int,
    on_response: Callable[[httpx.Response], None] | None = None,
) -> Iterator[tuple[SourcePage, BrowsePage]]:
    """Every page of the release group's release browse, in offset order. ``on_response`` sees
    every response, retried ones included."""
    url = f"{client.base_url}/release"
    query = f"release-group={release_group_mbid}&inc=url-rels"
    offset = 0
    for number in range(MAX_PAGES_PER_RELEASE_GROUP):
        params: dict[str, str | int] = {
            "release-group": release_group_mbid,
            "inc": "url-rels",
            "fmt": "json",
            "limit": client.page_size,
            "offset": offset,
        }
        response = request_with_retries(
            http,
            url,
            params=params,
            limiter=client.limiter,
            policy=client.retry,
            rng=client.rng,
            wait_hint=lambda response: retry_after_hint(response, client.clock),
            after_response=on_response,
            unusable=lambda response, offset=offset: _page_problem(response, offset),
            error=MusicBrainzUnavailable,
        )
        shown = str(response.request.url)
        if response.status_code != 200:
            raise MusicBrainzError(f"{shown}: HTTP {response.status_code}")
        page = read_browse_page(response.content, shown, offset=offset)
        yield (
            SourcePage(
                url=shown,
                query=query,
                offset=first_seq + number,
                body=response.content,
                record_count=len(page.releases),
                total_count=page.count,
                fetched_at=client.clock.now(),
            ),
            page,
        )
        offset += len(page.releases)
        if offset >= page.count:
            return
    logger.warning(
        "%s: more than %d pages of releases; using the first ones",
        release_group_mbid,
        MAX_PAGES_PER_RELEASE_GROUP,
    )


def release_group_of_page(page: SourcePage) -> str | None:
    """The release group a stored browse page is of (from its query), or None if it names none."""
    values = parse_qs(page.query).get("release-group")
    return values[0] if values else None


def pages_by_release_group(
    pages: Sequence[SourcePage], release_group_mbids: Sequence[str]
) -> dict[str, list[SourcePage]]:
    """The stored pages of each of ``release_group_mbids`` that has any, in their stored order.

    Only the pages of lookups that succeeded are ever stored (every page of the release group, or
    the first ``MAX_PAGES_PER_RELEASE_GROUP``), so a release group with pages was looked up whole:
    its links are already in release_group_links, derived from these very pages."""
    wanted = set(release_group_mbids)
    grouped: dict[str, list[SourcePage]] = {}
    for page in pages:
        mbid = release_group_of_page(page)
        if mbid is not None and mbid in wanted:
            grouped.setdefault(mbid, []).append(page)
    return grouped


def lookup_listen_links(
    client: MusicBrainzClient, release_group_mbids: Sequence[str]
) -> ListenLinkFetch:
    """The listen links of each release group of ``release_group_mbids``, one browse each.

    Never raises for what MusicBrainz answers: a malformed release is logged and skipped, a
    lookup that fails (after the client's retries) is logged and reported in ``failed``."""
    links: dict[str, tuple[ListenLink, ...]] = {}
    pages: list[SourcePage] = []
    failed: list[tuple[str, str]] = []
    skipped: list[str] = []
    seen = 0
    responses = [0]  # a cell the callback can add to

    def count(_response: httpx.Response) -> None:
        responses[0] += 1

    consecutive_failures = 0
    mbids = sorted(set(release_group_mbids))
    with client.http_client() as http:
        for position, mbid in enumerate(mbids):
            if consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                rest = tuple(mbids[position:])
                logger.warning(
                    "%d listen-link lookups failed in a row; not looking up the other %d "
                    "release groups today (they keep their MusicBrainz link)",
                    consecutive_failures,
                    len(rest),
                )
                return ListenLinkFetch(
                    links, tuple(pages), tuple(failed), rest, seen, len(skipped), tuple(skipped),
                    client.base_url, responses[0],
                )  # fmt: skip
            releases: list[ReleaseLinks] = []
            group_pages: list[SourcePage] = []
            try:
                for raw, page in iter_release_pages(
                    client, http, mbid, first_seq=len(pages) + len(group_pages), on_response=count
                ):
                    group_pages.append(raw)
                    for record in page.releases:
                        seen += 1
                        try:
                            releases.append(parse_release_links(record))
                        except InvalidInput as exc:
                            label = record_label(record)
                            skipped.append(label)
                            logger.warning(
                                "skipping malformed MusicBrainz release %s on %s: %s",
                                label,
                                raw.url,
                                exc,
                            )
            except SourceError as exc:
                consecutive_failures += 1
                failed.append((mbid, str(exc)))
                logger.warning("no listen links for release group %s: %s", mbid, exc)
                continue
            consecutive_failures = 0
            pages.extend(group_pages)
            links[mbid] = pick_links(releases)
    return ListenLinkFetch(
        links=links,
        pages=tuple(pages),
        failed=tuple(failed),
        releases_seen=seen,
        records_skipped=len(skipped),
        skipped_ids=tuple(skipped),
        source=client.base_url,
        responses=responses[0],
    )
