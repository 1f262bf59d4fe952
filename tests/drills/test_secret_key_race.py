"""The key race (issue 10, finding 6): many processes start at once on a fresh home and each asks
for the unsubscribe signing key. All must get the same, full-length key, and none may crash.

Real processes, kept alive across trials so the drill is about the race and not about Python's
start-up time: each trial makes a fresh home, hands its path to every worker at once, and every
worker calls the public ``secret_key`` for it.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.drills.environment import REPO

WORKERS = 12
TRIALS = 100
MIN_KEY_LENGTH = 16  # README: MUSICBUTLER_SECRET_KEY is at least 16 characters

_WORKER = """
import sys
from pathlib import Path
from musicbutler_pipeline.settings import secret_key
print("ready", flush=True)
for line in sys.stdin:
    try:
        print("key", secret_key(Path(line.strip()), {}).hex(), flush=True)
    except Exception as exc:
        print("error", type(exc).__name__, str(exc).replace("\\n", " "), flush=True)
"""


def test_concurrent_first_starts_agree_on_one_full_key(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(WORKERS)
    ]
    outcomes: Counter[str] = Counter()
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        for trial in range(TRIALS):
            home = tmp_path / f"home-{trial}"
            for worker in workers:  # the homes do not exist yet: every worker creates it
                assert worker.stdin is not None
                worker.stdin.write(f"{home}\n")
                worker.stdin.flush()
            answers = [worker.stdout.readline().split(" ", 2) for worker in workers]  # type: ignore[union-attr]
            errors = [" ".join(answer).strip() for answer in answers if answer[0] != "key"]
            keys = {bytes.fromhex(answer[1]) for answer in answers if answer[0] == "key"}
            if errors:
                outcomes[f"crash ({errors[0].split()[1]})"] += 1
            elif any(len(key) < MIN_KEY_LENGTH for key in keys):
                outcomes["a worker got a short or empty key"] += 1
            elif len(keys) != 1:
                outcomes["workers disagreed on the key"] += 1
            else:
                assert next(iter(keys)) == (home / "secret_key").read_bytes()
                outcomes["ok"] += 1
    finally:
        for worker in workers:
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in workers:
            worker.wait(timeout=30)
    assert outcomes == Counter({"ok": TRIALS}), dict(outcomes)
