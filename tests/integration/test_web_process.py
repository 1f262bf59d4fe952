"""`musicbutler web` as a real process: SIGTERM lets the request in progress finish, then the
process exits 0; idle keep-alive connections do not hold it up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from musicbutler_pipeline.mail.tokens import make_token

REPO = Path(__file__).resolve().parents[2]
KEY = "process-test-key-0123456789"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _musicbutler(*args: str) -> list[str]:
    return [sys.executable, "-m", "musicbutler_pipeline.cli", *args]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).text == "ok\n"
    except httpx.HTTPError:
        return False


def _poll(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigterm_finishes_the_request_in_progress_then_exits_0(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSICBUTLER_", "DAGSTER_"))}
    env.update(
        MUSICBUTLER_HOME=str(tmp_path / "home"),
        MUSICBUTLER_SECRET_KEY=KEY,
        PYTHONPATH=str(REPO),
    )
    upgrade = subprocess.run(
        _musicbutler("db", "upgrade"), env=env, cwd=tmp_path, capture_output=True, timeout=120
    )
    assert upgrade.returncode == 0, upgrade.stderr
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "web.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            _musicbutler("-v", "web", "--port", str(port)),
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _poll(lambda: _healthy(url), timeout=60, what="musicbutler web to answer")
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)  # keep-alive, no request
        body = b"List-Unsubscribe=One-Click"
        in_progress = socket.create_connection(("127.0.0.1", port), timeout=10)
        # Expect: 100-continue makes the server say when the handler starts reading the body:
        # from then on this request is in progress.
        in_progress.sendall(
            f"POST /unsubscribe/{make_token(1, KEY.encode())} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        assert in_progress.recv(65536).startswith(b"HTTP/1.1 100 ")
        server.send_signal(signal.SIGTERM)
        _poll(lambda: "Shutting down" in log_path.read_text(), timeout=30, what="shutdown to start")
        assert server.poll() is None, "exited with a request in progress"
        in_progress.sendall(body)
        reply = b""
        while chunk := in_progress.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:100]
        assert server.wait(timeout=30) == 0
        assert idle.recv(1) == b""  # closed by the server on its way out
        idle.close()
        in_progress.close()
        text = log_path.read_text()
        assert '"POST /unsubscribe/… HTTP/1.1" 200' in text
        assert "Traceback" not in text
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
