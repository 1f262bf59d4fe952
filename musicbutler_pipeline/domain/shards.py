"""Send shards: a day's subscribers split into a few disjoint sets, each sent by its own step.

A shard is coarse on purpose (a handful per day, not one per email): each is one Dagster step that
a distributed executor (dagster-celery) can run on another worker, and Dagster advises against
mapping thousands of tiny steps.
"""

from __future__ import annotations

from dataclasses import dataclass

# More shards than this buys nothing on one SMTP relay and makes the run's page unreadable.
MAX_SEND_SHARDS = 64


@dataclass(frozen=True, slots=True)
class Shard:
    """Subscribers whose id is ``index`` modulo ``count``: the shards 0..count-1 of one count
    are disjoint and together cover every subscriber."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SEND_SHARDS:
            raise ValueError(f"a shard count must be 1..{MAX_SEND_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is not in 0..{self.count - 1}")

    @property
    def is_whole_day(self) -> bool:
        return self.count == 1

    @property
    def key(self) -> str:
        """Its name in step keys, lock names and logs: ``2of4`` (0-based index)."""
        return f"{self.index}of{self.count}"

    @classmethod
    def all(cls, count: int) -> tuple[Shard, ...]:
        return tuple(cls(index, count) for index in range(count))


WHOLE_DAY = Shard(0, 1)
