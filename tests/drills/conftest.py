from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.drills.environment import Drill, make_drill
from tests.drills.sink import Sink, SinkHandler


@pytest.fixture
def sink() -> Iterator[Sink]:
    # A little latency per message keeps a sender busy long enough for contenders to meet it.
    with Sink(SinkHandler(delay_seconds=0.05)) as running:
        yield running


@pytest.fixture
def drill(tmp_path: Path, postgres_database: Callable[[], str], sink: Sink) -> Iterator[Drill]:
    yield from make_drill(tmp_path, postgres_database, sink.url)
