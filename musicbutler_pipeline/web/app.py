"""The subscriber-facing web app behind ``musicbutler web``: a Starlette (ASGI) app that
``web.server`` serves with uvicorn.

Routes:

* ``GET /unsubscribe/<token>`` shows a confirmation page with a button; it changes nothing,
  because link scanners and mail previews fetch links without anyone clicking them.
* ``POST /unsubscribe/<token>`` opts the subscriber out. This is what a mail client's one-click
  unsubscribe sends (RFC 8058: body ``List-Unsubscribe=One-Click``), and what the page's button
  sends. It is idempotent.
* ``GET /feeds/<secret>.atom`` and ``GET /feeds/<secret>.ics``: what was announced to the
  subscriber whose feed secret this is, in the last ``FEED_DAYS`` days (``domain.feeds``). An
  unknown or rotated secret, or an unsubscribed person, gets 404. ETag and Last-Modified, so
  feed readers and calendars polling every few minutes get 304 Not Modified.
* ``GET /preferences/<token>`` shows the subscriber's preferences as a form (release types,
  appearances, daily or weekly, blocked artists); ``POST /preferences/<token>`` (the form,
  urlencoded) validates every field with ``domain.preferences`` and saves them. A bad value
  saves nothing and re-shows the form (400) with one error line naming the field, each field as
  it was submitted (so nothing typed is lost) unless the value is not one the form offers,
  which shows what is stored. The token
  is a preferences token (``mail.tokens``): an unsubscribe token is refused like a forged one.
  An unsubscribed person gets 404 with a page saying so: they get no digests, so there is
  nothing to tune, and their feeds answer 404 too.
* ``GET /healthz`` answers ``ok`` for load balancers.

A forged or malformed unsubscribe token gets 400 and changes nothing. Tokens and feed secrets
are never logged: they are what lets anyone holding the link act for that person. Error pages
(404, 405, 413, 500) are the app's own and say nothing about its insides; a request body over
``MAX_BODY`` bytes gets 413 without being read.
"""

from __future__ import annotations

import hashlib
import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from musicbutler_pipeline.domain import preferences as prefs
from musicbutler_pipeline.domain.feeds import FEED_DAYS, FEED_PATH, render_atom, render_icalendar
from musicbutler_pipeline.mail.tokens import (
    PREFERENCES_PATH,
    UNSUBSCRIBE_PATH,
    InvalidToken,
    read_preferences_token,
    read_token,
)
from musicbutler_pipeline.warehouse.feeds import read_feed
from musicbutler_pipeline.warehouse.preferences import (
    artist_names,
    change_preferences_by_id,
    read_preferences,
)
from musicbutler_pipeline.warehouse.subscribers import find_subscriber_by_id, unsubscribe_by_id

logger = logging.getLogger(__name__)

# One-click bodies are a few dozen bytes; anything much larger is not a mail client.
MAX_BODY = 64 * 1024

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # The token is in the URL: never pass it on to another site as a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

_FEED_TYPES = {
    "atom": ("application/atom+xml; charset=utf-8", render_atom),
    "ics": ("text/calendar; charset=utf-8", render_icalendar),
}


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


def page(
    status: int, title: str, body_html: str, headers: dict[str, str] | None = None
) -> HTMLResponse:
    return HTMLResponse(_page(title, body_html), status_code=status, headers=headers)


def _masked(email: str) -> str:
    """``z***@example.org``: enough for people to recognise their address on a shared link."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


class _Hardened:
    """Security headers on every response (the app's own error pages included), and
    ``Cache-Control: no-store`` unless a route chose its own caching."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_hardened)


_UNSUBSCRIBED = "<p>This address gets no more emails from MusicButler.</p>"
_NOT_VALID = (
    "<p>The unsubscribe link is damaged or incomplete. Copy the whole link from the email, or use "
    "the unsubscribe button your mail app shows.</p>"
)


_NOT_VALID_PREFERENCES = (
    "<p>The preferences link is damaged or incomplete. Copy the whole link from the bottom of "
    "one of our emails.</p>"
)
_FORM_TYPE = "application/x-www-form-urlencoded"
# The form has a dozen fields; a body with far more is not the form.
_MAX_FORM_FIELDS = 200
_TYPE_LABELS = {
    prefs.ReleaseType.ALBUM: "Albums",
    prefs.ReleaseType.SINGLE: "Singles",
    prefs.ReleaseType.EP: "EPs",
    prefs.ReleaseType.COMPILATION: "Compilations",
    prefs.ReleaseType.LIVE: "Live",
    prefs.ReleaseType.REMIX: "Remixes",
    prefs.ReleaseType.OTHER: "Other (soundtracks, DJ mixes, …)",
    prefs.ReleaseType.BROADCAST: "Broadcasts and other primary types (radio, podcasts, …)",
}


def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("musicbutler_pipeline.web", "templates"),
        # Artist names come from MusicBrainz and libraries: never trusted as markup.
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
    )


def _changes_from_form(
    form: dict[str, list[str]],
) -> tuple[prefs.PreferenceChanges, frozenset[str]]:
    """The preferences form -> (changes, artists to unblock). The form always carries every
    field, so a missing one is as wrong as a bad one. Raises ``PreferenceError`` naming the
    field."""

    def one(name: str) -> str:
        values = form.get(name, [])
        if len(values) > 1:
            raise prefs.PreferenceError(f"{name}: give one value, not {len(values)}")
        return values[0] if values else ""

    if not any(value.strip() for value in form.get("types", [])):
        raise prefs.PreferenceError("types: tick at least one release type")
    release_types = prefs.parse_release_types(",".join(form.get("types", [])))
    appearances = prefs.parse_on_off(one("appearances"))
    frequency = prefs.parse_frequency(one("frequency"))
    # The weekday menu is always sent; it only counts for a weekly digest.
    weekday = prefs.parse_weekday(one("weekday")) if frequency is prefs.Frequency.WEEKLY else None
    block = prefs.parse_artist_mbids(one("block"))
    unblock = frozenset(prefs.parse_artist_mbid(value) for value in form.get("unblock", []))
    changes = prefs.PreferenceChanges(
        release_types=release_types,
        appearances=appearances,
        frequency=frequency,
        weekday=weekday,
        block=block - unblock,
    )
    return changes, unblock


@dataclass(frozen=True, slots=True)
class _FormState:
    """What the preferences form shows: the stored preferences, or a refused submission."""

    release_types: frozenset[prefs.ReleaseType]
    appearances: bool
    weekly: bool
    weekday: str | None
    blocked: frozenset[str]  # the stored blocked artists, each with an "Unblock" box
    unblock: frozenset[str] = frozenset()  # boxes ticked
    block_text: str = ""

    @classmethod
    def of(cls, chosen: prefs.Preferences) -> _FormState:
        return cls(
            release_types=chosen.release_types,
            appearances=chosen.appearances,
            weekly=chosen.frequency is prefs.Frequency.WEEKLY,
            weekday=chosen.weekday,
            blocked=chosen.blocked_artists,
        )

    @classmethod
    def resubmitted(cls, form: dict[str, list[str]], stored: prefs.Preferences) -> _FormState:
        """The refused ``form`` as submitted, field by field; a field whose value is not one the
        form offers (a hand-made request) shows what is stored instead."""

        def offered(name: str, choices: tuple[str, ...]) -> str | None:
            values = form.get(name, [])
            return values[0] if len(values) == 1 and values[0] in choices else None

        shown = cls.of(stored)
        kinds = {kind.value: kind for kind in prefs.ReleaseType}
        ticked = form.get("types", [])
        appearances = offered("appearances", ("on", "off"))
        frequency = offered("frequency", tuple(prefs.Frequency))
        weekday = offered("weekday", prefs.WEEKDAYS)
        return replace(
            shown,
            release_types=(
                frozenset(kinds[value] for value in ticked)
                if all(value in kinds for value in ticked)
                else shown.release_types
            ),
            appearances=shown.appearances if appearances is None else appearances == "on",
            weekly=shown.weekly if frequency is None else frequency == prefs.Frequency.WEEKLY,
            weekday=weekday or shown.weekday,
            unblock=frozenset(form.get("unblock", [])) & stored.blocked_artists,
            block_text=form["block"][0] if len(form.get("block", [])) == 1 else "",
        )


class WebApp:
    """Route handlers over the warehouse ``engine``; each request uses its own short
    transaction, in a worker thread (SQLAlchemy is synchronous)."""

    def __init__(
        self, engine: Engine, secret_key: bytes, base_url: str, clock: Callable[[], datetime]
    ) -> None:
        self.engine = engine
        self._key = secret_key
        self._base_url = base_url
        self._clock = clock
        self._templates = _templates()

    async def healthz(self, _request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def unsubscribe(self, request: Request) -> Response:
        try:
            subscriber_id = read_token(request.path_params.get("token", ""), self._key)
        except InvalidToken as exc:
            logger.info("unsubscribe: %s refused: %s", request.method, exc)
            return page(400, "This link is not valid", _NOT_VALID)
        if request.method == "POST":
            # Read (at most MAX_BODY bytes) and discard: a valid token in a POST is the request,
            # whatever the body (RFC 8058 senders vary between urlencoded and multipart bodies).
            await request.body()
            changed = await run_in_threadpool(unsubscribe_by_id, self.engine, subscriber_id)
            logger.info(
                "unsubscribe: subscriber %d %s",
                subscriber_id,
                "opted out" if changed else "was not subscribed",
            )
            return page(
                200,
                "You are unsubscribed",
                "<p>Done: this address gets no more emails from MusicButler.</p>",
            )
        # Also finds the subscriber a link's id was merged into (same mailbox).
        row = await run_in_threadpool(find_subscriber_by_id, self.engine, subscriber_id)
        if row is None or row.unsubscribed_at is not None:
            return page(
                200,
                "You are unsubscribed",
                "<p>This address gets no more emails from MusicButler.</p>",
            )
        # The button posts the RFC 8058 field too, so both paths go through the same handler.
        return page(
            200,
            "Unsubscribe?",
            f"<p>Stop the daily new-release emails to "
            f"<strong>{html.escape(_masked(row.email))}</strong>?</p>"
            '<form method="post">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button>'
            "</form>",
        )

    async def preferences(self, request: Request) -> Response:
        try:
            subscriber_id = read_preferences_token(request.path_params.get("token", ""), self._key)
        except InvalidToken as exc:
            logger.info("preferences: %s refused: %s", request.method, exc)
            return page(400, "This link is not valid", _NOT_VALID_PREFERENCES)
        # Also finds the subscriber a link's id was merged into (same mailbox).
        row = await run_in_threadpool(find_subscriber_by_id, self.engine, subscriber_id)
        if row is None or row.unsubscribed_at is not None:
            return page(
                404,
                "You are unsubscribed",
                "<p>This address gets no emails from MusicButler, so there is nothing to "
                "choose here.</p>",
            )
        if request.method == "GET":
            current = await run_in_threadpool(read_preferences, self.engine, row.id)
            return await self._preferences_page(200, row.email, _FormState.of(current))
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != _FORM_TYPE:
            await request.body()
            return page(415, "Send the form", "<p>Use the Save button on the page.</p>")
        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            form = parse_qs(body, keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS)
        except ValueError:  # past max_num_fields: not the page's form
            return await self._refused(row.id, row.email, {}, "too many fields")
        try:
            changes, unblock = _changes_from_form(form)
            chosen = await run_in_threadpool(
                change_preferences_by_id, self.engine, row.id, changes, unblock
            )
        except prefs.PreferenceError as exc:
            return await self._refused(row.id, row.email, form, str(exc))
        logger.info("preferences: subscriber %d saved", row.id)
        return await self._preferences_page(200, row.email, _FormState.of(chosen), saved=True)

    async def _refused(
        self, subscriber_id: int, email: str, form: dict[str, list[str]], message: str
    ) -> Response:
        """400: the form again as it was sent, with one error line; nothing was saved."""
        logger.info("preferences: subscriber %d: refused: %s", subscriber_id, message)
        stored = await run_in_threadpool(read_preferences, self.engine, subscriber_id)
        return await self._preferences_page(
            400,
            email,
            _FormState.resubmitted(form, stored),
            error=f"{message}. Nothing was saved.",
        )

    async def _preferences_page(
        self,
        status: int,
        email: str,
        shown: _FormState,
        *,
        saved: bool = False,
        error: str | None = None,
    ) -> Response:
        names = await run_in_threadpool(artist_names, self.engine, shown.blocked)
        blocked = sorted(
            (
                {
                    "mbid": mbid,
                    "name": names.get(mbid, "Unknown artist"),
                    "unblock": mbid in shown.unblock,
                }
                for mbid in shown.blocked
            ),
            key=lambda artist: (artist["name"].casefold(), artist["mbid"]),
        )
        body = self._templates.get_template("preferences.html").render(
            address=_masked(email),
            saved=saved,
            error=error,
            release_types=[
                {
                    "value": kind.value,
                    "label": _TYPE_LABELS[kind],
                    "checked": kind in shown.release_types,
                }
                for kind in prefs.ReleaseType
            ],
            appearances=shown.appearances,
            weekly=shown.weekly,
            weekday=shown.weekday or "",
            weekdays=prefs.WEEKDAYS,
            blocked=blocked,
            block_text=shown.block_text,
        )
        return HTMLResponse(body, status_code=status)

    async def feed(self, request: Request) -> Response:
        secret, kind = request.path_params["secret"], request.path_params["kind"]
        if kind not in _FEED_TYPES:
            raise HTTPException(404)
        now = self._clock()
        feed = await run_in_threadpool(
            read_feed, self.engine, secret, since=now.date() - timedelta(days=FEED_DAYS)
        )
        if feed is None:
            raise HTTPException(404)
        content_type, render = _FEED_TYPES[kind]
        body = render(feed, base_url=self._base_url or str(request.base_url))
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        headers = {
            "ETag": etag,
            # Private: the URL is a secret; no-cache: readers keep it and revalidate (304).
            "Cache-Control": "private, no-cache",
        }
        if feed.updated is not None:
            headers["Last-Modified"] = format_datetime(feed.updated.astimezone(UTC), usegmt=True)
        if _not_modified(request, etag, feed.updated):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=content_type, headers=headers)


def _not_modified(request: Request, etag: str, updated: datetime | None) -> bool:
    """RFC 9110 13.1: If-None-Match wins over If-Modified-Since."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return etag in tags or "*" in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is None or updated is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False
    return since.tzinfo is not None and updated.replace(microsecond=0) <= since


async def _not_found(_request: Request, _exc: Exception) -> Response:
    return page(404, "Page not found", "<p>There is nothing here.</p>")


async def _not_allowed(_request: Request, exc: Exception) -> Response:
    allow = exc.headers.get("Allow") if isinstance(exc, HTTPException) and exc.headers else None
    # Starlette lists a route's methods in set order; sorted, the header is the same each time.
    methods = sorted(method.strip() for method in allow.split(",")) if allow else []
    return page(
        405,
        "Method not allowed",
        "<p>That is not something this page does.</p>",
        {"Allow": ", ".join(methods)} if methods else None,
    )


async def _client_gone(_request: Request, _exc: Exception) -> Response:
    # The client went away (or was cut off for stalling) before its request was complete:
    # nothing was done, and nobody is left to read an answer.
    logger.info("web: the client left before its request was complete")
    return Response(status_code=400)


async def _too_large(_request: Request, _exc: Exception) -> Response:
    return page(413, "Request too large", "<p>The request is too large.</p>")


async def _server_error(_request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (never a token: the path is not in it); the page says nothing
    # about what failed inside.
    if isinstance(exc, SQLAlchemyError):
        logger.error("web: warehouse error: %s", type(exc).__name__, exc_info=exc)
    else:
        logger.error("web: unexpected error: %s", type(exc).__name__, exc_info=exc)
    return page(
        500,
        "Something went wrong",
        "<p>We could not do that just now. Please try again later.</p>",
    )


ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


def create_app(
    engine: Engine,
    secret_key: bytes,
    *,
    base_url: str = "",
    clock: Callable[[], datetime] | None = None,
    extra_routes: list[Route] | None = None,
) -> ASGIApp:
    """The web app over the warehouse ``engine``, checking unsubscribe tokens with the key.
    Feeds link themselves under ``base_url`` (``MUSICBUTLER_BASE_URL``; the request's own URL
    when empty). ``extra_routes`` is for tests (a route that fails on purpose)."""
    handlers = WebApp(engine, secret_key, base_url, clock or (lambda: datetime.now(UTC)))
    routes = [
        Route("/healthz", handlers.healthz, methods=["GET"]),
        # The bare prefix too: an empty token is a damaged link (400), not a missing page.
        Route(UNSUBSCRIBE_PATH, handlers.unsubscribe, methods=["GET", "POST"]),
        Route(f"{UNSUBSCRIBE_PATH}{{token}}", handlers.unsubscribe, methods=["GET", "POST"]),
        Route(PREFERENCES_PATH, handlers.preferences, methods=["GET", "POST"]),
        Route(f"{PREFERENCES_PATH}{{token}}", handlers.preferences, methods=["GET", "POST"]),
        Route(f"{FEED_PATH}{{secret}}.{{kind}}", handlers.feed, methods=["GET"]),
        *(extra_routes or []),
    ]
    exception_handlers: dict[int | type[Exception], ErrorHandler] = {
        ClientDisconnect: _client_gone,
        404: _not_found,
        405: _not_allowed,
        413: _too_large,
        500: _server_error,
    }
    app = Starlette(routes=routes, exception_handlers=exception_handlers, max_body_size=MAX_BODY)
    # No redirects between `/x` and `/x/`: a link is right or it is not found.
    app.router.redirect_slashes = False
    return _Hardened(app)
