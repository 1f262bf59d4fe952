"""How often a failed operation is tried again, and how long to wait before each retry.

One policy for every adapter that retries: the SMTP backend waits a deterministic doubling
(``jitter=False``), so a test can predict every wait; the HTTP sources add "equal jitter"
(``jitter=True``), so clients that failed together do not retry together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` counts every try, the first included. Waits double from ``backoff`` seconds up
    to ``max_backoff``; with ``jitter`` half of each wait is fixed and half random.

    A greylisting mail server (451), a restarting relay or an overloaded web service usually
    recovers within seconds, and a bounded wait keeps one bad request from stalling a batch.
    """

    attempts: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    jitter: bool = False

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < self.backoff:
            raise ValueError("need 0 <= backoff <= max_backoff")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry`` (1 for the first retry, i.e. after the first
        failed attempt). ``rng`` draws the jitter (the ``random`` module's when None)."""
        step = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        if not self.jitter:
            return step
        uniform = rng.uniform if rng is not None else random.uniform
        return step / 2 + uniform(0, step / 2)
