"""An in-memory source and sink that record what the loop did to them, in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from uee.connectors.base import (
    Headers,
    OutRecord,
    RecordOrigin,
    Sink,
    Source,
    SourceBatch,
    WriteFailure,
)

Record = tuple[bytes | None, bytes | None]


@dataclass
class Journal:
    """Events from every part that shares it, in the order they happened: ("commit", n),
    ("flush", sink name), ("hold", True), ... for tests of ordering."""

    events: list[tuple[str, object]] = field(default_factory=list)

    def add(self, event: str, detail: object = None) -> None:
        self.events.append((event, detail))

    def names(self) -> list[str]:
        return [event for event, _ in self.events]


class TestingSource(Source):
    """Gives `records` in batches of at most `max_records`, like one partition of a topic
    (offsets are positions). `committed` is the offset after the last committed record."""

    __test__ = False  # not a pytest class

    def __init__(self, records: Sequence[Record], name: str = "memory",
                 journal: Journal | None = None,
                 headers: Sequence[Headers] | None = None) -> None:
        self.name = name
        self.records = list(records)
        self.headers = list(headers) if headers is not None else [[] for _ in records]
        self.journal = journal if journal is not None else Journal()
        self.position = 0  # the next record to give
        self.committed = 0
        self.held = False
        self.opened = self.closed = False

    def open(self) -> None:
        self.opened = True

    def poll(self, max_records: int, timeout: float) -> SourceBatch | None:
        if self.held or self.position >= len(self.records):
            return None
        start, end = self.position, min(len(self.records), self.position + max_records)
        self.position = end
        chunk = self.records[start:end]

        def origin_of(index: int) -> RecordOrigin:
            return RecordOrigin(self.name, 0, start + index, list(self.headers[start + index]))

        self.journal.add("poll", end - start)
        return SourceBatch([k for k, _ in chunk], [v for _, v in chunk], end, origin_of)

    def commit(self, batch: SourceBatch) -> None:
        self.committed = max(self.committed, int(batch.commit_token))
        self.journal.add("commit", self.committed)

    def hold(self, held: bool) -> None:
        if held != self.held:
            self.journal.add("hold", held)
        self.held = held

    def close(self) -> None:
        self.closed = True

    def rewind(self) -> None:
        """What a restart does: read again from the last committed offset."""
        self.position = self.committed

    @property
    def bounded(self) -> bool:
        return True

    @property
    def exhausted(self) -> bool:
        return self.committed >= len(self.records)


# Decides, per flush round, whether a record fails: (record, round) -> None if it is
# delivered, else (reason, retryable).
FailureRule = Callable[[OutRecord, int], tuple[str, bool] | None]


class TestingSink(Sink):
    """Keeps what was flushed durably in `records`; `fail` decides what fails each round
    (`down()` and `up()` switch a whole-sink outage on and off)."""

    __test__ = False

    def __init__(self, name: str = "memory", journal: Journal | None = None,
                 fail: FailureRule | None = None) -> None:
        self.name = self.target = name
        self.journal = journal if journal is not None else Journal()
        self.fail = fail
        self.records: list[OutRecord] = []
        self.headers: list[Headers | None] = []
        self.rounds = 0
        self._pending: list[tuple[OutRecord, Headers | None]] = []
        self._down: str | None = None

    def down(self, reason: str = "the sink is away") -> None:
        self._down = reason

    def up(self) -> None:
        self._down = None

    def write(self, records: Sequence[OutRecord], headers: Sequence[Headers] | None = None
              ) -> None:
        for position, record in enumerate(records):
            self._pending.append((record, None if headers is None else headers[position]))

    def flush(self, timeout: float) -> list[WriteFailure]:
        self.rounds += 1
        self.journal.add("flush", self.name)
        failures = []
        for record, headers in self._pending:
            verdict = (self._down, True) if self._down is not None else (
                self.fail(record, self.rounds) if self.fail is not None else None)
            if verdict is None:
                self.records.append(record)
                self.headers.append(headers)
            else:
                failures.append(WriteFailure(record, headers, verdict[0], verdict[1]))
        self._pending = []
        return failures

    def values(self) -> list[bytes | None]:
        return [value for _, _, value in self.records]
