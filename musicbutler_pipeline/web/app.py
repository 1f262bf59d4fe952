"""The unsubscribe endpoint behind ``musicbutler web``: a small WSGI app (``web.server`` serves
it with waitress).

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from musicbutler_pipeline.mail.tokens import UNSUBSCRIBE_PATH, InvalidToken, read_token
from musicbutler_pipeline.warehouse.subscribers import find_subscriber_by_id, unsubscribe_by_id

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
        # Also finds the subscriber a link's id was merged into (same mailbox).
        row = find_subscriber_by_id(self.engine, subscriber_id)
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
        changed = unsubscribe_by_id(self.engine, subscriber_id)
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
