"""One plan segment's batch loop: poll, run the compiled kernel, write sinks and DLQs, commit.

This is the hot path. It is synchronous and runs on its own thread (hosted by a
Faust service, see `streams.app`), one batch at a time, so that a source offset
is committed only after every record of its batch was acknowledged by every
sink or by the dead-letter topic: at-least-once by construction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from uee.connectors.base import Sink, Source, SourceBatch
from uee.connectors.kafka import KafkaWriter, SinkUnavailableError, Undelivered
from uee.dsl.plan import Plan, Segment
from uee.streams.breaker import OPEN, CircuitBreaker
from uee.streams.control import PAUSED, ControlWatcher, publish_state
from uee.streams.deadletter import dead_letter_headers, per_pipeline
from uee.streams.kernel import Failure, Kernel, SinkBinding, Slot

log = logging.getLogger("uee")
BACKOFF_CAP_S = 30.0


class BatchAbandonedError(Exception):
    """The worker was stopped while a batch could not be delivered; it stays uncommitted."""


class RecordFailedError(Exception):
    """A record failed in a pipeline with `on_error: fail`: the pipeline stops, uncommitted."""


class RecordRejectedError(Exception):
    """A sink refused one record outright (too large, malformed): it goes to the DLQ."""


@dataclass
class PipelineStats:
    """Counters read by progress and summary; written only by the agent's thread."""

    records_in: int = 0
    records_out: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    per_topic_out: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    first_record_at: float | None = None
    last_commit_at: float | None = None


class ErrorWindow:
    """Failures over the last `size` records (or more, in whole batches)."""

    def __init__(self, rate: float, size: int) -> None:
        self.rate = rate
        self.size = size
        self._chunks: deque[tuple[int, int]] = deque()
        self._total = self._failed = 0

    def add(self, total: int, failed: int) -> None:
        self._chunks.append((total, failed))
        self._total += total
        self._failed += failed
        while self._chunks and self._total - self._chunks[0][0] >= self.size:
            old_total, old_failed = self._chunks.popleft()
            self._total -= old_total
            self._failed -= old_failed

    def breach(self) -> str | None:
        """Why the pipeline should pause, or None."""
        if self._total < self.size or self._failed <= self.rate * self._total:
            return None
        return (f"{self._failed} of the last {self._total} records failed "
                f"({self._failed / self._total:.0%} > {self.rate:.0%})")

    def reset(self) -> None:
        self._chunks.clear()
        self._total = self._failed = 0


class _SourceIndex:
    """Which source record each produced record came from, built only when a delivery
    fails. Equal bytes from two source records are two entries, each taken once."""

    def __init__(self, bindings: list[SinkBinding],
                 outputs: list[list[tuple[int, bytes | None, bytes]]]) -> None:
        self._bindings = bindings
        self._outputs = outputs
        self._index: dict[tuple[str, bytes | None, bytes | None],
                          deque[tuple[int, SinkBinding]]] | None = None

    def take(self, record: Undelivered) -> tuple[int, SinkBinding] | None:
        if self._index is None:
            self._index = {}
            for binding, records in zip(self._bindings, self._outputs, strict=True):
                for index, key, value in records:
                    self._index.setdefault((binding.sink.topic, key, value), deque()).append(
                        (index, binding))
        candidates = self._index.get((record.topic, record.key, record.value))
        return candidates.popleft() if candidates else None


class BatchAgent:
    def __init__(
        self,
        segment: Segment,
        plan: Plan,
        source: Source,
        writer: KafkaWriter,
        sink_for: Callable[[SinkBinding], Sink],
        batch_size: int,
        poll_timeout: float,
        flush_timeout: float,
        control: ControlWatcher | None = None,
        confirm_delivery: Callable[[], None] | None = None,
    ) -> None:
        self.segment = segment
        self.source = source
        self.kernel = Kernel(segment)
        self.sinks = [sink_for(binding) for binding in self.kernel.bindings]
        self.stats = {name: PipelineStats() for name in segment.pipelines}
        # Records read per source, counted once however many pipelines share the read.
        self.read: Counter[str] = Counter()
        self._plan = plan
        self._dlq_topics = {name: plan.pipeline(name).dlq_topic for name in segment.pipelines}
        self._fail_fast = {p for p in segment.pipelines if plan.pipeline(p).on_error == "fail"}
        self._dlq_topic_set = {t for t in self._dlq_topics.values() if t}
        sections = [plan.pipeline(p).dlq for p in segment.pipelines]
        self._max_retries = max(d.max_retries for d in sections)
        self._backoff = max(d.backoff_s for d in sections)
        self._breakers = {
            b.sink.topic: CircuitBreaker(b.sink.topic,
                                         plan.pipeline(b.pipeline).dlq.breaker_failures,
                                         plan.pipeline(b.pipeline).dlq.breaker_open_s)
            for b in self.kernel.bindings}
        self.state = "RUNNING"
        self._stopping = threading.Event()
        self._control = control
        # Called after a batch was acknowledged, before its offsets are committed; raises to
        # keep the batch uncommitted (streams.topic_watch: a broker that acknowledges records
        # written to a deleted topic).
        self._confirm_delivery = confirm_delivery
        self.paused: dict[str, str] = {}  # pipeline -> why
        self._windows = {p: ErrorWindow(plan.pipeline(p).dlq.pause_rate,
                                        plan.pipeline(p).dlq.pause_window)
                         for p in segment.pipelines}
        self._writer = writer
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._flush_timeout = flush_timeout
        self._last_activity = time.monotonic()
        self._busy = False  # a batch is between poll and commit
        self._source_open = False
        self._caught_up = False  # the last empty poll found nothing left to read
        self._closed = False

    @property
    def name(self) -> str:
        return self.segment.group_id

    def open_source(self) -> None:
        """Open the source now, before the rest of the worker: joining a consumer group takes
        seconds on some brokers, and the worker's own start-up runs meanwhile."""
        if not self._source_open:
            self._source_open = True
            self.source.open()

    def open(self) -> None:
        self.open_source()
        if self._control is not None:
            states = self._control.open()  # a pause outlives the worker that paused
            self._apply({p: states[p] for p in self.segment.pipelines if p in states})
        self._last_activity = time.monotonic()

    def _apply(self, states: dict[str, dict[str, object]]) -> None:
        for pipeline, state in states.items():
            if pipeline not in self._windows:
                continue
            if state.get("state") == PAUSED:
                self.paused[pipeline] = str(state.get("reason", "paused"))
            elif pipeline in self.paused:
                del self.paused[pipeline]
                self._windows[pipeline].reset()
                log.warning("%s", json.dumps({"pipeline": pipeline, "state": "RUNNING",
                                              "reason": "resumed"}))
        self.state = "PAUSED" if self.paused else "RUNNING"
        self.source.hold(bool(self.paused))

    def _pause(self, pipeline: str, reason: str) -> None:
        log.warning("%s", json.dumps({"pipeline": pipeline, "state": "PAUSED",
                                      "reason": reason, "resume": f"uee resume {pipeline}"}))
        if self._control is not None:
            publish_state(self._control.bootstrap, pipeline, PAUSED, reason)
        self._apply({pipeline: {"state": PAUSED, "reason": reason}})

    def step(self) -> int:
        """Process at most one batch; return how many source records it held."""
        if self._closed:
            return 0
        if self._control is not None:
            self._apply(self._control.changes())
        was_ready = self.source.ready
        batch = self.source.poll(self._batch_size, self._poll_timeout)
        if not was_ready and self.source.ready:
            self._last_activity = time.monotonic()  # idle time counts from the assignment
        if batch is None:
            # while paused, polling keeps the group membership alive
            self._caught_up = not self.paused and self.source.caught_up()
            return 0
        self._caught_up = False
        started = time.monotonic()
        self._busy = True
        try:
            self._process(batch)
            if self._confirm_delivery is not None:
                self._confirm_delivery()
            self.source.commit(batch)
        finally:
            self._busy = False
        self._last_activity = time.monotonic()
        for stats in self.stats.values():
            if stats.first_record_at is None:
                stats.first_record_at = started
            stats.last_commit_at = self._last_activity
        return len(batch)

    def _process(self, batch: SourceBatch) -> None:
        result = self.kernel.run(batch.values, batch.keys)
        failures = list(result.failures)
        written: Counter[tuple[str, str]] = Counter()
        refused: Counter[str] = Counter()
        for binding, sink, records in zip(self.kernel.bindings, self.sinks, result.outputs,
                                          strict=True):
            if not records:
                continue
            rejected = sink.write(records)
            written[(binding.pipeline, sink.target)] += len(records) - len(rejected)
            refused[binding.pipeline] += len(rejected)
            slot = Slot(((binding.pipeline, f"{binding.pipeline}.sink.{binding.sink.name}"),),
                        "sink")
            failures.extend(Failure(index, slot, "SINK_REJECTED", RecordRejectedError(reason))
                            for index, reason in rejected)
        dead = self._dead_letter(batch, failures)
        # One flush covers every sink and DLQ of the segment: they share the writer's producer.
        moved = self._settle(batch, result.outputs, dead)
        for (pipeline, topic), count in moved.items():
            written[(pipeline, topic)] -= count
            refused[pipeline] += count

        filtered = self.kernel.filtered(result.drops)
        self.read[self.source.name] += len(batch)
        for name, stats in self.stats.items():
            stats.records_in += len(batch)
            stats.records_out += result.delivered[name] - refused[name]
            stats.filtered += filtered[name]
            stats.dead_lettered += dead[name]
            dlq = self._dlq_topics[name]
            if dead[name] and dlq:
                stats.per_topic_out[dlq] += dead[name]
        for (pipeline, topic), count in written.items():
            self.stats[pipeline].per_topic_out[topic] += count
        for name, window in self._windows.items():
            window.add(len(batch), dead[name])
            reason = window.breach()
            if reason and name not in self.paused:
                self._pause(name, reason)

    def _settle(self, batch: SourceBatch, outputs: list[list[tuple[int, bytes | None, bytes]]],
                dead: Counter[str]) -> Counter[tuple[str, str]]:
        """Wait until every record of the batch is acknowledged. What is not is sent again,
        with exponential backoff and jitter, up to `max_retries` times; then a sink record
        goes to its DLQ (SINK_UNAVAILABLE, or SINK_REJECTED if the broker refused it). A dead
        letter is never given up on: it is retried until written, and nothing is committed
        meanwhile. Returns the (pipeline, topic) counts moved from a sink to a DLQ."""
        moved: Counter[tuple[str, str]] = Counter()
        attempt = 0
        sources = _SourceIndex(self.kernel.bindings, outputs)
        failed = self._writer.flush(self._flush_timeout)
        # A broker that refuses a request as too large refuses every record batched with the
        # one at fault (Apache Kafka does; librdkafka does not split it): those are sent again
        # one by one, and only a record refused alone is refused for itself.
        failed = self._writer.resend_alone(failed, self._flush_timeout)
        self._record_deliveries({b.sink.topic for b, r in zip(self.kernel.bindings, outputs,
                                                              strict=True) if r}, failed)
        while failed:
            probed = self._hold_while_open(failed)
            if probed:
                failed = self._writer.flush(self._flush_timeout)
                self._record_deliveries(probed, failed)
                continue
            again: list[Undelivered] = []
            for record in failed:
                if record.topic in self._dlq_topic_set:
                    if not record.retryable:
                        raise SinkUnavailableError(
                            f"the dead-letter topic {record.topic} refused a record: "
                            f"{record.error.str()}; stopping without committing it")
                    again.append(record)
                elif record.retryable and attempt < self._max_retries:
                    again.append(record)
                else:
                    pipeline = self._dead_letter_undelivered(batch, sources, record, dead)
                    moved[(pipeline, record.topic)] += 1
            if again:
                # Retrying dead letters does not use up the sink records' retries.
                if any(r.topic not in self._dlq_topic_set for r in again):
                    attempt += 1
                self._wait_backoff(max(attempt, 1), again)
                for record in again:
                    self._writer.send(record.topic, record.key, record.value, record.headers)
            failed = self._writer.flush(self._flush_timeout)
            # Only sinks that were sent something this round have an outcome to count: a
            # sink whose records were moved to the DLQ has not recovered.
            self._record_deliveries({r.topic for r in again}, failed)
        if attempt:
            self.state = "RUNNING"
            log.warning("%s", json.dumps({"agent": self.name, "state": "RUNNING",
                                          "after_attempts": attempt}))
        return moved

    def _record_deliveries(self, sent: set[str], failed: list[Undelivered]) -> None:
        """Feed the breaker of each sink that was sent records with this round's outcome."""
        failing = {r.topic for r in failed}
        for topic in sorted(sent):
            breaker = self._breakers.get(topic)
            if breaker is not None and breaker.record(delivered=topic not in failing):
                self._breaker_changed(breaker)

    def _breaker_changed(self, breaker: CircuitBreaker) -> None:
        log.warning("%s", json.dumps({"agent": self.name, "sink": breaker.sink,
                                      "breaker": breaker.state}))
        if self._control is not None:
            with contextlib.suppress(Exception):  # best effort: the broker may be the cause
                publish_state(self._control.bootstrap, f"sink:{breaker.sink}", breaker.state,
                              f"breaker of agent {self.name}", timeout=2)

    def _hold_while_open(self, failed: list[Undelivered]) -> set[str]:
        """If a failing sink's breaker is open: wait for its probe time, then resend what
        failed as the probe. Nothing goes to the DLQ meanwhile. Returns the topics resent
        (empty if no breaker is open)."""
        open_breakers = [self._breakers[r.topic] for r in failed
                         if r.topic in self._breakers and self._breakers[r.topic].state == OPEN]
        if not open_breakers:
            return set()
        breaker = open_breakers[0]
        self.state = "WAITING_BACKOFF"
        if self._stopping.wait(breaker.wait_before_probe()):
            raise BatchAbandonedError(
                f"stopped while the breaker of sink {breaker.sink} was open; the batch was not "
                "committed and is read again on restart")
        for candidate in {b.sink: b for b in open_breakers}.values():
            if candidate.half_open():
                self._breaker_changed(candidate)
        for record in failed:  # the probe: what was held, sent again
            self._writer.send(record.topic, record.key, record.value, record.headers)
        return {record.topic for record in failed}

    def _wait_backoff(self, attempt: int, records: list[Undelivered]) -> None:
        delay = min(BACKOFF_CAP_S, self._backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
        self.state = "WAITING_BACKOFF"
        log.warning("%s", json.dumps({
            "agent": self.name, "state": "WAITING_BACKOFF", "attempt": attempt,
            "max_retries": self._max_retries, "delay_s": round(delay, 2),
            "undelivered": len(records), "topics": sorted({r.topic for r in records}),
            "error": records[0].error.str()}))
        # The batch is held: nothing is polled or committed meanwhile.
        if self._stopping.wait(delay):
            raise BatchAbandonedError(
                f"stopped while {len(records)} records could not be delivered "
                f"({records[0].error.str()}); their batch was not committed and is read again "
                "on restart")

    def _dead_letter_undelivered(self, batch: SourceBatch, sources: _SourceIndex,
                                 record: Undelivered, dead: Counter[str]) -> str:
        """The source record behind an undelivered sink record, to its pipeline's DLQ."""
        found = sources.take(record)
        if found is None:
            raise SinkUnavailableError(f"a record for {record.topic} was not delivered and "
                                       "cannot be traced to its source record; stopping "
                                       "without committing it")
        index, binding = found
        code = "SINK_UNAVAILABLE" if record.retryable else "SINK_REJECTED"
        slot = Slot(((binding.pipeline, f"{binding.pipeline}.sink.{binding.sink.name}"),), "sink")
        failure = Failure(index, slot, code, SinkUnavailableError(
            f"not delivered to {record.topic}: {record.error.str()}"))
        dead.update(self._dead_letter(batch, [failure]))
        return binding.pipeline

    def _dead_letter(self, batch: SourceBatch, failures: list[Failure]) -> Counter[str]:
        """Each failed source record to the DLQ of every pipeline it failed for, once."""
        dead: Counter[str] = Counter()
        for pipeline, failure in per_pipeline(failures):
            origin = batch.origin(failure.index)
            topic = self._dlq_topics[pipeline]
            if pipeline in self._fail_fast or topic is None:
                where = f" ({origin.topic}:{origin.partition}:{origin.offset})" if origin.topic \
                    else ""
                raise RecordFailedError(
                    f"pipeline {pipeline} has on_error: fail, and a record{where} failed in "
                    f"{failure.slot.stage_for(pipeline)}: {failure.code}: {failure.message}")
            headers = dead_letter_headers(pipeline, failure, origin,
                                          self._plan.pipeline(pipeline).dlq.max_replays)
            self._writer.send(topic, batch.keys[failure.index],
                              batch.values[failure.index], headers)
            dead[pipeline] += 1
            self.stats[pipeline].error_codes[failure.code] += 1
        return dead

    def idle_for(self) -> float:
        """Seconds since the last record or assignment; 0 while a batch is in flight, while
        not ready to consume, while the source has records left to read (a fetch can be slow
        to come, idle time is not the end of the input), or while a bounded source still has
        records to give."""
        if self.paused:
            return float("inf")  # nothing will flow until `uee resume`
        if self.source.bounded:
            return float("inf") if self.source.exhausted else 0.0
        if self._busy or not self.source.ready or not self._caught_up:
            return 0.0
        return time.monotonic() - self._last_activity

    def request_stop(self) -> None:
        """Called from the event loop: ends a backoff wait at once."""
        self._stopping.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
        finally:
            self.source.close()
            if self._control is not None:
                self._control.close()
