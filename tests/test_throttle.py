"""The log rate limit: per subject, and over all subjects, with a summary of the rest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loguru import logger

from runtime.throttle import MAX_LINES, Throttle
from tests.helpers.fakes import FakeClock


@pytest.fixture
def lines() -> Iterator[list[str]]:
    out: list[str] = []
    sink = logger.add(lambda m: out.append(m.record["message"]), level="WARNING")
    yield out
    logger.remove(sink)


def test_one_line_per_subject_per_period(lines: list[str]) -> None:
    clock = FakeClock()
    throttle = Throttle("bad messages", period=10.0, clock=clock)
    allowed = [throttle.allow("peer") for _ in range(50)]
    assert allowed == [True] + [False] * 49
    clock.advance(10.0)
    assert throttle.allow("peer")  # a new period: one line again, and the summary
    assert lines == ["49 more bad messages from 1 peer(s) not logged in the last 10s"]


def test_many_fresh_subjects_share_one_line_budget_and_the_rest_is_summed_up(
    lines: list[str],
) -> None:
    clock = FakeClock()
    throttle = Throttle("bad messages", period=10.0, clock=clock)
    allowed = 0
    for i in range(500):  # 500 new connections within 2 s
        allowed += throttle.allow(f"connection-{i}")
        clock.advance(2.0 / 500)
    assert allowed == MAX_LINES
    assert lines == []  # no summary before the period is over
    clock.advance(9.0)
    throttle.summary()
    assert lines == [
        f"{500 - MAX_LINES} more bad messages from {500 - MAX_LINES} peer(s) "
        "not logged in the last 11s"
    ]
    # The budget is per period: the next period logs again.
    assert throttle.allow("connection-next")
    throttle.summary()
    assert len(lines) == 1


def test_the_budget_counts_lines_not_events(lines: list[str]) -> None:
    clock = FakeClock()
    throttle = Throttle("refused connections", period=10.0, max_lines=3, clock=clock)
    assert [throttle.allow("a") for _ in range(5)] == [True] + [False] * 4
    assert [throttle.allow(s) for s in "bcde"] == [True, True, False, False]
    clock.advance(10.0)
    assert throttle.allow("e")
    assert lines == ["6 more refused connections from 3 peer(s) not logged in the last 10s"]
