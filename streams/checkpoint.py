"""The one order in which a batch is made permanent.

    sinks and dead letters acknowledged  ->  state flushed  ->  source offsets committed

Offsets last: a worker that dies anywhere before reads the batch again (at-least-once),
and state written by that batch is never behind the offsets that claim it. The state
step is in place before state exists (provider state and diff state will be RocksDB-
backed Faust tables); its tests use a fake store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from uee.connectors.base import Source, SourceBatch


class StateStore(Protocol):
    """Something a batch changed that must be durable before its offsets are committed."""

    def flush(self) -> None: ...


class Checkpoint:
    def __init__(self, source: Source, stores: Sequence[StateStore] = (),
                 confirm_delivery: Callable[[], None] | None = None) -> None:
        self._source = source
        self._stores = stores
        # Raises to keep the batch uncommitted (streams.topic_watch: a broker that
        # acknowledges records written to a deleted topic).
        self._confirm_delivery = confirm_delivery

    def commit(self, batch: SourceBatch) -> None:
        """Called once delivery returned: every record of `batch` was acknowledged."""
        if self._confirm_delivery is not None:
            self._confirm_delivery()
        for store in self._stores:
            store.flush()
        self._source.commit(batch)
