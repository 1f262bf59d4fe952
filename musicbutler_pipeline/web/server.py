"""``musicbutler web``: uvicorn serving the web app (``web.app``) on one socket, with a connection
limit and an idle timeout so idle or slow clients cannot take the process down, graceful
shutdown on SIGTERM, and an access log that never shows a token.

Two things uvicorn does not do by itself, added here:

* **Idle connections are closed.** uvicorn's ``timeout_keep_alive`` only starts after a response:
  a connection that never sends a byte, or sends a request one byte a minute, stays open for
  ever. ``_IdleClosingH11`` arms the same timer when the connection opens and again after every
  chunk of an incomplete request.
* **Excess connections wait to be accepted.** uvicorn's ``limit_concurrency`` accepts every
  connection and answers 503 beyond the limit, and an accepted connection is a file descriptor
  held until it closes. ``WebServer`` accepts at most ``connection_limit`` at once; further
  ones wait in the kernel's listen queue until one closes, as with the waitress server before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import h11
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import Server

from musicbutler_pipeline.domain.feeds import FEED_PATH
from musicbutler_pipeline.mail.tokens import PREFERENCES_PATH, UNSUBSCRIBE_PATH
from musicbutler_pipeline.settings import Settings, display_url, secret_key
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.web.app import create_app

logger = logging.getLogger(__name__)

# Seconds a SIGTERM waits for requests in progress before they are cancelled.
GRACEFUL_SHUTDOWN = 10
# Connections the kernel queues beyond those accepted (it caps this at net.core.somaxconn).
LISTEN_BACKLOG = 2048
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class CannotListen(RuntimeError):
    """The address is taken, or not this process's to bind."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one ``musicbutler web`` process allows, so idle or slow clients cannot take it down.

    ``connection_limit`` client connections at most: further ones wait in the kernel's listen
    queue until one closes. A connection with no request in progress (none yet, or between
    keep-alive requests, or a request arriving slower than one chunk per ``idle_timeout``) is
    closed once it has been idle for ``idle_timeout`` seconds. ``threads`` requests touch the
    warehouse at once.
    """

    connection_limit: int = 100
    idle_timeout: int = 10
    threads: int = 4


# File descriptors kept free beside the client connections: the listening socket, the event
# loop's selector and wake-up pipe, the warehouse's connections (one per thread), logs, and
# whatever Python has open.
_RESERVED_DESCRIPTORS = 32


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


def _logged_path(path: str) -> str:
    for secret_prefix in (UNSUBSCRIBE_PATH, PREFERENCES_PATH, FEED_PATH):
        if path.startswith(secret_prefix):
            return f"{secret_prefix}…"
    return path


class _AccessLog:
    """Access log through ``logging``, with the token or feed secret cut out of the path (it is
    what lets anyone holding the link act for that person). The query string is never logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        statuses: list[int] = []

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            client = scope.get("client")
            logger.info(
                '%s "%s %s HTTP/%s" %s',
                client[0] if client else "-",
                scope.get("method", "-"),
                _logged_path(scope.get("path", "/")),
                scope.get("http_version", "-"),
                statuses[-1] if statuses else "-",
            )


class _IdleClosingH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing connections idle before a request is complete
    (see the module docstring), and telling the server when a connection is gone.

    Before the request line and headers are complete, the timer is uvicorn's keep-alive one (it
    closes politely). While a request body is still arriving, a stall timer closes the
    transport if no chunk comes for ``timeout_keep_alive`` seconds: the handler waiting for that
    body then sees the client gone, and nothing of the request is acted on.
    """

    on_lost: Callable[[], None] = staticmethod(lambda: None)
    _stall_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        self._cancel_stall_timer()
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:
            self._arm_idle_timer()  # still no complete request: a fresh idle period
        elif self.conn.their_state is h11.SEND_BODY:
            self._stall_timer = self.loop.call_later(self.timeout_keep_alive, self._stalled)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._unset_keepalive_if_required()
            self._cancel_stall_timer()
            self.on_lost()

    def _arm_idle_timer(self) -> None:
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        if not self.transport.is_closing():
            logger.info("closing a connection whose request body stalled")
            self.transport.close()


class _GatedServer(Server):
    """A uvicorn server that accepts from its listening socket only while fewer than
    ``connection_limit`` connections are open (its own accept loop instead of
    ``loop.create_server``); everything else (requests, shutdown, signals) is uvicorn's."""

    def __init__(self, config: uvicorn.Config, listener: socket.socket, limit: int) -> None:
        super().__init__(config)
        self._listener = listener
        self._limit = limit
        self._accepting: asyncio.Task[None] | None = None
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            self.should_exit = True
            return
        self.servers = []
        self._accepting = asyncio.create_task(self._accept_loop())
        self.started = True
        self.ready.set()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self._limit)
        config = self.config
        self._listener.setblocking(False)
        while True:
            await slots.acquire()
            try:
                connection, _address = await loop.sock_accept(self._listener)
            except OSError as exc:
                slots.release()
                # Out of descriptors or buffers: the connection stays queued; try again soon.
                logger.warning("cannot accept a connection: %s", exc.strerror or exc)
                await asyncio.sleep(0.5)
                continue
            protocol = _IdleClosingH11(
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            protocol.on_lost = slots.release
            try:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.connect_accepted_socket(lambda p=protocol: p, connection)
            except OSError:
                connection.close()
                slots.release()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT start a graceful shutdown (uvicorn's handler); unlike uvicorn's,
        the signal is not raised again afterwards, so ``serve_forever`` returns normally."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        self._listener.close()  # no new connections; those queued are refused
        await super().shutdown(sockets=None)


class WebServer:
    """uvicorn serving ``app`` on one listening socket, bound at construction (port 0 picks a
    free one). ``serve_forever()`` in the main thread stops gracefully on SIGTERM or SIGINT; in
    any thread, ``shutdown()`` from another stops it the same way and waits for it."""

    def __init__(self, app: ASGIApp, host: str, port: int, limits: ServerLimits) -> None:
        self.limits = limits
        self.connection_limit = connection_limit_for_descriptors(
            limits.connection_limit, limits.threads
        )
        listener = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
        self.server_address: tuple[str, int] = listener.getsockname()[:2]
        threads = limits.threads

        async def limit_threads() -> None:
            # The warehouse is read in worker threads: at most `threads` at once.
            anyio.to_thread.current_default_thread_limiter().total_tokens = threads

        config = uvicorn.Config(
            _AccessLog(_OnStartup(app, limit_threads)),
            http=_IdleClosingH11,
            lifespan="on",
            timeout_keep_alive=limits.idle_timeout,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
            # Logging is the project's (cli.py); uvicorn's own access log would show tokens.
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
        )
        self._server = _GatedServer(config, listener, self.connection_limit)
        self._stopped = threading.Event()
        self._stopped.set()

    def serve_forever(self) -> None:
        self._stopped.clear()
        try:
            self._server.run()
        finally:
            self._stopped.set()

    def wait_until_serving(self, timeout: float = 30) -> bool:
        return self._server.ready.wait(timeout)

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (from another thread) and wait until it has returned."""
        self._server.should_exit = True
        self._stopped.wait()


class _OnStartup:
    """The app, with ``startup`` run at the ASGI lifespan's start (the Starlette app inside has
    no lifespan of its own)."""

    def __init__(self, app: ASGIApp, startup: Callable[[], Any]) -> None:
        self.app = app
        self._startup = startup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def make_server(
    app: ASGIApp, host: str, port: int, limits: ServerLimits | None = None
) -> WebServer:
    """A bound (not yet serving) server; port 0 picks a free one."""
    return WebServer(app, host, port, limits or ServerLimits())


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServerLimits | None = None,
) -> None:
    """Serve the web app until SIGTERM or SIGINT (``musicbutler web``)."""
    engine = make_engine(settings.warehouse_url)
    app = create_app(engine, secret_key(settings.home), base_url=settings.base_url)
    try:
        server = make_server(app, host, port, limits)
    except OSError as exc:
        engine.dispose()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = server.server_address
    logger.info(
        "web app on http://%s:%d (links in emails point to %s); at most %d connections, idle "
        "ones closed after %d s",
        bound_host,
        bound_port,
        display_url(settings.base_url),
        server.connection_limit,
        server.limits.idle_timeout,
    )
    try:
        server.serve_forever()
    finally:
        engine.dispose()
        logger.info("stopped")
