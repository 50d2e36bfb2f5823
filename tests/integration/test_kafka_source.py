"""The Kafka source on the real broker: knowing when the input is read to its end, which
`uee run --until-idle` waits for instead of trusting a quiet moment; and keeping what a poll
returned once a rebalance gave its partitions back."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from confluent_kafka import Consumer

from tests.conftest import wait_until
from tests.helpers import produce
from uee.connectors.base import SourceBatch
from uee.connectors.kafka import KafkaSource
from uee.streams.settings import Settings
from uee.streams.topics import ensure_topics, is_tansu

pytestmark = pytest.mark.integration


def source_for(kafka: str, topic: str, group: str) -> KafkaSource:
    settings = Settings(bootstrap=kafka, session_timeout_ms=3000)
    return KafkaSource(topic, settings.consumer_config(group))


def drain(source: KafkaSource, count: int) -> int:
    """Poll until `count` more records came and the source says it is caught up; commit."""
    seen = 0

    def done() -> bool:
        nonlocal seen
        batch = source.poll(1000, 0.1)
        if batch is not None:
            seen += len(batch)
            source.commit(batch)
            return False
        return seen >= count and source.caught_up()

    wait_until(done, 60, f"{count} records and the end of the input")
    return seen


def first_batch(source: KafkaSource) -> int:
    batches = []

    def came() -> bool:
        batch = source.poll(1000, 0.1)
        if batch is not None:
            batches.append(batch)
            source.commit(batch)
        return bool(batches)

    wait_until(came, 60, "the first batch")
    return len(batches[0])


def test_caught_up_only_at_the_end_of_the_input_and_after_a_restart_at_the_end(
        kafka: str) -> None:
    topic, group = f"src.{uuid.uuid4().hex[:8]}", f"g.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [topic], 3, 1)
    produce(kafka, topic, [(str(i).encode(), b"{}") for i in range(3000)])

    source = source_for(kafka, topic, group)
    source.open()
    try:
        first = first_batch(source)
        assert first <= 1000
        assert not source.caught_up()  # at least 2,000 records are still to read
        assert first + drain(source, 3000 - first) == 3000
        produce(kafka, topic, [(b"late", b"{}")])
        wait_until(lambda: not source.caught_up(), 30, "the late record's watermark")
        assert drain(source, 1) == 1
    finally:
        source.close()

    # A new member of the group starts where the group committed: at the end. It reads
    # nothing and still knows it is caught up (librdkafka has no position for it yet).
    again = source_for(kafka, topic, group)
    again.open()
    try:
        assert drain(again, 0) == 0
    finally:
        again.close()


def test_a_partition_revoked_and_assigned_back_within_one_poll_keeps_its_records(
        kafka: str) -> None:
    """A member that loses its partitions and gets them back within one poll (its group
    rebalancing eagerly, as when a member joins; a broker restart that ends its membership)
    must deliver what the poll returned after they came back: the consumer's position has
    moved past those records, so a poll that dropped them would let the next commit cover
    them (the loss seen when Apache Kafka was killed and restarted under a pipeline)."""
    topic, other_topic = f"src.{uuid.uuid4().hex[:8]}", f"other.{uuid.uuid4().hex[:8]}"
    group = f"g.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [topic, other_topic], 1, 1)
    produce(kafka, topic, [(str(i).encode(), b"{}") for i in range(10)])
    # range: an eager strategy, so every rebalance revokes every partition of every member.
    settings = Settings(bootstrap=kafka, session_timeout_ms=6000, assignment_strategy="range")
    source = KafkaSource(topic, settings.consumer_config(group))
    changes: list[tuple[list[int], list[int]]] = []
    source.rebalance_listener = lambda _, assigned, revoked: changes.append((assigned, revoked))
    source.open()
    # Another member of the group, reading another topic: it takes none of the source's
    # partitions, but its joining revokes them and assigns them back.
    joiner = Consumer(settings.consumer_config(group))
    batches: list[SourceBatch | None] = []
    try:
        assert drain(source, 10) == 10
        changes.clear()
        polling = threading.Thread(target=lambda: batches.append(source.poll(1000, 60)))
        polling.start()  # waits in the consumer for a first record
        joiner.subscribe([other_topic])

        def back() -> bool:
            joiner.poll(0.1)
            return ([], [0]) in changes and changes[-1] == ([0], [])

        wait_until(back, 60, "the source's partition revoked and assigned back")
        produce(kafka, topic, [(b"after", b"{}")])  # returned by the same poll
        polling.join(60)
        assert not polling.is_alive()
        late = [batch for batch in batches if batch is not None]

        def came() -> bool:  # in that poll, else in a later one (never, if it was dropped)
            if not late and (batch := source.poll(1000, 0.1)) is not None:
                late.append(batch)
            return bool(late)

        wait_until(came, 10, "the record produced after the rebalance")
        assert late[0].keys == [b"after"]
        assert late[0].commit_token == {0: 11}
    finally:
        joiner.close()
        source.close()


def test_the_test_broker_is_recognised(kafka: str) -> None:
    """Tansu gets a short session timeout (its group joins wait half of it); others do not."""
    if os.environ.get("UEE_TEST_BOOTSTRAP"):
        pytest.skip("an existing cluster: which broker it is, the test cannot know")
    embedded = os.environ.get("UEE_TEST_KAFKA", "embedded") in ("embedded", "durable")
    assert is_tansu(kafka) == embedded
