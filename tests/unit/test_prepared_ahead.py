"""The notifier's render-ahead thread: order kept, bounded, errors in place, stoppable."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from musicbutler_pipeline.services.notifier import _prepared_ahead


def test_items_come_out_in_order_and_all_of_them() -> None:
    assert list(_prepared_ahead(iter(range(100)), ahead=3)) == list(range(100))  # type: ignore[arg-type]


def test_the_producer_never_runs_more_than_ahead_items_in_advance() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for number in range(50):
            produced.append(number)
            yield number

    consumer = _prepared_ahead(items(), ahead=4)  # type: ignore[arg-type]
    for expected, item in enumerate(consumer):
        assert item == expected
        # Queue of 4 + the one in the producer's hand + the one just taken.
        assert len(produced) <= expected + 1 + 4 + 1
    assert produced == list(range(50))


def test_an_error_in_the_producer_comes_out_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad digest")

    received: list[int] = []
    with pytest.raises(ValueError, match="bad digest"):
        for item in _prepared_ahead(items(), ahead=8):  # type: ignore[arg-type]
            received.append(item)  # type: ignore[arg-type]
    assert received == [1, 2]


def test_closing_the_consumer_stops_the_producer() -> None:
    def endless() -> Iterator[int]:
        number = 0
        while True:
            yield number
            number += 1

    consumer = _prepared_ahead(endless(), ahead=2)  # type: ignore[arg-type]
    assert next(consumer) == 0
    consumer.close()  # joins the producer, which leaves its loop
    assert not any(t.name == "render" and t.is_alive() for t in threading.enumerate())
