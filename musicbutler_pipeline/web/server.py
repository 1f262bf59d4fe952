"""``musicbutler web``: waitress serving the unsubscribe app (``web.app``) on one socket, with
connection limits and timeouts so idle or slow clients cannot take the process down, and an
access log that never shows a token.
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import waitress.server
import waitress.wasyncore

from musicbutler_pipeline.mail.tokens import UNSUBSCRIBE_PATH
from musicbutler_pipeline.settings import Settings, display_url, secret_key
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.web.app import StartResponse, WsgiApp, create_app

logger = logging.getLogger(__name__)


class CannotListen(RuntimeError):
    """The address is taken, or not this process's to bind."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one ``musicbutler web`` process allows, so idle or slow clients cannot take it down.

    ``connection_limit`` client connections at most: further ones wait in the kernel's listen
    queue until one closes. A connection with no request in progress is closed once it has been
    idle for ``idle_timeout`` seconds (checked every ``cleanup_interval`` seconds, so it goes
    within ``idle_timeout + cleanup_interval``). ``threads`` requests are answered at once.
    """

    connection_limit: int = 100
    idle_timeout: int = 10
    threads: int = 4
    cleanup_interval: int = 2


# File descriptors kept free beside the client connections: the listening socket, waitress's
# wake-up pipe, the warehouse's connections (one per thread), logs, and whatever Python has open.
_RESERVED_DESCRIPTORS = 32
# waitress counts its listening socket and wake-up pipe against its connection limit.
_WAITRESS_OWN_SOCKETS = 2


def connection_limit_for_descriptors(wanted: int, threads: int) -> int:
    """``wanted``, lowered to what the process's open-file limit (``ulimit -n``) leaves room
    for: a server that runs out of descriptors can no longer accept, nor open its database."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = soft - _RESERVED_DESCRIPTORS - threads
    if wanted <= room:
        return wanted
    fitted = max(1, room)
    logger.warning(
        "connection limit lowered from %d to %d: the open-file limit (ulimit -n) is %d",
        wanted,
        fitted,
        soft,
    )
    return fitted


class _AccessLog:
    """Access log through ``logging``, with the token cut out of the path (it is what lets anyone
    holding the link unsubscribe that person). The query string is never logged."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        statuses: list[str] = []

        def recording(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            statuses.append(status.partition(" ")[0])
            return start_response(status, headers, *exc_info)

        body = self.app(environ, recording)
        path = environ.get("PATH_INFO", "") or "/"
        if path.startswith(UNSUBSCRIBE_PATH):
            path = f"{UNSUBSCRIBE_PATH}…"
        logger.info(
            '%s "%s %s %s" %s',
            environ.get("REMOTE_ADDR", "-"),
            environ.get("REQUEST_METHOD", "-"),
            path,
            environ.get("SERVER_PROTOCOL", "-"),
            statuses[-1] if statuses else "-",
        )
        return body


class UnsubscribeServer:
    """waitress serving the app on one listening socket, with connection limits and timeouts.

    Driven like ``socketserver``: ``serve_forever()`` in some thread, ``shutdown()`` from another,
    then ``server_close()``, which waits for the request threads to finish.
    """

    def __init__(self, app: WsgiApp, host: str, port: int, limits: ServerLimits) -> None:
        self.limits = limits
        connection_limit = connection_limit_for_descriptors(limits.connection_limit, limits.threads)
        self.connection_limit = connection_limit
        listener = socket.create_server((host, port))
        self._map: dict[int, Any] = {}
        self._server: Any = waitress.server.create_server(
            _AccessLog(app),
            map=self._map,
            sockets=[listener],
            threads=limits.threads,
            connection_limit=connection_limit + _WAITRESS_OWN_SOCKETS,
            channel_timeout=limits.idle_timeout,
            cleanup_interval=limits.cleanup_interval,
            # poll(), not select(): select() fails outright on descriptors above 1023.
            asyncore_use_poll=True,
            ident="MusicButler",
            expose_tracebacks=False,
        )
        self.server_address: tuple[str, int] = listener.getsockname()[:2]
        self.daemon_threads = True  # kept for callers of the socketserver API; threads are joined
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        try:
            while not self._stopping.is_set():
                waitress.wasyncore.loop(
                    timeout=poll_interval, map=self._map, use_poll=True, count=1
                )
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (from another thread) and wait until it has returned."""
        self._stopping.set()
        self._server.pull_trigger()
        self._stopped.wait()

    def server_close(self) -> None:
        self._server.task_dispatcher.shutdown(cancel_pending=False, timeout=10)
        waitress.wasyncore.close_all(self._map)


def make_wsgi_server(
    app: WsgiApp, host: str, port: int, limits: ServerLimits | None = None
) -> UnsubscribeServer:
    """A bound (not yet serving) server; port 0 picks a free one."""
    return UnsubscribeServer(app, host, port, limits or ServerLimits())


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServerLimits | None = None,
) -> None:
    """Serve the unsubscribe endpoint until interrupted (``musicbutler web``)."""
    engine = make_engine(settings.warehouse_url)
    app = create_app(engine, secret_key(settings.home))
    try:
        server = make_wsgi_server(app, host, port, limits)
    except OSError as exc:
        engine.dispose()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = server.server_address
    logger.info(
        "unsubscribe endpoint on http://%s:%d (links in emails point to %s%s…); at most %d "
        "connections, idle ones closed after %d s",
        bound_host,
        bound_port,
        display_url(settings.base_url),
        UNSUBSCRIBE_PATH,
        server.connection_limit,
        server.limits.idle_timeout,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()
