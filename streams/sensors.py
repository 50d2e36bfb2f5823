"""Sensors: the one interface through which the batch loop tells what happens.

The loop calls a `Sensors` fan-out, never a counter or a metrics library directly
(as Faust's `sensors`). Today's listener is `StatsSensor`, whose counters feed the
progress bar, the summary and `--stats-json`; a Prometheus sensor is another
listener, with its `CollectorRegistry` handed to it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class Sensor:
    """Every hook does nothing; a listener overrides those it cares about. Called from the
    agent's thread, between batches or within one: keep them cheap."""

    def on_batch_in(self, source: str, pipelines: tuple[str, ...], records: int,
                    at: float) -> None: ...

    def on_records_out(self, pipeline: str, records: int, per_target: Counter[str]) -> None:
        """A batch's records that reached the pipeline's sinks (each once, however many
        sinks took it), and the records each sink took."""

    def on_filtered(self, pipeline: str, stage: str, records: int) -> None: ...

    def on_dead_lettered(self, pipeline: str, stage: str, code: str, topic: str) -> None: ...

    def on_delivered(self, pipelines: tuple[str, ...], seconds: float,
                     since_produced: float | None = None) -> None:
        """A batch's sinks and dead letters were acknowledged, `seconds` after its poll and
        `since_produced` seconds after its first record's Kafka timestamp (None: no Kafka
        timestamp; that includes the time the records waited in Kafka)."""

    def on_sinks(self, sinks: tuple[str, ...], seconds: float, queued: float) -> None:
        """A batch's writes to `sinks` were acknowledged; the agent spent `seconds` on them:
        the writes (a full local buffer waits for room) and the wait for acknowledgements
        once the next batch had run through the stages (retries included); the fullest
        sink's local buffer was `queued` full (0-1) right after the writes."""

    def on_commit(self, source: str, pipelines: tuple[str, ...], records: int,
                  at: float) -> None: ...

    def on_rebalance(self, source: str, assigned: list[int], revoked: list[int]) -> None: ...

    def on_state_change(self, scope: str, state: str, reason: str) -> None:
        """An agent, a pipeline or a sink's breaker changed state (`scope` says which)."""

    def on_stage_time(self, pipeline: str, stage: str, seconds: float) -> None:
        """A sampled batch spent `seconds` in one of the pipeline's stages (`decode`, `sink`,
        or `<index>-<kind>`)."""

    def on_kernel(self, pipelines: tuple[str, ...], seconds: float) -> None:
        """A batch took `seconds` in the compiled stages (the work, without the waits)."""

    def on_quota(self, pipeline: str, before: int, after: int, full: int) -> None:
        """A pipeline's permits changed (`before == after` when first allocated)."""


class Sensors(Sensor):
    """Calls each listener in turn."""

    def __init__(self, *listeners: Sensor) -> None:
        self.listeners = list(listeners)

    def add(self, listener: Sensor) -> None:
        self.listeners.append(listener)

    def on_batch_in(self, source: str, pipelines: tuple[str, ...], records: int,
                    at: float) -> None:
        for listener in self.listeners:
            listener.on_batch_in(source, pipelines, records, at)

    def on_records_out(self, pipeline: str, records: int, per_target: Counter[str]) -> None:
        for listener in self.listeners:
            listener.on_records_out(pipeline, records, per_target)

    def on_filtered(self, pipeline: str, stage: str, records: int) -> None:
        for listener in self.listeners:
            listener.on_filtered(pipeline, stage, records)

    def on_dead_lettered(self, pipeline: str, stage: str, code: str, topic: str) -> None:
        for listener in self.listeners:
            listener.on_dead_lettered(pipeline, stage, code, topic)

    def on_delivered(self, pipelines: tuple[str, ...], seconds: float,
                     since_produced: float | None = None) -> None:
        for listener in self.listeners:
            listener.on_delivered(pipelines, seconds, since_produced)

    def on_sinks(self, sinks: tuple[str, ...], seconds: float, queued: float) -> None:
        for listener in self.listeners:
            listener.on_sinks(sinks, seconds, queued)

    def on_commit(self, source: str, pipelines: tuple[str, ...], records: int,
                  at: float) -> None:
        for listener in self.listeners:
            listener.on_commit(source, pipelines, records, at)

    def on_rebalance(self, source: str, assigned: list[int], revoked: list[int]) -> None:
        for listener in self.listeners:
            listener.on_rebalance(source, assigned, revoked)

    def on_state_change(self, scope: str, state: str, reason: str) -> None:
        for listener in self.listeners:
            listener.on_state_change(scope, state, reason)

    def on_quota(self, pipeline: str, before: int, after: int, full: int) -> None:
        for listener in self.listeners:
            listener.on_quota(pipeline, before, after, full)

    def on_stage_time(self, pipeline: str, stage: str, seconds: float) -> None:
        for listener in self.listeners:
            listener.on_stage_time(pipeline, stage, seconds)

    def on_kernel(self, pipelines: tuple[str, ...], seconds: float) -> None:
        for listener in self.listeners:
            listener.on_kernel(pipelines, seconds)


@dataclass
class PipelineStats:
    """One pipeline's counters, as the progress bar and the summary show them."""

    records_in: int = 0
    records_out: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    per_topic_out: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    first_record_at: float | None = None
    last_commit_at: float | None = None


class StatsSensor(Sensor):
    """Counters per pipeline, and records read per source (once however many pipelines
    share the read)."""

    def __init__(self, pipelines: tuple[str, ...]) -> None:
        self.stats = {name: PipelineStats() for name in pipelines}
        self.read: Counter[str] = Counter()

    def on_batch_in(self, source: str, pipelines: tuple[str, ...], records: int,
                    at: float) -> None:
        self.read[source] += records
        for name in pipelines:
            stats = self.stats[name]
            stats.records_in += records
            if stats.first_record_at is None:
                stats.first_record_at = at

    def on_records_out(self, pipeline: str, records: int, per_target: Counter[str]) -> None:
        stats = self.stats[pipeline]
        stats.records_out += records
        stats.per_topic_out.update(per_target)

    def on_filtered(self, pipeline: str, stage: str, records: int) -> None:
        self.stats[pipeline].filtered += records

    def on_dead_lettered(self, pipeline: str, stage: str, code: str, topic: str) -> None:
        stats = self.stats[pipeline]
        stats.dead_lettered += 1
        stats.error_codes[code] += 1
        stats.per_topic_out[topic] += 1

    def on_commit(self, source: str, pipelines: tuple[str, ...], records: int,
                  at: float) -> None:
        for name in pipelines:
            self.stats[name].last_commit_at = at
