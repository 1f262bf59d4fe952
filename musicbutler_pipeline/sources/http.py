"""Polite HTTP for the MetaBrainz services: rate limiting, retries with backoff, clear failures.

MusicBrainz and ListenBrainz are run by a non-profit on donated capacity. Their rules are simple
(MusicBrainz: about one request per second per client, a User-Agent that says who we are; both:
back off when told to) and a client that ignores them gets its IP address blocked, which would
stop every subscriber's digest. So every request made by the sources goes through here:

* ``RateLimiter`` starts a request at least ``1/rate`` seconds after the previous one finished
  and lets one request be in flight at a time. ``shared_rate_limiter`` hands out one limiter
  per host for the whole process, so two clients (or two threads) talking to the same service
  share one budget.
* ``request_with_retries`` retries what is worth retrying (HTTP 429, 5xx gateway and overload
  errors, timeouts, refused or reset connections), honouring the server's own wait hint
  (``Retry-After``; ListenBrainz's ``X-RateLimit-Reset-In``) and otherwise backing off
  exponentially with jitter, capped. A backoff is recorded on the shared limiter, so every
  request to that host waits, not only the one that failed. When attempts run out it raises
  ``SourceUnavailable`` naming the URL and the last status.

Time is injected (``Clock``) so the tests can check waits without sleeping.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx

from musicbutler_pipeline.domain.retry import RetryPolicy

logger = logging.getLogger(__name__)

# Statuses that say "not now" rather than "never": rate limited, overloaded, or a gateway that
# lost its upstream. Anything else (400, 404 ...) is returned to the caller to decide.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# The sources' default: 5 attempts, 1 s doubling to at most 30 s, with "equal jitter" (half of
# each wait fixed, half random), so clients that failed together do not retry together, yet every
# wait grows with the attempt number.
HTTP_RETRY = RetryPolicy(attempts=5, jitter=True)


class SourceError(RuntimeError):
    """An external source could not be read; the message names the URL and what happened."""


class SourceUnavailable(SourceError):
    """A request kept failing after every allowed attempt, or the server asked us to stay away
    for longer than we are willing to wait."""

    def __init__(self, message: str, *, url: str, status: int | None, attempts: int) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.attempts = attempts


class Clock(Protocol):
    """Monotonic time, sleeping and wall-clock time; injectable for tests."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def now(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK = SystemClock()


class RateLimiter:
    """At most ``rate`` requests per second, one request in flight at a time.

    ``slot()`` waits until ``1/rate`` seconds after the previous request finished and holds the
    limiter for the duration of the request (MusicBrainz asks for serial requests, not only a
    low average). ``hold_off(seconds)`` pushes the next allowed start back, e.g. after a 503
    with ``Retry-After``.
    """

    def __init__(self, rate: float, clock: Clock = SYSTEM_CLOCK) -> None:
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"rate must be a positive number of requests per second, not {rate}")
        self.interval = 1.0 / rate
        self.clock = clock
        self._serial = threading.Lock()
        self._state = threading.Lock()
        self._next_start = -math.inf

    def slow_down_to(self, rate: float) -> None:
        """Adopt ``rate`` if it is stricter than the current one (callers sharing a host agree
        on the most conservative budget)."""
        with self._state:
            self.interval = max(self.interval, 1.0 / rate)

    def hold_off(self, seconds: float) -> None:
        with self._state:
            self._next_start = max(self._next_start, self.clock.monotonic() + seconds)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._serial:
            while True:
                with self._state:
                    delay = self._next_start - self.clock.monotonic()
                if delay <= 0:
                    break
                self.clock.sleep(delay)
            try:
                yield
            finally:
                # Count the interval from the end of the request, not its start: the service sees
                # a request when it arrives, which can be well after we started it (a new
                # connection, a slow network), so spacing starts alone could put two arrivals
                # closer together than the rate allows.
                with self._state:
                    self._next_start = max(self._next_start, self.clock.monotonic() + self.interval)


_limiters: dict[tuple[str, int], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_rate_limiter(key: str, rate: float, clock: Clock = SYSTEM_CLOCK) -> RateLimiter:
    """The process-wide limiter for ``key`` (a host:port); the strictest requested rate wins."""
    with _limiters_lock:
        limiter = _limiters.get((key, id(clock)))
        if limiter is None:
            limiter = _limiters[(key, id(clock))] = RateLimiter(rate, clock)
        else:
            limiter.slow_down_to(rate)
        return limiter


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def retry_after_hint(response: httpx.Response, clock: Clock) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"), clock.now())


def request_with_retries(
    client: httpx.Client,
    url: str,
    *,
    params: Mapping[str, str | int] | None = None,
    limiter: RateLimiter,
    policy: RetryPolicy,
    rng: random.Random,
    wait_hint: Callable[[httpx.Response], float | None],
    after_response: Callable[[httpx.Response], None] | None = None,
    unusable: Callable[[httpx.Response], str | None] | None = None,
    error: type[SourceUnavailable] = SourceUnavailable,
) -> httpx.Response:
    """GET ``url``: the first response whose status is not retryable, or ``error``.

    ``unusable`` says why a response with a good status is still not what the service promises
    (a truncated or empty page from an overloaded index, say), or None: such a response is
    retried on the same terms as a 503, and when attempts run out ``error`` names the problem.
    ``wait_hint`` reads the server's own "come back in N seconds" from a retryable response.
    A hint longer than ``policy.max_backoff`` is not shortened: we give up at once instead, since
    retrying earlier than asked is exactly what gets a client blocked.
    """
    request = client.build_request("GET", url, params=params)
    shown = str(request.url)
    problem = "no attempt made"
    status: int | None = None
    for attempt in range(1, policy.attempts + 1):
        hint: float | None = None
        with limiter.slot():
            try:
                response = client.send(request)
            except httpx.TransportError as exc:
                # Timeouts, refused and reset connections: the server may be restarting.
                response = None
                status = None
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response is not None:
            if after_response is not None:
                after_response(response)
            status = response.status_code
            if status not in RETRYABLE_STATUSES:
                bad_body = unusable(response) if unusable is not None else None
                if bad_body is None:
                    return response
                problem = bad_body
            else:
                hint = wait_hint(response)
                problem = f"HTTP {status}"
                if hint is not None:
                    problem += f" (asked to wait {hint:g} s)"
        if attempt == policy.attempts:
            break
        if hint is not None and hint > policy.max_backoff:
            # Whoever calls this host next in this process still waits as long as we were told.
            limiter.hold_off(hint)
            raise error(
                f"{shown}: {problem}, longer than the {policy.max_backoff:g} s we wait; giving up "
                f"after {attempt} attempt(s) rather than retrying early",
                url=shown,
                status=status,
                attempts=attempt,
            )
        delay = hint if hint is not None else policy.delay(attempt, rng)
        logger.warning(
            "%s: %s on attempt %d of %d; retrying in %.2f s",
            shown,
            problem,
            attempt,
            policy.attempts,
            delay,
        )
        limiter.hold_off(delay)
    raise error(
        f"{shown}: {problem} after {policy.attempts} attempt(s)",
        url=shown,
        status=status,
        attempts=policy.attempts,
    )


def user_agent(contact: str | None, version: str) -> str:
    """``musicbutler-pipeline/<version> ( <contact> )``, the form MusicBrainz asks for."""
    return f"musicbutler-pipeline/{version} ( {contact or 'no contact configured'} )"
