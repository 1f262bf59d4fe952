from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dagster import ConfigurableResource
from pydantic import Field

from musicbutler_pipeline.resources.http_client import HttpClientConfig
from musicbutler_pipeline.resources.settings import UsesSettings
from musicbutler_pipeline.settings import Settings, SettingsError
from musicbutler_pipeline.sources.musicbrainz import (
    DEFAULT_LOOKBACK_DAYS,
    MusicBrainzClient,
    ReleaseFetch,
    bundled_snapshot_root,
    fetch_recorded,
    replay_client,
)
from musicbutler_pipeline.sources.musicbrainz_links import ListenLinkFetch, lookup_listen_links


class ReleaseSourceResource(ConfigurableResource, ABC):
    """Where a day's release groups come from."""

    lookback_days: int = Field(
        default=DEFAULT_LOOKBACK_DAYS,
        ge=0,
        le=90,
        description=(
            "Days before the partition also searched, so release groups entered in MusicBrainz "
            "after their date are still announced (once, by the first partition that sees them)."
        ),
    )

    @abstractmethod
    def fetch(self, day: date, *, widened: bool = False) -> ReleaseFetch:
        """The release groups dated exactly on a day of ``[day - lookback_days, day]``, with the
        raw pages they came from; ``widened`` asks for the broadcast primary types too (a
        recorded source may not have them: the fetch's ``widened`` says what was asked)."""

    def fetch_listen_links(self, release_group_mbids: Sequence[str]) -> ListenLinkFetch:
        """The listen links of each of ``release_group_mbids``. A source that has none (a test
        double) looks nothing up: the digest keeps its MusicBrainz links."""
        return ListenLinkFetch(links={}, not_tried=tuple(release_group_mbids))


class MusicBrainzReleaseSource(ReleaseSourceResource, HttpClientConfig, UsesSettings):
    """The MusicBrainz web service, or recorded pages when the URL is ``file:///dir``.

    Unset fields are read from the environment when a run starts (not when definitions load).
    """

    url: str | None = Field(default=None, description="default: MUSICBUTLER_MUSICBRAINZ_URL")
    rate: float | None = Field(
        default=None, gt=0, description="default: MUSICBUTLER_MUSICBRAINZ_RATE"
    )
    contact: str | None = Field(default=None, description="default: MUSICBUTLER_CONTACT")

    def configuration_problems(self, settings: Settings) -> list[SettingsError]:
        url = self.url or settings.musicbrainz_url
        # Named after the variable unless the resource's own config set the value.
        variable = "MUSICBUTLER_MUSICBRAINZ_URL" if self.url is None else "release_source.url"
        parts = urlsplit(url)
        if parts.scheme == "file":
            if not Path(unquote(parts.path)).is_dir():
                return [SettingsError(variable, "file:// names no folder of recorded pages")]
            return []
        if not (self.contact or settings.contact):
            return [
                SettingsError(
                    "MUSICBUTLER_CONTACT",
                    "required to call MusicBrainz (it goes in the User-Agent; a URL or an "
                    f"e-mail), or set {variable}=file://… to replay recorded pages",
                )
            ]
        return []

    def _recorded_root(self) -> Path | None:
        parts = urlsplit(self.url or self.require_configuration().musicbrainz_url)
        return Path(unquote(parts.path)) if parts.scheme == "file" else None

    def client(self) -> MusicBrainzClient:
        settings = self.require_configuration()
        root = self._recorded_root()
        if root is not None:
            return replay_client(root, lookback_days=self.lookback_days)
        return MusicBrainzClient(
            self.url or settings.musicbrainz_url,
            contact=self.contact or settings.contact or "",
            rate=self.rate or settings.musicbrainz_rate,
            lookback_days=self.lookback_days,
            timeout=self.timeout_seconds,
            retry=self.retry_policy(),
        )

    def fetch(self, day: date, *, widened: bool = False) -> ReleaseFetch:
        root = self._recorded_root()
        if root is not None:
            return fetch_recorded(root, day, lookback_days=self.lookback_days, widened=widened)
        return self.client().fetch(day, widened=widened)

    def fetch_listen_links(self, release_group_mbids: Sequence[str]) -> ListenLinkFetch:
        # The same client, so the same User-Agent and the process's one limiter for the host.
        return lookup_listen_links(self.client(), release_group_mbids)


class SnapshotReleaseSource(ReleaseSourceResource):
    """Recorded MusicBrainz search pages: the bundled sample day unless ``root`` is given.

    Goes through the same client, paging and validation as the live service."""

    root: str | None = None

    def fetch(self, day: date, *, widened: bool = False) -> ReleaseFetch:
        return fetch_recorded(self._root(), day, lookback_days=self.lookback_days, widened=widened)

    def fetch_listen_links(self, release_group_mbids: Sequence[str]) -> ListenLinkFetch:
        return lookup_listen_links(self._client(), release_group_mbids)

    def _root(self) -> Path:
        return Path(self.root) if self.root else bundled_snapshot_root()

    def _client(self) -> MusicBrainzClient:
        return replay_client(self._root(), lookback_days=self.lookback_days)
