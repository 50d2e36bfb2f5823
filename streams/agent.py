"""One pipeline's batch loop: poll, run the compiled kernel, write sinks and DLQ, commit.

This is the hot path. It is synchronous and runs on its own thread (hosted by a
Faust service, see `streams.app`), one batch at a time, so that a source offset
is committed only after every record of its batch was acknowledged by every
sink or by the dead-letter topic: at-least-once by construction.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from connectors.base import Sink, Source, SourceBatch
from connectors.kafka import KafkaWriter
from dsl.ir import Pipeline
from streams.deadletter import dead_letter_headers
from streams.kernel import Kernel


@dataclass
class AgentStats:
    """Counters read by progress and summary; written only by the agent's thread."""

    records_in: int = 0
    records_out: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    per_topic_in: Counter[str] = field(default_factory=Counter)
    per_topic_out: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    first_record_at: float | None = None
    last_commit_at: float | None = None


class BatchAgent:
    def __init__(
        self,
        pipeline: Pipeline,
        source: Source,
        sinks: list[Sink],
        writer: KafkaWriter,
        batch_size: int,
        poll_timeout: float,
        flush_timeout: float,
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.sinks = sinks
        self.kernel = Kernel(pipeline.stages, pipeline.name)
        self.stats = AgentStats()
        self._writer = writer
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._flush_timeout = flush_timeout
        self._last_activity = time.monotonic()
        self._closed = False

    def open(self) -> None:
        self.source.open()
        self._last_activity = time.monotonic()

    def step(self) -> int:
        """Process at most one batch; return how many source records it held."""
        if self._closed:
            return 0
        was_ready = self.source.ready
        batch = self.source.poll(self._batch_size, self._poll_timeout)
        if not was_ready and self.source.ready:
            self._last_activity = time.monotonic()  # idle time counts from the assignment
        if batch is None:
            return 0
        now = time.monotonic()
        if self.stats.first_record_at is None:
            self.stats.first_record_at = now
        self._process(batch)
        self.source.commit(batch)
        self._last_activity = self.stats.last_commit_at = time.monotonic()
        return len(batch)

    def _process(self, batch: SourceBatch) -> None:
        result = self.kernel.run(batch.values)
        keys = batch.keys
        outputs = [(keys[index], value) for index, value in result.outputs]
        for sink in self.sinks:
            sink.write(outputs)
        for failure in result.failures:
            origin = batch.origin(failure.index)
            headers = dead_letter_headers(self.pipeline.name, failure, origin)
            self._writer.send(self.pipeline.dlq_topic, keys[failure.index],
                              batch.values[failure.index], headers)
        # One flush covers every sink and the DLQ: they share the writer's producer.
        self._writer.flush(self._flush_timeout)

        stats = self.stats
        stats.batches += 1
        stats.records_in += len(batch)
        stats.per_topic_in[self.source.name] += len(batch)
        stats.records_out += len(outputs)
        stats.dead_lettered += len(result.failures)
        stats.filtered += len(batch) - len(outputs) - len(result.failures)
        for sink in self.sinks:
            stats.per_topic_out[sink.target] += len(outputs)
        if result.failures:
            stats.per_topic_out[self.pipeline.dlq_topic] += len(result.failures)
            stats.error_codes.update(f.code for f in result.failures)

    def idle_for(self) -> float:
        """Seconds since the last record or assignment; 0 while not ready to consume."""
        if self.source.exhausted:
            return float("inf")
        if not self.source.ready:
            return 0.0
        return time.monotonic() - self._last_activity

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
        finally:
            self.source.close()
