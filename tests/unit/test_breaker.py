from __future__ import annotations

from uee.streams.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


def test_opens_after_consecutive_failures_and_one_probe_decides() -> None:
    breaker = CircuitBreaker("out", failures=3, open_s=0.0)
    assert [breaker.record(False), breaker.record(False)] == [None, None]
    assert breaker.record(True) is None and breaker.state == CLOSED  # a success resets
    assert [breaker.record(False) for _ in range(3)] == [None, None, OPEN]
    assert breaker.half_open() == HALF_OPEN
    assert breaker.record(False) == OPEN  # the probe failed: open again at once
    assert breaker.half_open() == HALF_OPEN
    assert breaker.record(True) == CLOSED


def test_stays_open_for_its_wait() -> None:
    breaker = CircuitBreaker("out", failures=1, open_s=60.0)
    assert breaker.record(False) == OPEN
    assert breaker.half_open() is None and breaker.wait_before_probe() > 59
