"""A deterministic source of order-like JSON records, for demos, tests and benchmarks."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from uee.connectors.base import Source, SourceBatch, SourceConnector

KINDS = ("buy", "buy", "buy", "sell", "sell")  # 60% buys
CURRENCIES = ("EUR", "USD", "GBP")
BASE_TS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: records are the same on every run


def generate_orders(seed: int, count: int) -> Iterator[dict[str, Any]]:
    """The records a generator source with this seed emits, in order."""
    rng = random.Random(seed)
    for order_id in range(count):
        yield {
            "order_id": order_id,
            "customer": f"c{rng.randrange(1000):04d}",
            "kind": rng.choice(KINDS),
            "amount": round(rng.uniform(1.0, 100.0), 2),
            "currency": rng.choice(CURRENCIES),
            "ts": BASE_TS_MS + order_id * 10,
        }


class GeneratorSource(Source):
    """Emits `count` records, at most `rate` per second when given; the cursor is its position."""

    def __init__(self, name: str, count: int, seed: int, rate: float | None) -> None:
        self.name = name
        self.count = count
        self.rate = rate
        self._records = generate_orders(seed, count)
        self._emitted = 0
        self._committed = 0
        self._started_at = 0.0

    def open(self) -> None:
        self._started_at = time.monotonic()

    def _allowed(self) -> int:
        if self.rate is None:
            return self.count - self._emitted
        budget = int((time.monotonic() - self._started_at) * self.rate) + 1
        return min(budget, self.count) - self._emitted

    def poll(self, max_records: int, timeout: float) -> SourceBatch | None:
        allowed = min(max_records, self._allowed())
        if allowed <= 0:
            if self.rate is not None and self._emitted < self.count:
                time.sleep(min(timeout, 1.0 / self.rate))  # pacing, not synchronization
            return None
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        for _ in range(allowed):
            record = next(self._records)
            keys.append(str(record["order_id"]).encode())
            values.append(dumps(record).encode())
        self._emitted += allowed
        return SourceBatch(keys, values, commit_token=self._emitted)

    def commit(self, batch: SourceBatch) -> None:
        self._committed = max(self._committed, int(batch.commit_token))

    def close(self) -> None:
        pass

    @property
    def bounded(self) -> bool:
        return True

    @property
    def exhausted(self) -> bool:
        return self._committed >= self.count

    @property
    def committed(self) -> int:
        return self._committed

    @property
    def total(self) -> int:
        return self.count


class GeneratorOptions(BaseModel):
    """`source: {generator: {count: 5000, seed: 7, rate: 1000}}`"""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    count: int = Field(ge=0, description="how many records")
    seed: int = Field(0, ge=0, description="the same seed gives the same records")
    rate: float | None = Field(None, gt=0, allow_inf_nan=False,
                               description="records per second at most (none: as fast as read)")


def _describe(options: GeneratorOptions) -> str:
    rate = f", {options.rate:g}/s" if options.rate else ""
    return f"generator ({options.count} records, seed {options.seed}{rate})"


CONNECTOR = SourceConnector(
    "generator", GeneratorOptions, "deterministic order-like JSON records, for demos and tests",
    create=lambda name, o: GeneratorSource(name, o.count, o.seed, o.rate),
    describe=_describe)
