"""What differs between the brokers uee is tested on (Tansu 0.6.0, Apache Kafka 3.9), each
difference checked on whichever broker the session has: `make test` runs this file on both."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.conftest import wait_until
from tests.integration.test_topics import produce_in_small_batches
from uee.connectors.base import SinkUnavailableError
from uee.connectors.kafka import KafkaSink, KafkaWriter
from uee.streams.control import ensure_control_topic
from uee.streams.names import CONTROL_TOPIC
from uee.streams.settings import Settings
from uee.streams.topic_watch import TopicDeletedError, TopicWatch
from uee.streams.topics import describe_topic, ensure_topics, is_tansu, topic_partitions

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
    ensure_control_topic(Settings().with_bootstrap(kafka))
    admin = AdminClient({"bootstrap.servers": kafka})
    [future] = admin.describe_configs([ConfigResource("topic", CONTROL_TOPIC)]).values()
    entries = future.result(timeout=15)
    assert entries["cleanup.policy"].value == "compact"


def test_writes_to_a_deleted_topic_never_pass_for_delivered(kafka: str) -> None:
    """Apache Kafka refuses records for a deleted topic, and uee's writer reports every one of
    them (purge misses some, which must not pass for delivered). Tansu 0.6.0 acknowledges
    them, so there the topic watch's check before a commit is what keeps them uncommitted."""
    settings = Settings().with_bootstrap(kafka)
    writer = KafkaWriter({**settings.producer_config(), "message.timeout.ms": 2000})
    try:
        for round_ in range(3):
            topic = f"diff.deleted.{uuid.uuid4().hex[:8]}"
            ensure_topics(kafka, [topic], 3, 1)
            watch = TopicWatch(kafka, {topic: "a test sink"})
            watch.start()
            watch.stop()
            sink = KafkaSink("out", topic, writer, 1_000_000)
            sink.write([(i, b"k%d" % i, b"v") for i in range(100)])
            assert sink.flush(10) == []
            admin = AdminClient({"bootstrap.servers": kafka})  # must outlive the future
            admin.delete_topics([topic])[topic].result(30)
            wait_until(lambda t=topic: t not in topic_partitions(kafka), 30, "the deletion")
            sink.write([(i, b"k%d" % i, b"v") for i in range(100)])
            try:
                failed = sink.flush(2)
            except SinkUnavailableError:
                failed = None  # nothing reported, nothing passed for delivered: also right
            if is_tansu(kafka):
                assert failed == [], f"round {round_}: Tansu refused writes to a deleted topic"
                with pytest.raises(TopicDeletedError, match=topic):
                    watch.confirm([topic])
            else:
                assert failed is None or sorted(f.record[0] for f in failed) == list(range(100)), \
                    f"round {round_}: {failed}"
    finally:
        writer.close(1)
