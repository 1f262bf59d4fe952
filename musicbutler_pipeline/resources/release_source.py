from abc import ABC, abstractmethod
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dagster import ConfigurableResource
from pydantic import Field

from musicbutler_pipeline.domain.models import FetchReport
from musicbutler_pipeline.settings import Settings, SettingsError
from musicbutler_pipeline.sources.musicbrainz import (
    MusicBrainzClient,
    bundled_snapshot_root,
    replay_client,
)


class ReleaseSourceResource(ConfigurableResource, ABC):
    """Where a day's release groups come from."""

    lookback_days: int = Field(default=14, ge=0, le=90)

    @abstractmethod
    def fetch(self, day: date) -> FetchReport:
        """Release groups first released exactly on ``day``."""


class MusicBrainzReleaseSource(ReleaseSourceResource):
    """The MusicBrainz web service, or recorded pages when the URL is ``file:///dir``."""

    url: str | None = Field(default=None, description="default: MUSICBUTLER_MUSICBRAINZ_URL")
    rate: float | None = Field(
        default=None, gt=0, description="default: MUSICBUTLER_MUSICBRAINZ_RATE"
    )
    contact: str | None = Field(default=None, description="default: MUSICBUTLER_CONTACT")

    def client(self) -> MusicBrainzClient:
        settings = Settings.from_env()
        url = self.url or settings.musicbrainz_url
        parts = urlsplit(url)
        if parts.scheme == "file":
            return replay_client(Path(unquote(parts.path)), lookback_days=self.lookback_days)
        contact = self.contact or settings.contact
        if not contact:
            raise SettingsError(
                "MUSICBUTLER_CONTACT",
                "required to call MusicBrainz (it goes in the User-Agent; a URL or an e-mail)",
            )
        return MusicBrainzClient(
            url,
            contact=contact,
            rate=self.rate or settings.musicbrainz_rate,
            lookback_days=self.lookback_days,
        )

    def fetch(self, day: date) -> FetchReport:
        return self.client().fetch(day)


class SnapshotReleaseSource(ReleaseSourceResource):
    """Recorded MusicBrainz search pages: the bundled sample day unless ``root`` is given."""

    root: str | None = None

    def fetch(self, day: date) -> FetchReport:
        root = Path(self.root) if self.root else bundled_snapshot_root()
        return replay_client(root, lookback_days=self.lookback_days).fetch(day)
