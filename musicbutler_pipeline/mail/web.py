"""The unsubscribe endpoint behind ``musicbutler web``: a small WSGI app, served by waitress.

Routes:

* ``GET /unsubscribe/<token>`` shows a confirmation page with a button; it changes nothing,
  because link scanners and mail previews fetch links without anyone clicking them.
* ``POST /unsubscribe/<token>`` opts the subscriber out. This is what a mail client's one-click
  unsubscribe sends (RFC 8058: body ``List-Unsubscribe=One-Click``), and what the page's button
  sends. It is idempotent.
* ``GET /healthz`` answers ``ok`` for load balancers.

A forged or malformed token gets 400 and changes nothing. Tokens are never logged: they are what
lets anyone holding the link unsubscribe that person.
"""

from __future__ import annotations

import html
import logging
import resource
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import waitress.server
import waitress.wasyncore
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from musicbutler_pipeline.mail.unsubscribe import UNSUBSCRIBE_PATH, InvalidToken, read_token
from musicbutler_pipeline.settings import Settings, display_url, secret_key
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.subscribers import subscriber_by_id, unsubscribe

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# One-click bodies are a few dozen bytes; anything much larger is not a mail client.
_MAX_BODY = 64 * 1024
_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    # The token is in the URL: never pass it on to another site as a Referer.
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("X-Robots-Tag", "noindex, nofollow"),
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
]
_STATUS = {
    200: "200 OK",
    400: "400 Bad Request",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    411: "411 Length Required",
    413: "413 Content Too Large",
    500: "500 Internal Server Error",
}


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    title: str
    body_html: str
    extra_headers: tuple[tuple[str, str], ...] = ()


def _page(title: str, body_html: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{html.escape(title)} · MusicButler</title>
<style>
body {{ margin: 0; background: #f4f1ec; color: #1f2328;
  font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Helvetica, Arial,
  sans-serif; }}
main {{ max-width: 480px; margin: 64px auto; padding: 32px; background: #fff;
  border-radius: 12px; }}
.brand {{ font-size: 13px; font-weight: 700; letter-spacing: .12em; text-transform: uppercase;
  color: #5b3cc4; }}
h1 {{ font-size: 24px; margin: 12px 0; }}
p {{ line-height: 1.5; color: #3d4148; }}
button {{ font: inherit; font-weight: 600; color: #fff; background: #5b3cc4; border: 0;
  border-radius: 8px; padding: 12px 20px; cursor: pointer; }}
</style>
</head>
<body><main><div class="brand">MusicButler</div>
<h1>{html.escape(title)}</h1>{body_html}</main></body>
</html>
"""


def _masked(email: str) -> str:
    """``z***@example.org``: enough for people to recognise their address on a shared link."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


class UnsubscribeApp:
    """The WSGI callable. Each request uses its own short transaction on ``engine``."""

    def __init__(self, engine: Engine, secret_key: bytes) -> None:
        self.engine = engine
        self._key = secret_key

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "") or "/"
        try:
            response = self._route(method, path, environ)
        except SQLAlchemyError:
            logger.exception("unsubscribe: warehouse error")
            response = _Response(
                500,
                "Something went wrong",
                "<p>We could not update your subscription just now. Please try again later.</p>",
            )
        if response.status == 200 and path == "/healthz":
            body = b"ok\n"
            content_type = "text/plain; charset=utf-8"
        else:
            body = _page(response.title, response.body_html).encode()
            content_type = "text/html; charset=utf-8"
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *_HEADERS,
            *response.extra_headers,
        ]
        start_response(_STATUS[response.status], headers)
        return [b""] if method == "HEAD" else [body]

    def _route(self, method: str, path: str, environ: dict[str, Any]) -> _Response:
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return _not_allowed("GET, HEAD")
            return _Response(200, "ok", "")
        if not path.startswith(UNSUBSCRIBE_PATH):
            return _Response(404, "Page not found", "<p>There is nothing here.</p>")
        token = path.removeprefix(UNSUBSCRIBE_PATH)
        if method not in ("GET", "HEAD", "POST"):
            return _not_allowed("GET, HEAD, POST")
        try:
            subscriber_id = read_token(token, self._key)
        except InvalidToken as exc:
            logger.info("unsubscribe: %s refused: %s", method, exc)
            return _Response(
                400,
                "This link is not valid",
                "<p>The unsubscribe link is damaged or incomplete. Copy the whole link from the "
                "email, or use the unsubscribe button your mail app shows.</p>",
            )
        if method == "POST":
            problem = _consume_body(environ)
            if problem is not None:
                return problem
            return self._unsubscribe(subscriber_id)
        return self._confirm(subscriber_id)

    def _confirm(self, subscriber_id: int) -> _Response:
        with self.engine.connect() as connection:
            # Also finds the subscriber a link's id was merged into (same mailbox).
            row = subscriber_by_id(connection, subscriber_id)
        if row is None or row.unsubscribed_at is not None:
            return _Response(
                200,
                "You are unsubscribed",
                "<p>This address gets no more emails from MusicButler.</p>",
            )
        # The button posts the RFC 8058 field too, so both paths go through the same handler.
        return _Response(
            200,
            "Unsubscribe?",
            f"<p>Stop the daily new-release emails to "
            f"<strong>{html.escape(_masked(row.email))}</strong>?</p>"
            '<form method="post">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button>'
            "</form>",
        )

    def _unsubscribe(self, subscriber_id: int) -> _Response:
        with self.engine.begin() as connection:
            changed = unsubscribe(connection, subscriber_id)
        logger.info(
            "unsubscribe: subscriber %d %s",
            subscriber_id,
            "opted out" if changed else "was not subscribed",
        )
        return _Response(
            200,
            "You are unsubscribed",
            "<p>Done: this address gets no more emails from MusicButler.</p>",
        )


def _not_allowed(allow: str) -> _Response:
    return _Response(
        405,
        "Method not allowed",
        "<p>That is not something this page does.</p>",
        (("Allow", allow),),
    )


def _consume_body(environ: dict[str, Any]) -> _Response | None:
    """Read and discard the request body. Its content does not matter: a valid token in a POST
    is the request (RFC 8058 senders vary between urlencoded and multipart bodies)."""
    raw_length = environ.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw_length)
    except ValueError:
        return _Response(411, "Bad request", "<p>The request has no valid length.</p>")
    if length > _MAX_BODY:
        return _Response(413, "Request too large", "<p>The request is too large.</p>")
    if length > 0:
        environ["wsgi.input"].read(length)
    return None


def create_app(engine: Engine, secret_key: bytes) -> WsgiApp:
    """The unsubscribe WSGI app over the warehouse ``engine``, checking tokens with the key."""
    return UnsubscribeApp(engine, secret_key)


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
