"""Exclusive locks on both backends, across processes where it matters."""

import subprocess
import sys
from pathlib import Path

import pytest

from musicbutler_pipeline.locks import AdvisoryLock, FileLock, holding, send_lock, warehouse_lock


@pytest.fixture(params=["file", "advisory"])
def lock_pair(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "file":
        return (FileLock(tmp_path / "x.lock", "x"), FileLock(tmp_path / "x.lock", "x"))
    url = request.getfixturevalue("postgres_url")
    return (AdvisoryLock(url, "x"), AdvisoryLock(url, "x"))


def test_one_holder_at_a_time_and_release_frees_it(lock_pair) -> None:
    first, second = lock_pair
    assert first.try_acquire()
    assert first.is_healthy()
    assert not second.try_acquire()
    assert str(__import__("os").getpid()) in second.holder()
    first.release()
    assert second.try_acquire()
    second.release()


def test_lock_dies_with_its_process(tmp_path: Path, postgres_url: str) -> None:
    for lock_expr in (
        f"FileLock(Path({str(tmp_path / 'y.lock')!r}), 'y')",
        f"AdvisoryLock({postgres_url!r}, 'y')",
    ):
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path\n"
                "from musicbutler_pipeline.locks import FileLock, AdvisoryLock\n"
                f"lock = {lock_expr}\nassert lock.try_acquire()\nprint('held', flush=True)\n"
                "sys.stdin.read()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout.readline().strip() == "held"
        mine = eval(lock_expr, {"FileLock": FileLock, "AdvisoryLock": AdvisoryLock, "Path": Path})
        assert not mine.try_acquire()
        holder.kill()
        holder.wait()
        assert mine.acquire(wait=True, poll_seconds=0.1)  # polls until the server notices
        mine.release()


def test_warehouse_locks_follow_the_backend(tmp_path: Path) -> None:
    sqlite = warehouse_lock(f"sqlite:///{tmp_path / 'w.db'}", "send-2026-11-23")
    assert isinstance(sqlite, FileLock)
    assert sqlite.path == tmp_path / "w.db.send-2026-11-23.lock"
    assert isinstance(send_lock("postgresql://u@h/db", "2026-11-23"), AdvisoryLock)
    with (
        holding(sqlite) as acquired,
        holding(warehouse_lock(f"sqlite:///{tmp_path / 'w.db'}", "send-2026-11-23")) as second,
    ):
        assert acquired and not second


def test_advisory_lock_health_and_holder_for_negative_keys(postgres_url: str) -> None:
    # The day's send lock hashes to a negative bigint: pg_locks shows it as two unsigned halves.
    lock = send_lock(postgres_url, "2026-11-23")
    assert isinstance(lock, AdvisoryLock) and lock.key < 0
    assert lock.try_acquire()
    try:
        assert lock.is_healthy()
        lock.ensure_held()
        assert f"pid {__import__('os').getpid()}" in send_lock(postgres_url, "2026-11-23").holder()
    finally:
        lock.release()


def test_advisory_lock_is_lost_when_its_backend_is_terminated(postgres_url: str) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    from musicbutler_pipeline.locks import LockLost

    lock = AdvisoryLock(postgres_url, "terminated")
    assert lock.try_acquire()
    admin = psycopg2.connect(make_url(postgres_url).render_as_string(hide_password=False))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'musicbutler terminated pid %%'"
            )
            assert cursor.rowcount == 1
        assert not lock.is_healthy()
        with pytest.raises(LockLost, match="terminated is no longer held"):
            lock.ensure_held()
        # The lock went with the backend: another process takes it at once.
        other = AdvisoryLock(postgres_url, "terminated")
        assert other.try_acquire()
        other.release()
    finally:
        lock.release()
        admin.close()
