"""The day's story: who follows whom -> what came out -> who is owed what -> where to
listen -> the emails."""

from musicbutler_pipeline.assets.drops import user_drops
from musicbutler_pipeline.assets.libraries import user_libraries
from musicbutler_pipeline.assets.links import listen_links
from musicbutler_pipeline.assets.notifications import drop_notifications
from musicbutler_pipeline.assets.releases import artist_releases

daily_assets = [user_libraries, artist_releases, user_drops, listen_links, drop_notifications]

__all__ = [
    "artist_releases",
    "daily_assets",
    "drop_notifications",
    "listen_links",
    "user_drops",
    "user_libraries",
]
