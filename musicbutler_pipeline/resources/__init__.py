"""Dagster resources: small interfaces over the warehouse, the sources and the mailer."""

from musicbutler_pipeline.resources.library_source import (
    CsvOnlyLibrarySource,
    LibrarySourceResource,
    ListenBrainzLibrarySource,
)
from musicbutler_pipeline.resources.mailer import MailerResource
from musicbutler_pipeline.resources.release_source import (
    MusicBrainzReleaseSource,
    ReleaseSourceResource,
    SnapshotReleaseSource,
)
from musicbutler_pipeline.resources.settings import SettingsResource, UsesSettings
from musicbutler_pipeline.resources.warehouse import WarehouseResource

__all__ = [
    "CsvOnlyLibrarySource",
    "LibrarySourceResource",
    "ListenBrainzLibrarySource",
    "MailerResource",
    "MusicBrainzReleaseSource",
    "ReleaseSourceResource",
    "SettingsResource",
    "SnapshotReleaseSource",
    "UsesSettings",
    "WarehouseResource",
]
