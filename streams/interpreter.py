"""How a worker sets up the interpreter it shares: its pipelines' agents are threads that
take turns at one lock, so what holds that lock long is on every pipeline's latency."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def switch_interval(ms: float) -> Iterator[None]:
    """The interpreter's switch interval for the block. Each pipeline's agent is a thread,
    and every call into librdkafka gives the lock up: beside a thread that computes (a
    CPU-bound stage), taking it back waits a whole interval (measured: 5.2 ms a call at
    Python's 5 ms, 1.2 ms at 1 ms). A pipeline pays that several times a batch: in `make
    bench-quota` on Apache Kafka (fixed permits, `--phases 20 30 10`), the high-priority
    pipeline's P99 beside the slowed one was 55 ms at 5 ms and 25 ms at 1 ms, and the busy
    stage lost no throughput."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(ms / 1000)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """What the process holds now (modules, the compiled plan, the Faust app) left out of
    the collector's collections for the block (`gc.freeze`), and given back after it.

    Faust's RocksDB store runs a full collection per table on every rebalance, even one
    that revokes nothing, and a full collection walks every object the imports made: with
    the lock held, 25-40 ms each, so 100-170 ms with every pipeline stopped on a worker with
    five tables (measured at a worker's first rebalance in `make bench-quota`). Frozen, each
    took 0.6-0.9 ms.

    What is garbage already is collected first, so the freeze keeps none of it. A frozen
    object is still freed when its count drops to zero; a reference cycle through one is
    kept until the first collection after the block. A heap someone else froze is left as
    it is (unfreezing would thaw theirs too)."""
    if gc.get_freeze_count():
        yield
        return
    gc.collect()  # once, before the agents' threads start: no batch waits for it
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
