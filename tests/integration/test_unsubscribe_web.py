"""The unsubscribe endpoint over real HTTP, on a temporary SQLite warehouse."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx
import pytest
from sqlalchemy import Engine, select
from starlette.types import ASGIApp

from musicbutler_pipeline.mail.tokens import make_token
from musicbutler_pipeline.warehouse.schema import subscribers
from musicbutler_pipeline.web.app import create_app
from musicbutler_pipeline.web.server import ServerLimits, make_server
from tests.builders import add_subscriber

KEY = b"web-test-key-0123456789"


@contextmanager
def serving(app: ASGIApp, limits: ServerLimits | None = None) -> Iterator[httpx.Client]:
    """``app`` on uvicorn on a free loopback port in a thread; leaving the block shuts it down
    gracefully and waits, so whatever the requests logged has been logged."""
    server = make_server(app, "127.0.0.1", 0, limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    assert server.wait_until_serving(), "the server did not start"
    host, port = server.server_address[:2]
    try:
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=10) as client:
            yield client
    finally:
        server.shutdown()
        thread.join(timeout=30)
        assert not thread.is_alive()


@contextmanager
def _serving(engine: Engine) -> Iterator[httpx.Client]:
    with serving(create_app(engine, KEY)) as client:
        yield client


@pytest.fixture
def web(sqlite_engine: Engine) -> Iterator[httpx.Client]:
    with _serving(sqlite_engine) as client:
        yield client


def _unsubscribed_at(engine: Engine, subscriber_id: int) -> datetime | None:
    with engine.connect() as connection:
        return connection.execute(
            select(subscribers.c.unsubscribed_at).where(subscribers.c.id == subscriber_id)
        ).scalar_one()


def test_healthz(web: httpx.Client) -> None:
    response = web.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")
    assert web.head("/healthz").status_code == 200


def test_get_shows_a_confirmation_page_and_changes_nothing(
    web: httpx.Client, sqlite_engine: Engine
) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org", "Zoë")
    response = web.get(f"/unsubscribe/{make_token(zoe, KEY)}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<form method="post">' in response.text
    assert "z***@example.org" in response.text
    assert "zoe@example.org" not in response.text
    assert _unsubscribed_at(sqlite_engine, zoe) is None


def test_one_click_post_unsubscribes_and_is_idempotent(
    web: httpx.Client, sqlite_engine: Engine
) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    ben = add_subscriber(sqlite_engine, "ben@example.org")
    url = f"/unsubscribe/{make_token(zoe, KEY)}"
    # Exactly what RFC 8058 mail clients send.
    response = web.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    first = _unsubscribed_at(sqlite_engine, zoe)
    assert first is not None
    assert _unsubscribed_at(sqlite_engine, ben) is None

    again = web.post(url, content=b"List-Unsubscribe=One-Click")
    assert again.status_code == 200
    assert _unsubscribed_at(sqlite_engine, zoe) == first
    assert "You are unsubscribed" in web.get(url).text


def test_multipart_one_click_post(web: httpx.Client, sqlite_engine: Engine) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    response = web.post(
        f"/unsubscribe/{make_token(zoe, KEY)}", files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert response.status_code == 200
    assert _unsubscribed_at(sqlite_engine, zoe) is not None


def test_the_confirmation_form_unsubscribes(web: httpx.Client, sqlite_engine: Engine) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    url = f"/unsubscribe/{make_token(zoe, KEY)}"
    page = web.get(url).text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', page))
    assert fields == {"List-Unsubscribe": "One-Click"}
    assert web.post(url, data=fields).status_code == 200  # the form has no action: same URL
    assert _unsubscribed_at(sqlite_engine, zoe) is not None


@pytest.mark.parametrize(
    "token",
    [
        "forged",
        "1.AAAAAAAAAAAAAAAAAAAAAA",  # well formed, wrong signature
        make_token(1, b"some-other-key-0123456789"),
        "01." + "A" * 22,
        "1.%00",
        "",
    ],
)
def test_forged_or_malformed_tokens_get_400_and_change_nothing(
    web: httpx.Client, sqlite_engine: Engine, token: str
) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    assert zoe == 1
    for response in (
        web.get(f"/unsubscribe/{token}"),
        web.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click"),
    ):
        assert response.status_code == 400
        assert "not valid" in response.text
    assert _unsubscribed_at(sqlite_engine, zoe) is None


def test_token_for_a_deleted_subscriber_is_harmless(web: httpx.Client) -> None:
    token = make_token(999, KEY)
    assert web.post(f"/unsubscribe/{token}").status_code == 200
    assert "You are unsubscribed" in web.get(f"/unsubscribe/{token}").text


def test_other_paths_methods_and_oversized_bodies(web: httpx.Client, sqlite_engine: Engine) -> None:
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    url = f"/unsubscribe/{make_token(zoe, KEY)}"
    assert web.get("/").status_code == 404
    assert web.get("/unsubscribe").status_code == 404
    put = web.put(url, content=b"x")
    assert (put.status_code, put.headers["allow"]) == (405, "GET, HEAD, POST")
    assert web.post(url, content=b"x" * 100_000).status_code == 413
    assert _unsubscribed_at(sqlite_engine, zoe) is None


def test_access_log_leaves_the_token_out(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    token = make_token(zoe, KEY)
    with _serving(sqlite_engine) as web:
        web.get(f"/unsubscribe/{token}")
        web.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    # The server logs a request after answering it: read the log once its threads are done.
    # Only the server's own records count: the HTTP client logs the URLs it requests.
    messages = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("musicbutler_pipeline")
    ]
    assert any("GET /unsubscribe/…" in message for message in messages)
    assert any("POST /unsubscribe/…" in message for message in messages)
    signature = token.partition(".")[2]
    assert not any(signature in message for message in messages)


def test_a_server_error_shows_nothing_of_the_inside(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    from starlette.routing import Route

    async def broken(_request: object) -> None:
        raise RuntimeError("secret detail /work/somewhere/app.py")

    app = create_app(sqlite_engine, KEY, extra_routes=[Route("/broken", broken)])
    with serving(app) as web:
        response = web.get("/broken")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    for leak in ("Traceback", "secret detail", "RuntimeError", ".py", "/work"):
        assert leak not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "server" not in response.headers
    assert any("RuntimeError" in record.getMessage() for record in caplog.records)


def test_error_pages_are_the_apps_own_with_security_headers(web: httpx.Client) -> None:
    for response in (web.get("/nothing"), web.delete("/healthz")):
        assert response.status_code in (404, 405)
        assert "MusicButler" in response.text
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert response.headers["x-frame-options"] == "DENY"


def test_an_oversized_body_gets_413_before_it_is_sent(web: httpx.Client) -> None:
    """Headers announcing 10 MB and no body at all: the answer comes without waiting for it."""
    import socket

    host, port = web.base_url.host, web.base_url.port
    assert port is not None
    with socket.create_connection((host, port), timeout=10) as raw:
        raw.sendall(
            f"POST /unsubscribe/{make_token(1, KEY)} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 10000000\r\n\r\n".encode()
        )
        reply = raw.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413 ")


def test_idle_and_stalled_connections_are_closed_and_act_on_nothing(
    sqlite_engine: Engine,
) -> None:
    """Silent from the start, stalled in the headers, stalled in the body: each is closed by the
    server once idle for the timeout, and the half-sent unsubscribe changes nothing."""
    import socket
    import time

    zoe = add_subscriber(sqlite_engine, "zoe@example.org")
    head = (
        f"POST /unsubscribe/{make_token(zoe, KEY)} HTTP/1.1\r\nHost: x\r\n"
        "Content-Length: 26\r\n\r\n"
    )
    beginnings = {"silent": b"", "headers": head[:20].encode(), "body": head.encode() + b"List-"}
    limits = ServerLimits(idle_timeout=1)
    with serving(create_app(sqlite_engine, KEY), limits) as web:
        host, port = web.base_url.host, web.base_url.port
        assert port is not None
        for what, beginning in beginnings.items():
            with socket.create_connection((host, port), timeout=15) as raw:
                started = time.monotonic()
                raw.sendall(beginning)
                assert raw.recv(65536) == b"", what  # closed, with no answer
                assert time.monotonic() - started >= 0.9, what
        assert web.get("/healthz").status_code == 200
    assert _unsubscribed_at(sqlite_engine, zoe) is None
