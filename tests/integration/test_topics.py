"""Topic inspection against the real broker, including Tansu's ListOffsets undercount."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from confluent_kafka import Producer

from uee.streams.topics import (
    TopicNotFoundError,
    describe_topic,
    ensure_topics,
    tail_topic,
    topic_partitions,
)

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def produce_in_small_batches(bootstrap: str, topic: str, count: int) -> Counter[int]:
    """Many record batches per partition: exactly what makes ListOffsets(latest) undercount."""
    per_partition: Counter[int] = Counter()

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        per_partition[msg.partition()] += 1  # type: ignore[attr-defined]

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.num.messages": 100})
    for i in range(count):
        producer.produce(topic, f'{{"n": {i}}}'.encode(), str(i).encode(), on_delivery=delivered)
    assert producer.flush(30) == 0
    return per_partition


def test_describe_counts_every_record_despite_listoffsets(kafka: str) -> None:
    topic = unique("it.describe")
    assert ensure_topics(kafka, [topic], 3, 1) == [topic]
    per_partition = produce_in_small_batches(kafka, topic, 20_000)
    info = describe_topic(kafka, topic)
    assert info.records == 20_000
    assert {p.partition: p.records for p in info.partitions} == dict(per_partition)
    assert all(p.low == 0 for p in info.partitions)


def test_ensure_topics_is_idempotent_and_lists_partitions(kafka: str) -> None:
    topic = unique("it.ensure")
    assert ensure_topics(kafka, [topic], 2, 1) == [topic]
    assert ensure_topics(kafka, [topic], 2, 1) == []
    assert topic_partitions(kafka)[topic] == 2


def test_tail_returns_the_last_records_in_order(kafka: str) -> None:
    topic = unique("it.tail")
    ensure_topics(kafka, [topic], 1, 1)
    produce_in_small_batches(kafka, topic, 1_000)
    records = tail_topic(kafka, topic, 5)
    assert [r.key for r in records] == [str(i).encode() for i in range(995, 1000)]
    assert [r.offset for r in records] == list(range(995, 1000))
    assert records[-1].value == b'{"n": 999}'


def test_tail_across_partitions_and_of_an_empty_topic(kafka: str) -> None:
    topic = unique("it.tail3")
    ensure_topics(kafka, [topic], 3, 1)
    assert tail_topic(kafka, topic, 5) == []
    produce_in_small_batches(kafka, topic, 300)
    records = tail_topic(kafka, topic, 7)
    assert len(records) == 7
    assert len({(r.partition, r.offset) for r in records}) == 7


def test_describe_unknown_topic_is_a_clear_error(kafka: str) -> None:
    with pytest.raises(TopicNotFoundError, match="does not exist"):
        describe_topic(kafka, unique("it.nope"))
