"""Where release groups and libraries come from: MusicBrainz, recorded snapshots, ListenBrainz."""
