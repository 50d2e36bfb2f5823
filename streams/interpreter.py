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
    Python's 5 ms, 1.2 ms at 1 ms). A pipeline pays that several times a batch, so a busy
    neighbour put 23 ms on a high-priority pipeline's P99 on Apache Kafka (25 -> 48 ms in
    `make bench-quota`, fixed permits); at 1 ms it put none (25 ms), and the busy stage
    lost no throughput."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(ms / 1000)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """What the process holds now (modules, the compiled plan, the Faust app) left out of
    the collector's full collections for the block (`gc.freeze`), and given back after it.

    Faust's RocksDB store runs a full collection per table on every rebalance, even one
    that revokes nothing, and a full collection walks every object the imports made: with
    the lock held, 25-40 ms each, so ~140 ms with every pipeline stopped on a worker with
    five tables (measured at a worker's first rebalance, in `make bench-quota`: both
    pipelines' latency jumped to 100-170 ms there). Frozen first, each took 0.6-0.9 ms.
    Objects made before the freeze are freed as usual when their count drops; only cycles
    among them wait for the block's end."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
