from datetime import UTC, datetime, timedelta

from musicbutler_pipeline.domain.schedulers import Presence, heartbeat_ids_alternate, overlapping

T0 = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)


def _presence(pid: int, start_s: int, end_s: int) -> Presence:
    return Presence(
        "host", pid, T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s), "v"
    )


def test_heartbeat_owner_returning_means_two_daemons() -> None:
    assert heartbeat_ids_alternate(["a", "b", "a"])
    assert heartbeat_ids_alternate(["a", "a", "b", "b", "a"])
    assert not heartbeat_ids_alternate(["a", "a", "b", "b"])  # a restart moves on
    assert not heartbeat_ids_alternate([])
    assert not heartbeat_ids_alternate(["a"])


def test_only_overlapping_lifetimes_are_concurrent() -> None:
    old, restarted = _presence(1, 0, 60), _presence(2, 65, 120)
    assert overlapping([old, restarted]) == []
    twin = _presence(3, 30, 90)
    assert overlapping([old, restarted, twin]) == [old, restarted, twin]
    assert overlapping([_presence(1, 0, 0)]) == []
