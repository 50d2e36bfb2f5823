"""Run a plan in process, without Kafka: the reference for what a plan writes where.

Tests use it to compare plans (merged against unmerged) over the same input; it
shares the compiled kernel with the runtime, so what it proves holds for `uee run`.
"""

from __future__ import annotations

from collections import defaultdict

from uee.connectors.registry import SOURCE_CONNECTORS
from uee.dsl.ir import KafkaSource
from uee.dsl.plan import Plan, Segment
from uee.streams.deadletter import per_pipeline
from uee.streams.kernel import Kernel

Record = tuple[bytes | None, bytes | None]


def source_records(segment: Segment, topics: dict[str, list[Record]]) -> list[Record]:
    source = segment.source
    if isinstance(source, KafkaSource):
        return topics.get(source.topic, [])
    running = SOURCE_CONNECTORS[source.type].create("executor", source.config)
    if not running.bounded:
        raise ValueError(f"{source.describe} has no end: the executor runs bounded sources")
    records: list[Record] = []
    running.open()
    try:
        while not running.exhausted:
            batch = running.poll(10_000, 0.1)
            if batch is not None:
                records.extend(zip(batch.keys, batch.values, strict=True))
                running.commit(batch)
    finally:
        running.close()
    return records


def execute(plan: Plan, topics: dict[str, list[Record]]) -> dict[str, list[Record]]:
    """Every record each topic receives (sinks and dead letters) when the plan runs once
    over `topics`' records; order within a topic follows the source order per pipeline."""
    written: dict[str, list[Record]] = defaultdict(list)
    for segment in plan.segments:
        records = source_records(segment, topics)
        keys = [key for key, _ in records]
        values = [value for _, value in records]
        kernel = Kernel(segment)
        result = kernel.run(values, keys)
        for binding, outputs in zip(kernel.bindings, result.outputs, strict=True):
            written[binding.sink.topic].extend((key, value) for _, key, value in outputs)
        for pipeline, failure in per_pipeline(result.failures):
            dlq = plan.pipeline(pipeline).dlq_topic
            if dlq is None:  # on_error: fail: the run would stop here
                raise RuntimeError(f"pipeline {pipeline} failed on record {failure.index}: "
                                   f"{failure.code}: {failure.message}")
            written[dlq].append((keys[failure.index], values[failure.index]))
    return dict(written)
