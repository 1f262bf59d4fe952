"""Where subscribers' libraries come from besides the CSV import: ListenBrainz, or nowhere."""

from abc import ABC, abstractmethod
from collections.abc import Sequence

from dagster import ConfigurableResource
from pydantic import Field

from musicbutler_pipeline.resources.http_client import HttpClientConfig
from musicbutler_pipeline.resources.settings import UsesSettings
from musicbutler_pipeline.settings import SettingsError
from musicbutler_pipeline.sources.listenbrainz import (
    DEFAULT_MAX_ARTISTS,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    LibraryFetchSummary,
    ListenBrainzClient,
    fetch_libraries,
)


class LibrarySourceResource(ConfigurableResource, ABC):
    """Imports libraries of subscribers who linked an external service."""

    @property
    @abstractmethod
    def imports_listenbrainz(self) -> bool:
        """Whether ``user_libraries`` should sync ListenBrainz users' follows at all."""

    @abstractmethod
    def fetch(self, users: Sequence[str]) -> LibraryFetchSummary:
        """The top artists of each ListenBrainz user, or why there are none."""


class ListenBrainzLibrarySource(LibrarySourceResource, HttpClientConfig, UsesSettings):
    """The ListenBrainz API. Makes no request when no subscriber has a ListenBrainz user.

    Unset fields are read from the environment when a run starts (not when definitions load).
    """

    url: str | None = Field(
        default=None,
        description="default: MUSICBUTLER_LISTENBRAINZ_URL (`off`: CSV imports only, no requests)",
    )
    contact: str | None = Field(
        default=None, description="for the User-Agent; default: MUSICBUTLER_CONTACT"
    )
    rate: float = Field(default=2.0, gt=0, description="most requests per second")
    max_artists: int = Field(
        default=DEFAULT_MAX_ARTISTS, ge=1, le=10_000, description="top artists followed per user"
    )
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    give_up_after_failed_users: int = Field(
        default=3, ge=1, description="users failing in a row before the rest are skipped"
    )

    @property
    def imports_listenbrainz(self) -> bool:
        return bool(self.url or self.environment().listenbrainz_url)

    def client(self) -> ListenBrainzClient:
        settings = self.require_configuration()
        url = self.url or settings.listenbrainz_url
        if url is None:
            raise SettingsError("MUSICBUTLER_LISTENBRAINZ_URL", "is off: no ListenBrainz client")
        return ListenBrainzClient(
            url,
            contact=self.contact or settings.contact,
            rate=self.rate,
            max_artists=self.max_artists,
            page_size=self.page_size,
            timeout=self.timeout_seconds,
            retry=self.retry_policy(),
        )

    def fetch(self, users: Sequence[str]) -> LibraryFetchSummary:
        if not users:
            return LibraryFetchSummary()
        with self.client() as client:
            return fetch_libraries(client, users, give_up_after=self.give_up_after_failed_users)


class CsvOnlyLibrarySource(LibrarySourceResource):
    """Libraries come from `musicbutler library import` only; ListenBrainz users are ignored.
    For the demo, tests and deployments without network access."""

    @property
    def imports_listenbrainz(self) -> bool:
        return False

    def fetch(self, users: Sequence[str]) -> LibraryFetchSummary:
        return LibraryFetchSummary(not_attempted=list(users))
