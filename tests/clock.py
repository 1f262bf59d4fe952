"""Today's UTC day, pinned for code that reads the clock itself.

The sensors take a ``clock=``; the prune op, `musicbutler prune` and the notification asset's
age check read ``latest_partition_day()`` themselves. A test that derives its expectations from
today must give them the same day, or midnight UTC passing between its reading and theirs fails
it (a run takes seconds).
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from musicbutler_pipeline import partitions

# Every module that binds the name at import, and the module itself for those importing it at
# call time (the CLI). setattr fails on a name that is gone, so a moved import cannot slip past.
_READERS = (
    "musicbutler_pipeline.partitions",
    "musicbutler_pipeline.jobs",
    "musicbutler_pipeline.assets.notifications",
)


def pin_today(monkeypatch: pytest.MonkeyPatch, today: date) -> None:
    """``latest_partition_day()`` without an instant is ``today`` until the test ends; with an
    instant it still computes that instant's day."""
    computed = partitions.latest_partition_day

    def pinned(now: datetime | None = None) -> date:
        return today if now is None else computed(now)

    for module in _READERS:
        monkeypatch.setattr(f"{module}.latest_partition_day", pinned)
