"""Delivery: one batch's records to their sinks and its failures to dead-letter topics,
until every one is acknowledged.

Each sink of each pipeline is an `Outlet` with that pipeline's policy: its retries and
backoff, its own circuit breaker. A sink reports what it could not make durable record
by record (`WriteFailure` holds the very tuple it was given), so a record that runs out
of retries goes to the DLQ as the source record it came from, whatever the sink is.
Dead letters are never given up on: they are retried until written, and a batch is
not over until they are.

Writing (`send`) and waiting for the acknowledgements (`settle`) are two calls: the agent
runs the next batch's stages in between, so its sinks' round trips overlap work. Every
sink and DLQ of an agent shares one producer, and a batch is sent only once the one before
it is settled, so a flush waits for one batch's records, never the next's.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from uee.connectors.base import (
    Headers,
    OutRecord,
    Sink,
    SinkUnavailableError,
    SourceBatch,
    WriteFailure,
)
from uee.dsl.ir import DlqSection, Pipeline
from uee.errors import UeeError
from uee.streams.breaker import OPEN, CircuitBreaker
from uee.streams.deadletter import dead_letter_headers, per_pipeline
from uee.streams.kernel import Failure, Slot
from uee.streams.sensors import Sensor
from uee.urn import HEADER as URN_HEADER

log = logging.getLogger("uee")
BACKOFF_CAP_S = 30.0


class BatchAbandonedError(UeeError):
    """The worker was stopped while a batch could not be delivered; it stays uncommitted."""

    code = "BATCH_ABANDONED"


class RecordFailedError(UeeError):
    """A record failed in a pipeline with `on_error: fail`: the pipeline stops, uncommitted."""

    code = "RECORD_FAILED"


class SinkFailedError(Exception):
    """What a dead letter says about a record its sink did not take."""


@dataclass(frozen=True)
class Policy:
    """One pipeline's delivery policy: its `dlq` section, and where its dead letters go."""

    dlq_topic: str | None  # None: `on_error: fail`, a failed record stops the pipeline
    dlq: DlqSection

    @classmethod
    def of(cls, pipeline: Pipeline) -> Policy:
        return cls(pipeline.dlq_topic if pipeline.on_error != "fail" else None, pipeline.dlq)

    def backoff(self, attempt: int) -> float:
        """Exponential, capped, with jitter so that workers do not retry in step."""
        return float(min(BACKOFF_CAP_S, self.dlq.backoff_s * 2 ** (attempt - 1))
                     * random.uniform(0.5, 1.5))


@dataclass(eq=False)  # identity: an outlet is a key of its batch's retries
class Outlet:
    """A sink as one pipeline writes it: that pipeline's policy and its own breaker."""

    pipeline: str
    stage: str  # the sink's stage id, `<pipeline>.sink.<name>`
    sink: Sink
    policy: Policy
    breaker: CircuitBreaker = field(init=False)

    def __post_init__(self) -> None:
        self.breaker = CircuitBreaker(self.sink.target, self.policy.dlq.breaker_failures,
                                      self.policy.dlq.breaker_open_s)


@dataclass
class Outcome:
    """What one batch's delivery did, for the sensors."""

    per_target: dict[str, Counter[str]] = field(default_factory=dict)  # pipeline -> target
    refused: Counter[str] = field(default_factory=Counter)  # sink records sent to the DLQ
    dead: list[tuple[str, str, str, str]] = field(default_factory=list)  # pipeline, stage,
    # code, dlq topic: one per dead letter

    def dead_per_pipeline(self) -> Counter[str]:
        return Counter(pipeline for pipeline, *_ in self.dead)


@dataclass(frozen=True)
class Sending:
    """A batch written to its sinks and dead-letter topics, not yet acknowledged."""

    batch: SourceBatch
    outcome: Outcome
    sent: list[Outlet | str]  # outlets, and pipelines whose DLQ was written
    written: tuple[str, ...]  # the sinks' targets written to
    queued: float  # the fullest sink's local buffer right after the writes, 0-1
    # Seconds the writes took: a producer whose local queue is full makes them wait for
    # room (connectors.kafka), a cost of the sinks as much as their acknowledgements.
    writing_s: float


@dataclass
class _Retry:
    """Records of one sink waiting for their next attempt."""

    failures: list[WriteFailure]
    due: float
    attempt: int
    probe: bool  # the breaker is open: this send is its probe


class Delivery:
    def __init__(self, name: str, outlets: list[Outlet], dead_letters: dict[str, Sink],
                 policies: dict[str, Policy], flush_timeout: float, sensors: Sensor,
                 stopping: threading.Event) -> None:
        self.name = name
        self.outlets = outlets
        self._dlqs = dead_letters  # pipeline -> its dead-letter sink
        self._policies = policies
        self._flush_timeout = flush_timeout
        self._sensors = sensors
        self._stopping = stopping

    def send(self, batch: SourceBatch, outputs: list[list[OutRecord]],
             failures: Iterable[Failure]) -> Sending:
        """Write a batch's records to their sinks and its failures to their dead-letter
        topics, without waiting: `settle` waits. Raises when a record fails in a pipeline
        with `on_error: fail`."""
        started = time.monotonic()
        outcome = Outcome()
        sent: list[Outlet | str] = []  # outlets, and pipelines whose DLQ was written
        urns = batch.urns
        for outlet, records in zip(self.outlets, outputs, strict=True):
            if records:
                # A record that knows its URN carries it (`uee.urn`) to every sink.
                outlet.sink.write(records, [[(URN_HEADER, urns[r[0]].encode())] for r in records]
                                  if urns else None)
                outcome.per_target.setdefault(outlet.pipeline, Counter())[
                    outlet.sink.target] += len(records)
                sent.append(outlet)
        written = tuple(dict.fromkeys(t.sink.target for t in sent if isinstance(t, Outlet)))
        queued = max((outlet.sink.queued() for outlet in sent if isinstance(outlet, Outlet)),
                     default=0.0)
        for pipeline, failure in per_pipeline(failures):
            self._dead_letter(batch, pipeline, failure, outcome)
        sent.extend(dict.fromkeys(pipeline for pipeline, *_ in outcome.dead))
        return Sending(batch, outcome, sent, written, queued, time.monotonic() - started)

    def settle(self, sending: Sending) -> Outcome:
        """Wait until every record of the batch sent is acknowledged (or dead-lettered and
        that acknowledged), retrying what failed. Raises when the batch must stay
        uncommitted. What the agent waited here, with what the writes took, is what its sinks
        cost it (the next batch's stages ran while they acknowledged)."""
        started = time.monotonic()
        self._settle(sending.batch, sending.sent, sending.outcome)
        if sending.written:
            self._sensors.on_sinks(sending.written,
                                   sending.writing_s + time.monotonic() - started,
                                   sending.queued)
        return sending.outcome

    def _settle(self, batch: SourceBatch, sent: list[Outlet | str], outcome: Outcome) -> None:
        retries: dict[Outlet | str, _Retry] = {}
        attempts: Counter[Outlet | str] = Counter()
        while sent or retries:
            dead_before = len(outcome.dead)
            for target in sent:
                sink = target.sink if isinstance(target, Outlet) else self._dlqs[target]
                failed = sink.flush(self._flush_timeout)
                if isinstance(target, Outlet):
                    retry = self._after_sink_round(batch, target, failed, attempts, outcome)
                else:
                    retry = self._after_dlq_round(target, failed, attempts)
                if retry is not None and target in retries:  # a DLQ with a retry pending
                    retries[target].failures.extend(retry.failures)
                elif retry is not None:
                    retries[target] = retry
            # Dead letters written this round are flushed before any wait.
            sent = list(dict.fromkeys(p for p, *_ in outcome.dead[dead_before:]))
            if not sent and retries:
                sent = self._resend_due(retries)
        if attempts:
            self._sensors.on_state_change(f"agent:{self.name}", "RUNNING", "delivered")
            log.warning("%s", json.dumps({"agent": self.name, "state": "RUNNING",
                                          "after_attempts": max(attempts.values())}))

    def _after_sink_round(self, batch: SourceBatch, outlet: Outlet, failed: list[WriteFailure],
                          attempts: Counter[Outlet | str], outcome: Outcome) -> _Retry | None:
        changed = outlet.breaker.record(delivered=not failed)
        if changed:
            self._breaker_changed(outlet)
        now = time.monotonic()
        retryable = []
        for failure in failed:
            if failure.retryable:
                retryable.append(failure)
            else:
                self._undelivered(batch, outlet, failure, "SINK_REJECTED", outcome)
        if not retryable:
            return None
        if outlet.breaker.state == OPEN:  # hold, no dead-letter flood: the probe decides
            return _Retry(retryable, now + outlet.breaker.wait_before_probe(),
                          attempts[outlet], probe=True)
        if attempts[outlet] < outlet.policy.dlq.max_retries:
            attempts[outlet] += 1
            return _Retry(retryable, now + outlet.policy.backoff(attempts[outlet]),
                          attempts[outlet], probe=False)
        for failure in retryable:
            self._undelivered(batch, outlet, failure, "SINK_UNAVAILABLE", outcome)
        return None

    def _after_dlq_round(self, pipeline: str, failed: list[WriteFailure],
                         attempts: Counter[Outlet | str]) -> _Retry | None:
        if not failed:
            return None
        refused = [f for f in failed if not f.retryable]
        if refused:
            raise SinkUnavailableError(
                f"the dead-letter topic {self._dlqs[pipeline].target} refused a record: "
                f"{refused[0].reason}; stopping without committing it")
        # Retrying dead letters does not use up the sink records' retries, and never ends.
        attempts[pipeline] += 1
        return _Retry(failed, time.monotonic() + self._policies[pipeline].backoff(
            attempts[pipeline]), attempts[pipeline], probe=False)

    def _resend_due(self, retries: dict[Outlet | str, _Retry]) -> list[Outlet | str]:
        """Wait for the earliest retry, then send again everything that is due."""
        due = min(retry.due for retry in retries.values())
        self._wait(due, retries)
        now = time.monotonic()
        sent: list[Outlet | str] = []
        for target, retry in list(retries.items()):
            if retry.due > now:
                continue
            del retries[target]
            if isinstance(target, Outlet):
                if retry.probe and target.breaker.half_open():
                    self._breaker_changed(target)
                sink = target.sink
            else:
                sink = self._dlqs[target]
            headers = [f.headers or [] for f in retry.failures]
            sink.write([f.record for f in retry.failures],
                       headers if any(f.headers for f in retry.failures) else None)
            sent.append(target)
        return sent

    def _wait(self, due: float, retries: dict[Outlet | str, _Retry]) -> None:
        """The batch is held meanwhile: nothing is polled or committed."""
        delay = max(0.0, due - time.monotonic())
        waiting = [r for r in retries.values() if not r.probe]
        first = next(iter(retries.values())).failures[0]
        self._sensors.on_state_change(f"agent:{self.name}", "WAITING_BACKOFF", first.reason)
        if waiting:
            attempt = max(r.attempt for r in waiting)
            targets = sorted({self._target_name(t) for t, r in retries.items() if not r.probe})
            log.warning("%s", json.dumps({
                "agent": self.name, "state": "WAITING_BACKOFF", "attempt": attempt,
                "max_retries": max(self._policy_of(t).dlq.max_retries for t in retries),
                "delay_s": round(delay, 2),
                "undelivered": sum(len(r.failures) for r in waiting), "topics": targets,
                "error": first.reason}))
        if self._stopping.wait(delay):
            count = sum(len(r.failures) for r in retries.values())
            raise BatchAbandonedError(
                f"stopped while {count} records could not be delivered ({first.reason}); "
                "their batch was not committed and is read again on restart")

    def _target_name(self, target: Outlet | str) -> str:
        return target.sink.target if isinstance(target, Outlet) else self._dlqs[target].target

    def _policy_of(self, target: Outlet | str) -> Policy:
        return target.policy if isinstance(target, Outlet) else self._policies[target]

    def _breaker_changed(self, outlet: Outlet) -> None:
        breaker = outlet.breaker
        log.warning("%s", json.dumps({"agent": self.name, "pipeline": outlet.pipeline,
                                      "sink": breaker.sink, "breaker": breaker.state}))
        self._sensors.on_state_change(f"sink:{breaker.sink}", breaker.state,
                                      f"breaker of {outlet.pipeline} in agent {self.name}")

    def _undelivered(self, batch: SourceBatch, outlet: Outlet, failure: WriteFailure, code: str,
                     outcome: Outcome) -> None:
        """The source record behind a record its sink did not take, to its pipeline's DLQ."""
        slot = Slot(((outlet.pipeline, outlet.stage),), "sink")
        error = SinkFailedError(f"not delivered to {outlet.sink.target}: {failure.reason}")
        outcome.refused[outlet.pipeline] += 1
        outcome.per_target[outlet.pipeline][outlet.sink.target] -= 1
        self._dead_letter(batch, outlet.pipeline, Failure(failure.record[0], slot, code, error),
                          outcome)

    def _dead_letter(self, batch: SourceBatch, pipeline: str, failure: Failure,
                     outcome: Outcome) -> None:
        origin = batch.origin(failure.index)
        policy = self._policies[pipeline]
        if policy.dlq_topic is None:
            where = f" ({origin.topic}:{origin.partition}:{origin.offset})" if origin.topic \
                else ""
            raise RecordFailedError(
                f"pipeline {pipeline} has on_error: fail, and a record{where} failed in "
                f"{failure.slot.stage_for(pipeline)}: {failure.code}: {failure.message}")
        headers: Headers = dead_letter_headers(pipeline, failure, origin,
                                                      policy.dlq.max_replays)
        record = (failure.index, batch.keys[failure.index], batch.values[failure.index])
        self._dlqs[pipeline].write([record], [headers])
        outcome.dead.append((pipeline, failure.slot.stage_for(pipeline), failure.code,
                             policy.dlq_topic))

