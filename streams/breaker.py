"""A circuit breaker per sink: CLOSED, OPEN after N consecutive failed deliveries, HALF_OPEN
after a wait, where one probe decides. While a sink's breaker is open the agent holds its
batch: it consumes nothing and sends nothing to the DLQ (no flood), and commits nothing."""

from __future__ import annotations

import time

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"


class CircuitBreaker:
    def __init__(self, sink: str, failures: int = 5, open_s: float = 30.0) -> None:
        self.sink = sink
        self.failures = failures
        self.open_s = open_s
        self.state = CLOSED
        self._consecutive = 0
        self._opened_at = 0.0

    def record(self, delivered: bool) -> str | None:
        """Count one delivery round; return the new state if it changed."""
        before = self.state
        if delivered:
            self._consecutive = 0
            self.state = CLOSED
        else:
            self._consecutive += 1
            if self.state == HALF_OPEN or self._consecutive >= self.failures:
                self.state = OPEN
                self._opened_at = time.monotonic()
        return self.state if self.state != before else None

    def wait_before_probe(self) -> float:
        """Seconds an open breaker still waits before it lets one probe through."""
        return max(0.0, self._opened_at + self.open_s - time.monotonic())

    def half_open(self) -> str | None:
        if self.state == OPEN and self.wait_before_probe() == 0.0:
            self.state = HALF_OPEN
            return HALF_OPEN
        return None
