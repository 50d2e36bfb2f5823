"""The flow gate: whether an agent's source may deliver records, and why not.

It is the only caller of `Source.hold()`. A pipeline is held for one or more causes
(its error rate, or its last permit revoked), each with its reason; the source is held
while any pipeline it feeds is. Pipelines merged into one agent share one consumer and
one committed offset, so a hold of one holds them all: nothing can be skipped for one
and kept for another. `uee plan` lists those pipelines, and the pause says it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from uee.connectors.base import Source

ERROR_RATE = "error_rate"
QUOTA = "quota"  # no permit left (streams.permits)


class ErrorWindow:
    """Failures over the last `size` records (or more, in whole batches)."""

    def __init__(self, rate: float, size: int) -> None:
        self.rate = rate
        self.size = size
        self._chunks: deque[tuple[int, int]] = deque()
        self._total = self._failed = 0

    def add(self, total: int, failed: int) -> None:
        self._chunks.append((total, failed))
        self._total += total
        self._failed += failed
        while self._chunks and self._total - self._chunks[0][0] >= self.size:
            old_total, old_failed = self._chunks.popleft()
            self._total -= old_total
            self._failed -= old_failed

    def breach(self) -> str | None:
        """Why the pipeline should pause, or None."""
        if self._total < self.size or self._failed <= self.rate * self._total:
            return None
        return (f"{self._failed} of the last {self._total} records failed "
                f"({self._failed / self._total:.0%} > {self.rate:.0%})")

    def reset(self) -> None:
        self._chunks.clear()
        self._total = self._failed = 0


# Called when a pipeline becomes held or free: (pipeline, cause, reason or None when freed).
HoldListener = Callable[[str, str, str | None], None]


class FlowGate:
    def __init__(self, source: Source, windows: dict[str, ErrorWindow],
                 on_change: HoldListener | None = None) -> None:
        self._source = source
        self._windows = windows
        self._on_change = on_change
        self.holds: dict[str, dict[str, str]] = {}  # pipeline -> cause -> reason

    @property
    def pipelines(self) -> tuple[str, ...]:
        return tuple(self._windows)

    @property
    def held(self) -> bool:
        return bool(self.holds)

    def reasons(self) -> dict[str, str]:
        """Each held pipeline, and why (causes joined)."""
        return {pipeline: "; ".join(causes.values()) for pipeline, causes in self.holds.items()}

    def count(self, total: int, failed: dict[str, int]) -> list[tuple[str, str]]:
        """Count a batch's failures per pipeline; hold those whose error rate is breached.
        Returns the (pipeline, reason) holds this batch started."""
        started = []
        for pipeline, window in self._windows.items():
            window.add(total, failed.get(pipeline, 0))
            reason = window.breach()
            if reason and ERROR_RATE not in self.holds.get(pipeline, {}):
                self.hold(pipeline, ERROR_RATE, reason)
                started.append((pipeline, reason))
        return started

    def hold(self, pipeline: str, cause: str, reason: str, announce: bool = True) -> None:
        """`announce=False` for a hold learned from elsewhere (the control topic): it was
        announced where it began."""
        if pipeline not in self._windows:
            return
        fresh = cause not in self.holds.get(pipeline, {})
        self.holds.setdefault(pipeline, {})[cause] = reason
        self._apply()
        if fresh and announce and self._on_change is not None:
            self._on_change(pipeline, cause, reason)

    def release(self, pipeline: str, cause: str) -> None:
        causes = self.holds.get(pipeline)
        if not causes or cause not in causes:
            return
        del causes[cause]
        if not causes:
            del self.holds[pipeline]
        if cause == ERROR_RATE:
            self._windows[pipeline].reset()  # the failures before the pause are history
        self._apply()
        if self._on_change is not None:
            self._on_change(pipeline, cause, None)

    def _apply(self) -> None:
        self._source.hold(self.held)
