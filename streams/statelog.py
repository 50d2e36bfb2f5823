"""The batch threads' side of the state: rows written as state events, rows read back.

`StateWriter` buffers rows and sends them as one event on `<app>-state` (see
`streams.state`); `flush` returns once the broker acknowledged it, which is the
"state" step of the checkpoint order. `StateView` reads the tables from a batch thread by
asking the event loop, the only place Faust tables may be touched.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import msgspec
from confluent_kafka import KafkaError, Producer

from uee.streams.state import StateTables, StateUnavailableError, event

STOP_CHECK_S = 0.5  # how often a checkpoint waiting for the broker looks for a stop


class StateWriter:
    """Thread-safe: agents and the worker share one (librdkafka's producer is thread-safe)."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], Any] = {}  # the latest row per key wins
        self._error: KafkaError | None = None
        self.last_offset = -1  # of the last event acknowledged

    def put(self, table: str, key: str, row: Any) -> None:
        with self._lock:
            self._rows[(table, key)] = row

    def send(self) -> None:
        """Send what was put, without waiting for the acknowledgement."""
        with self._lock:
            rows, self._rows = self._rows, {}
        if rows:
            value = msgspec.json.encode(event((t, k, r) for (t, k), r in rows.items()))
            self._producer.produce(self._topic, value, on_delivery=self._delivered)
        self._producer.poll(0)

    @property
    def topic(self) -> str:
        return self._topic

    def flush(self, timeout: float = 30.0) -> None:
        """Send what was put and wait until every event sent is acknowledged, at most
        `timeout` seconds (a worker that stops)."""
        self.send()
        if not self.acknowledged(timeout):
            raise StateUnavailableError(f"state events to {self._topic} were not acknowledged "
                                        f"within {timeout:g}s; nothing after the last "
                                        "checkpoint is committed, a restart resumes there")

    def acknowledged(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every event sent; False if some still wait.
        Raises if the broker refused one."""
        waiting = self._producer.flush(timeout)
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise StateUnavailableError(f"could not write state to {self._topic}: "
                                        f"{error.str()}")
        return waiting == 0

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._error = error
        else:
            self.last_offset = max(self.last_offset, message.offset())


@dataclass(frozen=True)
class PatientState:
    """The state step of an agent's checkpoints (a `streams.checkpoint.StateStore`): it
    waits for the broker as long as the broker does not answer, the way a sink's batch is
    held behind an open breaker. A broker frozen in the middle of a checkpoint is ridden
    out; only a stop ends the wait, and then nothing after the last checkpoint is
    committed. (The state producer never expires an event: `Settings.state_config`.)"""

    writer: StateWriter
    patience_s: float  # how long an acknowledgement may take before the agent says it waits
    stopping: threading.Event
    # Told the reason when the wait begins, None when it is over.
    waiting: Callable[[str | None], None]

    def flush(self) -> None:
        self.writer.send()
        if self.writer.acknowledged(self.patience_s):
            return
        began = time.monotonic() - self.patience_s
        self.waiting(f"state events to {self.writer.topic} not acknowledged within "
                     f"{self.patience_s:g}s: the checkpoint waits for the broker")
        while not self.writer.acknowledged(STOP_CHECK_S):
            if self.stopping.is_set():
                raise StateUnavailableError(
                    f"stopped while state events to {self.writer.topic} were not acknowledged"
                    f" (waited {time.monotonic() - began:.0f}s); nothing after the last "
                    "checkpoint is committed, a restart resumes there")
        self.waiting(None)


class StateView:
    """Reads of the tables from a batch thread, run on the worker's event loop."""

    def __init__(self, tables: StateTables, loop: asyncio.AbstractEventLoop,
                 end_offset: int, timeout: float, end_now: Callable[[], int]) -> None:
        self._tables = tables
        self._loop = loop
        self._end = end_offset  # the state topic's end when the worker started
        self._end_now = end_now  # reads it again (Fetch high watermark)
        self._timeout = timeout
        self._ready: bool | None = None
        self._lock = threading.Lock()

    def _call(self, coro: Any) -> Any:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result(
                self._timeout + 5)
        except FutureTimeout as exc:
            raise StateUnavailableError("the worker's tables did not answer within "
                                        f"{self._timeout + 5:g}s") from exc

    def wait_ready(self) -> bool:
        """Block until the tables are recovered (once per worker); False if they were not in
        time (the tables may then be a batch behind: that batch is read again)."""
        with self._lock:
            if self._ready is None:
                self._ready = bool(self._call(self._tables.ready(self._end, self._timeout)))
            return self._ready

    def catch_up(self) -> bool:
        """Block until the tables hold every state event written so far (by any worker);
        False if they did not in time."""
        return bool(self._call(self._tables.ready(self._end_now(), self._timeout)))

    def get(self, table: str, key: str) -> Any:
        async def read() -> Any:
            return self._tables.get(table, key)
        return self._call(read())

    def items(self, table: str, prefix: str = "") -> list[tuple[str, Any]]:
        async def read() -> list[tuple[str, Any]]:
            return self._tables.items(table, prefix)
        result: list[tuple[str, Any]] = self._call(read())
        return result
