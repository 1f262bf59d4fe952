"""Dagster resources: small interfaces over the warehouse, the release source and the mailer."""

from musicbutler_pipeline.resources.mailer import MailerResource
from musicbutler_pipeline.resources.release_source import (
    MusicBrainzReleaseSource,
    ReleaseSourceResource,
    SnapshotReleaseSource,
)
from musicbutler_pipeline.resources.warehouse import WarehouseResource

__all__ = [
    "MailerResource",
    "MusicBrainzReleaseSource",
    "ReleaseSourceResource",
    "SnapshotReleaseSource",
    "WarehouseResource",
]
