"""This process and the others on this host, as the operating system sees them: host and pid,
the code version, whether a pid is alive, and (Linux /proc) which scheduler a process serves.
The adapter for the OS; the warehouse stores what it answers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from musicbutler_pipeline import __version__
from musicbutler_pipeline.domain.sends import Sender


@cache
def code_version() -> str:
    """What code is sending: ``MUSICBUTLER_CODE_VERSION`` if the deploy sets it, else the git
    commit of this source tree (``+dirty`` when modified), else the package version."""
    configured = os.environ.get("MUSICBUTLER_CODE_VERSION")
    if configured:
        return configured[:64]
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty=+dirty", "--abbrev=12"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        described = ""
    return (f"{__version__}+g{described}" if described else __version__)[:64]


def current_sender(run_id: str) -> Sender:
    """The identity this process records on its claims for run ``run_id``."""
    return Sender(
        run_id=run_id, host=socket.gethostname(), pid=os.getpid(), code_version=code_version()
    )


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


# Run by the child before it becomes ``command``: ask Linux for SIGKILL when the parent dies
# (PR_SET_PDEATHSIG survives exec), and give up if the parent died before the request was made.
# SIGKILL, not SIGTERM: a dagster-daemon sent SIGTERM shuts down gracefully, and in a loaded test
# run one was still running a minute later; with the parent gone, nobody is left to escalate.
_DIE_WITH_PARENT = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def dying_with_this_process(command: Sequence[str]) -> list[str]:
    """``command`` (an absolute executable first) wrapped so it is killed when this process dies,
    however it dies (SIGKILL and OOM included). The process keeps its pid and command line.
    Elsewhere than Linux, ``command`` unchanged."""
    if sys.platform != "linux":
        return list(command)
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *command]


def sender_gone(host: str, pid: int) -> bool:
    """Whether the process ``pid`` on ``host`` is known to be gone: only this host can tell."""
    return host == socket.gethostname() and not process_alive(pid)


@dataclass(frozen=True, slots=True)
class SchedulerProcess:
    """The scheduler (a ``dagster-daemon``, or ``dagster dev`` which runs one) a process serves."""

    pid: int
    started_at: datetime | None

    def alive(self) -> bool:
        return process_started_at(self.pid) == self.started_at


# `dagster-daemon run`, `python -m dagster._daemon run` (what `dagster dev` starts) and `dagster
# dev` itself, whose code servers are its own children rather than its daemon's.
_SCHEDULER_COMMAND = re.compile(r"(dagster-daemon|dagster[._]_?daemon) run|\bdagster dev\b")
_CODE_SERVER_COMMAND = re.compile(r"\bdagster api grpc\b|\bdagster code-server start\b")


def _is_scheduler(cmdline: str) -> bool:
    return bool(_SCHEDULER_COMMAND.search(cmdline))


def scheduler_of_this_process() -> SchedulerProcess | None:
    """The scheduler whose code server this process is, or None.

    A scheduler's code server imports our definitions and lives as long as the scheduler, so it
    is where a presence is written from. Run workers (children of the code server), the
    webserver's own code server, tests and CLI commands are no scheduler's code server.
    """
    if not _CODE_SERVER_COMMAND.search(_cmdline(os.getpid())):
        return None
    pid = os.getpid()
    for _ in range(3):
        parent = _parent(pid)
        if parent is None:
            return None
        if _is_scheduler(_cmdline(parent)):
            return SchedulerProcess(parent, process_started_at(parent))
        if parent == 1:
            return None
        pid = parent
    return None


def _parent(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    parent = int(fields[1])
    # In a PID namespace the daemon itself can be pid 1.
    return parent if parent >= 1 else None


def process_started_at(pid: int) -> datetime | None:
    """When a process started (Linux /proc), to tell a pid reused by a later process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return None
    ticks = int(fields[19])  # field 22 of stat(5), counted from the state field (3)
    seconds = round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)
    return datetime.fromtimestamp(seconds, UTC)


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""
