"""What differs between the brokers uee is tested on (Tansu 0.6.0, Apache Kafka 3.9), each
difference checked on whichever broker the session has: `make test` runs this file on both."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from streams.control import CONTROL_TOPIC, ensure_control_topic
from streams.topics import describe_topic, ensure_topics, is_tansu
from tests.integration.test_topics import produce_in_small_batches

pytestmark = pytest.mark.integration


def test_end_offsets_are_exact_whether_or_not_listoffsets_is(kafka: str) -> None:
    """Tansu answers ListOffsets(latest) with the base offset of the last batch + 1; Apache
    Kafka with the end. uee takes the larger of ListOffsets and a Fetch high watermark, which
    must be exact on both."""
    topic = f"diff.offsets.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [topic], 3, 1)
    per_partition = produce_in_small_batches(kafka, topic, 6_000)
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"diff-{topic}"})
    try:
        listed = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                  for p in per_partition}
    finally:
        consumer.close()
    described = {p.partition: p.high for p in describe_topic(kafka, topic).partitions}
    assert described == dict(per_partition)  # exact, on both brokers
    if is_tansu(kafka):
        assert all(listed[p] <= described[p] for p in listed)
        assert any(listed[p] < described[p] for p in listed), "Tansu's ListOffsets bug is gone"
    else:
        assert listed == described


def test_the_control_topic_is_compacted_and_says_so(kafka: str) -> None:
    """Read back with DescribeConfigs. (Tansu 0.6.0 was said to accept topic configs without
    reporting them: it does report this one.)"""
    ensure_control_topic(kafka)
    admin = AdminClient({"bootstrap.servers": kafka})
    [future] = admin.describe_configs([ConfigResource("topic", CONTROL_TOPIC)]).values()
    entries = future.result(timeout=15)
    assert entries["cleanup.policy"].value == "compact"
