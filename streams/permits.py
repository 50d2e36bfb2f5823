"""Permits: the share of its own speed a provider may use, as the quota controller sets it.

A provider is allocated `full` permits (its pipeline's `quota.permits`, else one per source
partition). With all of them it runs unthrottled. With fewer, its records per second are
capped at `permits / full` of the rate it kept while it had them all (measured over the last
seconds at full allocation, so the cap follows what the provider really does). With none it
reads nothing: the flow gate holds its source (a Kafka consumer keeps polling and stays in
its group) and the provider shows WAITING_QUOTA.

Decisions arrive as `QuotaUpdate`s on the control topic (Avro, `schemas/quota_update.avsc`,
Confluent's wire format); a worker applies those for its pipelines and ignores any from an
older controller epoch than the newest it has applied.
"""

from __future__ import annotations

import datetime
import io
import json
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import fastavro

from uee.errors import UeeError

SCHEMA_FILE = "quota_update.avsc"
_SCHEMA_TEXT = files("uee.schemas").joinpath(SCHEMA_FILE).read_text()
SCHEMA = fastavro.parse_schema(json.loads(_SCHEMA_TEXT))
# Confluent's wire format: a zero byte, then a 4-byte schema id. Without a registry, the id
# is a checksum of the schema text: a reader knows at once whether it can read the value.
MAGIC = b"\x00"
SCHEMA_ID = zlib.crc32(_SCHEMA_TEXT.encode()) & 0x7FFFFFFF
WINDOW_S = 2.0  # how much recent throughput the reference rate covers
# A throttled poll waits until its bucket holds this long of the capped rate (all it may
# hold, when that is less). Taking each record as soon as its token came, a provider capped
# near what its stage can do ran batches of one or two records: each paid a poll, a produce,
# an acknowledgement and the interpreter handed back and forth, a third of its time. In the
# quota bench (4.6 ms a record beside a pipeline using 0.6 of a core) batches of 6 let the
# other keep to its quota section under 17 permits where 16 had been the most, and took a
# fifth off the broker's CPU. A tenth of a second did no better, and adds latency.
MIN_BATCH_S = 0.05


class QuotaUpdateError(UeeError):
    code = "QUOTA_UPDATE"


class PermitPoolError(UeeError):
    code = "QUOTA_POOL"


@dataclass(frozen=True)
class QuotaUpdate:
    deployment: str
    epoch: int
    pipeline: str
    permits_before: int
    permits_after: int
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    at: datetime.datetime = field(default_factory=lambda: _now_ms())

    @property
    def key(self) -> bytes:
        return f"quota:{self.deployment}:{self.pipeline}".encode()

    def encode(self) -> bytes:
        out = io.BytesIO()
        out.write(MAGIC + SCHEMA_ID.to_bytes(4, "big"))
        fastavro.schemaless_writer(out, SCHEMA, {
            "deployment": self.deployment, "epoch": self.epoch, "pipeline": self.pipeline,
            "permits_before": self.permits_before, "permits_after": self.permits_after,
            "reason": self.reason, "metrics": self.metrics, "at": self.at})
        return out.getvalue()

    @classmethod
    def decode(cls, value: bytes) -> QuotaUpdate:
        if value[:1] != MAGIC or int.from_bytes(value[1:5], "big") != SCHEMA_ID:
            raise QuotaUpdateError("not a QuotaUpdate of this version's schema")
        try:
            record: Any = fastavro.schemaless_reader(io.BytesIO(value[5:]), SCHEMA, None)
        except (EOFError, ValueError, TypeError) as exc:
            raise QuotaUpdateError(f"a QuotaUpdate that cannot be read: {exc}") from exc
        return cls(**record)

    def as_json(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "epoch": self.epoch, "pipeline": self.pipeline,
                "permits_before": self.permits_before, "permits_after": self.permits_after,
                "reason": self.reason, "metrics": self.metrics, "at": self.at.isoformat()}


def _now_ms() -> datetime.datetime:
    """Now, to the millisecond: what the schema's timestamp-millis keeps."""
    now = datetime.datetime.now(datetime.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def is_quota_update(value: bytes | None) -> bool:
    return bool(value) and value[:1] == MAGIC  # type: ignore[index]


class PermitThrottle:
    """One agent's permits, per pipeline, and a token bucket refilled at its share of its
    reference rate. Pipelines merged into one agent share its consumer: the agent runs at the
    smallest share among them (as a pause of one holds them all). Called from the agent's
    thread only."""

    def __init__(self, full: dict[str, int],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.full = {pipeline: max(1, n) for pipeline, n in full.items()}
        self.permits = dict(self.full)
        self.epoch = -1  # of the newest update applied
        self._recent: deque[tuple[float, int]] = deque()  # (time, records) at full allocation
        self._recent_records = 0  # their sum: the rate is read every batch, never re-summed
        self._reference: float | None = None  # records/s at full allocation
        self.full_rate = 0.0  # the same, as the controller reads it (a float: thread-safe)
        # Seconds of its capped rate a batch may hold, when the controller says (None: a
        # whole batch): see `_refill`.
        self._batch_s: float | None = None
        self._tokens = 0.0
        self._refilled = self._clock()

    @property
    def share(self) -> float:
        return min(self.permits[p] / self.full[p] for p in self.full)

    @property
    def throttled(self) -> bool:
        return self.share < 1.0

    def apply(self, update: QuotaUpdate) -> bool:
        """Apply an update for one of the agent's pipelines; False if it is not one of
        them, or comes from an older controller epoch (a stale controller)."""
        if update.pipeline not in self.full or update.epoch < self.epoch:
            return False
        self.epoch = update.epoch
        was_throttled = self.throttled
        self._batch_s = update.metrics.get("batch_s")
        self.permits[update.pipeline] = max(0, min(self.full[update.pipeline],
                                                   update.permits_after))
        if self.throttled and not was_throttled:
            # The controller's reading of the full rate, when it sent one: the rate measured
            # here a moment later has moved (a slowdown empties the window quickly).
            self._reference = update.metrics.get("full_rate") or self._rate()
            self._tokens = 0.0
            self._refilled = self._clock()
        self.full_rate = (self._reference if self.throttled else self._rate()) or 0.0
        return True

    def resize(self, pipeline: str, full: int) -> tuple[int, int] | None:
        """A new full allocation for one of the agent's pipelines (an operator's, `uee quota
        set`): it holds all of it, unthrottled until the controller decides otherwise.
        (permits before, after), or None if it is not one of them."""
        if pipeline not in self.full:
            return None
        before = self.permits[pipeline]
        self.full[pipeline] = self.permits[pipeline] = max(1, full)
        if not self.throttled:
            self._reference = None
            self.full_rate = self._rate() or 0.0
        return before, self.permits[pipeline]

    def taken(self, records: int) -> None:
        """Records a poll took; at full allocation, they make the reference rate."""
        if not self.throttled:
            now = self._clock()
            self._recent.append((now, records))
            self._recent_records += records
            while self._recent and now - self._recent[0][0] > WINDOW_S:
                self._recent_records -= self._recent.popleft()[1]
            self.full_rate = self._rate() or 0.0
        else:
            self._tokens -= records

    def _rate(self) -> float | None:
        if len(self._recent) < 2:
            return None
        span = self._recent[-1][0] - self._recent[0][0]
        records = self._recent_records - self._recent[0][1]  # the first batch opens the span
        return records / span if span > 0 else None

    def _refill(self, batch_size: int) -> float:
        """Tokens now; the rate without a reference (the provider never ran at full speed)
        is its share of a batch per second."""
        now = self._clock()
        rate = (self._reference or batch_size) * self.share
        self._tokens = min(self._room(batch_size, rate),
                           self._tokens + rate * (now - self._refilled))
        self._refilled = now
        return rate

    def _room(self, batch_size: int, rate: float) -> float:
        """What the bucket holds at most: a batch, or `batch_s` of the rate when the
        controller set it. By Little's law (N = X * W) batches then take no longer than
        that at the capped rate, even after a pause (a GC, a slow acknowledgement) let
        tokens pile up. A whole batch's worth, near what the stage can do, made the next
        batch take as long as the pause and a batch more."""
        if self._batch_s is None:
            return float(batch_size)
        return min(float(batch_size), max(1.0, rate * self._batch_s))

    def _least(self, batch_size: int, rate: float) -> int:
        """The fewest records a throttled poll takes (`MIN_BATCH_S`)."""
        return max(1, int(min(self._room(batch_size, rate), rate * MIN_BATCH_S) + 1e-9))

    def allowance(self, batch_size: int) -> int:
        """Records the next poll may take: `batch_size` unthrottled, 0 with no permit or
        while the bucket holds less than `MIN_BATCH_S` of the capped rate."""
        if not self.throttled:
            return batch_size
        if self.share == 0:
            return 0
        rate = self._refill(batch_size)
        whole = int(self._tokens + 1e-9)  # not 49 for 49.999999: clocks are floats
        return min(batch_size, whole) if whole >= self._least(batch_size, rate) else 0

    def wait_s(self, batch_size: int) -> float:
        """How long until the bucket holds what a poll takes (0 when not throttled, or no
        permit)."""
        if not self.throttled or self.share == 0:
            return 0.0
        rate = self._refill(batch_size)
        if rate <= 0:
            return 0.0
        return max(0.0, (self._least(batch_size, rate) - self._tokens) / rate)
