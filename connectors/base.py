"""The source and sink interfaces every connector implements.

The lifecycle is explicit: `open`, then `poll`/`write` in batches, `commit` (for
sources) once a batch's records reached every sink or the DLQ, then `close`.
A source's commit token travels with its batch, so at-least-once is a property
of the loop that calls these methods, not of each connector.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from uee.errors import UeeError

Headers = list[tuple[str, bytes]]
# (source index, key, value): a record for a sink, and which source record it came from.
OutRecord = tuple[int, bytes | None, bytes | None]
# Called by a source when its partitions change: (source name, assigned, revoked).
RebalanceListener = Callable[[str, list[int], list[int]], None]


@dataclass(frozen=True)
class RecordOrigin:
    """Where one record came from, for dead letters and lineage."""

    topic: str | None
    partition: int | None
    offset: int | None
    headers: Headers = field(default_factory=list)


@dataclass
class SourceBatch:
    """Raw records from one poll, in order, with what a commit needs."""

    keys: list[bytes | None]
    values: list[bytes | None]  # None: a tombstone, kept as it came
    commit_token: Any  # the source's position after this batch: it covers the ones before
    origin_of: Any = None  # callable(index) -> RecordOrigin; computed only for failures
    # Per record, its URN (sources that know their items' ids), for the `uee.urn` header.
    urns: list[str] | None = None
    # Records the source already knows are bad (index -> (code, what)): they go to the DLQ
    # as they are, the stages never see them.
    rejects: dict[int, tuple[str, str]] | None = None
    # The Kafka timestamp (ms) of the batch's first record, the oldest of its partition in
    # the fetch: how long records waited in Kafka before uee delivered them.
    first_timestamp_ms: int | None = None

    def __len__(self) -> int:
        return len(self.values)

    def origin(self, index: int) -> RecordOrigin:
        if self.origin_of is None:
            return RecordOrigin(None, None, None)
        result: RecordOrigin = self.origin_of(index)
        return result


class Source(ABC):
    """Where records come from. Called from one thread."""

    name: str
    rebalance_listener: RebalanceListener | None = None

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def poll(self, max_records: int, timeout: float) -> SourceBatch | None:
        """Up to `max_records` records, waiting at most `timeout` seconds; None if none came."""

    @abstractmethod
    def commit(self, batch: SourceBatch) -> None:
        """Every record of `batch`, and of the batches before it, reached every sink or the
        DLQ: advance past them."""

    # A source whose position lives outside Kafka (an HTTP cursor) resumes from the
    # provider's checkpoint; a Kafka source's committed offsets are its checkpoint.
    external_cursor: bool = False

    def cursor(self, token: Any) -> Any:
        """A commit token as JSON for the checkpoint row (and `resume`)."""
        return token

    def resume(self, cursor: Any) -> None:
        """Start from a checkpoint's cursor (called before the first poll)."""
        return None

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end, per (topic, partition) the source reads; {} where it has no
        such notion. Called from other threads (a metrics scrape, the quota sampler): it must
        not call into a client the polling thread uses (see KafkaSource.lag)."""
        return {}

    def backoff(self) -> tuple[str, float] | None:
        """Why, and until when (epoch seconds), the source waits before it reads again."""
        return None

    @abstractmethod
    def close(self) -> None: ...

    @property
    def ready(self) -> bool:
        """True once the source can deliver (e.g. partitions are assigned)."""
        return True

    def hold(self, held: bool) -> None:
        """Stop (or resume) delivering records while staying a live member of the group."""
        return None

    def caught_up(self) -> bool:
        """True when nothing is known to be left to read right now (a stream's end offsets,
        as the last fetch reported them, are reached). Called between polls, on the same
        thread."""
        return True

    @property
    def bounded(self) -> bool:
        """True for a source with a known end (a generator), False for a stream."""
        return False

    @property
    def exhausted(self) -> bool:
        """True when a bounded source has delivered and committed everything it has."""
        return False

    @property
    def total(self) -> int | None:
        """How many records a bounded source has, when it knows (progress bars)."""
        return None


class SinkUnavailableError(UeeError):
    """Records could not be delivered; nothing of their batch was committed."""

    code = "SINK_UNAVAILABLE"


@dataclass(frozen=True)
class WriteFailure:
    """One record a sink did not make durable: the very tuple (and headers) it was given, so
    the caller knows its source record without looking at bytes, and can send it again."""

    record: OutRecord
    headers: Headers | None
    reason: str
    retryable: bool  # a timeout or an absent broker can pass; a refusal of the record cannot


class Sink(ABC):
    """Where records go. `write` queues; `flush` waits until what was written since the last
    flush is durable and returns the records that are not, one failure each (a Kafka sink
    learns them from librdkafka's callbacks, a database sink per row)."""

    name: str
    target: str

    @abstractmethod
    def write(self, records: Sequence[OutRecord], headers: Sequence[Headers] | None = None
              ) -> None:
        """Queue records (with headers, one list per record, for dead letters)."""

    @abstractmethod
    def flush(self, timeout: float) -> list[WriteFailure]: ...

    def queued(self) -> float:
        """The share of the sink's local buffer in use now, 0-1 (0: it has none). Read
        right after a batch's writes: a sink that cannot keep up fills it."""
        return 0.0

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class SourceConnector:
    """A source plug-in: the name pipeline files give it (`source: {<type>: {...}}` or
    `source: {connector: {type: <type>, ...}}`), its options schema (a pydantic model: the
    language checks a file's options against it and reports problems at their positions),
    and how to build the running source and describe it in a plan."""

    type: str
    options: builtins.type[BaseModel]  # `type` is the field above
    summary: str
    create: Callable[[str, Any], Source]  # (source name, validated options) -> Source
    describe: Callable[[Any], str]  # validated options -> one line for plans and errors
