"""Checkpoints: the one order in which delivered batches are made permanent, and when.

    sinks and dead letters acknowledged  ->  state written  ->  source offsets committed

A batch is delivered (acknowledged by its sinks and DLQ) before the next is sent, and the
checkpoint never covers one that is not: the agent reads and runs the next batch while the
last is acknowledged (streams.agent), and hands a batch here only once it is. A
checkpoint covers every batch delivered since the last one: it writes the providers'
checkpoint rows and any state those batches changed (diff hashes) as a state event, waits
for its acknowledgement, then commits the source's position. It is taken every `every`
records or `interval` seconds (the pipeline's `checkpoint` section, 1000 records / 5 s by
default), when the source is caught up, and on shutdown. Offsets last: a worker that dies
anywhere before reads those batches again (at-least-once; duplicates bounded by one
checkpoint's worth), and state is never behind the offsets that claim it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from uee.connectors.base import Source, SourceBatch


class StateStore(Protocol):
    """Something a checkpoint must make durable before the offsets it covers are committed."""

    def flush(self) -> None: ...


class Checkpoint:
    def __init__(self, source: Source, stores: Sequence[StateStore] = (),
                 confirm_delivery: Callable[[], None] | None = None,
                 every: int = 1, interval: float = 0.0,
                 before_state: Callable[[SourceBatch, int], None] | None = None) -> None:
        self._source = source
        self._stores = stores
        # Raises to keep the batch uncommitted (streams.topic_watch: a broker that
        # acknowledges records written to a deleted topic).
        self._confirm_delivery = confirm_delivery
        self._every = every
        self._interval = interval
        # Writes the checkpoint rows (cursor, URN, counts) for the last batch and the number
        # of records covered, into a store flushed next.
        self._before_state = before_state
        self._pending: SourceBatch | None = None
        self._records = 0
        self._last = time.monotonic()

    @property
    def age(self) -> float:
        """How long delivered records have waited for a checkpoint: 0 when every one is
        checkpointed (an idle pipeline's checkpoint is current), else the time since the
        last checkpoint."""
        return 0.0 if self._pending is None else time.monotonic() - self._last

    @property
    def pending(self) -> int:
        """Records delivered but not checkpointed yet."""
        return self._records

    def delivered(self, batch: SourceBatch) -> bool:
        """Every record of `batch` was acknowledged; checkpoint if it is time. True if it
        did. A batch's commit token covers the batches before it."""
        self._pending = batch
        self._records += len(batch)
        if self._records >= self._every or time.monotonic() - self._last >= self._interval:
            self.commit()
            return True
        return False

    def due(self) -> bool:
        """Records wait and the interval passed (checked between polls)."""
        return self._pending is not None and time.monotonic() - self._last >= self._interval

    def commit(self) -> None:
        """Checkpoint now whatever was delivered (the source is caught up, or stopping)."""
        batch = self._pending
        if batch is None:
            return
        if self._confirm_delivery is not None:
            self._confirm_delivery()
        if self._before_state is not None:
            self._before_state(batch, self._records)
        for store in self._stores:
            store.flush()
        self._source.commit(batch)
        self._pending = None
        self._records = 0
        self._last = time.monotonic()
